// The key space of DenoKvStore (src/stores/deno_kv/keys.ts): cleanup over it, and the longest
// prefix that leaves room for a lock's key within Deno KV's key limit.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { DenoKvStore } from "../../../src/stores/deno_kv.ts";
import { randomKey } from "../../conformance/util.ts";
import { record } from "../remote_cases.ts";
import { type DenoKvHandle, openKv, skippedWithoutDeno } from "./kv.ts";

if (!skippedWithoutDeno("DenoKvStore keys")) {
  describe("DenoKvStore: keys", () => {
    let kv: DenoKvHandle;
    before(async () => {
      kv = await openKv();
    });
    after(() => kv.close());

    it("cleanup removes expired leftovers and keeps live records", async () => {
      let now = Date.now();
      const store = new DenoKvStore({ kv, prefix: ["sweep"], now: () => now });
      const live = randomKey();
      const dead = [randomKey(), randomKey()];
      await store.save(live, record({}, 1, 600_000, now), null);
      for (const key of dead) await store.save(key, record({}, 1, 60_000, now), null);
      await kv.atomic().set(["sweep", randomKey()], "not a record").commit();
      now += 61_000;
      assert.equal(await store.cleanup(), 3);
      for (const key of dead) assert.equal((await kv.get(["sweep", key])).versionstamp, null);
      assert.ok(await store.load(live));
      assert.equal(await store.count(), 1);
    });

    it("takes the longest prefix that leaves room for a lock's key", async () => {
      // 1,994 characters encode to 1,996 bytes; with "lease" (7) and the storage key (45): 2,048.
      const longest = new DenoKvStore({ kv, prefix: ["p".repeat(1_994)] });
      const key = randomKey();
      assert.equal(await longest.save(key, record({ a: 1 }), null), true);
      assert.deepEqual((await longest.load(key))?.data, { a: 1 });
      assert.equal(await longest.lock(key, "owner", 5_000), true);
      assert.equal(await longest.count(), 1);
    });
  });
}
