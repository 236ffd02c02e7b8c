// An `update(key, fn)` whose `fn` throws when replayed on a concurrent request's value (of another
// shape) cannot be merged: a conflict (the handler runs again where it can, else 409), never a
// store outage (503 StoreUnavailableError tells clients to retry later and monitoring to page).
// Two processes are two RedisStore objects over one Redis (turns are per store object).
import { after, it } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { getSession, type SessionError, StoreUnavailableError, withSession } from "../../mod.ts";
import { RedisStore } from "../../src/stores/redis.ts";

const SECRET = "a secret of at least thirty-two characters";
const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
const prefix = `races-replay-${crypto.randomUUID().slice(0, 8)}:`;
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
        errors.push(e as SessionError);
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
