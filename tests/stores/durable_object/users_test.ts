// A user's index in an object of its own (src/stores/durable_object/users.ts), named by the
// user's tag: a listing reads each listed session's object, and drops an entry no live record
// of the user needs once it is old enough, and only if it is still the entry it examined.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { ENDED_KEY } from "../../../src/store.ts";
import { type DurableObjectNamespaceLike, DurableObjectStore } from "../../../src/stores/durable_object.ts";
import { userTag } from "../../../src/user_tag.ts";
import { randomKey } from "../../conformance/util.ts";
import { record } from "../remote_cases.ts";
import { dispose, inspect, objects } from "./objects.ts";

describe("DurableObjectStore: sessions per user", () => {
  let namespace: DurableObjectNamespaceLike;
  let store: DurableObjectStore;
  before(async () => {
    ({ namespace } = await objects());
    store = new DurableObjectStore({ namespace });
  });
  after(dispose);

  const someone = () => `user-${randomKey().slice(0, 10)}`;
  /** The name of the object that holds a user's index: by the user's tag. */
  const indexOf = async (user: string) => `users:${await userTag(user)}`;

  it("lists only keys whose objects hold a live record of the user, and drops old entries that do not", async () => {
    let now = Date.now();
    const clocked = new DurableObjectStore({ namespace, now: () => now });
    const user = someone();
    const [live, refused, ended, moved] = [randomKey(), randomKey(), randomKey(), randomKey()];
    const hour = 3_600_000;
    await clocked.save(live, record({ user }, 1, hour, now), null, { user });
    await clocked.save(refused, record({}, 1, hour, now), null);
    assert.notEqual(await clocked.save(refused, record({ user }, 2, hour, now), 5, { user }), true);
    await clocked.save(ended, record({ user }, 1, hour, now), null, { user });
    await clocked.save(ended, record({ [ENDED_KEY]: true }, 2, hour, now), 1);
    await clocked.save(moved, record({ user }, 1, hour, now), null, { user });
    await clocked.save(moved, record({ user: "eve" }, 2, hour, now), 1, { user: "eve" });
    assert.deepEqual(await clocked.keysOfUser(user), [live]);
    // Young entries stay: the save each was written for might still be on its way.
    const index = await indexOf(user);
    assert.equal(Object.keys((await inspect(index)).index).length, 4);
    now += 300_000;
    assert.deepEqual(await clocked.keysOfUser(user), [live]);
    assert.deepEqual(Object.keys((await inspect(index)).index), [`index:${live}`]);
    assert.deepEqual(await clocked.keysOfUser("eve"), [moved]);
    now += hour; // every record has expired
    assert.deepEqual(await clocked.keysOfUser(user), []);
    assert.deepEqual((await inspect(index)).index, {});
  });

  it("the user's object removes an entry only if it is still the one examined", async () => {
    const user = someone();
    const key = randomKey();
    await store.save(key, record({ user }), null, { user });
    const index = await indexOf(user);
    const { token } = (await inspect(index)).index[`index:${key}`]!;
    const stub = namespace.get(namespace.idFromName(index));
    const unindex = (entryToken: string) =>
      stub.fetch("https://do/unindex", {
        method: "POST",
        headers: {},
        body: JSON.stringify({ op: "unindex", entries: [{ key, token: entryToken }] }),
      });
    assert.equal((await unindex("written since")).status, 200);
    assert.ok(`index:${key}` in (await inspect(index)).index);
    await unindex(token);
    assert.deepEqual((await inspect(index)).index, {});
  });
});
