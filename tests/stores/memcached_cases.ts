// MemcachedStore against the real Memcached on loopback (started by .ci/run), through
// memcache-client.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { MemcacheClient } from "memcache-client";
import {
  type MemcacheClientLike,
  MemcachedStore,
  type MemcachedStoreOptions,
} from "../../src/stores/memcached.ts";
import { SessionTooLargeError } from "../../src/errors.ts";
import { storeSuites } from "../conformance/store_cases.ts";
import { lockUserCases, tagOf } from "../conformance/lock_user_cases.ts";
import { randomKey } from "../conformance/util.ts";
import { Client } from "../conformance/client.ts";
import { getSession, withSession } from "../../src/with_session.ts";
import { userSessions } from "../../src/users/options.ts";
import { deadPort } from "../services.ts";
import { record } from "./remote_cases.ts";

const [HOST, PORT] = (process.env.MEMCACHED_SERVER ?? "127.0.0.1:11211").split(":") as [string, string];
const SERVER = `${HOST}:${PORT}`;
const RUN = crypto.randomUUID().slice(0, 8);
const SECRET = "round trip test secret, at least 32 characters";

/**
 * Sends raw text-protocol lines on a connection of its own, and resolves with everything the
 * server answered once the answer ends with `until` (a line such as `END` or `HD`).
 */
function raw(command: string): Promise<string> {
  const until =
    /(?:^|\r\n)(?:END|HD[^\r]*|EN|STORED|NOT_STORED|EXISTS|DELETED|NOT_FOUND|[A-Z_]*ERROR[^\r]*)\r\n$/;
  return new Promise<string>((resolve, reject) => {
    const socket = connect(Number(PORT), HOST);
    let answer = "";
    socket.setEncoding("utf8");
    socket.setTimeout(5_000, () => {
      socket.destroy();
      reject(new Error(`No complete answer to "${command.split("\r\n")[0]}": "${answer}"`));
    });
    socket.on("error", reject);
    socket.on("data", (chunk: string) => {
      answer += chunk;
      if (until.test(answer)) {
        socket.destroy();
        resolve(answer);
      }
    });
    socket.write(command);
  });
}

/** The raw value of an item, or `undefined` on a miss. */
async function rawGet(item: string): Promise<string | undefined> {
  const answer = await raw(`get ${item}\r\n`);
  const match = /^VALUE \S+ \d+ (\d+)\r\n/.exec(answer);
  if (!match) return undefined;
  const bytes = Buffer.from(answer, "utf8").subarray(match[0].length, match[0].length + Number(match[1]));
  return bytes.toString("utf8");
}

/** The record in an item, parsed, or `undefined` on a miss. */
async function rawRecord(item: string): Promise<Record<string, unknown> | undefined> {
  const text = await rawGet(item);
  return text === undefined ? undefined : JSON.parse(text);
}

/** The item's remaining time to live in seconds (`-1`: never expires), or `undefined` on a miss. */
async function rawTtl(item: string): Promise<number | undefined> {
  const answer = await raw(`mg ${item} t\r\n`);
  const match = /^HD t(-?\d+)/.exec(answer);
  return match ? Number(match[1]) : undefined;
}

async function rawSet(item: string, value: string, exptime = 60): Promise<void> {
  const answer = await raw(`set ${item} 0 ${exptime} ${Buffer.byteLength(value)}\r\n${value}\r\n`);
  assert.equal(answer, "STORED\r\n");
}

interface Connection {
  client: MemcacheClientLike;
  close(): void | Promise<void>;
}

function open(): Connection {
  const client = new MemcacheClient({ server: SERVER, cmdTimeout: 5_000 });
  return { client, close: () => client.shutdown() };
}

const COMMANDS = ["get", "gets", "add", "cas", "delete"];

/**
 * Wraps a client so that every command the store sends through it is recorded by name, and
 * `between(key)` runs after a `gets` has answered and before the store goes on.
 */
function recording(
  client: MemcacheClientLike,
  between?: (key: string) => Promise<void>,
): { client: MemcacheClientLike; sent: string[] } {
  const sent: string[] = [];
  const proxy = new Proxy(client as object, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      const name = typeof property === "string" && COMMANDS.includes(property) ? property : undefined;
      if (name === undefined || typeof value !== "function") return value;
      return (...args: unknown[]) => {
        sent.push(name);
        if (name !== "gets" || between === undefined) return Reflect.apply(value, target, args);
        return (Reflect.apply(value, target, args) as Promise<unknown>).then(async (result) => {
          await between(args[0] as string);
          return result;
        });
      };
    },
  });
  return { client: proxy as MemcacheClientLike, sent };
}

const prefix = `websession-test:${RUN}:`;
const prefixOf = (ns: string) => `${prefix}cases:${ns}:`;
let casesConnection: Connection | undefined;
const casesClient = () => (casesConnection ??= open()).client;
/** Constructs a store on the cases' client with `options`. */
const memcached = (options: Partial<MemcachedStoreOptions>) => () =>
  new MemcachedStore({ client: casesClient(), ...options });
/** Records each command the store sends with the kind of item it is for: a record, an index, a lock. */
function named(client: MemcacheClientLike): { client: MemcacheClientLike; sent: string[] } {
  const sent: string[] = [];
  const kind = (item: string) =>
    /:user:[\w-]{43}$/.test(item) ? "index" : item.endsWith(":lease") ? "lock" : "record";
  const proxy = new Proxy(client as object, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (!COMMANDS.includes(String(property)) || typeof value !== "function") return value;
      return (...args: unknown[]) => {
        sent.push(`${String(property)} ${kind(String(args[0]))}`);
        return Reflect.apply(value, target, args);
      };
    },
  });
  return { client: proxy as MemcacheClientLike, sent };
}
const indexItem = async (ns: string, user: string) => `${prefixOf(ns)}user:${await tagOf(user)}`;
// Before storeSuites, whose close frees the connection these use too.
lockUserCases("MemcachedStore over memcache-client", {
  reportsCurrent: true,
  open: (ns, now) =>
    new MemcachedStore({ client: (casesConnection ??= open()).client, prefix: prefixOf(ns), now }),
  counted: (ns, now) => {
    const { client, sent } = named((casesConnection ??= open()).client);
    return Promise.resolve({ store: new MemcachedStore({ client, prefix: prefixOf(ns), now }), sent });
  },
  raw: (ns, key) => rawGet(prefixOf(ns) + key),
  // A lock is an item of its own, prefix + key + ":lease", holding { owner, expiresAt }.
  locks: {
    byClock: true,
    entry: async (ns, key) => {
      const text = await rawGet(`${prefixOf(ns)}${key}:lease`);
      if (text === undefined) return undefined;
      const { owner, expiresAt } = JSON.parse(text);
      return { owner, until: expiresAt };
    },
  },
  // An item per user, named by its tag, of storage keys and until when each entry lasts: half the
  // record's remaining life past its expiry. It is written before the record, which notes it.
  users: {
    byClock: true,
    prunes: true,
    badIds: [""],
    until: (expiresAt, now) => expiresAt + Math.ceil((expiresAt - now) / 2),
    entries: async (ns, user) => JSON.parse((await rawGet(await indexItem(ns, user))) ?? "{}"),
    note: async (ns, key) => {
      const index = JSON.parse((await rawGet(prefixOf(ns) + key)) ?? "{}").index;
      return index && { tag: index.user, until: index.until };
    },
    expiry: {
      left: async (ns, user) => 1000 * ((await rawTtl(await indexItem(ns, user))) ?? NaN),
      slack: 2_000, // whole seconds, rounded up
    },
    sends: {
      save: ["gets index", "add index", "add record"],
      update: ["gets record", "cas record"],
      reindex: ["gets record", "gets index", "cas index", "cas record"],
      plain: ["add record", "gets record", "cas record"],
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
    const client = new MemcacheClient({ server: `127.0.0.1:${await deadPort()}`, cmdTimeout: 1_000 });
    return { store: new MemcachedStore({ client }), close: () => client.shutdown() };
  },
  locks: {
    owner: async (ns, key) => {
      const text = await rawGet(`${prefixOf(ns)}${key}:lease`);
      return text === undefined ? undefined : JSON.parse(text).owner;
    },
  },
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

describe("MemcachedStore over memcache-client: Memcached specifics", () => {
  const own = `${prefix}own:`;
  let connection: Connection;
  let store: MemcachedStore;
  let corrupt: [string, Error][];
  before(() => {
    connection = open();
    corrupt = [];
    store = new MemcachedStore({
      client: connection.client,
      prefix: own,
      onCorrupt: (key, error) => corrupt.push([key, error]),
    });
  });
  after(() => connection.close());

  it("sends an absolute exptime past 30 days, with slack, and still expires by expiresAt", async () => {
    const key = randomKey();
    const days = 40;
    const saved = record({ long: true }, 1, days * 86_400_000);
    assert.equal(await store.save(key, saved, null), true);
    const ttl = await rawTtl(own + key);
    // An absolute time on the server's clock, an hour past expiresAt.
    const expected = days * 86_400 + 3_600;
    assert.ok(ttl !== undefined && Math.abs(ttl - expected) <= 5, `TTL ${ttl}, expected about ${expected}`);
    assert.deepEqual((await store.load(key))?.data, { long: true });
  });

  it("answers false, writing nothing, when the item changes between gets and cas", async () => {
    const key = randomKey();
    await store.save(key, record({ n: 1 }), null);
    const intruder = { ...record({ n: "intruder" }), version: 2 };
    const { client, sent } = recording(connection.client, async (item) => {
      await rawSet(item, JSON.stringify(intruder));
    });
    const racing = new MemcachedStore({ client, prefix: own });
    assert.equal(await racing.save(key, record({ n: 2 }, 2), 1), false);
    assert.deepEqual(sent, ["gets", "cas"]);
    assert.deepEqual((await store.load(key))?.data, { n: "intruder" });
  });

  it("answers false and never recreates the item when it vanishes between gets and cas", async () => {
    const key = randomKey();
    await store.save(key, record({ n: 1 }), null);
    const { client, sent } = recording(connection.client, async (item) => {
      assert.equal(await raw(`delete ${item}\r\n`), "DELETED\r\n");
    });
    const racing = new MemcachedStore({ client, prefix: own });
    assert.equal(await racing.save(key, record({ n: 2 }, 2), 1), false);
    assert.deepEqual(sent, ["gets", "cas"]);
    assert.equal(await rawGet(own + key), undefined);
  });

  it("touch never overwrites a save made between its gets and cas", async () => {
    const key = randomKey();
    const saved = record({ keep: "ü ✓", list: [1, 2, 3] }, 1, 10_000);
    await store.save(key, saved, null);
    const newer = { ...saved, data: { keep: "newer" }, version: 2 };
    const { client } = recording(connection.client, async (item) => {
      await rawSet(item, JSON.stringify(newer));
    });
    assert.equal(
      await new MemcachedStore({ client, prefix: own }).touch(key, saved.expiresAt + 1_000, 1),
      false,
    );
    assert.deepEqual(JSON.parse((await rawGet(own + key))!), newer);
  });

  it("refuses a record too large for the maxItemSize it is told", async () => {
    const small = new MemcachedStore({ client: connection.client, prefix: own, maxItemSize: 4096 });
    await assert.rejects(
      small.save(randomKey(), record({ big: "x".repeat(4000) }), null),
      SessionTooLargeError,
    );
  });

  it("turns the server's own too-large refusal into SessionTooLargeError", async () => {
    // A store told the server takes 2 MiB items, in front of one that takes 1 MiB.
    const key = randomKey();
    const generous = new MemcachedStore({
      client: connection.client,
      prefix: own,
      maxItemSize: 2 * 1024 * 1024,
    });
    const error = await generous.save(key, record({ big: "x".repeat(1_048_400) }), null).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(error instanceof SessionTooLargeError, String(error));
    assert.equal(await store.load(key), null);
    // The connection is still good.
    assert.equal(await store.save(key, record({ ok: 1 }), null), true);
  });

  it("names a user's index item by the hash of the id: a 201-byte prefix and a long id still make a key", async () => {
    const user = `ada ${RUN} with spaces, ünïcode and more: ${"x".repeat(400)}`;
    const longest = new MemcachedStore({ client: connection.client, prefix: "p".repeat(201) });
    const key = randomKey();
    assert.equal(await longest.save(key, record({ user }), null, { user }), true);
    assert.deepEqual(await longest.keysOfUser(user), [key]);
    await longest.destroy(key);
  });

  it("refuses, writing nothing of the record, a session whose user's index would not fit one item", async () => {
    const user = `many-${randomKey()}`;
    const small = new MemcachedStore({ client: connection.client, prefix: own, maxItemSize: 1024 });
    const saved: string[] = [];
    let refusal: unknown;
    for (let i = 0; i < 30 && refusal === undefined; i++) {
      const key = randomKey();
      try {
        await small.save(key, record({ user }), null, { user });
        saved.push(key);
      } catch (error) {
        refusal = error;
        assert.equal(await rawGet(own + key), undefined, "the record was not written");
      }
    }
    assert.ok(refusal instanceof SessionTooLargeError, String(refusal));
    assert.match(refusal.message, /^Too many sessions for one user: /);
    assert.ok(saved.length >= 5, `${saved.length} sessions fit`);
    assert.deepEqual((await small.keysOfUser(user)).sort(), saved.sort());
  });

  it("reads a corrupt index as empty and reports it; the next save starts it afresh", async () => {
    const user = `corrupt-${randomKey()}`;
    const name = `user:${await tagOf(user)}`;
    await rawSet(own + name, JSON.stringify({ "not a key": 1 }));
    const reported = corrupt.length;
    assert.deepEqual(await store.keysOfUser(user), []);
    assert.deepEqual(corrupt.slice(reported).map(([key]) => key), [name]);
    const key = randomKey();
    assert.equal(await store.save(key, record({ user }), null, { user }), true);
    assert.deepEqual(await store.keysOfUser(user), [key]);
  });

  it("costs gets and add of the index and add of the record at login; then one get per read, gets + cas per change", async () => {
    const { client, sent } = recording(connection.client);
    const counted = new MemcachedStore({ client, prefix: own });
    const handler = withSession(async (req: Request) => {
      const session = await getSession<{ user?: string; n?: number }>(req);
      const path = new URL(req.url).pathname;
      if (path === "/login") session.set("user", `turing-${RUN}`);
      if (path === "/inc") session.update("n", (n = 0) => n + 1);
      return new Response(String(session.get("n") ?? 0));
    }, { store: counted, secrets: SECRET, users: userSessions({ userKey: "user" }) });
    const browser = new Client(handler);
    const expect = async (path: string, calls: string[]) => {
      sent.length = 0;
      await browser.text(path);
      assert.deepEqual(sent, calls, path);
    };
    await expect("/login", ["gets", "add", "add"]);
    await expect("/read", ["get"]);
    await expect("/inc", ["get", "gets", "cas"]);
    await expect("/inc", ["get", "gets", "cas"]);
  });
});
