// Turns: requests of one session wait for each other instead of being refused. In one process
// through the in-process queue; across processes, once a conflict has been seen on the session,
// through the store's lock. Two "processes" here are two RedisStore objects over one Redis (turns
// are per store object, as they are per process), each behind its own withSession.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Redis as IoRedis } from "ioredis";
import { getSession, MemoryStore, type SessionOptions, withSession } from "../../mod.ts";
import { RedisStore } from "../../src/stores/redis.ts";
import { Client } from "../conformance/client.ts";
import { isHeld, isStoreContended } from "../../src/turns.ts";
import { storageKeyOf } from "../../src/id.ts";
import type { SessionStore } from "../../src/store.ts";

const SECRET = "turns test secret of at least 32 characters";
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
type Data = { n?: number };

function app(options: SessionOptions<Data>) {
  let runs = 0;
  const handler = withSession(async (req: Request) => {
    runs++;
    const session = await getSession<Data>(req);
    const path = new URL(req.url).pathname;
    if (path === "/getset") {
      const n = (session.get("n") ?? 0) + 1;
      await new Promise((resolve) => setTimeout(resolve, 2)); // a handler that does some work
      session.set("n", n);
      return new Response(String(n));
    }
    if (path === "/lock-twice") {
      const outer = await session.lock({ wait: 1 });
      const inner = await session.lock({ wait: 1, ttl: 60 });
      session.set("n", (session.get("n") ?? 0) + 1);
      await inner.release();
      const stillHeld = outer.held;
      await outer.release();
      return new Response(String(stillHeld));
    }
    return new Response(String(session.get("n") ?? 0));
  }, options);
  return { handler, runs: () => runs };
}

/** A MemoryStore whose loads take a few milliseconds, as a remote store's do. */
function slowLoads(inner: MemoryStore): SessionStore {
  return {
    capabilities: inner.capabilities,
    load: async (key: string) => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      return await inner.load(key);
    },
    save: (key, record, expected, index) => inner.save(key, record, expected, index),
    destroy: (key) => inner.destroy(key),
    touch: (key, expiresAt, version) => inner.touch(key, expiresAt, version),
    lock: (key, owner, ttl) => inner.lock(key, owner, ttl),
    unlock: (key, owner) => inner.unlock(key, owner),
  };
}

describe("turns never outlive their request", () => {
  const keyOf = async (client: Client) => await storageKeyOf(client.jar.get("session")!.split(".")[0]!);

  it("when the handler throws while getSession() is still pending", async () => {
    const store = slowLoads(new MemoryStore());
    const handler = withSession(async (req: Request) => {
      if (new URL(req.url).pathname === "/bad") {
        const [session] = await Promise.all([getSession(req), req.json()]); // the body is not JSON
        session.set("x", 1);
        return new Response("ok");
      }
      (await getSession<Data>(req)).update("n", (n = 0) => n + 1);
      return new Response("ok");
    }, { store, secrets: SECRET, onError: () => new Response(null, { status: 500 }) });
    const browser = new Client(handler);
    await browser.text("/");
    await assert.rejects(browser.fetch("/bad", { method: "POST", body: "{not json" }), SyntaxError);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(isHeld(store, await keyOf(browser)), false);
  });

  it("when the session is first asked for in a streamed body, after the handler returned", async () => {
    const store = new MemoryStore();
    const handler = withSession((req: Request) => {
      if (new URL(req.url).pathname !== "/stream") {
        return getSession<Data>(req).then((s) => (s.update("n", (n = 0) => n + 1), new Response("ok")));
      }
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          const session = await getSession<Data>(req);
          controller.enqueue(new TextEncoder().encode(String(session.get("n"))));
          session.update("n", (n = 0) => n + 100);
          controller.close();
        },
      }, { highWaterMark: 0 });
      return Promise.resolve(new Response(body));
    }, { store, secrets: SECRET });
    const browser = new Client(handler);
    await browser.text("/");
    assert.equal(await browser.text("/stream"), "1");
    await new Promise((resolve) => setTimeout(resolve, 20)); // the late save
    assert.equal(isHeld(store, await keyOf(browser)), false);
    assert.equal(await browser.text("/read"), "ok");
  });

  it("session.lock() taken twice and released once: the end of the request releases the lock", async () => {
    const store = new MemoryStore();
    const handler = withSession(async (req: Request) => {
      const session = await getSession<Data>(req);
      if (new URL(req.url).pathname === "/pay") {
        await session.lock({ wait: 0 });
        const inner = await session.lock({ wait: 0 });
        await inner.release(); // the outer hold is left to the end of the request
      }
      session.update("n", (n = 0) => n + 1);
      return new Response("ok");
    }, { store, secrets: SECRET });
    const browser = new Client(handler);
    await browser.text("/");
    assert.equal(await browser.text("/pay"), "ok");
    assert.equal(
      await store.lock(await keyOf(browser), "someone else", 1_000),
      true,
      "the lock was released",
    );
  });
});

describe("turns", () => {
  const clients: IoRedis[] = [];
  after(async () => {
    for (const client of clients) await client.quit();
  });

  it("session.lock() is re-entrant within a request: as many releases as takes, never waiting for itself", async () => {
    const { handler } = app({ store: new MemoryStore(), secrets: SECRET });
    const browser = new Client(handler);
    await browser.text("/getset");
    const started = Date.now();
    const response = await browser.fetch("/lock-twice", { method: "POST" });
    assert.equal(response.status, 200);
    assert.equal(await response.text(), "true", "the outer hold survives the inner release");
    assert.ok(Date.now() - started < 900, "the second lock() did not wait for the first");
    assert.equal(await browser.text("/read"), "2");
    // Released: another request takes it at once.
    assert.equal((await browser.fetch("/lock-twice", { method: "POST" })).status, 200);
  });

  it("get-then-set POSTs from two processes on one Redis: turns across processes once contended, nothing lost", async (t) => {
    const prefix = `websession-turns-${crypto.randomUUID()}:`;
    const stores = [0, 1].map(() => {
      const client = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
      clients.push(client);
      return new RedisStore({ client, prefix });
    });
    const apps = stores.map((store) => app({ store, secrets: SECRET }));
    const first = new Client(apps[0]!.handler);
    await first.text("/getset");
    const cookie = first.jar.get("session")!;
    let ok = 0;
    let refused = 0;
    // Waves of 10 requests per process at once: the first wave finds out that the other process
    // writes the session; later ones take turns through the store's lock.
    const perWave: number[] = [];
    for (let wave = 0; wave < 6; wave++) {
      const before = refused;
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, i) => {
          const browser = new Client(apps[i % 2]!.handler);
          browser.jar.set("session", cookie);
          return browser.fetch("/getset", { method: "POST" });
        }),
      );
      for (const answer of answers) {
        if (answer.status === 200) ok++;
        else if (answer.status === 409) refused++;
        else assert.fail(`unexpected status ${answer.status}`);
        await answer.body?.cancel();
      }
      perWave.push(refused - before);
    }
    const final = Number(await first.text("/read"));
    t.diagnostic(
      `two processes, 120 get-then-set POSTs: ${ok} 2xx, ${refused} 409 (by wave: ${
        perWave.join(" ")
      }), final ${final}`,
    );
    assert.equal(final, 1 + ok, "every 2xx landed, no 409 did");
    // Only collisions before each process has seen the other write the session may be refused
    // (the first wave or two; without locks about half are: 56-58 of 120).
    assert.ok(refused <= 24, `refused ${refused} of 120`);
    // Once both take turns, a refusal needs a turn that outwaited its bound on a loaded machine
    // (seen once in a wave of 20 with the other core busy): rare, never a loss (asserted above).
    const later = perWave.slice(2).reduce((a, b) => a + b, 0);
    assert.ok(
      later <= 2,
      `once both processes take turns, ${later} of 80 refused (by wave: ${perWave.join(" ")})`,
    );
  });

  it("POSTs on sessions not yet seen contended, from two processes: once the store was, they take turns from the first", async (t) => {
    const prefix = `websession-turns-${crypto.randomUUID()}:`;
    const stores = [0, 1].map(() => {
      const client = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
      clients.push(client);
      return new RedisStore({ client, prefix });
    });
    const apps = stores.map((store) => app({ store, secrets: SECRET }));
    let ok = 0;
    let refused = 0;
    let landed = 0;
    // Each wave on a session of its own (a page firing parallel POSTs, across two processes):
    // a POST cannot run again, so its first collision on a session could only be refused, unless
    // it took the lock before loading. A process learns that others write the store's sessions
    // from a conflict it loses (or a newer version than its own it reads): the first waves teach
    // both; a process that keeps winning (its rival pays the lock's round trip first) may take a
    // few more. Then no wave refuses anything.
    const perWave: number[] = [];
    const wave = async () => {
      const first = new Client(apps[0]!.handler);
      await first.text("/getset");
      const cookie = first.jar.get("session")!;
      const before = refused;
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, i) => {
          const browser = new Client(apps[i % 2]!.handler);
          browser.jar.set("session", cookie);
          return browser.fetch("/getset", { method: "POST" });
        }),
      );
      let okHere = 0;
      for (const answer of answers) {
        if (answer.status === 200) okHere++;
        else if (answer.status === 409) refused++;
        else assert.fail(`unexpected status ${answer.status}`);
        await answer.body?.cancel();
      }
      ok += okHere;
      perWave.push(refused - before);
      const final = Number(await first.text("/read"));
      assert.equal(final, 1 + okHere, `wave ${perWave.length}: every 2xx landed, no 409 did`);
      landed += final - 1;
    };
    while (!stores.every((store) => isStoreContended(store)) && perWave.length < 20) await wave();
    const learned = perWave.length;
    for (let i = 0; i < 4; i++) await wave();
    t.diagnostic(
      `two processes, ${perWave.length} new sessions x 20 POSTs: ${ok} 2xx, ${refused} 409 (by wave: ${
        perWave.join(" ")
      }; both knew after ${learned})`,
    );
    assert.equal(landed, ok);
    assert.ok(learned < 20, "both processes learn that the store is contended");
    assert.deepEqual(perWave.slice(learned), [0, 0, 0, 0], "none once the store is known contended");
  });
});
