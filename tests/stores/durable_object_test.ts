// DurableObjectStore against a real Durable Object binding in Miniflare: first from Node through
// Miniflare's binding proxy, then running inside workerd itself, with the full store suite
// (compare-and-set and concurrency included).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { DurableObjectNamespace } from "@cloudflare/workers-types";
import type { Miniflare } from "miniflare";
import { SessionTooLargeError, StoreUnavailableError } from "../../src/errors.ts";
import { ENDED_KEY } from "../../src/store.ts";
import {
  type DurableObjectNamespaceLike,
  DurableObjectStore,
  SessionDurableObject,
} from "../../src/stores/durable_object.ts";
import { userTag } from "../../src/user_tag.ts";
import { randomKey, sleep } from "../conformance/util.ts";
import { storeCases } from "../conformance/store_cases.ts";
import { lockUserCases, tagOf } from "../conformance/lock_user_cases.ts";
import {
  miniflareSuites as suites,
  nodeNamespace,
  startMiniflare,
  workerdStore,
} from "../workers/miniflare.ts";
import { record, recordOfLength } from "./remote_cases.ts";

// A real binding's type fits the structural interface.
const _fits: (binding: DurableObjectNamespace) => DurableObjectNamespaceLike = (binding) => binding;

const DELAY = SessionDurableObject.alarmDelay;

/** What an object's storage holds, as the test Worker's `/inspect` tells it. */
interface Inspected {
  record: string | null;
  lock: { owner: string; until: number } | null;
  index: Record<string, { at: number; token: string }>;
  alarm: number | null;
}

const EMPTY: Inspected = { record: null, lock: null, index: {}, alarm: null };

suites(
  "DurableObjectStore (Miniflare binding from Node)",
  async (mf) => new DurableObjectStore({ namespace: await nodeNamespace(mf, "SESSIONS_DO") }),
  { reportsCurrent: true },
);
suites("DurableObjectStore (inside workerd)", (mf) => workerdStore(mf, "do"), { reportsCurrent: true });

let shared: { mf: Miniflare; namespace: DurableObjectNamespaceLike } | undefined;
async function sharedNamespace(): Promise<DurableObjectNamespaceLike> {
  if (!shared) {
    const mf = await startMiniflare();
    shared = { mf, namespace: await nodeNamespace(mf, "SESSIONS_DO") };
  }
  return shared.namespace;
}
/** What the session's object holds in storage, as the test Worker's `/inspect` tells it. */
async function inspectIn(within: DurableObjectNamespaceLike, key: string, alarm = false): Promise<Inspected> {
  // A plain request, which the structural stub type does not describe: the real stub takes it.
  const stub = within.get(within.idFromName(key)) as unknown as {
    fetch(url: string, init?: { method: string }): Promise<Response>;
  };
  const response = await stub.fetch(alarm ? "https://do/alarm" : "https://do/inspect", {
    method: alarm ? "POST" : "GET",
  });
  const { expired: _reported, ...held } = (await response.json()) as Inspected & { expired: unknown[] };
  return held;
}
/** Forwards to `namespace` and counts the requests that reach an object (`sent`: their operations). */
function countedIn(
  namespace: DurableObjectNamespaceLike,
): { namespace: DurableObjectNamespaceLike; fetches: () => number; sent: string[] } {
  const sent: string[] = [];
  return {
    namespace: {
      idFromName: (name) => namespace.idFromName(name),
      get(id) {
        const stub = namespace.get(id);
        return {
          fetch(url, init) {
            sent.push(new URL(url).pathname.slice(1));
            return stub.fetch(url, init);
          },
        };
      },
    },
    fetches: () => sent.length,
    sent,
  };
}
/** The names of the objects each case's stores sent an operation other than a read of keys. */
const written = new Map<string, string[]>();
/** Forwards to the shared namespace, noting in `written` the objects written to. */
async function recordedIn(ns: string): Promise<DurableObjectNamespaceLike> {
  const namespace = await sharedNamespace();
  const names = written.get(ns) ?? [];
  written.set(ns, names);
  return {
    idFromName: (name) => ({ name, id: namespace.idFromName(name) }),
    get(named) {
      const { name, id } = named as { name: string; id: unknown };
      const stub = namespace.get(id);
      return {
        fetch(url, init) {
          if (new URL(url).pathname !== "/keys") names.push(name);
          return stub.fetch(url, init);
        },
      };
    },
  };
}
/** Sends one operation to the object named `name`, as the store's earlier version did. */
async function send(name: string, operation: Record<string, unknown>): Promise<void> {
  const namespace = await sharedNamespace();
  const response = await namespace.get(namespace.idFromName(name)).fetch(`https://do/${operation.op}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...operation, now: Date.now() }),
  });
  assert.equal(response.status, 200);
  await response.json();
}
/** The storage keys in the index held by the object named `name`. */
async function indexIn(name: string): Promise<string[]> {
  const { index } = await inspectIn(await sharedNamespace(), name);
  return Object.keys(index).map((entry) => entry.slice("index:".length));
}
/**
 * The shared namespace, naming in `sent` the object each request goes to: a user's index (by
 * tag, or of the old layout) or a session's.
 */
async function naming(sent: string[]): Promise<DurableObjectNamespaceLike> {
  const namespace = await sharedNamespace();
  return {
    idFromName: (name) => ({ name, id: namespace.idFromName(name) }),
    get(named) {
      const { name, id } = named as { name: string; id: unknown };
      const stub = namespace.get(id);
      return {
        fetch(url, init) {
          sent.push(name.startsWith("users:") ? "index" : name.startsWith("user:") ? "old index" : "record");
          return stub.fetch(url, init);
        },
      };
    },
  };
}
// Before storeCases, whose close stops the Miniflare these use too.
lockUserCases("DurableObjectStore (Miniflare binding from Node)", {
  reportsCurrent: true,
  open: async (_ns, now) => new DurableObjectStore({ namespace: await naming([]), now }),
  counted: async (_ns, now) => {
    const sent: string[] = [];
    return { store: new DurableObjectStore({ namespace: await naming(sent), now }), sent };
  },
  raw: async (_ns, key) => (await inspectIn(await sharedNamespace(), key)).record ?? undefined,
  // A lock is { owner, until } in the session's object, beside its record.
  locks: {
    byClock: true,
    entry: async (_ns, key) => (await inspectIn(await sharedNamespace(), key)).lock ?? undefined,
  },
  // An entry per key in the object of the user's tag, written before the save is decided; the
  // record names its user, and a listing reads each record.
  users: {
    liveOnly: true,
    current: true,
    byClock: true,
    entryFirst: true,
    entries: async (_ns, user) =>
      Object.fromEntries((await indexIn(`users:${await tagOf(user)}`)).map((key) => [key, null])),
    note: async (_ns, key) => {
      const { record } = await inspectIn(await sharedNamespace(), key);
      const user = record === null ? undefined : JSON.parse(record).indexedUser;
      return user === undefined ? undefined : { user };
    },
    sends: { save: ["index", "record"], list: ["index", "old index", "record"], plain: ["record", "record"] },
  },
});
// Objects are named by storage key, which every case draws at random: no namespace is needed.
storeCases("DurableObjectStore (Miniflare binding from Node)", {
  reportsCurrent: true,
  expiredSave: true,
  tombstoneTouch: true,
  oneNamespace: true,
  // The application's clock an hour ahead of the objects', and 90 s behind: a record expired by
  // the objects' clock less than alarmDelay ago is still live for it, and its alarm keeps it.
  skews: [3_600_000, -90_000],
  open: async (ns, options) => new DurableObjectStore({ namespace: await recordedIn(ns), ...options }),
  close: () => shared?.mf.dispose(),
  raw: async (_ns, key) => {
    const { record } = await inspectIn(await sharedNamespace(), key);
    return record === null ? undefined : JSON.parse(record);
  },
  calls: {
    open: async () => {
      const { namespace, sent } = countedIn(await sharedNamespace());
      return { store: new DurableObjectStore({ namespace }), sent };
    },
    // Each in one request, a refusal reporting the record it lost to.
    expected: { create: ["save"], read: ["load"], update: ["save"] },
  },
  claims: { capabilities: { compareAndSet: true, ttl: true, locks: true, users: true }, lacks: ["count"] },
  badOptions: [
    ["no namespace", () => new DurableObjectStore({} as never)],
    ["a namespace without idFromName", () => new DurableObjectStore({ namespace: { get() {} } as never })],
  ],
  // 131,066 Latin-1 characters serialize to 131,072 bytes; any other character costs two bytes.
  size: {
    fits: [recordOfLength(131_066, "é"), recordOfLength(65_533, "✓")],
    over: [[record({ blob: "x".repeat(2_200_000) })], [recordOfLength(131_067, "é")], [
      recordOfLength(65_534, "✓"),
    ]],
  },
  unreachable: async () => {
    const gone = await startMiniflare();
    const store = new DurableObjectStore({ namespace: await nodeNamespace(gone, "SESSIONS_DO") });
    await gone.dispose();
    return { store, close: () => {}, raises: true };
  },
  locks: {
    owner: async (_ns, key) => (await inspectIn(await sharedNamespace(), key)).lock?.owner,
  },
  users: {
    liveOnly: true,
    byClock: true,
    // The old layout's object (`user:<id>`) is only read ("keys"), never written.
    rawKeys: (ns) => Promise.resolve(written.get(ns) ?? []),
    tagKeys: async (_ns, user) => await indexIn(`users:${await userTag(user)}`),
    // The key in the object named by the raw id, then the record, which remembers its user.
    oldLayout: {
      write: async (_ns, user, key, saved) => {
        await send(`user:${user}`, { op: "index", key, token: crypto.randomUUID() });
        await send(key, { op: "save", record: saved, expectedVersion: null, user });
      },
      entries: (_ns, user) => indexIn(`user:${user}`),
    },
  },
});

describe("DurableObjectStore", () => {
  let mf: Miniflare;
  let namespace: DurableObjectNamespaceLike;
  let noDelay: DurableObjectNamespaceLike;
  let store: DurableObjectStore;
  before(async () => {
    mf = await startMiniflare();
    namespace = await nodeNamespace(mf, "SESSIONS_DO");
    noDelay = await nodeNamespace(mf, "SESSIONS_DO_NO_DELAY");
    store = new DurableObjectStore({ namespace });
  });
  after(() => mf.dispose());

  /**
   * What the session's object holds in storage: its record text and its alarm. With `alarm`, the
   * object first runs its alarm handler, as the runtime would at the scheduled time.
   */
  const inspect = (key: string, { within = namespace, alarm = false } = {}) => inspectIn(within, key, alarm);

  /** What the object's `expired()` hook was given by its alarms so far. */
  async function reported(key: string, within: DurableObjectNamespaceLike): Promise<unknown[]> {
    const stub = within.get(within.idFromName(key)) as unknown as {
      fetch(url: string, init?: { method: string }): Promise<Response>;
    };
    const response = await stub.fetch("https://do/inspect", { method: "GET" });
    return ((await response.json()) as { expired: unknown[] }).expired;
  }

  const counted = () => countedIn(namespace);

  it("keeps each session in its own object, with an alarm a minute after expiresAt", async () => {
    assert.equal(DELAY, 60_000);
    const a = randomKey();
    const b = randomKey();
    const saved = record({ who: "a" });
    await store.save(a, saved, null);
    assert.deepEqual(JSON.parse((await inspect(a)).record!), saved);
    assert.equal((await inspect(a)).alarm, saved.expiresAt + DELAY);
    assert.deepEqual(await inspect(b), EMPTY);
  });

  it("touch moves the alarm; destroy leaves the object empty", async () => {
    const key = randomKey();
    const saved = record({});
    await store.save(key, saved, null);
    assert.equal(await store.touch(key, saved.expiresAt + 60_000, 1), true);
    assert.equal((await inspect(key)).alarm, saved.expiresAt + 60_000 + DELAY);
    assert.equal(JSON.parse((await inspect(key)).record!).version, 1);
    await store.destroy(key);
    assert.deepEqual(await inspect(key), EMPTY);
  });

  it("the alarm deletes an expired session that nobody reads again", async () => {
    const quick = new DurableObjectStore({ namespace: noDelay });
    const key = randomKey();
    // A second to live, so that it is still there when inspected even on a loaded machine.
    await quick.save(key, record({ a: 1 }, 1, 1_000), null);
    assert.notEqual((await inspect(key, { within: noDelay })).record, null);
    const deadline = Date.now() + 10_000;
    while ((await inspect(key, { within: noDelay })).record !== null) {
      assert.ok(Date.now() < deadline, "the alarm never removed the expired record");
      await sleep(100);
    }
    assert.equal((await inspect(key, { within: noDelay })).alarm, null);
  });

  it("the alarm reports a session it deleted as expired to expired(), with its user; not an ended one", async () => {
    const quick = new DurableObjectStore({ namespace: noDelay });
    const key = randomKey();
    // Two seconds to live: saved (and ended) well before they expire, even on a loaded machine.
    const saved = record({ user: "ada" }, 1, 2_000);
    assert.equal(await quick.save(key, saved, null, { user: "ada" }), true);
    const ended = randomKey();
    const live = record({ user: "bob" }, 1, 60_000);
    await quick.save(ended, live, null);
    const tombstone = { ...record({ [ENDED_KEY]: true }, 2, 2_000), createdAt: live.createdAt };
    assert.equal(await quick.save(ended, tombstone, live.version), true);
    await sleep(Math.max(saved.expiresAt, tombstone.expiresAt) - Date.now() + 100);
    await inspect(key, { within: noDelay, alarm: true });
    await inspect(ended, { within: noDelay, alarm: true });
    assert.deepEqual(await reported(key, noDelay), [
      { createdAt: saved.createdAt, expiresAt: saved.expiresAt, user: "ada" },
    ]);
    assert.deepEqual(await reported(ended, noDelay), [], "a lapsed tombstone is no expiry");
    assert.equal((await inspect(ended, { within: noDelay })).record, null);
  });

  it("the alarm re-checks the record as it stands, and keeps one expired less than alarmDelay ago", async () => {
    const key = randomKey();
    const saved = record({ a: 1 }, 1, 200);
    await store.save(key, saved, null);
    await sleep(300);
    // Expired by every clock here, but within the delay: an application clock up to a minute
    // behind the object's still counts it live, so the alarm only schedules itself again.
    assert.equal(await store.load(key), null);
    const kept = await inspect(key, { alarm: true });
    assert.deepEqual(JSON.parse(kept.record!), saved);
    assert.equal(kept.alarm, saved.expiresAt + DELAY);

    // With no delay, the same alarm deletes it; a record touched since is kept and rescheduled.
    const quick = new DurableObjectStore({ namespace: noDelay });
    // A second to live, so that the touch comes before the expiry even on a loaded machine.
    const brief = record({ a: 1 }, 1, 1_000);
    const gone = randomKey();
    await quick.save(gone, brief, null);
    const live = randomKey();
    await quick.save(live, brief, null);
    assert.equal(await quick.touch(live, Date.now() + 60_000, 1), true);
    await sleep(Math.max(0, brief.expiresAt - Date.now()) + 100);
    assert.deepEqual(await inspect(gone, { within: noDelay, alarm: true }), EMPTY);
    const touched = await inspect(live, { within: noDelay, alarm: true });
    assert.equal(JSON.parse(touched.record!).version, 1);
    assert.equal(touched.alarm, JSON.parse(touched.record!).expiresAt);
  });

  it("the object itself refuses a record over 128 KiB with 413, and keeps the old one", async () => {
    const key = randomKey();
    const kept = record({ small: true });
    await store.save(key, kept, null);
    const stub = namespace.get(namespace.idFromName(key));
    const response = await stub.fetch("https://do/save", {
      method: "POST",
      headers: {},
      body: JSON.stringify({ op: "save", record: recordOfLength(131_067, "x"), expectedVersion: 1 }),
    });
    assert.equal(response.status, 413);
    assert.match(((await response.json()) as { error: string }).error, /"131073" bytes serialized/);
    assert.deepEqual(JSON.parse((await inspect(key)).record!), kept);
  });

  it("the object refuses malformed operations with 400", async () => {
    const stub = namespace.get(namespace.idFromName(randomKey()));
    for (
      const body of [
        "not json",
        "{}",
        '{"op":"save","record":{"data":[]},"expectedVersion":null}',
        '{"op":"load","now":"soon"}',
        '{"op":"drop"}',
        '{"op":"lock","owner":"a","ttlMs":0}',
        '{"op":"unlock"}',
        '{"op":"index","key":1,"token":"t"}',
        '{"op":"unindex","entries":[{"key":"k"}]}',
        `{"op":"save","record":${JSON.stringify(record({}))},"expectedVersion":null,"user":5}`,
      ]
    ) {
      const response = await stub.fetch("https://do/x", { method: "POST", headers: {}, body });
      assert.equal(response.status, 400, body);
      assert.equal(typeof ((await response.json()) as { error: unknown }).error, "string");
    }
  });

  describe("locks", () => {
    it("sets the object's alarm for the first of its lock and its record to collect, and clears it with both", async () => {
      const key = randomKey();
      assert.equal(await store.lock(key, "a", 30_000), true);
      let seen = await inspect(key);
      assert.equal(seen.alarm, seen.lock!.until + DELAY);
      assert.equal(await store.save(key, record({ a: 1 }, 1, 600_000), null), true);
      seen = await inspect(key);
      assert.equal(seen.alarm, seen.lock!.until + DELAY, "the alarm is set for the first to collect");
      await store.destroy(key);
      await store.unlock(key, "a");
      assert.deepEqual(await inspect(key), EMPTY);
    });

    it("the alarm removes a lock left behind once it has lapsed, and keeps the record", async () => {
      const quick = new DurableObjectStore({ namespace: noDelay });
      const key = randomKey();
      await quick.save(key, record({ a: 1 }, 1, 600_000), null);
      assert.equal(await quick.lock(key, "crashed", 200), true);
      const before = await inspect(key, { within: noDelay });
      assert.equal(before.alarm, before.lock!.until);
      await sleep(300);
      const after = await inspect(key, { within: noDelay, alarm: true });
      assert.equal(after.lock, null);
      assert.deepEqual(JSON.parse(after.record!).data, { a: 1 });
      assert.equal(after.alarm, JSON.parse(after.record!).expiresAt);
    });
  });

  describe("sessions per user", () => {
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

    it("saves nothing when the user's object cannot be reached", async () => {
      const broken: DurableObjectNamespaceLike<string> = {
        idFromName: (name) => name,
        get: (name) =>
          name.startsWith("user") // a user's object, by tag or of the old layout
            ? { fetch: () => Promise.reject(new Error("Network connection lost")) }
            : namespace.get(namespace.idFromName(name)),
      };
      const partial = new DurableObjectStore({ namespace: broken as DurableObjectNamespaceLike });
      const key = randomKey();
      const error = await partial.save(key, record({ user: "ada" }), null, { user: "ada" }).then(
        () => null,
        (e: unknown) => e,
      );
      assert.ok(error instanceof StoreUnavailableError, `expected StoreUnavailableError, got ${error}`);
      assert.equal(await store.load(key), null);
      await assert.rejects(partial.keysOfUser("ada"), StoreUnavailableError);
    });

    it("counts the user's id in the 128 KiB limit, sending nothing", async () => {
      const { namespace: countedNamespace, fetches } = counted();
      const sized = new DurableObjectStore({ namespace: countedNamespace });
      const fits = recordOfLength(131_066, "é");
      await assert.rejects(sized.save(randomKey(), fits, null, { user: "ada" }), SessionTooLargeError);
      assert.equal(fetches(), 0);
    });
  });
});
