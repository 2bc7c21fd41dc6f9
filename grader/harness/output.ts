// Captures a program's stdout and stderr as lines: the last ones for the report, all of them
// (bounded) for checks that look for a log line, and a live stream for --verbose.
import type { Readable } from "node:stream";

export interface OutputLine {
  stream: "stdout" | "stderr";
  text: string;
  /** performance.now() when the line arrived. */
  at: number;
}

const MAX_LINES = 5000;

export class OutputCapture {
  readonly lines: OutputLine[] = [];
  private listeners = new Set<(line: OutputLine) => void>();
  private dropped = 0;

  attach(stream: Readable, name: OutputLine["stream"]): void {
    let partial = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      const parts = (partial + chunk).split(/\r?\n/);
      partial = parts.pop() ?? "";
      for (const text of parts) this.push({ stream: name, text, at: performance.now() });
    });
    stream.on("end", () => {
      if (partial) this.push({ stream: name, text: partial, at: performance.now() });
      partial = "";
    });
  }

  private push(line: OutputLine): void {
    this.lines.push(line);
    if (this.lines.length > MAX_LINES) {
      this.lines.shift();
      this.dropped++;
    }
    for (const listener of this.listeners) listener(line);
  }

  /** Calls `listener` for every line from now on; returns the function that stops it. */
  onLine(listener: (line: OutputLine) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  tail(count = 30): string[] {
    return this.lines.slice(-count).map((line) => (line.stream === "stderr" ? `${line.text}` : line.text));
  }

  text(stream?: OutputLine["stream"]): string {
    return this.lines
      .filter((line) => stream === undefined || line.stream === stream)
      .map((line) => line.text)
      .join("\n");
  }

  /** Lines that arrived after `since` (a performance.now() value). */
  linesSince(since: number): OutputLine[] {
    return this.lines.filter((line) => line.at >= since);
  }
}
