// How a check says no: one sentence with what was expected and what was seen.

export class CheckFailed extends Error {
  override name = "CheckFailed";
}

export function fail(message: string): never {
  throw new CheckFailed(message);
}

export function ensure(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) fail(typeof message === "function" ? message() : message);
}

/** Short, readable rendering of a value for messages. */
export function show(value: unknown): string {
  const text = typeof value === "string" ? JSON.stringify(value) : JSON.stringify(value) ?? String(value);
  return text.length > 200 ? `${text.slice(0, 197)}...` : text;
}

/** A count as words: "1 worker", "3 workers". */
export function plural(count: number, word: string): string {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}
