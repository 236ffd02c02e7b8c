// DenoKvStore against a real Deno KV (in memory). Runs under `deno test --unstable-kv`; under
// another runtime there is no Deno KV, and the file says so with one skipped test.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { StoredSession } from "../../src/store.ts";
import { type DenoKvLike, DenoKvStore } from "../../src/stores/deno_kv.ts";
import { userTag } from "../../src/user_tag.ts";
import { randomKey } from "../conformance/util.ts";
import { storeSuites } from "../conformance/store_cases.ts";
import { lockUserCases, tagOf } from "../conformance/lock_user_cases.ts";

interface DenoKvHandle extends DenoKvLike {
  close(): void;
}
const deno = (globalThis as unknown as { Deno?: { openKv(path: string): Promise<DenoKvHandle> } }).Deno;

function record(data: Record<string, unknown>, version = 1, ttl = 60_000, now = Date.now()): StoredSession {
  return { data, version, createdAt: now, expiresAt: now + ttl };
}

/** A record whose JSON text is exactly `length` characters, padded with `fill`. */
function recordOfLength(length: number, fill: string): StoredSession {
  const base = record({ blob: "" });
  const pad = length - JSON.stringify(base).length;
  return { ...base, data: { blob: fill.repeat(pad) } };
}

/** Forwards every call to the real KV and counts the calls that reach it. */
function counted(kv: DenoKvLike): { kv: DenoKvLike; calls: { get: number; commit: number } } {
  const calls = { get: 0, commit: 0 };
  const wrapper: DenoKvLike = {
    get(key) {
      calls.get++;
      return kv.get(key);
    },
    atomic() {
      const operation = kv.atomic();
      const original = operation.commit.bind(operation);
      operation.commit = () => {
        calls.commit++;
        return original();
      };
      return operation;
    },
    delete: (key) => kv.delete(key),
    list: (selector) => kv.list(selector),
  };
  return { kv: wrapper, calls };
}

if (deno === undefined) {
  describe("DenoKvStore", () => {
    it("runs under Deno only", (t) => {
      t.skip("no Deno KV in this runtime: run `deno test --unstable-kv -A tests/stores/deno_kv_test.ts`");
    });
  });
} else {
  const openKv = (): Promise<DenoKvHandle> => deno.openKv(":memory:");

  let casesKv: DenoKvHandle | undefined;
  const sharedKv = async () => (casesKv ??= await openKv());
  /** Every key under `prefix`, as its parts after the prefix. */
  const keysUnder = async (prefix: string[]): Promise<unknown[][]> => {
    const keys: unknown[][] = [];
    for await (const entry of (await sharedKv()).list({ prefix })) keys.push(entry.key.slice(prefix.length));
    return keys;
  };
  /** The expireIn each key was last written with: Deno KV does not tell it. */
  const expireIns = new Map<string, number | undefined>();
  /** The shared KV, noting each write's expireIn and, in `sent`, each get and commit. */
  const noting = async (sent?: string[]): Promise<DenoKvLike> => {
    const kv = await sharedKv();
    return {
      get(key) {
        sent?.push("get");
        return kv.get(key);
      },
      atomic() {
        const operation = kv.atomic();
        const [set, commit] = [operation.set.bind(operation), operation.commit.bind(operation)];
        operation.set = (key, value, options) => {
          expireIns.set(JSON.stringify(key), options?.expireIn);
          return set(key, value, options);
        };
        operation.commit = () => {
          sent?.push("commit");
          return commit();
        };
        return operation;
      },
      delete: (key) => kv.delete(key),
      list: (selector) => kv.list(selector),
    };
  };
  const expireIn = (key: unknown[]) => Promise.resolve(expireIns.get(JSON.stringify(key)));
  // Before storeSuites, whose close closes the KV these use too.
  lockUserCases("DenoKvStore", {
    reportsCurrent: true,
    sweeps: true,
    open: async (ns, now) => new DenoKvStore({ kv: await noting(), prefix: [ns], now }),
    counted: async (ns, now) => {
      const sent: string[] = [];
      return { store: new DenoKvStore({ kv: await noting(sent), prefix: [ns], now }), sent };
    },
    raw: async (ns, key) => (await (await sharedKv()).get([ns, key])).value ?? undefined,
    // A lock is { owner, until } at [...prefix, "lease", key], with expireIn.
    locks: {
      byClock: true,
      entry: async (ns, key) =>
        ((await (await sharedKv()).get([ns, "lease", key])).value ?? undefined) as
          | { owner: string }
          | undefined,
      expiry: { left: (ns, key) => expireIn([ns, "lease", key]), slack: 0 },
    },
    // An entry per key at [...prefix, "users", tag, key] holding the record's expiresAt, written in
    // the record's own commit and expiring with it. The record names its user.
    users: {
      liveOnly: true,
      byClock: true,
      until: (expiresAt) => expiresAt,
      entries: async (ns, user) => {
        const prefix = [ns, "users", await tagOf(user)];
        const entries: Record<string, number | null> = {};
        for await (const { key, value } of (await sharedKv()).list({ prefix })) {
          entries[String(key[prefix.length])] = value as number;
        }
        return entries;
      },
      note: async (ns, key) => {
        const { value } = await (await sharedKv()).get([ns, key]);
        const user = typeof value === "string" ? JSON.parse(value).indexedUser : undefined;
        return user === undefined ? undefined : { user };
      },
      expiry: {
        left: async (ns, user, key) => await expireIn([ns, "users", await tagOf(user), key]),
        slack: 0,
      },
      sends: { save: ["commit"] },
      // An index key is the prefix and 97 bytes ("users", a tag, a storage key): a prefix of
      // 1,951 bytes encoded (1,949 characters) fits in 2,048, one more does not.
      room: {
        fits: async () => new DenoKvStore({ kv: await sharedKv(), prefix: ["p".repeat(1_949)] }),
        over: async () => {
          const sent: string[] = [];
          return { store: new DenoKvStore({ kv: await noting(sent), prefix: ["p".repeat(1_950)] }), sent };
        },
        message: /Invalid prefix: "1952" bytes encoded leave no room/,
      },
    },
  });

  storeSuites("DenoKvStore", {
    reportsCurrent: true,
    expiredSave: true,
    tombstoneTouch: true,
    open: async (ns, options) => new DenoKvStore({ kv: await sharedKv(), prefix: [ns], ...options }),
    close: () => casesKv?.close(),
    raw: async (ns, key) => {
      const { value } = await (await sharedKv()).get([ns, key]);
      return typeof value === "string" ? JSON.parse(value) : undefined;
    },
    counted: async (ns) => {
      const { kv, calls } = counted(await sharedKv());
      return { store: new DenoKvStore({ kv, prefix: [ns] }), sent: () => calls.get + calls.commit };
    },
    // 65,530 Latin-1 characters serialize to 65,536 bytes; any other character costs two bytes.
    size: {
      fits: [recordOfLength(65_530, "é"), recordOfLength(32_765, "✓")],
      over: [
        [record({ blob: "x".repeat(70_000) })],
        [recordOfLength(65_531, "é"), /"65537" bytes serialized/],
        [recordOfLength(32_766, "✓"), /"65538" bytes serialized/],
      ],
    },
    unreachable: async () => {
      const closed = await openKv();
      const store = new DenoKvStore({ kv: closed });
      closed.close();
      return { store, close: () => {}, raises: true };
    },
    locks: {
      owner: async (ns, key) =>
        ((await (await sharedKv()).get([ns, "lease", key])).value as { owner?: string } | null)?.owner,
    },
    users: {
      liveOnly: true,
      byClock: true,
      rawKeys: async (ns) => (await keysUnder([ns])).map((key) => key.join("/")),
      tagKeys: async (ns, user) =>
        (await keysUnder([ns, "users", await userTag(user)])).map(([key]) => String(key)),
      // The raw id in the index entry's key, and a record that remembers its user.
      oldLayout: {
        write: async (ns, user, key, saved) => {
          const text = JSON.stringify({ ...saved, indexedUser: user });
          const result = await (await sharedKv()).atomic()
            .set([ns, key], text, { expireIn: 60_000 })
            .set([ns, "user", user, key], saved.expiresAt, { expireIn: 60_000 })
            .commit();
          assert.equal(result.ok, true);
        },
        entries: async (ns, user) => (await keysUnder([ns, "user", user])).map(([key]) => String(key)),
        lapse: async (ns, user, key) => await (await sharedKv()).delete([ns, "user", user, key]),
      },
    },
  });

  describe("DenoKvStore", () => {
    let kv: DenoKvHandle;
    before(async () => {
      kv = await openKv();
    });
    after(() => kv.close());

    it("stores the record as JSON text under [...prefix, key]", async () => {
      const store = new DenoKvStore({ kv, prefix: ["app", "sessions"] });
      const key = randomKey();
      const saved = record({ user: "ada" });
      await store.save(key, saved, null);
      const entry = await kv.get(["app", "sessions", key]);
      assert.equal(typeof entry.value, "string");
      assert.deepEqual(JSON.parse(entry.value as string), saved);
      assert.equal((await kv.get(["websession", key])).versionstamp, null);
    });

    it("keeps prefixes apart, for load and for count", async () => {
      const a = new DenoKvStore({ kv, prefix: ["tenant-a"] });
      const b = new DenoKvStore({ kv, prefix: ["tenant-b"] });
      const key = randomKey();
      await a.save(key, record({ who: "a" }), null);
      assert.equal(await b.load(key), null);
      assert.equal(await b.save(key, record({ who: "b" }), null), true);
      assert.equal((await a.load(key))?.data.who, "a");
      assert.equal(await a.count(), 1);
      assert.equal(await b.count(), 1);
    });

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

    it("refuses a create over a live record in one read and no commit when it has seen the record", async () => {
      const { kv: wrapped, calls } = counted(kv);
      const store = new DenoKvStore({ kv: wrapped, prefix: ["create"] });
      const key = randomKey();
      const first = record({ n: 1 });
      await store.save(key, first, null);
      // A create always tries its one commit first; the refusal is then decided by a read.
      assert.deepEqual(await store.save(key, record({ n: 2 }), null), { current: first });
      assert.deepEqual(calls, { get: 1, commit: 2 });
    });

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

    it("writes with expireIn set from expiresAt, so Deno KV drops the key by itself", async () => {
      const expireIns: (number | undefined)[] = [];
      const recording: DenoKvLike = {
        get: (key) => kv.get(key),
        atomic() {
          const operation = kv.atomic();
          const set = operation.set.bind(operation);
          operation.set = (key, value, options) => {
            expireIns.push(options?.expireIn);
            return set(key, value, options);
          };
          return operation;
        },
        delete: (key) => kv.delete(key),
        list: (selector) => kv.list(selector),
      };
      const now = 1_000_000;
      const store = new DenoKvStore({ kv: recording, prefix: ["ttl"], now: () => now });
      const key = randomKey();
      await store.save(key, record({}, 1, 90_000, now), null);
      assert.equal(await store.touch(key, now + 3_600_000, 1), true);
      assert.deepEqual(expireIns, [90_000, 3_600_000]);
      assert.equal((await store.load(key))?.expiresAt, now + 3_600_000);
    });

    it("takes the longest prefix that leaves room for a lock's key, and refuses a longer one", async () => {
      // 1,994 characters encode to 1,996 bytes; with "lease" (7) and the storage key (45): 2,048.
      const longest = new DenoKvStore({ kv, prefix: ["p".repeat(1_994)] });
      const key = randomKey();
      assert.equal(await longest.save(key, record({ a: 1 }), null), true);
      assert.deepEqual((await longest.load(key))?.data, { a: 1 });
      assert.equal(await longest.lock(key, "owner", 5_000), true);
      assert.equal(await longest.count(), 1);
      assert.throws(() => new DenoKvStore({ kv, prefix: ["p".repeat(1_995)] }), RangeError);
      assert.throws(
        () => new DenoKvStore({ kv, prefix: ["p".repeat(997), "p".repeat(997)] }),
        RangeError,
      );
      assert.throws(() => new DenoKvStore({ kv, prefix: [Symbol("sessions")] }), TypeError);
    });

    it("rejects a missing kv and a non-array prefix at construction", () => {
      assert.throws(() => new DenoKvStore({} as never), TypeError);
      assert.throws(() => new DenoKvStore({ kv, prefix: "websession" as never }), TypeError);
    });
  });
}
