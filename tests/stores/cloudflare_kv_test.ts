// CloudflareKvStore against a real Workers KV namespace in Miniflare: first from Node through
// Miniflare's binding proxy, then running inside workerd itself. Workers KV has no
// compare-and-set, so the suite skips its compare-and-set cases by capability; the sequential
// version checks the store does make are the shared cases' (answered with plain false). What is
// its own (the record and its metadata, stale reads, end keys, the key layout) is in
// tests/stores/cloudflare_kv/, a file per program of src/stores/cloudflare_kv/.
import type { KVNamespace } from "@cloudflare/workers-types";
import {
  CloudflareKvStore,
  type CloudflareKvStoreOptions,
  type KvNamespaceLike,
} from "../../src/stores/cloudflare_kv.ts";
import { userTag } from "../../src/user_tag.ts";
import { storeCases } from "../conformance/store_cases.ts";
import { lockUserCases, tagOf } from "../conformance/lock_user_cases.ts";
import { miniflareSuites as suites, workerdStore } from "../workers/miniflare.ts";
import { record } from "./remote_cases.ts";
import * as kv from "./cloudflare_kv/namespace.ts";

// A real binding's type fits the structural interface.
const _fits: (binding: KVNamespace) => KvNamespaceLike = (binding) => binding;

suites(
  "CloudflareKvStore (Miniflare KV from Node)",
  async (mf) => new CloudflareKvStore({ namespace: await mf.getKVNamespace("SESSIONS_KV") }),
);
suites("CloudflareKvStore (inside workerd)", (mf) => workerdStore(mf, "kv"));

/** A store under `prefix` whose writes are named in `sent`: each an index key or a record. */
async function naming(prefix: string, now?: () => number) {
  const index = (key: string) => key.slice(prefix.length).startsWith("users:") ? "put index" : "put record";
  const { namespace, puts } = kv.recordingPuts(await kv.namespace(), index);
  return { store: new CloudflareKvStore({ namespace, prefix, staleReadDelay: 0, now }), sent: puts };
}
const indexPrefix = async (ns: string, user: string) => `${ns}:users:${await tagOf(user)}:`;
// Before storeCases, whose close stops the Miniflare these use too.
lockUserCases("CloudflareKvStore (Miniflare KV from Node)", {
  reportsCurrent: "false",
  open: async (ns, now) => (await naming(`${ns}:`, now)).store,
  counted: (ns, now) => naming(`${ns}:`, now),
  // An index key per session, `users:<tag>:<key>`, written before the record, which notes its
  // user and until when the key lasts: a day past the record's expiry. Its writes only are named.
  users: {
    margin: 60_000, // written again once the record would outlive it by KV's minimum time to live
    until: (expiresAt, now) => Math.max(expiresAt, now) + 86_400_000,
    entries: async (ns, user) =>
      Object.fromEntries((await kv.keysAfter(await indexPrefix(ns, user))).map((key) => [key, null])),
    note: async (ns, key) => (await kv.rawAt(`${ns}:${key}`))?.index as { user: string } | undefined,
    expiry: {
      left: async (ns, user, key) => {
        const [entry] =
          (await (await kv.namespace()).list({ prefix: (await indexPrefix(ns, user)) + key })).keys;
        return entry?.expiration === undefined ? undefined : entry.expiration * 1000 - Date.now();
      },
      slack: 2_000, // whole seconds
    },
    sends: {
      save: ["put index", "put record"],
      list: [],
      refused: [],
      update: ["put record"],
      reindex: ["put index", "put record"],
      plain: ["put record", "put record"],
    },
    // Index keys (`users:` and `user:`, the old layout's) fail; records do not.
    indexDown: async (ns, now) =>
      new CloudflareKvStore({
        namespace: kv.failingOn(await kv.namespace(), (key) => key.startsWith(`${ns}:user`)),
        prefix: `${ns}:`,
        now,
      }),
    // An index key is the prefix and 93 bytes ("users:", a tag, ":", a storage key): a prefix
    // of 419 bytes fits in 512, one of 420 does not.
    room: {
      fits: async () => (await naming("p".repeat(419))).store,
      over: () => naming("p".repeat(420)),
      message: /Invalid prefix: "420" bytes leave no room for a user's index key/,
    },
  },
});

/** Constructs a store on the namespace (started by then) with `options`. */
const kvWith = (options: Partial<CloudflareKvStoreOptions>) => () =>
  new CloudflareKvStore({ namespace: kv.started(), ...options });
storeCases("CloudflareKvStore (Miniflare KV from Node)", {
  reportsCurrent: "false",
  tombstoneTouch: "kept",
  open: async (ns, options) =>
    new CloudflareKvStore({
      namespace: await kv.namespace(),
      prefix: `${ns}:`,
      staleReadDelay: 0,
      ...options,
    }),
  close: kv.dispose,
  raw: (ns, key) => kv.rawAt(`${ns}:${key}`),
  counted: async (ns) => {
    const { namespace, puts } = kv.recordingPuts(await kv.namespace());
    return { store: new CloudflareKvStore({ namespace, prefix: `${ns}:` }), sent: () => puts.length };
  },
  byDefault: {
    open: async () => new CloudflareKvStore({ namespace: await kv.namespace() }),
    raw: (key) => kv.rawAt(`websession:${key}`),
  },
  // It cannot compare-and-set or hold a lock, and its reads may be stale.
  claims: {
    capabilities: { compareAndSet: false, ttl: true, staleReads: true, locks: false, users: true },
    lacks: ["lock", "unlock", "cleanup"],
  },
  badOptions: [
    ["no namespace", () => new CloudflareKvStore({} as never)],
    ["a prefix that is no string", kvWith({ prefix: 1 as never })],
    // Keys, end keys included, must stay within KV's 512 bytes: 463 bytes of prefix at most.
    ["a prefix of 464 bytes", kvWith({ prefix: "é".repeat(232) }), RangeError],
    ["negative staleReadRetries", kvWith({ staleReadRetries: -1 }), RangeError],
    ["a fractional staleReadDelay", kvWith({ staleReadDelay: 0.5 }), RangeError],
    ["a tombstoneTtl under KV's 60 s", kvWith({ tombstoneTtl: 59 }), RangeError],
    ["negative expiredRetention", kvWith({ expiredRetention: -1 }), RangeError],
  ],
  // 8.7 million characters, 26.2 million bytes of UTF-8.
  size: { fits: [], over: [[record({ blob: "✓".repeat(8_738_134) }), /at most "26214400" fit/]] },
  // A binding whose calls fail as an unreachable one's do. (A disposed Miniflare's binding
  // rejects one of the two reads of a load and leaves the other pending for ever, which keeps
  // the test process from exiting.)
  unreachable: () => {
    const store = new CloudflareKvStore({ namespace: kv.failingOn({} as KvNamespaceLike, () => true) });
    return Promise.resolve({ store, close: () => {}, raises: true });
  },
  users: {
    rawKeys: (ns) => kv.keysUnder(`${ns}:`),
    tagKeys: async (ns, user) => await kv.keysAfter(`${ns}:users:${await userTag(user)}:`),
    // The raw id in the index key, and a record that remembers its user without the mark of
    // the current layout.
    oldLayout: {
      write: async (ns, user, key, saved) => {
        const namespace = await kv.namespace();
        const until = saved.expiresAt + 86_400_000;
        await namespace.put(`${ns}:user:${user}:${key}`, "", { expirationTtl: 3600 });
        await namespace.put(`${ns}:${key}`, JSON.stringify({ ...saved, index: { user, until } }), {
          expirationTtl: 3600,
          metadata: { version: 1, expiresAt: saved.expiresAt },
        });
      },
      entries: (ns, user) => kv.keysAfter(`${ns}:user:${user}:`),
      lapse: async (ns, user, key) => await (await kv.namespace()).delete(`${ns}:user:${user}:${key}`),
    },
  },
});
