// RedisStore's scripts (src/stores/redis/scripts.ts) over a real Redis Cluster: a user's index in a
// slot of its own, written before the record, one script per key, and kept ahead of the record's expiry.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { RedisStore } from "../../../src/stores/redis.ts";
import type { SaveConflict } from "../../../src/store.ts";
import { randomKey } from "../../conformance/util.ts";
import { record } from "../remote_cases.ts";
import {
  adminOf,
  clients,
  type Connection,
  dropPrefix,
  indexesHolding,
  recordingScripts,
  RUN,
  slotOf,
} from "./cluster.ts";

for (const [label, connect] of clients) {
  const prefix = `websession-test:${RUN}:${label.replace(/[^a-z]+/g, "-")}:`;

  describe(`RedisStore over ${label}: Redis Cluster specifics, scripts`, () => {
    const own = `${prefix}own:`;
    let connection: Connection;
    let store: RedisStore;
    before(async () => {
      connection = await connect();
      store = new RedisStore({ client: connection.client, prefix: own });
    });
    after(async () => {
      await dropPrefix(own);
      await connection.close();
    });

    it("writes a user's index in a slot of its own before the record, one script per key", async () => {
      const { client, sent } = recordingScripts(connection.client, own);
      const indexing = new RedisStore({ client, prefix: own });
      const user = `user-${randomKey().slice(0, 12)}`;
      const keys = [randomKey(), randomKey(), randomKey()];
      // A new session: the record's script asks for the index entry (writing nothing), the
      // entry is written, then the record.
      assert.equal(await indexing.save(keys[0]!, record({ user }), null, { user }), true);
      assert.deepEqual(sent.splice(0), ["record", "user", "record"]);
      // Later saves of the same user's session, within what the entry is sure to last: one script.
      assert.equal(await indexing.save(keys[0]!, record({ user, n: 1 }, 2), 1, { user }), true);
      assert.deepEqual(sent.splice(0), ["record"]);
      for (const key of keys.slice(1)) await indexing.save(key, record({ user }), null, { user });
      sent.length = 0;
      assert.deepEqual([...await indexing.keysOfUser(user)].sort(), [...keys].sort());
      assert.deepEqual(sent.splice(0), ["user"]);
      // The index is one sorted set under a hash tag of the user, in a slot apart from the records.
      const [indexKey, ...others] = await indexesHolding(own, keys[0]!);
      assert.deepEqual(others, []);
      assert.ok(
        indexKey!.startsWith(`${own}user:{`) && /\{[A-Za-z0-9_-]{43}\}$/.test(indexKey!),
        String(indexKey),
      );
      const slots = new Set(
        await Promise.all([indexKey!, ...keys.map((key) => own + key)].map(slotOf)),
      );
      assert.ok(slots.size > 1, "the records and the index share no slot");
    });

    it("lists no key whose save was refused after its index entry was written", async () => {
      const user = `user-${randomKey().slice(0, 12)}`;
      const key = randomKey();
      await store.save(key, record({}), null);
      // Another writer lands between the index entry and the record's script: the save is
      // refused at the record, and the entry it wrote stays, unlisted.
      const rival = record({ rival: true }, 2);
      const { client } = recordingScripts(connection.client, own, async (kind) => {
        if (kind === "user") assert.equal(await store.save(key, rival, 1), true);
      });
      const racing = new RedisStore({ client, prefix: own });
      const refused = await racing.save(key, record({ user }, 2), 1, { user }) as SaveConflict;
      assert.deepEqual(refused.current, rival);
      assert.equal((await indexesHolding(own, key)).length, 1, "the entry was written before the record");
      assert.deepEqual(await store.keysOfUser(user), []);
      // The save that lands is listed.
      assert.equal(await store.save(key, record({ user }, 3), 2, { user }), true);
      assert.deepEqual(await store.keysOfUser(user), [key]);
      // A later save for another user moves the record: the first user's list drops it.
      assert.equal(await store.save(key, record({ user: "grace" }, 4), 3, { user: "grace" }), true);
      assert.deepEqual(await store.keysOfUser(user), []);
      assert.deepEqual(await store.keysOfUser("grace"), [key]);
    });

    it("extends a user's index entry before a touch moves the record's expiry past it", async () => {
      let now = Date.now();
      const clocked = new RedisStore({ client: connection.client, prefix: own, now: () => now });
      const user = `user-${randomKey().slice(0, 12)}`;
      const key = randomKey();
      const saved = record({ user }, 1, 60_000, now);
      assert.equal(await clocked.save(key, saved, null, { user }), true);
      // The entry lasts as long again as the record has left: 120 s from now. Slide the record's
      // expiry by touches, 50 s at a time, to 10 minutes past the save.
      for (let step = 1; step <= 10; step++) {
        now = saved.createdAt + step * 50_000;
        assert.equal(await clocked.touch(key, now + 60_000, 1), true);
        assert.deepEqual(await clocked.keysOfUser(user), [key], `after touch ${step}`);
      }
      const stored = await adminOf().get(own + key);
      const until = Number(/"userUntil":(\d+)\}$/.exec(stored!)![1]);
      assert.ok(until >= now + 60_000, "the record notes an entry that outlasts it");
      const [indexKey] = await indexesHolding(own, key);
      assert.ok(Number(await adminOf().zscore(indexKey!, key)) >= until, "the entry lasts as long as noted");
      assert.deepEqual(await clocked.load(key), { ...saved, expiresAt: now + 60_000 });
    });
  });
}
