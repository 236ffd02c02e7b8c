// How src/stores/tiered/entry.ts decides whether a copy may replace the cache's entry, through
// a late refill: a process that read the durable store before another's write, a log out or a
// destroy fills the cache only after it. Two processes over one Redis cache and one PostgreSQL
// table.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ENDED_KEY, isEnded, type SessionStore, type StoredSession } from "../../../src/store.ts";
import { RedisStore } from "../../../src/stores/redis.ts";
import { TieredStore } from "../../../src/stores/tiered.ts";
import { gate } from "../../conformance/client.ts";
import { randomKey, sleep } from "../../conformance/util.ts";
import { dropPrefix, quiet } from "../composed.ts";
import { record, redis, RUN, table } from "./stores.ts";

describe("TieredStore: late refills", () => {
  /** `inner`, whose every load answers only after `held` resolves (calling `loaded` first). */
  function heldLoads(inner: SessionStore, held: Promise<void>, loaded: () => void): SessionStore {
    return {
      capabilities: inner.capabilities,
      async load(key) {
        const found = await inner.load(key);
        loaded();
        await held;
        return found;
      },
      save: (key, saved, expected, index) => inner.save(key, saved, expected, index),
      destroy: (key) => inner.destroy(key),
    };
  }

  /**
   * Two processes over one Redis cache and one PostgreSQL table: `slow` reads version 1 from the
   * durable store after an eviction and stalls before refilling the cache, while `store` does
   * `act`; then the stalled refill lands. Returns what the cache holds and what a load answers.
   */
  async function lateRefill(act: (store: TieredStore, key: string, v1: StoredSession) => Promise<void>) {
    const prefix = `tiered-test:${RUN}:late:${crypto.randomUUID()}:`;
    const cache = new RedisStore({ client: redis, prefix });
    const durable = await table(`late_${crypto.randomUUID().slice(0, 8)}`);
    const store = new TieredStore({ cache, durable, logger: quiet });
    const key = randomKey();
    const v1 = record({ user: "ada", n: 1 });
    assert.equal(await store.save(key, v1, null), true);
    await dropPrefix(redis, prefix); // evicted: the next read refills
    const hold = gate();
    const loaded = gate();
    const slow = new TieredStore({
      cache,
      durable: heldLoads(durable, hold.promise, loaded.open),
      logger: quiet,
    });
    const late = slow.load(key);
    await loaded.promise; // the slow process has read version 1 and not yet refilled
    await act(store, key, v1);
    hold.open();
    assert.equal((await late)?.version, 1, "the slow read answered what it read");
    const held = await cache.load(key);
    return {
      held: held?.data as { record?: StoredSession; forgottenAt?: number },
      loaded: await store.load(key),
    };
  }

  it("a late refill carrying an older version never replaces a newer cache entry", async () => {
    const { held, loaded } = await lateRefill(async (store, key, v1) => {
      assert.equal(await store.save(key, { ...v1, data: { user: "ada", n: 2 }, version: 2 }, 1), true);
    });
    assert.equal(held.record?.version, 2, "the cache kept version 2");
    assert.deepEqual(loaded?.data, { user: "ada", n: 2 });
  });

  it("an ended session is never brought back by a late refill", async () => {
    const { held, loaded } = await lateRefill(async (store, key, v1) => {
      assert.equal(await store.save(key, { ...v1, data: { [ENDED_KEY]: true }, version: 2 }, 1), true);
    });
    assert.ok(isEnded(held.record ?? null), "the cache kept the tombstone");
    assert.ok(isEnded(loaded), "the session reads as ended");
  });

  it("a destroyed record is not refilled by a read that started before the destroy", async () => {
    const { held, loaded } = await lateRefill(async (store, key) => {
      await sleep(2); // the mark is later than the slow read's start by this process's clock
      await store.destroy(key);
    });
    assert.equal(typeof held.forgottenAt, "number", "the cache holds the mark, not the record");
    assert.equal(loaded, null);
  });
});
