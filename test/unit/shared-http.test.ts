// In-process HTTP tests (supertest) of the helpers every exercise's handlers are built on.
import http from "node:http";
import request from "supertest";
import { describe, expect, it } from "vitest";
import { HttpError, queryInt, readJson, requestUrl, sendError, sendFailure, sendJson } from "../../shared/http.ts";

const server = http.createServer(async (req, res) => {
  try {
    const url = requestUrl(req);
    if (url.pathname === "/echo") return sendJson(res, 200, await readJson(req, 64));
    if (url.pathname === "/wait") return sendJson(res, 200, { ms: queryInt(url, "ms", 10, 0, 1000) });
    if (url.pathname === "/teapot") return sendError(res, 418, "short and stout", { "retry-after": 1 });
    if (url.pathname === "/bug") throw new Error("boom");
    throw new HttpError(404, `no route for ${url.pathname}`);
  } catch (error) {
    sendFailure(res, error);
  }
});

describe("shared/http", () => {
  it("sends JSON with a content length, and no worker identity outside a worker", async () => {
    const res = await request(server).post("/echo").send({ a: 1 }).expect(200);
    expect(res.body).toEqual({ a: 1 });
    expect(res.headers["content-type"]).toMatch(/application\/json/);
    expect(res.headers["content-length"]).toBe("7");
    // This test process is a primary, not a worker: it must not claim a worker identity.
    expect(res.headers["x-worker-pid"]).toBeUndefined();
    expect(res.headers["x-worker-id"]).toBeUndefined();
  });

  it("answers bad JSON with 400 and an oversized body with 413, as JSON errors", async () => {
    const bad = await request(server).post("/echo").set("content-type", "application/json").send("{nope").expect(400);
    expect(bad.body).toEqual({ error: "body is not valid JSON" });
    const empty = await request(server).post("/echo").expect(400);
    expect(empty.body.error).toMatch(/expected a JSON body/);
    const big = await request(server).post("/echo").send({ text: "x".repeat(200) }).expect(413);
    expect(big.body.error).toMatch(/larger than 64 bytes/);
  });

  it("validates integer query parameters", async () => {
    expect((await request(server).get("/wait?ms=250").expect(200)).body).toEqual({ ms: 250 });
    expect((await request(server).get("/wait").expect(200)).body).toEqual({ ms: 10 });
    for (const bad of ["abc", "-1", "1001", "2.5"]) {
      const res = await request(server).get(`/wait?ms=${bad}`).expect(400);
      expect(res.body.error).toBe("ms must be an integer from 0 to 1000");
    }
  });

  it("maps HttpError to its status and anything else to a 500 without details", async () => {
    const teapot = await request(server).get("/teapot").expect(418);
    expect(teapot.headers["retry-after"]).toBe("1");
    expect((await request(server).get("/missing").expect(404)).body).toEqual({ error: "no route for /missing" });
    expect((await request(server).get("/bug").expect(500)).body).toEqual({ error: "internal error" });
  });

  it("splits a request target the way the WHATWG URL parser does, fast path or not", () => {
    const targets = [
      "/", "/crash", "/api/data", "/slow?ms=100", "/slow?ms=", "/slow?", "/echo?text=a+b&text=c", "/echo?text=%22hi%22",
      '/echo?text="hi"', "/a/../b", "/a/./b", "/./x", "/%41", "/x%2Fy", "//evil.example/x", "/a\\b", "/a#frag", "/slow?ms=1#x",
      "http://other.example/path?q=1", "/caf\u00e9", "/a b", "/~user/-_",
    ];
    for (const target of targets) {
      const ours = requestUrl({ url: target } as http.IncomingMessage);
      const theirs = new URL(target, "http://localhost");
      expect(ours.pathname, target).toBe(theirs.pathname);
      expect([...ours.searchParams], target).toEqual([...theirs.searchParams]);
    }
  });
});
