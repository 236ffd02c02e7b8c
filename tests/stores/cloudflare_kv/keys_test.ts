// The key space of CloudflareKvStore (src/stores/cloudflare_kv/keys.ts): the end key
// (`ended:<key>`) that holds a session's end where no late save of data can overwrite it, a
// tombstone's index keys, and the longest prefix that leaves room for every key. Miniflare's KV
// is one location: a location that falls behind is a namespace that reads from a cache
// (`location`).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { getSession, withSession } from "../../../mod.ts";
import { isEnded, type StoredSession } from "../../../src/store.ts";
import { CloudflareKvStore, type KvNamespaceLike } from "../../../src/stores/cloudflare_kv.ts";
import { randomKey } from "../../conformance/util.ts";
import { record } from "../remote_cases.ts";
import * as kv from "./namespace.ts";
import { tombstone } from "./namespace.ts";

describe("CloudflareKvStore: its keys", () => {
  let namespace: KvNamespaceLike;
  before(async () => {
    namespace = await kv.namespace();
  });
  after(kv.dispose);

  // Where the slow request and the logout meet at one location, the version check alone refuses
  // the late save; what a location that has not seen the logout can still do is in the class notes.
  it("stays logged out at this location when a slow request saves after the logout", async () => {
    const store = new CloudflareKvStore({ namespace, prefix: "race:", staleReadDelay: 0 });
    let open!: () => void;
    const held = new Promise<void>((resolve) => open = resolve);
    const handler = withSession(async (req: Request) => {
      const session = await getSession<{ user?: string; visits?: number }>(req);
      const path = new URL(req.url).pathname;
      if (path === "/login") session.set("user", "ada");
      if (path === "/logout") session.destroy();
      if (path === "/slow") {
        session.get("user");
        await held;
        session.update("visits", (n = 0) => n + 1);
      }
      return new Response(path);
      // The slow request stands for one at another location: it does not take turns with the logout.
    }, { store, secrets: ["a secret of at least thirty-two characters"], locking: "explicit" });
    const login = await handler(new Request("https://app.example/login"));
    const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
    const [entry] = (await namespace.list({ prefix: "race:" })).keys;
    const slow = handler(new Request("https://app.example/slow", { headers: { cookie } }));
    await new Promise((resolve) => setTimeout(resolve, 50)); // the slow request has loaded the session
    const logout = await handler(new Request("https://app.example/logout", { headers: { cookie } }));
    assert.equal(logout.status, 200);
    open();
    const late = await slow;
    assert.notEqual(late.status, 200, "a change to an ended session is never answered as success");
    const key = entry!.name.slice("race:".length);
    assert.ok(
      isEnded(JSON.parse((await namespace.get(`race:ended:${key}`, "text"))!)),
      "ended in its end key",
    );
    assert.ok(isEnded(await store.load(key)), "not resurrected");
  });

  describe("tombstones", () => {
    it("refuses to write over a tombstone it can see, whatever the version or a create", async () => {
      const store = new CloudflareKvStore({ namespace });
      const key = randomKey();
      await store.save(key, record({ user: "ada" }), null);
      assert.equal(await store.save(key, tombstone(2), 1), true);
      // A location that had not seen the tombstone saved its own version 2 and goes on from it:
      // the versions collide, and only the tombstone check refuses the write.
      assert.equal(await store.save(key, record({ user: "ada" }, 3), 2), false);
      assert.equal(await store.save(key, record({ user: "eve" }), null), false);
      assert.equal(await store.save(key, tombstone(3), 2), false);
      const loaded = await store.load(key);
      assert.ok(isEnded(loaded));
      assert.equal(loaded?.version, 2);
    });

    it("keeps a tombstone at least tombstoneTtl (60 s) whatever its expiresAt, and counts it out", async () => {
      const store = new CloudflareKvStore({ namespace, prefix: "tomb:" });
      const key = randomKey();
      await store.save(key, record({ user: "ada" }), null);
      const before = await store.count();
      const start = Date.now();
      assert.equal(await store.save(key, tombstone(2, 1_000), 1), true);
      const stored = JSON.parse((await namespace.get(`tomb:ended:${key}`, "text"))!) as StoredSession;
      assert.ok(isEnded(stored));
      assert.ok(stored.expiresAt >= start + 60_000, `tombstone expires at ${stored.expiresAt - start} ms`);
      const [entry] = (await namespace.list({ prefix: `tomb:ended:${key}` })).keys;
      assert.deepEqual(entry!.metadata, { version: 2, expiresAt: stored.expiresAt, ended: true });
      // Kept past its expiresAt for expiredRetention (a day), then tombstoneTtl more.
      assert.ok(entry!.expiration! * 1000 >= stored.expiresAt + 86_400_000 + 60_000 - 2_000);
      // The record's key is left as it was: the end key decides.
      assert.equal(JSON.parse((await namespace.get(`tomb:${key}`, "text"))!).version, 1);
      assert.equal(await store.count(), before - 1);

      // A tombstone meant to last longer keeps its own expiresAt.
      const longer = randomKey();
      const lasting = tombstone(4, 3_600_000);
      await store.save(longer, record({}, 3), null);
      assert.equal(await store.save(longer, lasting, 3), true);
      assert.deepEqual(JSON.parse((await namespace.get(`tomb:ended:${longer}`, "text"))!), lasting);
    });

    it("destroy leaves a tombstone for as long as the session would have lived: load null, saves refused", async () => {
      const store = new CloudflareKvStore({ namespace, prefix: "admin:", staleReadRetries: 0 });
      const key = randomKey();
      const live = record({ user: "ada" }, 4, 3_600_000);
      await store.save(key, live, null);
      await store.destroy(key);
      const endKey = `admin:ended:${key}`;
      const stored = JSON.parse((await namespace.get(endKey, "text"))!) as StoredSession;
      assert.ok(isEnded(stored));
      assert.equal(stored.version, 5);
      assert.equal(stored.expiresAt, live.expiresAt);
      // Read as no session (a fresh one starts), never as a stale read, and never written over.
      assert.equal(await store.load(key), null);
      assert.equal(await store.load(key, 4), null);
      assert.equal(await store.save(key, { ...live, version: 5 }, 4), false);
      assert.equal(await store.save(key, record({}), null), false);
      assert.equal(await store.touch(key, live.expiresAt + 60_000, 5), false);
      assert.equal(await store.touch(key, live.expiresAt + 60_000, 4), false);
      assert.deepEqual(JSON.parse((await namespace.get(endKey, "text"))!), stored);
      assert.deepEqual(JSON.parse((await namespace.get(`admin:${key}`, "text"))!), live);

      // A key this location has never seen gets an end key too: the record may live elsewhere.
      const unseen = randomKey();
      const start = Date.now();
      await store.destroy(unseen);
      const marker = JSON.parse((await namespace.get(`admin:ended:${unseen}`, "text"))!) as StoredSession;
      assert.ok(isEnded(marker));
      assert.ok(marker.expiresAt >= start + 60_000);
      assert.equal(await store.save(unseen, record({ n: 1 }, 2), 1), false);

      // A tombstone written in the record's key by an earlier version is honoured and left as it is.
      const ended = randomKey();
      const end = tombstone(7, 120_000);
      await namespace.put(`admin:${ended}`, JSON.stringify(end));
      await store.destroy(ended);
      assert.deepEqual(JSON.parse((await namespace.get(`admin:${ended}`, "text"))!), end);
      assert.equal(await namespace.get(`admin:ended:${ended}`, "text"), null);
      assert.ok(isEnded(await store.load(ended)));
      assert.equal(await store.save(ended, record({ n: 8 }, 8), 7), false);
    });

    it("keeps a session ended once KV converges, though a location that had not seen the end saved data after it", async () => {
      const here = new CloudflareKvStore({ namespace, prefix: "late:", staleReadRetries: 0 });
      const far = kv.location(namespace, "late:");
      const there = new CloudflareKvStore({ namespace: far.namespace, prefix: "late:", staleReadRetries: 0 });
      const key = randomKey();
      const live = record({ user: "ada", visits: 1 }, 1, 3_600_000);
      assert.equal(await here.save(key, live, null), true);
      assert.deepEqual(await there.load(key, 1), live);
      await far.lag(); // the far location keeps reading what it has cached
      // Logged out here.
      const end = { ...tombstone(2, 3_600_000), createdAt: live.createdAt };
      assert.equal(await here.save(key, end, 1), true);
      assert.ok(isEnded(await here.load(key, 2)));
      // A request in flight there has not seen the end: its version check passes, and its write
      // lands in the record's key after the end (KV keeps the last write).
      assert.deepEqual(await there.load(key, 1), live);
      const late = {
        ...live,
        data: { user: "ada", visits: 2 },
        version: 2,
        expiresAt: live.expiresAt + 60_000,
      };
      assert.equal(await there.save(key, late, 1), true);
      assert.deepEqual(JSON.parse((await namespace.get(`late:${key}`, "text"))!), late);
      far.converge();
      // Once converged, both locations read the session as ended, whatever the record's key holds,
      // and nothing more lands: no save, no touch, no create over it.
      for (const [name, store] of [["here", here], ["there", there]] as const) {
        for (const minVersion of [undefined, 1, 2]) {
          const loaded = await store.load(key, minVersion);
          assert.ok(isEnded(loaded), `${name}, minVersion ${minVersion}: ended`);
          assert.equal(loaded?.version, 2);
        }
        assert.equal(await store.save(key, { ...late, version: 3 }, 2), false, name);
        assert.equal(await store.save(key, record({ user: "eve" }), null), false, name);
        assert.equal(await store.touch(key, late.expiresAt + 60_000, 2), false, name);
      }
      assert.deepEqual(JSON.parse((await namespace.get(`late:${key}`, "text"))!), late);
      // The end key outlives the late record: KV keeps it past the latest expiresAt it can mask.
      const [endEntry] = (await namespace.list({ prefix: `late:ended:${key}` })).keys;
      // KV expirations are whole seconds: within one of the late record's own (its expiresAt + a day).
      assert.ok(endEntry!.expiration! * 1000 + 1000 >= late.expiresAt + 86_400_000);
      assert.equal(await here.count(), 0);
    });

    it("keeps a destroyed session destroyed once KV converges, whatever a late write left", async () => {
      const here = new CloudflareKvStore({ namespace, prefix: "late-admin:", staleReadRetries: 0 });
      const far = kv.location(namespace, "late-admin:");
      const there = new CloudflareKvStore({
        namespace: far.namespace,
        prefix: "late-admin:",
        staleReadRetries: 0,
      });
      const key = randomKey();
      const live = record({ user: "ada" }, 1, 3_600_000);
      assert.equal(await here.save(key, live, null), true);
      await far.lag();
      await here.destroy(key);
      assert.equal(await there.save(key, { ...live, data: { user: "ada", n: 1 }, version: 2 }, 1), true);
      assert.equal(await there.touch(key, live.expiresAt + 60_000, 2), true); // still behind
      far.converge();
      for (const store of [here, there]) {
        assert.equal(await store.load(key), null);
        assert.equal(await store.load(key, 2), null, "destroyed: no session, never a stale read");
        assert.equal(await store.save(key, { ...live, version: 3 }, 2), false);
      }
    });

    it("touch leaves a tombstone as it is", async () => {
      const store = new CloudflareKvStore({ namespace });
      const key = randomKey();
      const end = tombstone(3, 120_000);
      await namespace.put(`websession:${key}`, JSON.stringify(end));
      assert.equal(await store.touch(key, end.expiresAt + 600_000, 3), false);
      assert.deepEqual(JSON.parse((await namespace.get(`websession:${key}`, "text"))!), end);
    });
  });

  describe("sessions per user, best effort", () => {
    const someone = () => `user-${randomKey().slice(0, 10)}`;

    it("keeps a tombstone's index as it was, and lists the key until it lapses: the core skips it", async () => {
      const { namespace: recording, puts } = kv.recordingPuts(namespace);
      const store = new CloudflareKvStore({ namespace: recording, prefix: "ended-idx:" });
      const user = someone();
      const key = randomKey();
      await store.save(key, record({ user }), null, { user });
      puts.length = 0;
      assert.equal(await store.save(key, tombstone(2, 3_600_000 * 48), 1), true);
      assert.deepEqual(
        puts,
        [`ended-idx:ended:${key}`],
        "the end key, and no index key, for an ended session",
      );
      assert.deepEqual(await store.keysOfUser(user), [key]);
      assert.ok(isEnded(await store.load(key)));
    });
  });

  describe("data", () => {
    it("takes a prefix of 463 bytes, so that keys, end keys included, stay within KV's 512", async () => {
      const store = new CloudflareKvStore({ namespace, prefix: "é".repeat(231) + "p" });
      const key = randomKey();
      assert.equal(await store.save(key, record({ a: 1 }), null), true);
      assert.deepEqual((await store.load(key))?.data, { a: 1 });
      assert.equal(await store.save(key, tombstone(2), 1), true);
      assert.ok(isEnded(await store.load(key)));
    });
  });
});
