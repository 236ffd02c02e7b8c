// Rule: no request hangs; `session.lock({ wait })` gives up after `wait` seconds with 409.
// docs/guides/locking.md ("a request that waits more than `wait` seconds (10 by default; `0`
// refuses at once) gets `SessionConflictError` (409)"); src/lock.ts LockOptions.wait says the same.
//
// Symptom: a request waits in `session.lock({ wait: 1 })` for a lock left by a process that died
// (it lapses by its ttl). The machine's clock is stepped back an hour meanwhile (NTP correcting a
// clock that ran fast, a VM resumed): the request does not give up after 1 s; it keeps polling
// until the wall clock has caught up again, an hour later. The turn lock that requests take across
// processes (`takeTurnLock`, `TURN_WAIT_MS` 10 s) goes through the same loop.
//
// Suspected cause: src/lock.ts:196 and :209 time the wait with the wall clock
// (`const start = Date.now()`, `if (Date.now() - start >= waitMs)`), which steps; the other waits
// in the library use a monotonic clock (`performance.now()` in src/users.ts `userLock` and `end`,
// `setTimeout` for the in-process turn in src/turns.ts). src/lock.ts:151 (`until = Date.now() +
// ttlMs`, deciding whether a re-entrant lock() must extend the store's lock) has the same fault.
import { it } from "node:test";
import assert from "node:assert/strict";
import { getSession, MemoryStore, withSession } from "../../mod.ts";
import { storageKeyOf } from "../../src/id.ts";

const SECRET = "a secret of at least thirty-two characters";

it("lock({ wait: 1 }) gives up after about a second even when the clock steps back meanwhile", async () => {
  const realNow = Date.now;
  // The store reads the machine's clock as every clock on the machine does.
  const store = new MemoryStore({ now: () => Date.now() });
  const handler = withSession(async (req: Request) => {
    const session = await getSession<{ paid?: boolean }>(req);
    if (new URL(req.url).pathname === "/start") {
      session.set("paid", false);
      return new Response("started");
    }
    const lock = await session.lock({ ttl: 30, wait: 1 });
    try {
      session.set("paid", true);
      return new Response("charged");
    } finally {
      await lock.release();
    }
  }, { store, secrets: SECRET, onError: () => new Response("refused", { status: 409 }) });

  const start = await handler(new Request("https://example.com/start", { method: "POST" }));
  const cookie = start.headers.get("set-cookie")!.split(";")[0]!;
  // Another process took the session's lock and died: it lapses after its ttl.
  const key = await storageKeyOf(cookie.slice(cookie.indexOf("=") + 1, cookie.lastIndexOf(".")));
  assert.equal(await store.lock(key, "a process that died", 30_000), true);

  const began = performance.now();
  const pay = handler(new Request("https://example.com/pay", { method: "POST", headers: { cookie } }));
  await new Promise((resolve) => setTimeout(resolve, 200)); // the request is waiting for the lock
  Date.now = () => realNow() - 3_600_000; // the clock is stepped back an hour
  try {
    const answered = await Promise.race([
      pay.then((response) => response.status),
      new Promise<"still waiting">((resolve) => setTimeout(() => resolve("still waiting"), 3_000)),
    ]);
    assert.equal(
      answered,
      409,
      `lock({ wait: 1 }) was ${answered} after ${Math.round(performance.now() - began)} ms`,
    );
  } finally {
    Date.now = realNow;
    await pay; // with the clock back, it gives up at once
  }
});
