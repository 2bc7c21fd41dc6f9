// 2-5's input validation, in process (supertest): the reference solution's parseTask behind
// the same body reader and error answers its POST /task uses. The grader checks the same rules
// from outside against a running pool; here every rule is pinned down one by one, fast.
import http from "node:http";
import request from "supertest";
import { describe, expect, it } from "vitest";
import { readJson, sendFailure, sendJson } from "../../shared/http.ts";
// Importing the solution runs no cluster: it starts only when node runs the file itself.
import { parseTask } from "../../solutions/level-2/2-5-worker-pool.ts";

const server = http.createServer(async (req, res) => {
  try {
    sendJson(res, 202, parseTask(await readJson(req)));
  } catch (error) {
    sendFailure(res, error);
  }
});

/** POSTs a raw body (so that even invalid JSON and "__proto__" keys arrive exactly as written). */
function post(body: string) {
  return request(server).post("/task").set("content-type", "application/json").send(body);
}

describe("2-5 task validation (solution's parseTask)", () => {
  it.each([
    ['{"type":"fibonacci","n":30}', { type: "fibonacci", n: 30 }],
    ['{"type":"fibonacci","n":0}', { type: "fibonacci", n: 0 }],
    ['{"type":"prime","n":1000}', { type: "prime", n: 1000 }],
    ['{"type":"hash","data":"hello"}', { type: "hash", data: "hello" }],
    ['{"type":"sleep","ms":0}', { type: "sleep", ms: 0 }],
  ])("accepts %s", async (body, expected) => {
    const res = await post(body).expect(202);
    expect(res.body).toEqual(expected);
  });

  it.each([
    ["invalid JSON", "{type: fibonacci}", /not valid JSON/],
    ["an empty body", "", /expected a JSON body/],
    ["an array", "[1,2]", /JSON object/],
    ["null", "null", /JSON object/],
    ["a number", "42", /JSON object/],
    ["no type", '{"n":3}', /"type" is required/],
    ["an unknown type", '{"type":"bogus","n":3}', /"type" must be one of/],
    ["a type that is not a string", '{"type":7,"n":3}', /"type" must be one of/],
    ["a missing n", '{"type":"fibonacci"}', /"n" is required/],
    ["a negative n", '{"type":"fibonacci","n":-5}', /"n" must be an integer from 0 to 45, got -5/],
    ["too large an n", '{"type":"fibonacci","n":46}', /"n" must be an integer from 0 to 45/],
    ["a fractional n", '{"type":"prime","n":2.5}', /"n" must be an integer/],
    ["n as a string", '{"type":"prime","n":"30"}', /"n" must be an integer/],
    ["a zeroth prime", '{"type":"prime","n":0}', /"n" must be an integer from 1/],
    ["a negative sleep", '{"type":"sleep","ms":-1}', /"ms" must be an integer/],
    ["hash data that is not a string", '{"type":"hash","data":42}', /"data" is required and must be a string/],
    ["an unknown field (a typo)", '{"type":"sleep","msec":100}', /unknown field "msec"/],
    ["another type's parameter", '{"type":"sleep","ms":1,"n":3}', /unknown field "n"/],
    ["a __proto__ key", '{"type":"fibonacci","n":3,"__proto__":{"polluted":true}}', /"__proto__" is not allowed/],
    ["a constructor key", '{"type":"fibonacci","n":3,"constructor":1}', /"constructor" is not allowed/],
  ])("refuses %s with 400 and a JSON error", async (_what, body, message) => {
    const res = await post(body).expect(400);
    expect(res.headers["content-type"]).toMatch(/application\/json/);
    expect(res.body.error).toMatch(message);
    // The prototype of plain objects is untouched, whatever was sent.
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("refuses a body over 1 MiB with 413", async () => {
    const big = JSON.stringify({ type: "hash", data: "x".repeat(1_153_434) }); // ~1.1 MiB
    const res = await post(big).expect(413);
    expect(res.body.error).toMatch(/larger than/);
  });

  it("quotes at most 40 characters of a bad value back", async () => {
    const res = await post(JSON.stringify({ type: "x".repeat(500), n: 1 })).expect(400);
    expect(res.body.error.length).toBeLessThan(200);
  });
});
