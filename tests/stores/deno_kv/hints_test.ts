// What DenoKvStore remembers of the entries it last read or wrote (src/stores/deno_kv/hints.ts):
// an update right after a load is one commit and no read, and a hint another instance made stale
// is refused, never trusted.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { DenoKvStore } from "../../../src/stores/deno_kv.ts";
import { randomKey } from "../../conformance/util.ts";
import { record } from "../remote_cases.ts";
import { counted, type DenoKvHandle, openKv, skippedWithoutDeno } from "./kv.ts";

if (!skippedWithoutDeno("DenoKvStore hints")) {
  describe("DenoKvStore: hints", () => {
    let kv: DenoKvHandle;
    before(async () => {
      kv = await openKv();
    });
    after(() => kv.close());

    it("updates after a load in one commit and no read", async () => {
      const { kv: wrapped, calls } = counted(kv);
      const store = new DenoKvStore({ kv: wrapped, prefix: ["counted"] });
      const key = randomKey();
      assert.equal(await store.save(key, record({ n: 1 }), null), true);
      assert.deepEqual(calls, { get: 0, commit: 1 });
      const loaded = await store.load(key);
      assert.equal(await store.save(key, { ...loaded!, data: { n: 2 }, version: 2 }, 1), true);
      assert.deepEqual(calls, { get: 1, commit: 2 });
      assert.equal(await store.save(key, { ...loaded!, data: { n: 3 }, version: 3 }, 2), true);
      assert.deepEqual(calls, { get: 1, commit: 3 });
      assert.deepEqual((await store.load(key))?.data, { n: 3 });
    });

    it("still accepts the right version after another instance touched the record", async () => {
      const first = new DenoKvStore({ kv });
      const second = new DenoKvStore({ kv });
      const key = randomKey();
      await first.save(key, record({ n: 1 }), null);
      const loaded = await first.load(key);
      const later = loaded!.expiresAt + 60_000;
      assert.equal(await second.touch(key, later, 1), true);
      assert.equal(await first.save(key, { ...loaded!, data: { n: 2 }, version: 2 }, 1), true);
      const after = await second.load(key);
      assert.deepEqual(after?.data, { n: 2 });
      assert.equal(after?.version, 2);
    });

    it("refuses an update from an instance that last saw a record another one saved over or destroyed, reporting what it read", async () => {
      const { kv: wrapped, calls } = counted(kv);
      const first = new DenoKvStore({ kv: wrapped });
      const second = new DenoKvStore({ kv });
      const key = randomKey();
      await first.save(key, record({ n: 1 }), null);
      const loaded = await first.load(key);
      const winner = record({ n: 2 }, 2);
      assert.equal(await second.save(key, winner, 1), true);
      const before = { ...calls };
      // The remembered versionstamp is refused; the read that follows decides, and is reported.
      assert.deepEqual(await first.save(key, record({ n: 99 }, 2), 1), { current: winner });
      assert.deepEqual(calls, { get: before.get + 1, commit: before.commit + 1 });
      assert.deepEqual((await first.load(key))?.data, { n: 2 });

      await first.load(key);
      await second.destroy(key);
      assert.deepEqual(await first.save(key, { ...loaded!, version: 3 }, 2), { current: null });
      assert.equal((await kv.get(["websession", key])).versionstamp, null);
    });
  });
}
