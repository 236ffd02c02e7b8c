// DurableObjectStore against a real Durable Object binding in Miniflare: first from Node through
// Miniflare's binding proxy, then running inside workerd itself, with the full store suite
// (compare-and-set and concurrency included). What is its own (the object and its alarm, the
// protocol, a user's index object) is in tests/stores/durable_object/, a file per program of
// src/stores/durable_object/.
import type { DurableObjectNamespace } from "@cloudflare/workers-types";
import { type DurableObjectNamespaceLike, DurableObjectStore } from "../../src/stores/durable_object.ts";
import { userTag } from "../../src/user_tag.ts";
import { storeCases } from "../conformance/store_cases.ts";
import { lockUserCases, tagOf } from "../conformance/lock_user_cases.ts";
import {
  miniflareSuites as suites,
  nodeNamespace,
  startMiniflare,
  workerdStore,
} from "../workers/miniflare.ts";
import { record, recordOfLength } from "./remote_cases.ts";
import { dispose, indexIn, inspect, naming, send } from "./durable_object/objects.ts";

// A real binding's type fits the structural interface.
const _fits: (binding: DurableObjectNamespace) => DurableObjectNamespaceLike = (binding) => binding;

suites(
  "DurableObjectStore (Miniflare binding from Node)",
  async (mf) => new DurableObjectStore({ namespace: await nodeNamespace(mf, "SESSIONS_DO") }),
  { reportsCurrent: true },
);
suites("DurableObjectStore (inside workerd)", (mf) => workerdStore(mf, "do"), { reportsCurrent: true });

/**
 * A store whose requests are named in `sent` by the object each goes to: a user's index (by tag,
 * or of the old layout) or a session's.
 */
async function counted(now?: () => number) {
  const sent: string[] = [];
  const kind = (name: string) =>
    name.startsWith("users:") ? "index" : name.startsWith("user:") ? "old index" : "record";
  const namespace = await naming((name) => sent.push(kind(name)));
  return { store: new DurableObjectStore({ namespace, now }), sent };
}
// Before storeCases, whose close stops the Miniflare these use too.
lockUserCases("DurableObjectStore (Miniflare binding from Node)", {
  reportsCurrent: true,
  open: async (_ns, now) => (await counted(now)).store,
  counted: (_ns, now) => counted(now),
  raw: async (_ns, key) => (await inspect(key)).record ?? undefined,
  // A lock is { owner, until } in the session's object, beside its record.
  locks: { byClock: true, entry: async (_ns, key) => (await inspect(key)).lock ?? undefined },
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
      const { record } = await inspect(key);
      const user = record === null ? undefined : JSON.parse(record).indexedUser;
      return user === undefined ? undefined : { user };
    },
    // A user's object, by tag or of the old layout, fails; sessions' objects do not.
    indexDown: async (_ns, now) =>
      new DurableObjectStore({ namespace: await naming(() => {}, (name) => name.startsWith("user")), now }),
    sends: { save: ["index", "record"], list: ["index", "old index", "record"], plain: ["record", "record"] },
  },
});

/** The names of the objects each case's stores sent an operation other than a read of keys. */
const written = new Map<string, string[]>();
/** `SESSIONS_DO`, noting in `written` the objects a store in `ns` writes to. */
function recorded(ns: string): Promise<DurableObjectNamespaceLike> {
  const names = written.get(ns) ?? [];
  written.set(ns, names);
  return naming((name, path) => path !== "/keys" && names.push(name));
}
// Objects are named by storage key, which every case draws at random: no namespace is needed.
storeCases("DurableObjectStore (Miniflare binding from Node)", {
  reportsCurrent: true,
  expiredSave: true,
  tombstoneTouch: true,
  oneNamespace: true,
  // The application's clock an hour ahead of the objects', and 90 s behind: a record expired by
  // the objects' clock less than alarmDelay ago is still live for it, and its alarm keeps it.
  skews: [3_600_000, -90_000],
  open: async (ns, options) => new DurableObjectStore({ namespace: await recorded(ns), ...options }),
  close: dispose,
  raw: async (_ns, key) => {
    const { record } = await inspect(key);
    return record === null ? undefined : JSON.parse(record);
  },
  calls: {
    open: async () => {
      const sent: string[] = [];
      const namespace = await naming((_name, path) => sent.push(path.slice(1)));
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
  // The user's id, which the record notes, counts too.
  size: {
    fits: [recordOfLength(131_066, "é"), recordOfLength(65_533, "✓")],
    over: [[record({ blob: "x".repeat(2_200_000) })], [recordOfLength(131_067, "é")], [
      recordOfLength(65_534, "✓"),
    ]],
    userCounts: true,
  },
  unreachable: async () => {
    const gone = await startMiniflare();
    const store = new DurableObjectStore({ namespace: await nodeNamespace(gone, "SESSIONS_DO") });
    await gone.dispose();
    return { store, close: () => {}, raises: true };
  },
  locks: { owner: async (_ns, key) => (await inspect(key)).lock?.owner },
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
