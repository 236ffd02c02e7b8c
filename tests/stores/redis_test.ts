// RedisStore against the real Redis on loopback, through every client it accepts: ioredis,
// node-redis, and @upstash/redis over HTTP through a bridge that forwards to the same Redis.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { Redis as IoRedis } from "ioredis";
import { createClient } from "redis";
import { Redis as UpstashRedis } from "@upstash/redis";
import { type RedisLike, RedisStore } from "../../src/stores/redis.ts";
import { SessionDataError, StoreUnavailableError } from "../../src/errors.ts";
import { ENDED_AT_KEY, ENDED_KEY, type SaveConflict } from "../../src/store.ts";
import { storeSuite } from "../conformance/store_suite.ts";
import { assertRoundTrips } from "../conformance/round_trips.ts";
import { sessionSuite } from "../conformance/session_suite.ts";
import { randomKey, sleep } from "../conformance/util.ts";
import { startUpstashBridge, type UpstashBridge } from "../bridges/upstash.ts";
import {
  NUMBERS,
  raceOfCreates,
  raceOfReportedConflicts,
  record,
  STORABLE,
  storeThroughSession,
  UNSTORABLE,
} from "./remote_cases.ts";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const RUN = crypto.randomUUID().slice(0, 8);

// Raw access to the same Redis, to look behind the store and to clean up.
const admin = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
after(() => admin.disconnect());

async function dropPrefix(prefix: string): Promise<void> {
  const pattern = prefix.replace(/[*?[\]\\]/g, "\\$&") + "*";
  let cursor = "0";
  do {
    const [next, keys] = await admin.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    if (keys.length > 0) await admin.del(...keys);
    cursor = next;
  } while (cursor !== "0");
}

interface Connection {
  client: RedisLike;
  close(): void | Promise<void>;
}

let bridge: UpstashBridge | undefined;
async function upstash(options: { automaticDeserialization: boolean; enableAutoPipelining: boolean }) {
  bridge ??= await startUpstashBridge({ redisUrl: REDIS_URL });
  return new UpstashRedis({ url: bridge.url, token: bridge.token, enableTelemetry: false, ...options });
}
after(async () => {
  await bridge?.close();
});

const clients: [string, () => Connection | Promise<Connection>][] = [
  ["ioredis", () => {
    const client = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
    return { client, close: () => client.disconnect() };
  }],
  ["node-redis", async () => {
    const client = await createClient({ url: REDIS_URL }).connect();
    return { client, close: async () => void (await client.quit()) };
  }],
  ["@upstash/redis, deserialization on, auto-pipelining on", async () => ({
    client: await upstash({ automaticDeserialization: true, enableAutoPipelining: true }),
    close: async () => {},
  })],
  ["@upstash/redis, deserialization off, auto-pipelining on", async () => ({
    client: await upstash({ automaticDeserialization: false, enableAutoPipelining: true }),
    close: async () => {},
  })],
  ["@upstash/redis, deserialization off, auto-pipelining off", async () => ({
    client: await upstash({ automaticDeserialization: false, enableAutoPipelining: false }),
    close: async () => {},
  })],
];

// Wraps a client so that every command the store sends through it is recorded by name.
const SENDS: Record<string, (args: unknown[]) => string> = {
  call: (args) => String(args[0]),
  sendCommand: (args) => String((args[0] as string[])[0]),
  evalSha: () => "EVALSHA",
  evalsha: () => "EVALSHA",
  eval: () => "EVAL",
  get: () => "GET",
  del: () => "DEL",
  scan: () => "SCAN",
};
function recording(client: RedisLike): { client: RedisLike; sent: string[] } {
  const sent: string[] = [];
  const proxy = new Proxy(client as object, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      const name = typeof property === "string" && Object.hasOwn(SENDS, property)
        ? SENDS[property]
        : undefined;
      if (name === undefined || typeof value !== "function") return value;
      return (...args: unknown[]) => {
        sent.push(name(args).toUpperCase());
        return Reflect.apply(value, target, args);
      };
    },
  });
  return { client: proxy as RedisLike, sent };
}

const SECRET = "round trip test secret, at least 32 characters";

/** Where a store keeps `user`'s index: `prefix user:{base64url SHA-256 of the user id}`. */
async function indexKeyOf(prefix: string, user: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(user)));
  const tag = btoa(String.fromCharCode(...digest)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return `${prefix}user:{${tag}}`;
}

for (const [label, connect] of clients) {
  const prefix = `websession-test:${RUN}:${label.replace(/[^a-z]+/g, "-")}:`;
  let suiteConnection: Connection;
  storeSuite(`RedisStore over ${label}`, {
    reportsCurrent: true,
    open: async () => {
      suiteConnection = await connect();
      return new RedisStore({ client: suiteConnection.client, prefix });
    },
    close: async () => {
      await dropPrefix(prefix);
      await suiteConnection.close();
    },
  });

  let sessionConnection: Connection;
  sessionSuite(`RedisStore over ${label}`, {
    open: async () => {
      sessionConnection = await connect();
      return new RedisStore({ client: sessionConnection.client, prefix: `${prefix}sessions:` });
    },
    close: async () => {
      await dropPrefix(`${prefix}sessions:`);
      await sessionConnection.close();
    },
  });

  describe(`RedisStore over ${label}: Redis specifics`, () => {
    const own = `${prefix}own:`;
    let connection: Connection;
    let store: RedisStore;
    let corrupt: [string, Error][];
    before(async () => {
      connection = await connect();
      corrupt = [];
      store = new RedisStore({
        client: connection.client,
        prefix: own,
        onCorrupt: (key, error) => corrupt.push([key, error]),
      });
    });
    after(async () => {
      await dropPrefix(own);
      await connection.close();
    });

    it("stores the record as JSON under prefix + key, with a native TTL from expiresAt", async () => {
      const key = randomKey();
      const saved = record({ user: "ada", n: [1, { x: null }] }, 1, 30_000);
      assert.equal(await store.save(key, saved, null), true);
      const raw = await admin.get(own + key);
      assert.ok(raw);
      assert.deepEqual(JSON.parse(raw), saved);
      const ttl = await admin.pttl(own + key);
      assert.ok(ttl > 25_000 && ttl <= 30_000, `PTTL ${ttl}`);
    });

    it("touch rewrites only expiresAt and the TTL", async () => {
      const key = randomKey();
      const saved = record({ keep: "ü ✓", list: [1, 2, 3], "a,b": "c,d" }, 1, 10_000);
      await store.save(key, saved, null);
      const later = saved.expiresAt + 600_000;
      assert.equal(await store.touch(key, later, 1), true);
      const raw = await admin.get(own + key);
      assert.deepEqual(JSON.parse(raw!), { ...saved, expiresAt: later });
      const ttl = await admin.pttl(own + key);
      assert.ok(ttl > 550_000, `PTTL ${ttl}`);
      // An expiry already past never deletes the record (a touch never shortens one).
      assert.equal(await store.touch(key, Date.now() - 1, 1), false);
      assert.deepEqual(JSON.parse((await admin.get(own + key))!), { ...saved, expiresAt: later });
      assert.ok(await admin.pttl(own + key) > 550_000);
    });

    it("touch tells a tombstone by its top-level data key, whatever the order of the data's keys", async () => {
      const key = randomKey();
      const live = record({ note: { [ENDED_KEY]: true }, text: `"${ENDED_KEY}":true` }, 1, 60_000);
      await store.save(key, live, null);
      // A nested or quoted "__ended" is data like any other: the session is live.
      assert.equal(await store.touch(key, live.expiresAt + 60_000, 1), true);
      const ended = { ...live, data: { [ENDED_AT_KEY]: Date.now(), [ENDED_KEY]: true }, version: 2 };
      assert.equal(await store.save(key, ended, 1), true);
      assert.equal(await store.touch(key, ended.expiresAt + 600_000, 2), false);
      assert.deepEqual(JSON.parse((await admin.get(own + key))!), ended);
    });

    it("an already expired save deletes the record at the expected version and is done", async () => {
      const key = randomKey();
      const live = record({ a: 1 });
      await store.save(key, live, null);
      const expired = {
        data: { a: 2 },
        version: 2,
        createdAt: Date.now() - 10_000,
        expiresAt: Date.now() - 1,
      };
      assert.deepEqual(await store.save(key, expired, 7), { current: live });
      assert.deepEqual(await store.save(key, expired, null), { current: live });
      assert.ok(await store.load(key));
      assert.equal(await store.save(key, expired, 1), true);
      assert.equal(await admin.exists(own + key), 0);
      assert.equal(await store.save(key, expired, null), true);
      assert.equal(await admin.exists(own + key), 0);
    });

    it("reports the record a refused save found, in the same script, and null for one its clock says expired", async () => {
      const key = randomKey();
      const first = record({ list: [1, { b: "ü" }] });
      assert.equal(await store.save(key, first, null), true);
      assert.deepEqual(await store.save(key, record({ n: 2 }), null), { current: first });
      assert.deepEqual(await store.save(key, record({ n: 2 }, 3), 2), { current: first });
      // Redis still holds the key, but by the store's clock the record has expired.
      let now = Date.now();
      const clocked = new RedisStore({ client: connection.client, prefix: own, now: () => now });
      now = first.expiresAt;
      assert.equal(await admin.exists(own + key), 1);
      assert.deepEqual(await clocked.save(key, record({ n: 2 }, 2, 60_000, now), 1), { current: null });
      // A create takes its place, as if it were absent.
      const fresh = record({ fresh: true }, 1, 60_000, now);
      assert.equal(await clocked.save(key, fresh, null), true);
      assert.deepEqual(await clocked.load(key), fresh);
    });

    it("lets one clock decide expiry: the store's, 10 minutes ahead of or behind Redis'", async () => {
      for (const skew of [10 * 60_000, -10 * 60_000]) {
        const prefix = `${own}clock${skew}:`;
        let now = Date.now() + skew;
        const clocked = new RedisStore({ client: connection.client, prefix, now: () => now });
        const key = randomKey();
        const first = record({ a: 1 }, 1, 60_000, now);
        assert.equal(await clocked.save(key, first, null), true);
        // The time to live is counted on the store's clock, whatever Redis' says.
        const ttl = await admin.pttl(prefix + key);
        assert.ok(ttl > 0 && ttl <= 60_000, `PTTL ${ttl} with a skew of ${skew} ms`);

        now = first.expiresAt - 1; // its last live millisecond
        assert.deepEqual(await clocked.load(key), first);
        const second = record({ a: 2 }, 2, 60_000, now);
        assert.equal(await clocked.save(key, second, 1), true);

        now = second.expiresAt; // expired by the store's clock; Redis still holds the key
        assert.equal(await admin.exists(prefix + key), 1);
        assert.equal(await clocked.load(key), null);
        assert.deepEqual(await clocked.save(key, record({ a: 3 }, 3, 60_000, now), 2), { current: null });
        assert.equal(await clocked.touch(key, now + 60_000, 2), false); // never revives it
        assert.equal(JSON.parse((await admin.get(prefix + key))!).expiresAt, second.expiresAt);
        now = second.expiresAt - 1;
        assert.deepEqual(await clocked.load(key), second);

        // Keys vanish when the store's clock says so: count agrees with load under the skew.
        const counting = new RedisStore({
          client: connection.client,
          prefix: `${prefix}count:`,
          now: () => Date.now() + skew,
        });
        const long = randomKey();
        const short = randomKey();
        await counting.save(long, record({}, 1, 60_000, Date.now() + skew), null);
        await counting.save(short, record({}, 1, 300, Date.now() + skew), null);
        await sleep(400);
        assert.equal(await counting.load(short), null);
        assert.ok(await counting.load(long));
        assert.equal(await counting.count(), 1);
      }
    });

    it("keeps lone surrogates, NUL and their neighbours exactly, in keys and values, in key order", async () => {
      const cases: [string, Record<string, unknown>][] = [
        ...UNSTORABLE.map(([label, data]): [string, Record<string, unknown>] => [label, data]),
        ["valid pairs and neighbours", STORABLE],
        ["numbers at the edges of a double", NUMBERS],
      ];
      for (const [label, data] of cases) {
        const key = randomKey();
        const saved = record(data);
        assert.equal(await store.save(key, saved, null), true, label);
        const loaded = await store.load(key);
        assert.deepEqual(loaded, saved, label);
        assert.deepEqual(Object.keys(loaded!.data), Object.keys(data), label);
        // The same through a refused save's report, and after a touch.
        const refused = await store.save(key, record({}, 6), 5) as SaveConflict;
        assert.deepEqual(refused.current, saved, label);
        assert.equal(await store.touch(key, saved.expiresAt + 1_000, 1), true, label);
        assert.deepEqual((await store.load(key))?.data, data, label);
      }
    });

    it("refuses data JSON cannot write with SessionDataError, sending nothing", async () => {
      const { client, sent } = recording(connection.client);
      const counted = new RedisStore({ client, prefix: own });
      const cycle: Record<string, unknown> = {};
      cycle.self = cycle;
      const key = randomKey();
      for (const data of [{ big: 1n }, cycle, [] as unknown as Record<string, unknown>]) {
        await assert.rejects(counted.save(key, record(data), null), SessionDataError);
      }
      assert.deepEqual(sent, []);
      assert.equal(await admin.exists(own + key), 0);
    });

    it("reports, to each of 20 racing writers, a record newer than the one it expected", async () => {
      const refusals = await raceOfReportedConflicts(store, randomKey());
      assert.ok(refusals > 0, "no writer was refused");
      assert.equal(await raceOfCreates(store, randomKey(), false), 19);
    });

    it("keeps a lone surrogate and NUL that a handler stores through withSession", async () => {
      const value = { lone: "\ud800", reversed: "\udc00\ud800", nul: "a\u0000b", ["k\udfff"]: "🎉" };
      const { status, errors, readBack } = await storeThroughSession(store, value);
      assert.deepEqual(errors, []);
      assert.equal(status, 200);
      assert.deepEqual(JSON.parse(readBack!), value);
    });

    it("reads a corrupt value as missing and reports it", async () => {
      const notJson = randomKey();
      const wrongShape = randomKey();
      await admin.set(own + notJson, "{not json", "PX", 60_000);
      await admin.set(own + wrongShape, JSON.stringify({ data: [], version: 0 }), "PX", 60_000);
      assert.equal(await store.load(notJson), null);
      assert.equal(await store.load(wrongShape), null);
      assert.deepEqual(corrupt.map(([key]) => key), [notJson, wrongShape]);
      assert.ok(corrupt.every(([, error]) => error instanceof TypeError));
      // A corrupt value is never overwritten by an update.
      assert.equal(await store.save(notJson, record({ a: 1 }, 2), 1), false);
      assert.equal(await admin.get(own + notJson), "{not json");
    });

    it("lets a real Redis error through instead of falling back or hiding it", async () => {
      const key = randomKey();
      await admin.lpush(own + key, "not a string");
      await assert.rejects(store.load(key), /WRONGTYPE/);
      await assert.rejects(store.save(key, record({ a: 1 }), null), /WRONGTYPE/);
      await assert.rejects(store.touch(key, Date.now() + 60_000, 1), /WRONGTYPE/);
      assert.equal(await admin.type(own + key), "list");
    });

    it("costs one GET per request that reads a valid session, one script per changed request, nothing else", async () => {
      const { client, sent } = recording(connection.client);
      const counted = new RedisStore({ client, prefix: own });
      // Warm the script cache so that every save below is a single EVALSHA.
      const warm = randomKey();
      await counted.save(warm, record({}), null);
      assert.equal(await counted.touch(warm, Date.now() + 3_600_000, 1), true);
      await counted.destroy(warm);
      await assertRoundTrips(
        counted,
        sent,
        SECRET,
        {
          create: ["EVALSHA"],
          read: ["GET"],
          update: ["EVALSHA"],
        },
        label.startsWith("@upstash") ? () => bridge!.requests : undefined,
      );
    });

    it("counts by SCAN over its own prefix only, even one with glob characters", async () => {
      const glob = new RedisStore({ client: connection.client, prefix: `${own}g*[?]\\:` });
      const sibling = new RedisStore({ client: connection.client, prefix: `${own}gx[?]\\:` });
      const keys = [randomKey(), randomKey(), randomKey()];
      for (const [i, key] of keys.entries()) await glob.save(key, record({ i }), null);
      await sibling.save(randomKey(), record({}), null);
      // Leases and users' indexes under the prefix are not sessions.
      assert.equal(await glob.lock(keys[0]!, "owner", 60_000), true);
      assert.equal(await glob.save(keys[1]!, record({ user: "ada" }, 2), 1, { user: "ada" }), true);
      assert.equal(await glob.count(), 3);
      assert.equal(await sibling.count(), 1);
    });

    it("keeps a lease under prefix lock:key with a time to live, extended only by its owner", async () => {
      const { client, sent } = recording(connection.client);
      const counted = new RedisStore({ client, prefix: own });
      const key = randomKey();
      await counted.lock(randomKey(), "warm", 1_000); // the scripts are known from here on
      await counted.unlock(randomKey(), "warm");
      sent.length = 0;
      assert.equal(await counted.lock(key, "first", 30_000), true);
      assert.equal(await admin.get(`${own}lock:${key}`), "first");
      const ttl = await admin.pttl(`${own}lock:${key}`);
      assert.ok(ttl > 25_000 && ttl <= 30_000, `PTTL ${ttl}`);
      assert.equal(await counted.lock(key, "second", 30_000), false);
      assert.equal(await counted.lock(key, "first", 90_000), true, "the owner extends it");
      assert.ok((await admin.pttl(`${own}lock:${key}`)) > 60_000);
      await counted.unlock(key, "second");
      assert.equal(await admin.get(`${own}lock:${key}`), "first", "only its owner releases it");
      await counted.unlock(key, "first");
      assert.equal(await admin.exists(`${own}lock:${key}`), 0);
      assert.deepEqual(sent, ["EVALSHA", "EVALSHA", "EVALSHA", "EVALSHA", "EVALSHA"], "one script each");
      // The record under the same key is a different Redis key.
      assert.equal(await admin.exists(own + key), 0);
      await assert.rejects(counted.lock(key, "", 1_000), TypeError);
      await assert.rejects(counted.lock(key, "x", 0), TypeError);
      await assert.rejects(counted.lock("../x", "x", 1_000), TypeError);
    });

    it("indexes a user's session in the save script itself, in a sorted set named by a hash of the user", async () => {
      const { client, sent } = recording(connection.client);
      const counted = new RedisStore({ client, prefix: own });
      const user = `ada-${randomKey().slice(0, 8)}@example.com`;
      const index = await indexKeyOf(own, user);
      await counted.save(randomKey(), record({}), null, { user: "warm" });
      await counted.keysOfUser("warm");
      const key = randomKey();
      const now = Date.now();
      sent.length = 0;
      assert.equal(await counted.save(key, record({ user }, 1, 60_000, now), null, { user }), true);
      const saved = Date.now();
      assert.deepEqual(sent, ["EVALSHA"], "one round trip");
      // The entry lasts as long again as the record has left, and the set as long as its entry.
      const score = Number(await admin.zscore(index, key));
      assert.ok(score >= 2 * (now + 60_000) - saved && score <= now + 120_000, `score ${score}`);
      assert.ok((await admin.pttl(index)) > 110_000);
      assert.ok(JSON.parse((await admin.get(own + key))!).userUntil >= score - 1);
      sent.length = 0;
      assert.deepEqual(await counted.keysOfUser(user), [key]);
      assert.deepEqual(sent, ["EVALSHA"], "one round trip");
      // A refused save writes no entry.
      const other = randomKey();
      await counted.save(other, record({}), null);
      assert.notEqual(await counted.save(other, record({ user }, 2), 7, { user }), true);
      assert.equal(await admin.zscore(index, other), null);
      // The record reads back without what it notes of its index.
      assert.deepEqual(await counted.load(key), record({ user }, 1, 60_000, now));
    });

    it("extends a user's index entry before a touch moves the record's expiry past it", async () => {
      let now = Date.now();
      const { client, sent } = recording(connection.client);
      const clocked = new RedisStore({ client, prefix: own, now: () => now });
      const user = `user-${randomKey().slice(0, 12)}`;
      const key = randomKey();
      const saved = record({ user }, 1, 60_000, now);
      assert.equal(await clocked.save(key, saved, null, { user }), true);
      // Every script is known from here on: a touch far ahead of a warm-up session's index entry.
      const warm = randomKey();
      await clocked.save(warm, record({ user: "warm" }, 1, 60_000, now), null, { user: "warm" });
      assert.equal(await clocked.touch(warm, now + 600_000, 1), true);
      sent.length = 0;
      now += 50_000;
      assert.equal(await clocked.touch(key, now + 60_000, 1), true); // within the entry's 120 s: one script
      assert.deepEqual(sent.splice(0), ["EVALSHA"]);
      now += 50_000;
      assert.equal(await clocked.touch(key, now + 60_000, 1), true); // past it: asks, extends the entry, touches
      assert.deepEqual(sent.splice(0), ["EVALSHA", "EVALSHA", "EVALSHA"]);
      for (let step = 0; step < 10; step++) {
        now += 50_000;
        assert.equal(await clocked.touch(key, now + 60_000, 1), true);
        assert.deepEqual(await clocked.keysOfUser(user), [key]);
      }
      assert.deepEqual(await clocked.load(key), { ...saved, expiresAt: now + 60_000 });
    });

    it("drops index entries no record can need any more as the index is written", async () => {
      let now = Date.now();
      const clocked = new RedisStore({ client: connection.client, prefix: own, now: () => now });
      const user = `user-${randomKey().slice(0, 12)}`;
      const [short, long] = [randomKey(), randomKey()];
      await clocked.save(short, record({ user }, 1, 1_000, now), null, { user });
      assert.deepEqual(await clocked.keysOfUser(user), [short]);
      now += 2_500; // past what the short session's entry had to last (2 s)
      assert.deepEqual(await clocked.keysOfUser(user), []);
      await clocked.save(long, record({ user }, 1, 60_000, now), null, { user });
      assert.deepEqual(await admin.zrange(await indexKeyOf(own, user), "0", "-1"), [long]);
    });

    it("writes its warnings to the logger it is given, and refuses one without warn()", async () => {
      const warnings: unknown[][] = [];
      const logged = new RedisStore({
        client: connection.client,
        prefix: own,
        logger: { warn: (...args) => void warnings.push(args) },
      });
      const key = randomKey();
      await admin.set(own + key, "{not json", "PX", 60_000);
      assert.equal(await logged.load(key), null);
      assert.equal(warnings.length, 1);
      assert.match(String(warnings[0]![0]), /corrupt session record/);
      assert.throws(
        () => new RedisStore({ client: connection.client, logger: {} as unknown as Console }),
        TypeError,
      );
    });
  });
}

describe("RedisStore over @upstash/redis", () => {
  it("went through the REST bridge", () => {
    assert.ok(bridge && bridge.requests > 0, "no request reached the bridge");
  });
});

describe("RedisStore through withSession when Redis cannot be reached", () => {
  it("answers 503 with StoreUnavailableError", async () => {
    // A port nothing listens on: a real refused connection.
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as { port: number };
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const client = new IoRedis({
      host: "127.0.0.1",
      port,
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    client.on("error", () => {});
    try {
      const { status, errors } = await storeThroughSession(new RedisStore({ client }), "fine");
      assert.equal(status, 503);
      assert.ok(errors.length > 0 && errors.every((error) => error instanceof StoreUnavailableError));
    } finally {
      client.disconnect();
    }
  });
});

describe("RedisStore construction", () => {
  it("refuses a client of no known shape and a non-string prefix", () => {
    assert.throws(() => new RedisStore({ client: {} as RedisLike }), TypeError);
    assert.throws(() => new RedisStore({ client: null as unknown as RedisLike }), TypeError);
    assert.throws(() => new RedisStore({ client: admin, prefix: 5 as unknown as string }), TypeError);
    assert.throws(() => new RedisStore({ client: admin, now: 5 as unknown as () => number }), TypeError);
  });

  it("uses the websession: prefix by default", async () => {
    const store = new RedisStore({ client: admin });
    const key = randomKey();
    await store.save(key, record({ d: 1 }), null);
    try {
      assert.ok(await admin.exists(`websession:${key}`));
    } finally {
      await store.destroy(key);
    }
  });
});
