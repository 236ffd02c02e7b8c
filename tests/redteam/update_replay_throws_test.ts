// Red team (low): an `update(key, fn)` whose `fn` throws when it is replayed on a concurrent
// request's value (another process stored a value of another shape) is answered as
// `StoreUnavailableError` (503, "Session store failed to merge: <the application's message>").
// The store did not fail: errors.md says 503 means "the store failed", and the documented
// handling (retry later, alert on store outages) is wrong for it; the request's changes could
// not be merged, which is a conflict (409) or the application's own error.
//
// Cause: src/conflict.ts `mergeOnto` catches anything `replay` throws (meant for a record in
// another serializer format) and wraps it with `storeError("merge", error)`, which turns every
// non-SessionError into StoreUnavailableError.
// Two processes are two RedisStore objects over one Redis (turns are per store object).
import { after, it } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { getSession, type SessionError, StoreUnavailableError, withSession } from "../../mod.ts";
import { RedisStore } from "../../src/stores/redis.ts";

const SECRET = "red team secret of at least thirty-two chars";
const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
const prefix = `redteam-replay-${crypto.randomUUID().slice(0, 8)}:`;
after(async () => {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

it("an update() function that throws on replay is not reported as a store outage", async () => {
  let reached!: () => void;
  const loaded = new Promise<void>((resolve) => (reached = resolve));
  let release!: () => void;
  const go = new Promise<void>((resolve) => (release = resolve));
  const errors: SessionError[] = [];
  const app = () =>
    withSession(async (req: Request) => {
      const session = await getSession<{ v?: number | string }>(req);
      const path = new URL(req.url).pathname;
      if (path === "/init") session.set("v", 1);
      if (path === "/text") session.set("v", "text");
      if (path === "/inc") {
        session.update("v", (n) => {
          if (typeof n !== "number") throw new TypeError("v is not a number");
          return n + 1;
        });
        reached();
        await go;
      }
      return new Response("ok");
    }, {
      store: new RedisStore({ client: redis, prefix }),
      secrets: [SECRET],
      onError: (e) => {
        errors.push(e);
      },
      logger: { warn() {}, error() {} } as never,
    });
  const a = app();
  const b = app();
  const cookie = (await a(new Request("https://example.com/init"))).headers.get("set-cookie")!.split(";")[0]!;
  const inc = b(new Request("https://example.com/inc", { method: "POST", headers: { cookie } }));
  await loaded;
  await a(new Request("https://example.com/text", { headers: { cookie } }));
  release();
  const answer = await inc;
  assert.notEqual(answer.status, 200);
  assert.ok(
    !errors.some((e) => e instanceof StoreUnavailableError),
    `reported as a store outage: ${answer.status} ${errors.map((e) => `${e.name}: ${e.message}`).join("; ")}`,
  );
});
