// "A handler that throws saves nothing" (docs/frameworks/hono.md, after the table of both mounts;
// the same as `withSession` itself, whose handler's throw commits nothing); the page recommends the
// `withSession(app.fetch)` + `sessionMiddleware()` mount "when you want every policy honoured".
// "Never data loss."
//
// Symptom: with that mount, a handler that changes the session and then throws (the payment
// provider is down after `credits` was debited) is answered 500 by Hono's error handler, and the
// change is saved: credits 10 -> 5 for a payment that failed. With `sessionMiddleware(options)`
// the same handler saves nothing, as documented.
//
// Suspected cause: src/adapters/hono.ts:235-236 `fromWithSession()` calls `await next()` and never
// looks at `c.error`: Hono's compose catches the throw and returns its onError response, so
// `withSession` sees an ordinary `Response` (src/with_session.ts:236) and commits the handler's
// operations (line 251).
import { it } from "node:test";
import assert from "node:assert/strict";
import { Hono } from "hono";
import { MemoryStore, withSession } from "../../mod.ts";
import { type SessionEnv, sessionMiddleware } from "../../src/adapters/hono.ts";

const SECRET = "a secret of at least thirty-two characters";
type Data = { credits?: number };

function routes(app: Hono<SessionEnv<Data>>): void {
  app.post("/start", (c) => {
    c.var.session.set("credits", 10);
    return c.text("ok");
  });
  app.post("/pay", (c) => {
    c.var.session.update("credits", (n = 0) => n - 5);
    throw new Error("payment provider down");
  });
  app.get("/credits", (c) => c.json(c.var.session.get("credits") ?? null));
}

async function walk(fetch: (request: Request) => Promise<Response>) {
  const start = await fetch(new Request("https://example.com/start", { method: "POST" }));
  const cookie = start.headers.get("set-cookie")!.split(";")[0]!;
  const pay = await fetch(new Request("https://example.com/pay", { method: "POST", headers: { cookie } }));
  const credits = await (await fetch(new Request("https://example.com/credits", { headers: { cookie } })))
    .json();
  return { status: pay.status, credits };
}

it("sessionMiddleware(options): a handler that throws saves nothing", async () => {
  const app = new Hono<SessionEnv<Data>>();
  app.onError(() => new Response("failed", { status: 500 }));
  app.use(sessionMiddleware<Data>({ store: new MemoryStore(), secrets: SECRET }));
  routes(app);
  assert.deepEqual(await walk((r) => Promise.resolve(app.fetch(r))), { status: 500, credits: 10 });
});

it("withSession(app.fetch) + sessionMiddleware(): a handler that throws saves nothing", async () => {
  const app = new Hono<SessionEnv<Data>>();
  app.onError(() => new Response("failed", { status: 500 }));
  app.use(sessionMiddleware<Data>());
  routes(app);
  const fetch = withSession(app.fetch, { store: new MemoryStore(), secrets: SECRET });
  const { status, credits } = await walk(fetch);
  assert.equal(status, 500);
  assert.equal(credits, 10, "the failed payment's debit was saved");
});
