// MemcachedStore against the real Memcached on loopback (started by .ci/run), through
// memcache-client: the shared suites. What only Memcached does is in tests/stores/memcached/, a
// file per program of src/stores/memcached/.
import { MemcachedStore, type MemcachedStoreOptions } from "../../src/stores/memcached.ts";
import { storeSuites } from "../conformance/store_cases.ts";
import { lockUserCases } from "../conformance/lock_user_cases.ts";
import { deadPort } from "../services.ts";
import { record } from "./remote_cases.ts";
import {
  type Connection,
  indexItem,
  named,
  open,
  prefix,
  rawGet,
  rawRecord,
  rawSet,
  rawTtl,
  recording,
} from "./memcached/items.ts";

const prefixOf = (ns: string) => `${prefix}cases:${ns}:`;
let casesConnection: Connection | undefined;
const casesClient = () => (casesConnection ??= open()).client;
/** Constructs a store on the cases' client with `options`. */
const memcached = (options: Partial<MemcachedStoreOptions>) => () =>
  new MemcachedStore({ client: casesClient(), ...options });
/** The lock of `key` as the item holds it: `{ owner, expiresAt }`. */
const leaseOf = async (ns: string, key: string) => {
  const text = await rawGet(`${prefixOf(ns)}${key}:lease`);
  return text === undefined ? undefined : JSON.parse(text) as { owner: string; expiresAt: number };
};
// Before storeSuites, whose close frees the connection these use too.
lockUserCases("MemcachedStore over memcache-client", {
  reportsCurrent: true,
  open: (ns, now) => new MemcachedStore({ client: casesClient(), prefix: prefixOf(ns), now }),
  counted: (ns, now) => {
    const { client, sent } = named(casesClient());
    return Promise.resolve({ store: new MemcachedStore({ client, prefix: prefixOf(ns), now }), sent });
  },
  raw: (ns, key) => rawGet(prefixOf(ns) + key),
  // A lock is an item of its own, prefix + key + ":lease", holding { owner, expiresAt }.
  locks: {
    byClock: true,
    entry: async (ns, key) => {
      const lease = await leaseOf(ns, key);
      return lease && { owner: lease.owner, until: lease.expiresAt };
    },
  },
  // An item per user, named by its tag, of storage keys and until when each entry lasts: half the
  // record's remaining life past its expiry. It is written before the record, which notes it.
  users: {
    byClock: true,
    prunes: true,
    badIds: [""],
    until: (expiresAt, now) => expiresAt + Math.ceil((expiresAt - now) / 2),
    entries: async (ns, user) => JSON.parse((await rawGet(await indexItem(prefixOf(ns), user))) ?? "{}"),
    note: async (ns, key) => {
      const index = JSON.parse((await rawGet(prefixOf(ns) + key)) ?? "{}").index;
      return index && { tag: index.user, until: index.until };
    },
    expiry: {
      left: async (ns, user) => 1000 * ((await rawTtl(await indexItem(prefixOf(ns), user))) ?? NaN),
      slack: 2_000, // whole seconds, rounded up
    },
    sends: {
      save: ["gets index", "add index", "add record"],
      update: ["gets record", "cas record"],
      reindex: ["gets record", "gets index", "cas index", "cas record"],
      plain: ["add record", "gets record", "cas record"],
      read: ["get record"],
    },
  },
});

storeSuites("MemcachedStore over memcache-client", {
  reportsCurrent: true,
  racesAnswerFalse: true, // a change between its gets and cas
  expiredSave: true,
  tombstoneTouch: true,
  vanishes: true,
  open: (ns, options) => new MemcachedStore({ client: casesClient(), prefix: prefixOf(ns), ...options }),
  close: () => casesConnection?.close(),
  raw: (ns, key) => rawRecord(prefixOf(ns) + key),
  ttl: async (ns, key) => {
    const ttl = await rawTtl(prefixOf(ns) + key);
    return ttl === undefined ? undefined : ttl * 1000;
  },
  ttlGrain: 1_000, // whole seconds, rounded up
  calls: {
    open: (ns) => {
      const { client, sent } = recording(casesClient());
      return Promise.resolve({ store: new MemcachedStore({ client, prefix: prefixOf(ns) }), sent });
    },
    expected: {
      create: ["add"],
      read: ["get"],
      update: ["gets", "cas"],
      refusedCreate: ["add", "gets"],
      refusedUpdate: ["gets"],
    },
  },
  byDefault: { open: memcached({}), raw: (key) => rawRecord(`websession:${key}`) },
  claims: {
    capabilities: { compareAndSet: true, ttl: true, locks: true, users: true },
    lacks: ["count", "cleanup"],
  },
  badOptions: [
    ["a client of no known shape", memcached({ client: {} as never })],
    ["no client", memcached({ client: null as never })],
    // A callback-style client (memcached's `del`) is not taken for this one.
    ["callbacks", memcached({ client: { get() {}, gets() {}, add() {}, cas() {}, del() {} } as never })],
    // Memcached could not take these as part of a key.
    ...["has space:", "tab\t", "line\n", "del\u007f", "ü:", "x".repeat(202), 5].map((prefix) =>
      [`prefix ${JSON.stringify(prefix)}`, memcached({ prefix: prefix as string })] as const
    ),
    // 201 + 43 for the storage key + 6 for a lock's suffix (`:lease`): Memcached's 250 bytes.
    ["the longest prefix", memcached({ prefix: "x".repeat(201) }), null],
    ["a tiny maxItemSize", memcached({ maxItemSize: 100 }), RangeError],
    ["a fractional maxItemSize", memcached({ maxItemSize: 1.5e6 + 0.5 }), RangeError],
  ],
  // Three bytes a character in UTF-8: refused by its byte length, not its length in JavaScript.
  size: {
    fits: [record({ big: "x".repeat(1024 * 1024 - 1024) })],
    over: [[record({ big: "x".repeat(1024 * 1024) })], [record({ big: "€".repeat(400_000) })]],
  },
  corrupt: {
    forms: ["{not json", JSON.stringify({ data: [], version: 0 })],
    write: (ns, key, form) => rawSet(prefixOf(ns) + key, form),
    read: (ns, key) => rawGet(prefixOf(ns) + key),
    keptOnCreate: true,
    warning: /corrupt session record/,
  },
  unreachable: async () => {
    const { client, close } = open(`127.0.0.1:${await deadPort()}`, 1_000);
    return { store: new MemcachedStore({ client }), close };
  },
  locks: { owner: async (ns, key) => (await leaseOf(ns, key))?.owner },
  users: {
    byClock: true,
    apart: (ns) => {
      const connection = open();
      return Promise.resolve({
        store: new MemcachedStore({ client: connection.client, prefix: prefixOf(ns) }),
        close: () => connection.close(),
      });
    },
  },
});
