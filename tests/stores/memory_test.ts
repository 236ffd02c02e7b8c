import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { SessionDataError } from "../../src/errors.ts";
import { MemoryStore } from "../../src/stores/memory.ts";
import { storeSuite } from "../conformance/store_suite.ts";
import { randomKey } from "../conformance/util.ts";

storeSuite("MemoryStore", { open: () => new MemoryStore(), reportsCurrent: true });

describe("MemoryStore", () => {
  it("drops the least recently written session when maxSessions is reached", async () => {
    const store = new MemoryStore({ maxSessions: 3 });
    const now = Date.now();
    const rec = { data: {}, version: 1, createdAt: now, expiresAt: now + 60_000 };
    const keys = [randomKey(), randomKey(), randomKey(), randomKey()];
    for (const key of keys.slice(0, 3)) await store.save(key, rec, null);
    await store.save(keys[0]!, { ...rec, version: 2 }, 1); // keys[0] is now the most recent
    await store.save(keys[3]!, rec, null);
    assert.equal(await store.count(), 3);
    assert.equal(await store.load(keys[1]!), null);
    assert.ok(await store.load(keys[0]!));
    assert.ok(await store.load(keys[3]!));
  });

  it("counts a touch as a write when it makes room under maxSessions", async () => {
    const store = new MemoryStore({ maxSessions: 2 });
    const now = Date.now();
    const rec = { data: {}, version: 1, createdAt: now, expiresAt: now + 60_000 };
    const [a, b, c] = [randomKey(), randomKey(), randomKey()];
    await store.save(a, rec, null);
    await store.save(b, rec, null);
    assert.equal(await store.touch(a, now + 120_000, 1), true); // a is now the most recently written
    await store.save(c, rec, null);
    assert.equal(await store.load(b), null);
    assert.equal((await store.load(a))?.expiresAt, now + 120_000);
    assert.ok(await store.load(c));
  });

  it("uses the injected clock for expiry", async () => {
    let now = 1_000_000;
    const store = new MemoryStore({ now: () => now });
    const key = randomKey();
    await store.save(key, { data: {}, version: 1, createdAt: now, expiresAt: now + 10 }, null);
    assert.ok(await store.load(key));
    now += 10;
    assert.equal(await store.load(key), null);
  });

  it("sweeps expired records out of memory as it is written to, with no cleanup() call", async () => {
    let now = 1_000_000;
    const store = new MemoryStore({ now: () => now });
    const expiring = Array.from({ length: 100 }, randomKey);
    for (const key of expiring) {
      await store.save(
        key,
        { data: { short: true }, version: 1, createdAt: now, expiresAt: now + 1_000 },
        null,
      );
    }
    assert.equal(store.size, 100);
    now += 1_000; // every one of them has expired; nothing has read them since
    const live = Array.from({ length: 20 }, randomKey);
    for (const key of live) {
      await store.save(
        key,
        { data: { live: true }, version: 1, createdAt: now, expiresAt: now + 60_000 },
        null,
      );
    }
    assert.equal(store.size, 20, "only the live records are still held");
    for (const key of live) assert.ok(await store.load(key));
  });

  it("holds about one round of short-lived sessions however many rounds come and go", async () => {
    let now = 1_000_000;
    const store = new MemoryStore({ now: () => now });
    const round = 2_000;
    const sizes: number[] = [];
    for (let r = 0; r < 10; r++) {
      for (let i = 0; i < round; i++) {
        await store.save(
          randomKey(),
          { data: { r }, version: 1, createdAt: now, expiresAt: now + 60_000 },
          null,
        );
      }
      sizes.push(store.size);
      now += 60_000; // the whole round expires before the next one starts
    }
    // Each round's writes sweep the previous round away: never more than two rounds held.
    assert.ok(Math.max(...sizes) <= 2 * round, `sizes: ${sizes.join(", ")}`);
    assert.equal(sizes.at(-1), round, `sizes: ${sizes.join(", ")}`);
  });

  it("keeps the sweep inside its own records: live sessions survive it untouched", async () => {
    let now = 1_000_000;
    const store = new MemoryStore({ now: () => now });
    const live = randomKey();
    await store.save(live, { data: { n: 1 }, version: 1, createdAt: now, expiresAt: now + 10_000_000 }, null);
    for (let i = 0; i < 5_000; i++) {
      await store.save(randomKey(), { data: {}, version: 1, createdAt: now, expiresAt: now + 10 }, null);
      now += 1;
    }
    assert.ok(store.size < 100, `size: ${store.size}`);
    assert.deepEqual((await store.load(live))?.data, { n: 1 });
  });

  it("round-trips lone surrogates and U+0000 faithfully", async () => {
    const store = new MemoryStore();
    const key = randomKey();
    const now = Date.now();
    const data = { lone: "\ud800", low: "a\udc00b", nul: "x\u0000y", [`k\u0000\ud83d`]: ["\udfff"] };
    assert.equal(
      await store.save(key, { data, version: 1, createdAt: now, expiresAt: now + 60_000 }, null),
      true,
    );
    assert.deepEqual((await store.load(key))?.data, data);
  });

  it("refuses data that is not plain JSON with SessionDataError and writes nothing", async () => {
    const store = new MemoryStore();
    const now = Date.now();
    const key = randomKey();
    const rec = (data: Record<string, unknown>, version = 1) => ({
      data,
      version,
      createdAt: now,
      expiresAt: now + 60_000,
    });
    const cycle: Record<string, unknown> = { a: 1 };
    cycle.self = cycle;
    for (const data of [{ big: 1n }, cycle, [1, 2] as unknown as Record<string, unknown>]) {
      await assert.rejects(store.save(key, rec(data), null), SessionDataError);
    }
    assert.equal(store.size, 0);
    assert.equal(await store.load(key), null);
    await store.save(key, rec({ n: 1 }), null);
    await assert.rejects(store.save(key, rec({ n: 2n }, 2), 1), SessionDataError);
    assert.deepEqual(await store.load(key), rec({ n: 1 }));
  });

  it("rejects a bad maxSessions at construction", () => {
    assert.throws(() => new MemoryStore({ maxSessions: 0 }), RangeError);
    assert.throws(() => new MemoryStore({ maxSessions: 1.5 }), RangeError);
  });
});
