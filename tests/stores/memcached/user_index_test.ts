// The index of each user's sessions (src/stores/memcached/user_index.ts): one item per user, too
// small for too many sessions, and read as empty when corrupt.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { MemcachedStore } from "../../../src/stores/memcached.ts";
import { SessionTooLargeError } from "../../../src/errors.ts";
import { tagOf } from "../../conformance/lock_user_cases.ts";
import { randomKey } from "../../conformance/util.ts";
import { skipWithoutMemcached } from "../../services.ts";
import { record } from "../remote_cases.ts";
import { ownStore, rawGet, rawSet } from "./items.ts";

const skip = await skipWithoutMemcached();
if (skip) it("MemcachedStore over memcache-client: user index", { skip }, () => {});
else {
  describe("MemcachedStore over memcache-client: user index", () => {
    const opened = ownStore();

    it("refuses, writing nothing of the record, a session whose user's index would not fit one item", async () => {
      const { connection, own } = opened;
      const user = `many-${randomKey()}`;
      const small = new MemcachedStore({ client: connection.client, prefix: own, maxItemSize: 1024 });
      const saved: string[] = [];
      let refusal: unknown;
      for (let i = 0; i < 30 && refusal === undefined; i++) {
        const key = randomKey();
        try {
          await small.save(key, record({ user }), null, { user });
          saved.push(key);
        } catch (error) {
          refusal = error;
          assert.equal(await rawGet(own + key), undefined, "the record was not written");
        }
      }
      assert.ok(refusal instanceof SessionTooLargeError, String(refusal));
      assert.match(refusal.message, /^Too many sessions for one user: /);
      assert.ok(saved.length >= 5, `${saved.length} sessions fit`);
      assert.deepEqual((await small.keysOfUser(user)).sort(), saved.sort());
    });

    it("reads a corrupt index as empty and reports it; the next save starts it afresh", async () => {
      const { store, own, corrupt } = opened;
      const user = `corrupt-${randomKey()}`;
      const name = `user:${await tagOf(user)}`;
      await rawSet(own + name, JSON.stringify({ "not a key": 1 }));
      const reported = corrupt.length;
      assert.deepEqual(await store.keysOfUser(user), []);
      assert.deepEqual(corrupt.slice(reported).map(([key]) => key), [name]);
      const key = randomKey();
      assert.equal(await store.save(key, record({ user }), null, { user }), true);
      assert.deepEqual(await store.keysOfUser(user), [key]);
    });
  });
}
