// The commands of src/stores/memcached/client.ts against the real Memcached: a change or a
// deletion between gets and cas, and the server's own too-large refusal.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { MemcachedStore } from "../../../src/stores/memcached.ts";
import { SessionTooLargeError } from "../../../src/errors.ts";
import { randomKey } from "../../conformance/util.ts";
import { skipWithoutMemcached } from "../../services.ts";
import { record } from "../remote_cases.ts";
import { ownStore, raw, rawGet, rawSet, recording } from "./items.ts";

const skip = await skipWithoutMemcached();
if (skip) it("MemcachedStore over memcache-client: commands", { skip }, () => {});
else {
  describe("MemcachedStore over memcache-client: commands", () => {
    const opened = ownStore();

    it("answers false, writing nothing, when the item changes between gets and cas", async () => {
      const { connection, store, own } = opened;
      const key = randomKey();
      await store.save(key, record({ n: 1 }), null);
      const intruder = { ...record({ n: "intruder" }), version: 2 };
      const { client, sent } = recording(connection.client, async (item) => {
        await rawSet(item, JSON.stringify(intruder));
      });
      const racing = new MemcachedStore({ client, prefix: own });
      assert.equal(await racing.save(key, record({ n: 2 }, 2), 1), false);
      assert.deepEqual(sent, ["gets", "cas"]);
      assert.deepEqual((await store.load(key))?.data, { n: "intruder" });
    });

    it("answers false and never recreates the item when it vanishes between gets and cas", async () => {
      const { connection, store, own } = opened;
      const key = randomKey();
      await store.save(key, record({ n: 1 }), null);
      const { client, sent } = recording(connection.client, async (item) => {
        assert.equal(await raw(`delete ${item}\r\n`), "DELETED\r\n");
      });
      const racing = new MemcachedStore({ client, prefix: own });
      assert.equal(await racing.save(key, record({ n: 2 }, 2), 1), false);
      assert.deepEqual(sent, ["gets", "cas"]);
      assert.equal(await rawGet(own + key), undefined);
    });

    it("touch never overwrites a save made between its gets and cas", async () => {
      const { connection, store, own } = opened;
      const key = randomKey();
      const saved = record({ keep: "ü ✓", list: [1, 2, 3] }, 1, 10_000);
      await store.save(key, saved, null);
      const newer = { ...saved, data: { keep: "newer" }, version: 2 };
      const { client } = recording(connection.client, async (item) => {
        await rawSet(item, JSON.stringify(newer));
      });
      assert.equal(
        await new MemcachedStore({ client, prefix: own }).touch(key, saved.expiresAt + 1_000, 1),
        false,
      );
      assert.deepEqual(JSON.parse((await rawGet(own + key))!), newer);
    });

    it("turns the server's own too-large refusal into SessionTooLargeError", async () => {
      const { connection, store, own } = opened;
      // A store told the server takes 2 MiB items, in front of one that takes 1 MiB.
      const key = randomKey();
      const generous = new MemcachedStore({
        client: connection.client,
        prefix: own,
        maxItemSize: 2 * 1024 * 1024,
      });
      const error = await generous.save(key, record({ big: "x".repeat(1_048_400) }), null).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(error instanceof SessionTooLargeError, String(error));
      assert.equal(await store.load(key), null);
      // The connection is still good.
      assert.equal(await store.save(key, record({ ok: 1 }), null), true);
    });
  });
}
