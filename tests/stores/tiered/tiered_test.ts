// How src/stores/tiered.ts serves through the faults a cache brings: a flush mid-traffic, a
// cache outage (a private redis-server started and stopped here), a durable outage, a write the
// cache missed; and what it says it can do.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { SessionStore } from "../../../src/store.ts";
import { MemoryStore } from "../../../src/stores/memory.ts";
import { FileStore } from "../../../src/stores/file.ts";
import { RedisStore } from "../../../src/stores/redis.ts";
import { TieredStore } from "../../../src/stores/tiered.ts";
import { Client } from "../../conformance/client.ts";
import { randomKey } from "../../conformance/util.ts";
import { throwawayRedis } from "../../faults/servers.ts";
import { app, dropPrefix, failFast, quiet, ready, tempDir } from "../composed.ts";
import { record, redis, RUN, table } from "./stores.ts";

describe("TieredStore: faults", () => {
  it("a cache flushed mid-traffic logs nobody out and loses no update", async () => {
    const prefix = `tiered-test:${RUN}:flush:`;
    const store = new TieredStore({
      cache: new RedisStore({ client: redis, prefix }),
      durable: await table("flush"),
      logger: quiet,
    });
    const handler = app(store);
    const clients = Array.from({ length: 5 }, () => new Client(handler));
    for (const client of clients) assert.equal(await client.text("/count"), "1");
    const cookies = clients.map((client) => client.jar.get("session"));
    for (let wave = 0; wave < 4; wave++) {
      const traffic = clients.flatMap((client) =>
        Array.from({ length: 10 }, () => client.clone().fetch("/count"))
      );
      await dropPrefix(redis, prefix); // the flush lands while the wave is in flight
      const statuses = await Promise.all(traffic.map(async (response) => (await response).status));
      assert.deepEqual(new Set(statuses), new Set([200]));
    }
    for (const [i, client] of clients.entries()) {
      assert.equal(await client.text("/read"), String(1 + 4 * 10), "every increment counted");
      assert.equal(client.jar.get("session"), cookies[i], "the same session, never a fresh id");
    }
  });

  it("a cache outage is served by the durable store: no 503, no fresh id, and the cache is used again after", async () => {
    const server = await throwawayRedis({ persist: false });
    const client = await failFast(server.port);
    const errors: unknown[] = [];
    try {
      const durable = await table("outage");
      const store = new TieredStore({
        cache: new RedisStore({ client, prefix: "outage:" }),
        durable,
        cacheRetryAfter: 0,
        logger: { error: (e: unknown) => void errors.push(e) },
      });
      const browser = new Client(app(store));
      assert.equal(await browser.text("/count"), "1");
      const cookie = browser.jar.get("session");
      assert.equal(await client.dbsize(), 1, "the cache holds the session");
      await server.stop();
      for (let i = 2; i <= 6; i++) {
        const response = await browser.fetch("/count");
        assert.equal(response.status, 200);
        assert.equal(await response.text(), String(i));
      }
      assert.equal(await browser.text("/read"), "6");
      assert.equal(browser.jar.get("session"), cookie);
      assert.ok(errors.length >= 1, "the cache failure was logged");
      await server.start(); // empty, as a restarted cache without persistence is
      await ready(client);
      assert.equal(await browser.text("/count"), "7");
      assert.equal(await client.dbsize(), 1, "refilled once the cache is back");
      assert.equal(browser.jar.get("session"), cookie);
    } finally {
      client.disconnect();
      await server.destroy();
    }
  });

  it("a durable outage answers 503, never a fresh id, and the data is intact afterwards", async () => {
    // The durable store is a private redis-server here that writes every command to disk before
    // answering, so that this test alone can stop it and start it again with its data.
    const server = await throwawayRedis();
    const client = await failFast(server.port);
    try {
      const durable = new RedisStore({ client, prefix: "durable:" });
      const cache = new MemoryStore();
      const store = new TieredStore({ cache, durable, logger: quiet });
      const browser = new Client(app(store));
      assert.equal(await browser.text("/count"), "1");
      const cookie = browser.jar.get("session");
      await server.stop();
      const write = await browser.fetch("/count");
      assert.equal(write.status, 503);
      assert.equal(await write.text(), "StoreUnavailableError");
      assert.equal(write.headers.get("set-cookie"), null, "no fresh id");
      // Another process, whose cache does not hold the session: a read needs the durable store.
      const other = new Client(app(new TieredStore({ cache: new MemoryStore(), durable, logger: quiet })));
      other.jar = new Map(browser.jar);
      const miss = await other.fetch("/read");
      assert.equal(miss.status, 503);
      assert.equal(miss.headers.get("set-cookie"), null, "no fresh id on a read either");
      await server.start();
      await ready(client);
      assert.equal(await browser.text("/count"), "2");
      assert.equal(await other.text("/read"), "2");
      assert.equal(browser.jar.get("session"), cookie);
    } finally {
      client.disconnect();
      await server.destroy();
    }
  });

  it("a write the cache missed: a refused write heals it, minVersion skips it, cacheTtl bounds it", async () => {
    let clock = Date.now();
    const cache = new MemoryStore({ now: () => clock });
    const durable = new FileStore({ dir: await tempDir() });
    const store = new TieredStore({ cache, durable, cacheTtl: 30, logger: quiet, now: () => clock });
    const key = randomKey();
    const v1 = record({ n: 1 }, 1, 3_600_000);
    assert.equal(await store.save(key, v1, null), true);
    // A write that reached the durable store only (the cache was unreachable for that moment).
    const v2 = { ...v1, data: { n: 2 }, version: 2 };
    assert.equal(await durable.save(key, v2, 1), true);
    assert.equal((await store.load(key))?.version, 1, "a read-only request may see the older entry");
    assert.equal((await store.load(key, 2))?.version, 2, "never older than the version the client has seen");
    // A write based on the older entry is refused by the durable store, which refills the cache.
    const refused = await store.save(key, { ...v1, data: { n: 99 }, version: 2 }, 1);
    assert.deepEqual(refused, { current: v2 });
    assert.deepEqual(await store.load(key), v2);
    // Another missed write: served from the cache for at most cacheTtl.
    const v3 = { ...v2, data: { n: 3 }, version: 3 };
    assert.equal(await durable.save(key, v3, 2), true);
    assert.equal((await store.load(key))?.version, 2);
    clock += 30_001;
    assert.deepEqual(await store.load(key), v3);
  });

  it("says what it can do: the durable store's compare-and-set, locks and users", () => {
    const store = new TieredStore({ cache: new MemoryStore(), durable: new MemoryStore() });
    assert.deepEqual(store.capabilities, {
      compareAndSet: true,
      ttl: false,
      staleReads: false,
      locks: true,
      users: true,
    });
    assert.equal(typeof store.lock, "function");
    const plain: SessionStore = {
      capabilities: { compareAndSet: false, ttl: true },
      load: () => Promise.resolve(null),
      save: () => Promise.resolve(false),
      destroy: () => Promise.resolve(),
    };
    const bare = new TieredStore({ cache: new MemoryStore(), durable: plain });
    assert.equal(bare.capabilities.compareAndSet, false);
    assert.equal(bare.touch, undefined, "no touch where the durable store has none");
    assert.equal(bare.lock, undefined);
    assert.throws(() => new TieredStore({ cache: plain, durable: plain }), TypeError);
    assert.throws(
      () => new TieredStore({ cache: new MemoryStore(), durable: plain, cacheTtl: 0 }),
      RangeError,
    );
  });
});
