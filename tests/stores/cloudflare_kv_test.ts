// CloudflareKvStore against a real Workers KV namespace in Miniflare: first from Node through
// Miniflare's binding proxy, then running inside workerd itself. Workers KV has no
// compare-and-set, so the suite skips its compare-and-set cases by capability; the sequential
// version checks the store does make are the shared cases' (answered with plain false), its
// stale-read checks and its tombstones are asserted below. Miniflare's KV is one location: a
// location that has not seen a write yet is shown by writing or removing the key behind the
// store's back.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { KVNamespace } from "@cloudflare/workers-types";
import type { Miniflare } from "miniflare";
import { getSession, withSession } from "../../mod.ts";
import { StoreUnavailableError } from "../../src/errors.ts";
import { ENDED_KEY, isEnded, type StoredSession } from "../../src/store.ts";
import {
  CloudflareKvStore,
  type CloudflareKvStoreOptions,
  type KvNamespaceLike,
} from "../../src/stores/cloudflare_kv.ts";
import { userTag } from "../../src/user_tag.ts";
import { randomKey } from "../conformance/util.ts";
import { storeCases } from "../conformance/store_cases.ts";
import { lockUserCases, tagOf } from "../conformance/lock_user_cases.ts";
import { miniflareSuites as suites, startMiniflare, workerdStore } from "../workers/miniflare.ts";
import { record } from "./remote_cases.ts";

// A real binding's type fits the structural interface.
const _fits: (binding: KVNamespace) => KvNamespaceLike = (binding) => binding;

function tombstone(version: number, ttl = 60_000, now = Date.now()): StoredSession {
  return record({ [ENDED_KEY]: true }, version, ttl, now);
}

/** Forwards to the real namespace and counts the writes that reach it. */
function countedPuts(namespace: KvNamespaceLike): { namespace: KvNamespaceLike; puts: () => number } {
  let puts = 0;
  return {
    namespace: {
      get: (key, type) => namespace.get(key, type),
      put(key, value, options) {
        puts++;
        return namespace.put(key, value, options);
      },
      delete: (key) => namespace.delete(key),
      list: (options) => namespace.list(options),
    },
    puts: () => puts,
  };
}

suites(
  "CloudflareKvStore (Miniflare KV from Node)",
  async (mf) => new CloudflareKvStore({ namespace: await mf.getKVNamespace("SESSIONS_KV") }),
);
suites("CloudflareKvStore (inside workerd)", (mf) => workerdStore(mf, "kv"));

let shared: { mf: Miniflare; namespace: KvNamespaceLike } | undefined;
async function sharedNamespace(): Promise<KvNamespaceLike> {
  if (!shared) {
    const mf = await startMiniflare();
    shared = { mf, namespace: await mf.getKVNamespace("SESSIONS_KV") };
  }
  return shared.namespace;
}
/** Every key under `prefix`, paged. */
async function keysUnder(namespace: KvNamespaceLike, prefix: string): Promise<string[]> {
  const names: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await namespace.list(cursor === undefined ? { prefix } : { prefix, cursor });
    names.push(...page.keys.map((key) => key.name));
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor !== undefined);
  return names;
}
/** A store over the shared namespace whose writes are named in `sent`: each an index key or a record. */
async function naming(prefix: string, now?: () => number) {
  const shared = await sharedNamespace();
  const sent: string[] = [];
  const namespace: KvNamespaceLike = {
    get: (key, type) => shared.get(key, type),
    put(key, value, options) {
      sent.push(key.slice(prefix.length).startsWith("users:") ? "put index" : "put record");
      return shared.put(key, value, options);
    },
    delete: (key) => shared.delete(key),
    list: (options) => shared.list(options),
  };
  return { store: new CloudflareKvStore({ namespace, prefix, staleReadDelay: 0, now }), sent };
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
    entries: async (ns, user) => {
      const prefix = await indexPrefix(ns, user);
      const names = await keysUnder(await sharedNamespace(), prefix);
      return Object.fromEntries(names.map((name) => [name.slice(prefix.length), null]));
    },
    note: async (ns, key) => {
      const text = await (await sharedNamespace()).get(`${ns}:${key}`, "text");
      return text === null ? undefined : JSON.parse(text).index;
    },
    expiry: {
      left: async (ns, user, key) => {
        const [entry] =
          (await (await sharedNamespace()).list({ prefix: (await indexPrefix(ns, user)) + key })).keys;
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
    // An index key is the prefix and 93 bytes ("users:", a tag, ":", a storage key): a prefix
    // of 419 bytes fits in 512, one of 420 does not.
    room: {
      fits: async () => (await naming("p".repeat(419))).store,
      over: () => naming("p".repeat(420)),
      message: /Invalid prefix: "420" bytes leave no room for a user's index key/,
    },
  },
});

/** Constructs a store on the shared namespace (open by then) with `options`. */
const kvWith = (options: Partial<CloudflareKvStoreOptions>) => () =>
  new CloudflareKvStore({ namespace: shared!.namespace, ...options });
storeCases("CloudflareKvStore (Miniflare KV from Node)", {
  reportsCurrent: "false",
  tombstoneTouch: "kept",
  open: async (ns, options) =>
    new CloudflareKvStore({
      namespace: await sharedNamespace(),
      prefix: `${ns}:`,
      staleReadDelay: 0,
      ...options,
    }),
  close: () => shared?.mf.dispose(),
  raw: async (ns, key) => {
    const text = await (await sharedNamespace()).get(`${ns}:${key}`, "text");
    return text === null ? undefined : JSON.parse(text);
  },
  counted: async (ns) => {
    const { namespace, puts } = countedPuts(await sharedNamespace());
    return { store: new CloudflareKvStore({ namespace, prefix: `${ns}:` }), sent: puts };
  },
  byDefault: {
    open: async () => new CloudflareKvStore({ namespace: await sharedNamespace() }),
    raw: async (key) => {
      const text = await (await sharedNamespace()).get(`websession:${key}`, "text");
      return text === null ? undefined : JSON.parse(text);
    },
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
    const unreachable = (): Promise<never> => Promise.reject(new TypeError("fetch failed"));
    const namespace = { get: unreachable, put: unreachable, delete: unreachable, list: unreachable };
    return Promise.resolve({ store: new CloudflareKvStore({ namespace }), close: () => {}, raises: true });
  },
  users: {
    rawKeys: async (ns) => keysUnder(await sharedNamespace(), `${ns}:`),
    tagKeys: async (ns, user) => {
      const prefix = `${ns}:users:${await userTag(user)}:`;
      return (await keysUnder(await sharedNamespace(), prefix)).map((name) => name.slice(prefix.length));
    },
    // The raw id in the index key, and a record that remembers its user without the mark of
    // the current layout.
    oldLayout: {
      write: async (ns, user, key, saved) => {
        const namespace = await sharedNamespace();
        const until = saved.expiresAt + 86_400_000;
        await namespace.put(`${ns}:user:${user}:${key}`, "", { expirationTtl: 3600 });
        await namespace.put(`${ns}:${key}`, JSON.stringify({ ...saved, index: { user, until } }), {
          expirationTtl: 3600,
          metadata: { version: 1, expiresAt: saved.expiresAt },
        });
      },
      entries: async (ns, user) => {
        const prefix = `${ns}:user:${user}:`;
        return (await keysUnder(await sharedNamespace(), prefix)).map((name) => name.slice(prefix.length));
      },
      lapse: async (ns, user, key) => await (await sharedNamespace()).delete(`${ns}:user:${user}:${key}`),
    },
  },
});

describe("CloudflareKvStore", () => {
  let mf: Miniflare;
  let namespace: KvNamespaceLike;
  before(async () => {
    mf = await startMiniflare();
    namespace = await mf.getKVNamespace("SESSIONS_KV");
  });
  after(() => mf.dispose());

  it("says plainly that it cannot compare-and-set or hold a lock, and that reads may be stale", async () => {
    const store = new CloudflareKvStore({ namespace });
    assert.deepEqual(store.capabilities, {
      compareAndSet: false,
      ttl: true,
      staleReads: true,
      locks: false,
      users: true,
    });
    assert.equal("lock" in store, false);
    // So session.lock() refuses, as a configuration error, instead of pretending.
    const handler = withSession(async (req: Request) => {
      const session = await getSession(req);
      const error = await session.lock().then(() => null, (e: unknown) => e);
      return new Response((error as { code?: string } | null)?.code ?? "locked");
    }, { store, secrets: ["a secret of at least thirty-two characters"] });
    assert.equal(await (await handler(new Request("https://app.example/"))).text(), "ERR_SESSION_CONFIG");
  });

  it("writes JSON under the prefix with the version in metadata and KV's 60 s minimum TTL", async () => {
    const store = new CloudflareKvStore({ namespace, prefix: "app/", expiredRetention: 0 });
    const key = randomKey();
    const saved = record({ user: "ada" }, 1, 2_000);
    await store.save(key, saved, null);
    assert.deepEqual(JSON.parse((await namespace.get(`app/${key}`, "text"))!), saved);
    const { keys } = await namespace.list({ prefix: `app/${key}` });
    assert.equal(keys.length, 1);
    assert.deepEqual(keys[0]!.metadata, { version: 1, expiresAt: saved.expiresAt });
    const expiration = keys[0]!.expiration!;
    assert.ok(
      expiration * 1000 >= Date.now() + 58_000,
      `expiration ${expiration} is under KV's 60 s minimum`,
    );
    assert.ok(expiration * 1000 <= Date.now() + 62_000, `expiration ${expiration} is later than needed`);

    const long = randomKey();
    const lasting = record({}, 1, 3_600_000);
    await store.save(long, lasting, null);
    const [entry] = (await namespace.list({ prefix: `app/${long}` })).keys;
    assert.ok(Math.abs(entry!.expiration! * 1000 - lasting.expiresAt) <= 2_000);
  });

  it("keeps a record expiredRetention past expiresAt, where it reads as expired, never as stale", async () => {
    let now = Date.now();
    const store = new CloudflareKvStore({ namespace, prefix: "kept:", now: () => now, staleReadDelay: 0 });
    const key = randomKey();
    const saved = record({ a: 1 }, 3, 120_000, now);
    await store.save(key, saved, null);
    const [entry] = (await namespace.list({ prefix: `kept:${key}` })).keys;
    const kept = entry!.expiration! * 1000 - saved.expiresAt;
    assert.ok(Math.abs(kept - 86_400_000) <= 2_000, `kept ${kept} ms past expiresAt`);
    now = saved.expiresAt;
    // The client has seen version 3; the record is there, expired: a fresh session, not a 503.
    assert.equal(await store.load(key, 3), null);
    // An older version is stale even when expired here: the version the client saw may have
    // been written, with a later expiresAt, at another location.
    await assert.rejects(store.load(key, 4), StoreUnavailableError);
  });

  it("touch rewrites the record and its metadata with the new expiry and the same version", async () => {
    const store = new CloudflareKvStore({ namespace, prefix: "touch:" });
    const key = randomKey();
    const saved = record({ a: 1 }, 4);
    await namespace.put(`touch:${key}`, JSON.stringify(saved));
    assert.equal(await store.touch(key, saved.expiresAt + 600_000, 4), true);
    const { keys } = await namespace.list({ prefix: `touch:${key}` });
    assert.deepEqual(keys[0]!.metadata, { version: 4, expiresAt: saved.expiresAt + 600_000 });
    assert.equal((await store.load(key))?.version, 4);
  });

  describe("minVersion: the version the client has seen", () => {
    it("reports no record at all as a stale read when the client has seen the session", async () => {
      const store = new CloudflareKvStore({ namespace, staleReadRetries: 2, staleReadDelay: 0 });
      const key = randomKey();
      assert.equal(await store.load(key), null);
      const error = await store.load(key, 1).then(() => null, (e: unknown) => e);
      assert.ok(error instanceof StoreUnavailableError, `expected StoreUnavailableError, got ${error}`);
      assert.match(error.message, /Stale read from Workers KV: no record of a session the client has seen/);
    });

    it("serves a record this location had not seen once it arrives", async () => {
      const store = new CloudflareKvStore({ namespace, staleReadRetries: 20, staleReadDelay: 50 });
      const key = randomKey();
      const arriving = new Promise((resolve) => setTimeout(resolve, 120)).then(() =>
        namespace.put(`websession:${key}`, JSON.stringify(record({ n: 1 })))
      );
      const loaded = await store.load(key, 1);
      await arriving;
      assert.deepEqual(loaded?.data, { n: 1 });
    });

    it("serves a tombstone whatever its version: an ended session stays ended", async () => {
      const store = new CloudflareKvStore({ namespace, staleReadRetries: 0 });
      const key = randomKey();
      await namespace.put(`websession:${key}`, JSON.stringify(tombstone(2)));
      assert.ok(isEnded(await store.load(key, 7)));
    });

    it("serves a record at or above it", async () => {
      const store = new CloudflareKvStore({ namespace, staleReadDelay: 0 });
      const key = randomKey();
      await store.save(key, record({ n: 1 }), null);
      await store.save(key, record({ n: 2 }, 2), 1);
      assert.equal((await store.load(key, 2))?.version, 2);
      assert.equal((await store.load(key, 1))?.version, 2);
    });

    it("reports an older record as a stale read instead of serving it", async () => {
      const store = new CloudflareKvStore({ namespace, staleReadRetries: 2, staleReadDelay: 0 });
      const key = randomKey();
      await store.save(key, record({ n: 1 }), null);
      const error = await store.load(key, 2).then(() => null, (e: unknown) => e);
      assert.ok(error instanceof StoreUnavailableError, `expected StoreUnavailableError, got ${error}`);
      assert.match(error.message, /Stale read/);
    });

    it("reads again and serves the newer record once it arrives", async () => {
      const store = new CloudflareKvStore({ namespace, staleReadRetries: 20, staleReadDelay: 50 });
      const key = randomKey();
      await store.save(key, record({ n: 1 }), null);
      const arriving = new Promise((resolve) => setTimeout(resolve, 120)).then(() =>
        namespace.put(`websession:${key}`, JSON.stringify(record({ n: 2 }, 2)))
      );
      const loaded = await store.load(key, 2);
      await arriving;
      assert.deepEqual(loaded?.data, { n: 2 });
    });
  });

  it("answers 503, never a fresh session, where the record a signed cookie names is not there yet", async () => {
    const store = new CloudflareKvStore({ namespace, prefix: "app:", staleReadDelay: 0 });
    const secrets = ["a secret of at least thirty-two characters"];
    const handler = withSession(async (req: Request) => {
      const session = await getSession<{ visits?: number }>(req);
      return new Response(String(session.update("visits", (n = 0) => n + 1)));
    }, { store, secrets });
    const first = await handler(new Request("https://app.example/"));
    assert.equal(await first.text(), "1");
    const cookie = first.headers.get("set-cookie")!.split(";")[0]!;
    const { keys } = await namespace.list({ prefix: "app:" });
    assert.equal(keys.length, 1);
    const text = (await namespace.get(keys[0]!.name, "text"))!;
    // Another location, where KV has not brought the record yet.
    await namespace.delete(keys[0]!.name);
    const elsewhere = await handler(new Request("https://app.example/", { headers: { cookie } }));
    assert.equal(elsewhere.status, 503);
    assert.equal(elsewhere.headers.get("set-cookie"), null);
    // Once it arrives, the same cookie finds the same session.
    await namespace.put(keys[0]!.name, text);
    const later = await handler(new Request("https://app.example/", { headers: { cookie } }));
    assert.equal(await later.text(), "2");
  });

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

    /**
     * A location of the same namespace that can fall behind: `lag()` freezes what it reads under
     * `prefix` as the namespace holds it then (its cache), while writes still go through to the
     * namespace (and this location sees its own); `converge()` lets it read the namespace again.
     */
    function location(
      prefix: string,
    ): { namespace: KvNamespaceLike; lag(): Promise<void>; converge(): void } {
      let cached: Map<string, string> | undefined;
      return {
        namespace: {
          get: async (key, type) =>
            cached === undefined ? await namespace.get(key, type) : cached.get(key) ?? null,
          async put(key, value, options) {
            await namespace.put(key, value, options);
            cached?.set(key, value);
          },
          async delete(key) {
            await namespace.delete(key);
            cached?.delete(key);
          },
          list: (options) => namespace.list(options),
        },
        async lag() {
          const frozen = new Map<string, string>();
          for (const { name } of (await namespace.list({ prefix })).keys) {
            frozen.set(name, (await namespace.get(name, "text"))!);
          }
          cached = frozen;
        },
        converge() {
          cached = undefined;
        },
      };
    }

    it("keeps a session ended once KV converges, though a location that had not seen the end saved data after it", async () => {
      const here = new CloudflareKvStore({ namespace, prefix: "late:", staleReadRetries: 0 });
      const far = location("late:");
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
      const far = location("late-admin:");
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
    /** Forwards to the real namespace and records the keys written, in order. */
    function recordingPuts(): { namespace: KvNamespaceLike; puts: string[] } {
      const puts: string[] = [];
      return {
        namespace: {
          get: (key, type) => namespace.get(key, type),
          put(key, value, options) {
            puts.push(key);
            return namespace.put(key, value, options);
          },
          delete: (key) => namespace.delete(key),
          list: (options) => namespace.list(options),
        },
        puts,
      };
    }
    const someone = () => `user-${randomKey().slice(0, 10)}`;

    it("keeps a tombstone's index as it was, and lists the key until it lapses: the core skips it", async () => {
      const { namespace: recording, puts } = recordingPuts();
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
