// `session.delete(key)` answers whether a value was removed: a look at the key, as `has` is. Two
// concurrent requests that each consume a one-time value with `if (session.delete("nonce"))`
// never both see `true` (no serial order gives that): the second runs again or is refused. Once,
// `delete` did not count as a look and the second was merged onto the first's record.
// Two ways: `locking: "explicit"` in one process (MemoryStore), and two processes (two RedisStore
// objects over one Redis, as two servers would have) with the default locking.
import { after, it } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { getSession, MemoryStore, type SessionOptions, type SessionStore, withSession } from "../../mod.ts";
import { RedisStore } from "../../src/stores/redis.ts";

const SECRET = "a secret of at least thirty-two characters";
type Data = { nonce?: string; credits?: number };

/** Both requests have loaded and deleted before either commits. */
function barrier(n: number): () => Promise<void> {
  let count = 0;
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return () => {
    if (++count === n) open();
    return opened;
  };
}

function app(options: SessionOptions<Data>, arrive: () => Promise<void>) {
  return withSession(async (req: Request) => {
    const session = await getSession<Data>(req);
    const path = new URL(req.url).pathname;
    if (path === "/start") {
      session.set("nonce", "one-time");
      session.set("credits", 0);
      return new Response("started");
    }
    if (path === "/read") return new Response(JSON.stringify(session.toJSON()));
    // Redeem a one-time grant (an OAuth state, a gift code, a pending 2FA ticket).
    const redeemed = session.delete("nonce");
    await arrive();
    if (!redeemed) return new Response("already redeemed", { status: 400 });
    session.update("credits", (n = 0) => n + 100);
    return new Response("redeemed");
  }, options);
}

async function race(one: (r: Request) => Promise<Response>, two: (r: Request) => Promise<Response>) {
  const start = await one(new Request("https://example.com/start", { method: "POST" }));
  const cookie = start.headers.get("set-cookie")!.split(";")[0]!;
  const post = (h: (r: Request) => Promise<Response>) =>
    h(new Request("https://example.com/redeem", { method: "POST", headers: { cookie } }));
  const answers = await Promise.all([post(one), post(two)]);
  const statuses = answers.map((r) => r.status);
  const data = JSON.parse(
    await (await one(new Request("https://example.com/read", { headers: { cookie } }))).text(),
  );
  return { statuses, data };
}

it("locking explicit, one process: a one-time value consumed by delete() is redeemed once", async () => {
  const arrive = barrier(2);
  const handler = app({ store: new MemoryStore(), secrets: [SECRET], locking: "explicit" }, arrive);
  const { statuses, data } = await race(handler, handler);
  const redeemed = statuses.filter((s) => s === 200).length;
  assert.ok(
    redeemed <= 1 && data.credits === 100 * redeemed,
    `both requests redeemed the one-time value: statuses ${statuses}, stored ${JSON.stringify(data)}`,
  );
});

const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
after(() => redis.disconnect());

it("two processes on one Redis: a one-time value consumed by delete() is redeemed once", async () => {
  const prefix = `races-delete-${crypto.randomUUID().slice(0, 8)}:`;
  const storeA: SessionStore = new RedisStore({ client: redis, prefix });
  const storeB: SessionStore = new RedisStore({ client: redis, prefix });
  const arrive = barrier(2);
  const a = app({ store: storeA, secrets: [SECRET] }, arrive);
  const b = app({ store: storeB, secrets: [SECRET] }, arrive);
  const { statuses, data } = await race(a, b);
  const redeemed = statuses.filter((s) => s === 200).length;
  assert.ok(
    redeemed <= 1 && data.credits === 100 * redeemed,
    `both requests redeemed the one-time value: statuses ${statuses}, stored ${JSON.stringify(data)}`,
  );
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
});
