// DenoKvStore against a real Deno KV (in memory). Runs under `deno test --unstable-kv`; under
// another runtime there is no Deno KV, and the file says so with one skipped test.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { type DenoKvLike, DenoKvStore, type DenoKvStoreOptions } from "../../src/stores/deno_kv.ts";
import { userTag } from "../../src/user_tag.ts";
import { randomKey } from "../conformance/util.ts";
import { storeSuites } from "../conformance/store_cases.ts";
import { lockUserCases, tagOf } from "../conformance/lock_user_cases.ts";
import { record, recordOfLength } from "./remote_cases.ts";

interface DenoKvHandle extends DenoKvLike {
  close(): void;
}
const deno = (globalThis as unknown as { Deno?: { openKv(path: string): Promise<DenoKvHandle> } }).Deno;

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
  /** The expireIn each key was last written with (by a commit that held): Deno KV does not tell it. */
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
        const written: [string, number | undefined][] = [];
        operation.set = (key, value, options) => {
          written.push([JSON.stringify(key), options?.expireIn]);
          return set(key, value, options);
        };
        operation.commit = async () => {
          sent?.push("commit");
          const result = await commit();
          for (const [key, expireIn] of result.ok ? written : []) expireIns.set(key, expireIn);
          return result;
        };
        return operation;
      },
      delete: (key) => kv.delete(key),
      list: (selector) => kv.list(selector),
    };
  };
  const expireIn = (key: unknown[]) => Promise.resolve(expireIns.get(JSON.stringify(key)));
  const rawAt = async (key: string[]) => {
    const { value } = await (await sharedKv()).get(key);
    return typeof value === "string" ? JSON.parse(value) : undefined;
  };
  /** Constructs a store on the cases' KV (open by then) with `options`. */
  const kvWith = (options: Partial<DenoKvStoreOptions>) => () =>
    new DenoKvStore({ kv: casesKv!, ...options });
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
    open: async (ns, options) => new DenoKvStore({ kv: await noting(), prefix: [ns], ...options }),
    close: () => casesKv?.close(),
    raw: (ns, key) => rawAt([ns, key]),
    // The expireIn the store wrote, so that Deno KV drops the key by itself.
    ttl: (ns, key) => expireIn([ns, key]),
    ttlExact: true,
    calls: {
      open: async (ns) => {
        const sent: string[] = [];
        return { store: new DenoKvStore({ kv: await noting(sent), prefix: [ns] }), sent };
      },
      expected: {
        create: ["commit"],
        read: ["get"],
        update: ["commit"],
        refusedCreate: ["commit", "get"],
        refusedUpdate: ["get"],
      },
    },
    byDefault: {
      open: async () => new DenoKvStore({ kv: await sharedKv() }),
      raw: (key) => rawAt(["websession", key]),
    },
    claims: { capabilities: { compareAndSet: true, ttl: true, locks: true, users: true }, lacks: [] },
    badOptions: [
      ["no kv", () => new DenoKvStore({} as never)],
      ["a prefix that is no array", kvWith({ prefix: "websession" as never })],
      ["a prefix part of no key type", kvWith({ prefix: [Symbol("sessions")] })],
      // No room left for a lock's key: see the longest prefix it takes below.
      ["a prefix one byte too long", kvWith({ prefix: ["p".repeat(1_995)] }), RangeError],
      ["a prefix too long in two parts", kvWith({ prefix: ["p".repeat(997), "p".repeat(997)] }), RangeError],
    ],
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
