// How src/stores/migrating.ts switches an application from one store to another on real pairs
// (FileStore → Redis, MemoryStore → Redis): every user still signed in, no update lost under
// concurrent writers (a rolling deploy with the previous code still writing `from` included),
// ended sessions stay ended, and a move that fails halfway leaves the user signed in.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { isEnded } from "../../../src/store.ts";
import { MemoryStore } from "../../../src/stores/memory.ts";
import { RedisStore } from "../../../src/stores/redis.ts";
import { MigratingStore, MOVED_KEY } from "../../../src/stores/migrating.ts";
import { Client } from "../../conformance/client.ts";
import { throwawayRedis } from "../../faults/servers.ts";
import { app, failFast, ready } from "../composed.ts";
import { keyOf, pair } from "./stores.ts";

describe("MigratingStore: switching stores", () => {
  it("keeps every user signed in across the switch, and moves each session on its next save", async () => {
    const stores = await pair();
    const before = app(stores.from());
    const users = Array.from({ length: 10 }, () => new Client(before));
    for (const user of users) assert.equal(await user.text("/count"), "1");
    const cookies = users.map((user) => user.jar.get("session"));
    const switched = app(stores.migrating());
    for (const [i, user] of users.entries()) {
      const moved = new Client(switched);
      moved.jar = user.jar;
      assert.equal(await moved.text("/read"), "1", "read from the old store");
      assert.equal(await moved.text("/count"), "2", "moved with this save");
      assert.equal(moved.jar.get("session"), cookies[i], "the same session");
      const key = await keyOf(moved);
      assert.equal((await stores.to().load(key))?.data.visits, 2);
      const left = await stores.from().load(key);
      assert.ok(isEnded(left) && left!.data[MOVED_KEY] === true, "the old copy is a moved tombstone");
    }
  });

  it("loses no update when many requests of many sessions move at once, over two processes", async () => {
    const stores = await pair();
    const before = app(stores.from());
    const users = Array.from({ length: 8 }, () => new Client(before));
    for (const user of users) await user.text("/count");
    const processes = [app(stores.migrating()), app(stores.migrating())];
    const responses = await Promise.all(users.flatMap((user) =>
      Array.from({ length: 12 }, async (_, i) => {
        const client = new Client(processes[i % 2]!);
        client.jar = new Map(user.jar);
        const response = await client.fetch("/count");
        return response.status;
      })
    ));
    assert.deepEqual(new Set(responses), new Set([200]), "none refused");
    for (const user of users) {
      const after = new Client(processes[0]!);
      after.jar = new Map(user.jar);
      assert.equal(await after.text("/read"), "13", "1 before the switch + 12 during the move");
    }
  });

  it("a rolling deploy (the previous code still on from): every acknowledged increment is counted", async () => {
    const stores = await pair();
    const old = app(stores.from());
    const users = Array.from({ length: 6 }, () => new Client(old));
    for (const user of users) await user.text("/count");
    const handlers = [old, app(stores.migrating())];
    const acknowledged = new Map<Client, number>(users.map((user) => [user, 1]));
    for (let wave = 0; wave < 3; wave++) {
      await Promise.all(users.flatMap((user) =>
        Array.from({ length: 8 }, async (_, i) => {
          const client = new Client(handlers[(i + wave) % 2]!);
          client.jar = new Map(user.jar);
          const response = await client.fetch("/count");
          await response.text();
          if (response.status === 200) acknowledged.set(user, acknowledged.get(user)! + 1);
          else assert.equal(response.status, 409, "the previous code is refused, never silently lost");
          assert.equal(client.jar.get("session"), user.jar.get("session"), "no cookie changed");
        })
      ));
    }
    // The deploy is done: only the new code. Everyone is signed in, with every acknowledged update.
    const done = app(stores.migrating());
    for (const user of users) {
      const client = new Client(done);
      client.jar = new Map(user.jar);
      assert.equal(await client.text("/read"), String(acknowledged.get(user)));
    }
  });

  it("a session ended in either store stays ended", async () => {
    const stores = await pair();
    const before = app(stores.from());
    const endedBefore = new Client(before);
    await endedBefore.text("/count");
    const stale = new Map(endedBefore.jar);
    await endedBefore.text("/logout");
    const switched = app(stores.migrating());
    const late = new Client(switched);
    late.jar = stale;
    assert.equal(await late.text("/read"), "none", "ended in from: still ended");
    const refused = await late.fetch("/count");
    assert.equal(refused.status, 409);

    const movedThenEnded = new Client(before);
    await movedThenEnded.text("/count");
    const kept = new Map(movedThenEnded.jar);
    const user = new Client(switched);
    user.jar = movedThenEnded.jar;
    assert.equal(await user.text("/count"), "2");
    await user.text("/logout");
    const again = new Client(switched);
    again.jar = kept;
    assert.equal(await again.text("/read"), "none", "ended in to: still ended");

    // A moved session that `to` loses (evicted) reads as ended, never as its older `from` copy.
    const evicted = new Client(before);
    await evicted.text("/count");
    const moved = new Client(switched);
    moved.jar = evicted.jar;
    assert.equal(await moved.text("/count"), "2");
    await stores.to().destroy(await keyOf(moved));
    assert.equal(await moved.text("/read"), "none");
  });

  it("a move whose `to` fails answers 503 and leaves the user signed in, in from", async () => {
    const server = await throwawayRedis({ persist: false });
    const client = await failFast(server.port);
    try {
      const from = new MemoryStore();
      const user = new Client(app(from));
      assert.equal(await user.text("/count"), "1");
      const cookie = user.jar.get("session");
      const switched = new Client(
        app(new MigratingStore({ from, to: new RedisStore({ client, prefix: "to:" }) })),
      );
      switched.jar = user.jar;
      await server.stop();
      const failed = await switched.fetch("/count");
      assert.equal(failed.status, 503);
      assert.equal(failed.headers.get("set-cookie"), null);
      assert.equal((await from.load(await keyOf(switched)))?.data.visits, 1, "given back to from");
      await server.start();
      await ready(client);
      assert.equal(await switched.text("/count"), "2");
      assert.equal(switched.jar.get("session"), cookie);
    } finally {
      client.disconnect();
      await server.destroy();
    }
  });
});
