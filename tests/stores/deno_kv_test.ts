// DenoKvStore against a real Deno KV (in memory): the shared suites. Runs under
// `deno test --unstable-kv`; under another runtime there is no Deno KV, and the file says so with
// one skipped test. What only Deno KV does is in tests/stores/deno_kv/, a file per program of
// src/stores/deno_kv/.
import assert from "node:assert/strict";
import { DenoKvStore, type DenoKvStoreOptions } from "../../src/stores/deno_kv.ts";
import { userTag } from "../../src/user_tag.ts";
import { storeSuites } from "../conformance/store_cases.ts";
import { lockUserCases, tagOf } from "../conformance/lock_user_cases.ts";
import { record, recordOfLength } from "./remote_cases.ts";
import {
  closeSharedKv,
  expireIn,
  keysUnder,
  noting,
  openedSharedKv,
  openKv,
  rawAt,
  sending,
  sharedKv,
  skippedWithoutDeno,
  valueAt,
} from "./deno_kv/kv.ts";

if (!skippedWithoutDeno("DenoKvStore")) {
  /** Constructs a store on the cases' KV (open by then) with `options`. */
  const kvWith = (options: Partial<DenoKvStoreOptions>) => () =>
    new DenoKvStore({ kv: openedSharedKv(), ...options });
  // Before storeSuites, whose close closes the KV these use too.
  lockUserCases("DenoKvStore", {
    reportsCurrent: true,
    sweeps: true,
    open: async (ns, now) => new DenoKvStore({ kv: await noting(), prefix: [ns], now }),
    counted: (ns, now) => sending({ prefix: [ns], now }),
    raw: (ns, key) => valueAt([ns, key]),
    // A lock is { owner, until } at [...prefix, "lease", key], with expireIn.
    locks: {
      byClock: true,
      entry: async (ns, key) => (await valueAt([ns, "lease", key])) as { owner: string } | undefined,
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
        const value = await valueAt([ns, key]);
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
        over: () => sending({ prefix: ["p".repeat(1_950)] }),
        message: /Invalid prefix: "1952" bytes encoded leave no room/,
      },
    },
  });

  storeSuites("DenoKvStore", {
    reportsCurrent: true,
    expiredSave: true,
    tombstoneTouch: true,
    open: async (ns, options) => new DenoKvStore({ kv: await noting(), prefix: [ns], ...options }),
    close: closeSharedKv,
    raw: (ns, key) => rawAt([ns, key]),
    // The expireIn the store wrote, so that Deno KV drops the key by itself.
    ttl: (ns, key) => expireIn([ns, key]),
    ttlExact: true,
    calls: {
      open: (ns) => sending({ prefix: [ns] }),
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
        ((await valueAt([ns, "lease", key])) as { owner?: string } | undefined)?.owner,
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
}
