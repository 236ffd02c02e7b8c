import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { MemoryStore } from "../../src/stores/memory.ts";
import { storeSuite } from "../conformance/store_suite.ts";
import { randomKey } from "../conformance/util.ts";

storeSuite("MemoryStore", { open: () => new MemoryStore() });

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

  it("uses the injected clock for expiry", async () => {
    let now = 1_000_000;
    const store = new MemoryStore({ now: () => now });
    const key = randomKey();
    await store.save(key, { data: {}, version: 1, createdAt: now, expiresAt: now + 10 }, null);
    assert.ok(await store.load(key));
    now += 10;
    assert.equal(await store.load(key), null);
  });

  it("rejects a bad maxSessions at construction", () => {
    assert.throws(() => new MemoryStore({ maxSessions: 0 }), RangeError);
    assert.throws(() => new MemoryStore({ maxSessions: 1.5 }), RangeError);
  });
});
