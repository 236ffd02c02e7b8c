// MemcachedStore against the real Memcached on loopback (started by .ci/run), through
// memcache-client.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { MemcacheClient } from "memcache-client";
import { type MemcacheClientLike, MemcachedStore } from "../../src/stores/memcached.ts";
import type { SaveResult, StoredSession } from "../../src/store.ts";
import { SessionDataError, SessionTooLargeError, StoreUnavailableError } from "../../src/errors.ts";
import { storeSuite } from "../conformance/store_suite.ts";
import { assertRoundTrips } from "../conformance/round_trips.ts";
import { sessionSuite } from "../conformance/session_suite.ts";
import { randomKey } from "../conformance/util.ts";

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

function record(data: Record<string, unknown>, version = 1, ttl = 60_000): StoredSession {
  const now = Date.now();
  return { data, version, createdAt: now, expiresAt: now + ttl };
}

function isConflict(result: SaveResult): result is { current: StoredSession | null } {
  return typeof result === "object" && result !== null;
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
let suiteConnection: Connection;
storeSuite("MemcachedStore over memcache-client", {
  open: () => {
    suiteConnection = open();
    return new MemcachedStore({ client: suiteConnection.client, prefix });
  },
  close: () => suiteConnection.close(),
});

let sessionConnection: Connection;
sessionSuite("MemcachedStore over memcache-client", {
  open: () => {
    sessionConnection = open();
    return new MemcachedStore({ client: sessionConnection.client, prefix: `${prefix}sessions:` });
  },
  close: () => sessionConnection.close(),
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

  it("stores the record as JSON under prefix + key, with a relative exptime from expiresAt", async () => {
    const key = randomKey();
    const saved = record({ user: "ada", n: [1, { x: null }] }, 1, 30_000);
    assert.equal(await store.save(key, saved, null), true);
    assert.deepEqual(JSON.parse((await rawGet(own + key))!), saved);
    const ttl = await rawTtl(own + key);
    assert.ok(ttl !== undefined && ttl >= 29 && ttl <= 31, `TTL ${ttl}`);
  });

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

  it("lets this process's clock alone decide expiry, whatever Memcached still holds", async () => {
    const key = randomKey();
    let now = Date.now();
    const clocked = new MemcachedStore({ client: connection.client, prefix: own, now: () => now });
    await clocked.save(key, { data: { a: 1 }, version: 1, createdAt: now, expiresAt: now + 60_000 }, null);
    now += 61_000;
    assert.equal(await clocked.load(key), null);
    assert.ok(await rawGet(own + key), "Memcached still holds the item");
    // Expired here means gone: an update is refused as for a missing record, a create wins.
    assert.deepEqual(await clocked.save(key, record({ a: 2 }, 2), 1), { current: null });
    const fresh = { data: { b: 1 }, version: 1, createdAt: now, expiresAt: now + 60_000 };
    assert.equal(await clocked.save(key, fresh, null), true);
    assert.deepEqual((await clocked.load(key))?.data, { b: 1 });
  });

  it("reports the record read by gets when it refuses on it", async () => {
    const key = randomKey();
    const first = record({ n: 1 });
    await store.save(key, first, null);
    const refused = await store.save(key, record({ n: 9 }), null);
    assert.ok(isConflict(refused));
    assert.deepEqual(refused.current, first);
    const second = { ...first, data: { n: 2 }, version: 2 };
    assert.equal(await store.save(key, second, 1), true);
    const stale = await store.save(key, record({ n: 9 }, 2), 1);
    assert.ok(isConflict(stale));
    assert.deepEqual(stale.current, second);
    await store.destroy(key);
    assert.deepEqual(await store.save(key, record({ n: 9 }, 3), 2), { current: null });
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

  it("touch rewrites only expiresAt and the exptime, and never overwrites a newer save", async () => {
    const key = randomKey();
    const saved = record({ keep: "ü ✓", list: [1, 2, 3] }, 1, 10_000);
    await store.save(key, saved, null);
    const later = saved.expiresAt + 600_000;
    await store.touch(key, later);
    assert.deepEqual(JSON.parse((await rawGet(own + key))!), { ...saved, expiresAt: later });
    const ttl = await rawTtl(own + key);
    assert.ok(ttl !== undefined && ttl > 600, `TTL ${ttl}`);

    const newer = { ...saved, data: { keep: "newer" }, version: 2 };
    const { client } = recording(connection.client, async (item) => {
      await rawSet(item, JSON.stringify(newer));
    });
    await new MemcachedStore({ client, prefix: own }).touch(key, later + 1_000);
    assert.deepEqual(JSON.parse((await rawGet(own + key))!), newer);

    await store.touch(key, Date.now() - 1);
    assert.equal(await rawGet(own + key), undefined);
  });

  it("an already expired save leaves nothing at the expected version and is done", async () => {
    const key = randomKey();
    await store.save(key, record({ a: 1 }), null);
    const expired = {
      data: { a: 2 },
      version: 2,
      createdAt: Date.now() - 10_000,
      expiresAt: Date.now() - 1,
    };
    assert.notEqual(await store.save(key, expired, 7), true);
    assert.ok(await store.load(key));
    assert.equal(await store.save(key, expired, 1), true);
    assert.equal(await rawGet(own + key), undefined);
    assert.equal(await store.save(key, expired, null), true);
    assert.equal(await rawGet(own + key), undefined);
  });

  it("refuses a record too large for one item before sending it, and fits one just below", async () => {
    const key = randomKey();
    const { client, sent } = recording(connection.client);
    const counted = new MemcachedStore({ client, prefix: own });
    await assert.rejects(
      counted.save(key, record({ big: "x".repeat(1024 * 1024) }), null),
      SessionTooLargeError,
    );
    // Three bytes a character in UTF-8: refused by its byte length, not its length in JavaScript.
    await assert.rejects(
      counted.save(key, record({ big: "€".repeat(400_000) }), null),
      SessionTooLargeError,
    );
    assert.deepEqual(sent, []);
    const near = record({ big: "x".repeat(1024 * 1024 - 1024) });
    assert.equal(await counted.save(key, near, null), true);
    assert.equal(((await counted.load(key))?.data.big as string).length, 1024 * 1024 - 1024);
    const small = new MemcachedStore({ client, prefix: own, maxItemSize: 4096 });
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

  it("throws SessionDataError, not an outage, for data JSON cannot hold, and writes nothing", async () => {
    const key = randomKey();
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    for (const data of [{ n: 10n }, cyclic]) {
      const error = await store.save(key, record(data), null).then(() => undefined, (e: unknown) => e);
      assert.ok(error instanceof SessionDataError, String(error));
      assert.ok(!(error instanceof StoreUnavailableError));
    }
    assert.equal(await rawGet(own + key), undefined);
  });

  it("keeps lone surrogates and line breaks exactly", async () => {
    const key = randomKey();
    const data = {
      lone: "a\ud800b\udc00",
      lines: "one\r\ntwo\nthree\r",
      nul: "x\u0000y",
      sep: "\u2028\u2029",
    };
    await store.save(key, record(data), null);
    assert.deepEqual((await store.load(key))?.data, data);
  });

  it("reads a corrupt value as missing, reports it, and never overwrites it on update", async () => {
    const notJson = randomKey();
    const wrongShape = randomKey();
    await rawSet(own + notJson, "{not json");
    await rawSet(own + wrongShape, JSON.stringify({ data: [], version: 0 }));
    assert.equal(await store.load(notJson), null);
    assert.equal(await store.load(wrongShape), null);
    assert.deepEqual(corrupt.map(([key]) => key), [notJson, wrongShape]);
    assert.ok(corrupt.every(([, error]) => error instanceof TypeError));
    assert.equal(await store.save(notJson, record({ a: 1 }, 2), 1), false);
    assert.equal(await store.save(notJson, record({ a: 1 }), null), false);
    assert.equal(await rawGet(own + notJson), "{not json");
  });

  it("keeps a lease in an item of its own, expiring by this process's clock, extended by its owner", async () => {
    const key = randomKey();
    let now = Date.now();
    const clocked = new MemcachedStore({ client: connection.client, prefix: own, now: () => now });
    assert.equal(await clocked.lock(key, "a", 60_000), true);
    assert.deepEqual(JSON.parse((await rawGet(`${own}${key}:lease`))!), {
      owner: "a",
      expiresAt: now + 60_000,
    });
    assert.equal(await rawGet(own + key), undefined, "no record was written");
    // Its owner takes it again: the lease is extended, not refused.
    assert.equal(await clocked.lock(key, "a", 120_000), true);
    assert.equal(JSON.parse((await rawGet(`${own}${key}:lease`))!).expiresAt, now + 120_000);
    assert.equal(await clocked.lock(key, "b", 60_000), false);
    // Expired by this process's clock, though Memcached still holds the item: free.
    now += 121_000;
    assert.ok(await rawGet(`${own}${key}:lease`));
    assert.equal(await clocked.lock(key, "b", 60_000), true);
    await clocked.unlock(key, "a"); // no longer its owner: nothing happens
    assert.equal(JSON.parse((await rawGet(`${own}${key}:lease`))!).owner, "b");
    await clocked.unlock(key, "b");
    assert.equal(await rawGet(`${own}${key}:lease`), undefined);
    await assert.rejects(clocked.lock(key, "c", 0), RangeError);
    await assert.rejects(clocked.lock(key, "c", Number.NaN), RangeError);
  });

  it("costs one get per request that reads, one add per new session, gets + cas per change", async () => {
    const { client, sent } = recording(connection.client);
    await assertRoundTrips(new MemcachedStore({ client, prefix: own }), sent, SECRET, {
      create: ["add"],
      read: ["get"],
      update: ["gets", "cas"],
    });
  });
});

describe("MemcachedStore construction", () => {
  let connection: Connection;
  before(() => {
    connection = open();
  });
  after(() => connection.close());

  it("refuses a client without get, gets, add, cas and delete", () => {
    assert.throws(() => new MemcachedStore({ client: {} as MemcacheClientLike }), TypeError);
    assert.throws(() => new MemcachedStore({ client: null as unknown as MemcacheClientLike }), TypeError);
    // A callback-style client (memcached's `del`) is not taken for this one.
    const callbacks = { get() {}, gets() {}, add() {}, cas() {}, del() {} };
    assert.throws(
      () => new MemcachedStore({ client: callbacks as unknown as MemcacheClientLike }),
      TypeError,
    );
  });

  it("refuses a prefix Memcached could not take as part of a key, and a tiny maxItemSize", () => {
    const { client } = connection;
    for (const prefix of ["has space:", "tab\t", "line\n", "del\u007f", "ü:", "x".repeat(202), 5]) {
      assert.throws(
        () => new MemcachedStore({ client, prefix: prefix as string }),
        TypeError,
        String(prefix),
      );
    }
    // 201 + 43 for the storage key + 6 for a lease's suffix: Memcached's 250 bytes.
    assert.ok(new MemcachedStore({ client, prefix: "x".repeat(201) }));
    assert.throws(() => new MemcachedStore({ client, maxItemSize: 100 }), RangeError);
    assert.throws(() => new MemcachedStore({ client, maxItemSize: 1.5e6 + 0.5 }), RangeError);
  });

  it("uses the websession: prefix by default and claims compare-and-set and native expiry", async () => {
    const store = new MemcachedStore({ client: connection.client });
    assert.deepEqual(store.capabilities, { compareAndSet: true, ttl: true, locks: true });
    assert.equal("count" in store, false);
    assert.equal("cleanup" in store, false);
    const key = randomKey();
    await store.save(key, record({ d: 1 }), null);
    try {
      assert.ok(await rawGet(`websession:${key}`));
    } finally {
      await store.destroy(key);
    }
  });
});
