// Turns the usual ways a program fails into plain words: a port already taken, a syntax
// error, a missing import, a bad configuration line — instead of a raw stack.

export interface Diagnosis {
  /** One sentence a learner can act on. */
  summary: string;
}

const rules: Array<{ test: RegExp; explain: (match: RegExpMatchArray, context: { port?: number }) => string }> = [
  {
    test: /EADDRINUSE[^\n]*?(\d{2,5})?\b/,
    explain: (_m, { port }) =>
      `the port is already in use (EADDRINUSE): the program must listen on process.env.PORT${port ? ` (${port} here)` : ""}, or something else holds it`,
  },
  {
    // esbuild (used by tsx) reports syntax errors as "file:line:col: ERROR: message"
    test: /([^\s:]+\.(?:[cm]?[jt]s)):(\d+):(\d+):\s*ERROR:\s*([^\n]+)/,
    explain: (m) => `a syntax error in ${m[1]} at line ${m[2]}, column ${m[3]}: ${m[4]}`,
  },
  {
    test: /SyntaxError:\s*([^\n]+)/,
    explain: (m) => `a syntax error: ${m[1]}`,
  },
  {
    test: /(?:ERR_MODULE_NOT_FOUND|Cannot find (?:module|package))[^\n]*?'([^']+)'/,
    explain: (m) => `an import cannot be found: '${m[1]}' (check the path and the .ts extension)`,
  },
  {
    test: /(?:^|\n)\s*(Invalid [A-Z_]+=[^\n]*)/,
    explain: (m) => `the program refused its configuration: ${m[1]}`,
  },
  {
    test: /(?:TypeError|ReferenceError|RangeError|Error): ([^\n]+)\n\s+at /,
    explain: (m) => `an uncaught exception: ${m[0].split("\n")[0].trim()}`,
  },
];

/** The first rule that matches the program's output, or undefined. */
export function diagnoseOutput(output: string, context: { port?: number } = {}): Diagnosis | undefined {
  for (const rule of rules) {
    const match = output.match(rule.test);
    if (match) return { summary: rule.explain(match, context) };
  }
  return undefined;
}
