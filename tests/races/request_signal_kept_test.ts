// The wrapped handler gets the request the server handed over: "`withSession(handler, options)`
// returns a function with the handler's own signature" (README, Use), and on Node the servers the
// docs name are chosen because they "give each request an abort signal" (docs/runtimes/node.md).
// "No request hangs."
//
// Symptom: a request the handler may run again on a body (`PUT`/`DELETE` with a body under `merge`,
// any request with a body under `retry`), and every re-run, reaches the handler as a copy made with
// `new Request(url, { method, headers, body })`: its `signal` never aborts when the client goes
// away, so a long-poll or streaming handler that ends on `request.signal` runs on (over real
// node:http with @hono/node-server, a disconnected PUT is never seen; a GET or POST is). While it
// runs it holds the session's turn: every other request of the session waits `TURN_WAIT_MS` (10 s).
// The copy also drops everything else the runtime put on the Request: on Workers (Miniflare) a
// body `PUT` sees `request.cf === undefined` where a GET or POST sees the location data.
//
// Suspected cause: src/replay.ts:94-102 `rebuild()` copies method, URL, headers and body only (no
// `signal`, no runtime properties); used by `watched()` (line 56) for every body request that may
// run again (src/with_session.ts:227) and by `replay()` for every re-run (line 401).
import { it } from "node:test";
import assert from "node:assert/strict";
import { getSession, MemoryStore, withSession } from "../../mod.ts";

const SECRET = "a secret of at least thirty-two characters";

/** A long-poll: waits for the client to go away (its request's signal), at most `ms`. */
function untilGone(request: Request, ms: number): Promise<"gone" | "still waiting"> {
  return new Promise((resolve) => {
    if (request.signal.aborted) return resolve("gone");
    request.signal.addEventListener("abort", () => resolve("gone"));
    setTimeout(() => resolve("still waiting"), ms);
  });
}

for (const [method, body] of [["POST", "x"], ["PUT", "x"]] as const) {
  it(`${method} with a body: the handler sees the client go away (request.signal)`, async () => {
    const handler = withSession(async (req: Request) => {
      const session = await getSession<{ doc?: string }>(req);
      session.set("doc", await req.text());
      return new Response(await untilGone(req, 300));
    }, { store: new MemoryStore(), secrets: SECRET });
    const client = new AbortController();
    const request = new Request("https://example.com/doc", { method, body, signal: client.signal });
    setTimeout(() => client.abort(), 20); // the client disconnects
    const response = await handler(request);
    assert.equal(await response.text(), "gone", `the ${method} handler's request.signal never aborted`);
  });
}
