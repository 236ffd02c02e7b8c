// Items of src/stores/memcached/item.ts: the exptime past Memcached's 30 days, the size an item
// is refused at, and the key of a user's index item within Memcached's 250 bytes.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { MemcachedStore } from "../../../src/stores/memcached.ts";
import { SessionTooLargeError } from "../../../src/errors.ts";
import { randomKey } from "../../conformance/util.ts";
import { skipWithoutMemcached } from "../../services.ts";
import { record } from "../remote_cases.ts";
import { ownStore, rawTtl, RUN } from "./items.ts";

const skip = await skipWithoutMemcached();
if (skip) it("MemcachedStore over memcache-client: items", { skip }, () => {});
else {
  describe("MemcachedStore over memcache-client: items", () => {
    const opened = ownStore();

    it("sends an absolute exptime past 30 days, with slack, and still expires by expiresAt", async () => {
      const { store, own } = opened;
      const key = randomKey();
      const days = 40;
      const saved = record({ long: true }, 1, days * 86_400_000);
      assert.equal(await store.save(key, saved, null), true);
      const ttl = await rawTtl(own + key);
      // An absolute time on the server's clock, an hour past expiresAt.
      const expected = days * 86_400 + 3_600;
      assert.ok(ttl !== undefined && Math.abs(ttl - expected) <= 5, `TTL ${ttl}, expected about ${expected}`);
      assert.deepEqual((await store.load(key))?.data, { long: true });
    });

    it("refuses a record too large for the maxItemSize it is told", async () => {
      const { connection, own } = opened;
      const small = new MemcachedStore({ client: connection.client, prefix: own, maxItemSize: 4096 });
      await assert.rejects(
        small.save(randomKey(), record({ big: "x".repeat(4000) }), null),
        SessionTooLargeError,
      );
    });

    it("names a user's index item by the hash of the id: a 201-byte prefix and a long id still make a key", async () => {
      const { connection } = opened;
      const user = `ada ${RUN} with spaces, ünïcode and more: ${"x".repeat(400)}`;
      const longest = new MemcachedStore({ client: connection.client, prefix: "p".repeat(201) });
      const key = randomKey();
      assert.equal(await longest.save(key, record({ user }), null, { user }), true);
      assert.deepEqual(await longest.keysOfUser(user), [key]);
      await longest.destroy(key);
    });
  });
}
