// The shape of the catalog: plain typed data about every exercise. The menu, the level
// READMEs' checklists, the grader's item list and the hints all come from here.

export interface Knob {
  /** Environment variable name, e.g. `RESTART_DELAY_MS`. */
  name: string;
  /** The default a learner gets when running the program by hand. */
  default: string;
  description: string;
}

export interface ChecklistItem {
  /** Fixed id from the spec; never changes. */
  id: string;
  /** The checklist text, word for word as the spec. */
  text: string;
}

export interface Exercise {
  /** `1-1` … `3-5`. */
  id: string;
  level: 1 | 2 | 3;
  slug: string;
  title: string;
  /** Stars, 1 to 5. */
  difficulty: number;
  /** Expected time in minutes, `[min, max]`. */
  minutes: [number, number];
  /** Paths relative to the project root. */
  stub: string;
  solution: string;
  guide: string;
  /** One paragraph: what the learner builds. */
  brief: string;
  goals: string[];
  knobs: Knob[];
  /** Endpoints the program serves, as `METHOD /path → answer`. */
  endpoints: string[];
  items: ChecklistItem[];
  /** Progressive hints, from a nudge to nearly the answer. */
  hints: string[];
  /** Extra ready-to-paste commands shown while the exercise runs; `{port}` and `{pid}` are filled in. */
  tryCommands: string[];
}

export interface Example {
  level: 1 | 2 | 3;
  /** Two digits, e.g. `01`. */
  number: string;
  name: string;
  file: string;
  summary: string;
}

export interface Level {
  level: 1 | 2 | 3;
  title: string;
  exercises: Exercise[];
  examples: Example[];
}
