// RedisStore against the real Redis on loopback, through every client it accepts: ioredis,
// node-redis, and @upstash/redis over HTTP through a bridge that forwards to the same Redis.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { Redis as IoRedis } from "ioredis";
import { createClient } from "redis";
import { Redis as UpstashRedis } from "@upstash/redis";
import { type RedisLike, RedisStore } from "../../src/stores/redis.ts";
import { storeSuites } from "../conformance/store_cases.ts";
import { lockUserCases, tagOf } from "../conformance/lock_user_cases.ts";
import { assertRoundTrips } from "../conformance/round_trips.ts";
import { randomKey, sleep } from "../conformance/util.ts";
import { startUpstashBridge, type UpstashBridge } from "../bridges/upstash.ts";
import { raceOfCreates, raceOfReportedConflicts, record } from "./remote_cases.ts";

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

async function unreachable() {
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
  return { store: new RedisStore({ client }), close: () => client.disconnect() };
}

for (const [label, connect] of clients) {
  const prefix = `websession-test:${RUN}:${label.replace(/[^a-z]+/g, "-")}:`;
  const prefixOf = (ns: string) => `${prefix}${ns}:`;
  let shared: Connection | undefined;
  const open = async () => (shared ??= await connect());
  // Before storeSuites, whose close drops the prefix and the connection these use too.
  const indexKey = async (ns: string, user: string) => `${prefixOf(ns)}user:{${await tagOf(user)}}`;
  lockUserCases(`RedisStore over ${label}`, {
    reportsCurrent: true,
    open: async (ns, now) => new RedisStore({ client: (await open()).client, prefix: prefixOf(ns), now }),
    counted: async (ns, now) => {
      const { client, sent } = recording((await open()).client);
      return { store: new RedisStore({ client, prefix: prefixOf(ns), now }), sent };
    },
    raw: async (ns, key) => (await admin.get(prefixOf(ns) + key)) ?? undefined,
    // A lock is its owner under prefix lock:key, with Redis' own time to live.
    locks: {
      byClock: false,
      entry: async (ns, key) => {
        const owner = await admin.get(`${prefixOf(ns)}lock:${key}`);
        return owner === null ? undefined : { owner };
      },
      expiry: { left: (ns, key) => admin.pttl(`${prefixOf(ns)}lock:${key}`), slack: 5_000 },
      sends: { lock: ["EVALSHA"], unlock: ["EVALSHA"] },
    },
    // A sorted set per user, named by its tag, scored by until when each entry lasts: as long
    // again as the record has left. The record notes the tag and that time.
    users: {
      byClock: true,
      prunes: true,
      remembers: false,
      until: (expiresAt, now) => 2 * expiresAt - now,
      entries: async (ns, user) => {
        const flat = await admin.zrange(await indexKey(ns, user), "0", "-1", "WITHSCORES");
        return Object.fromEntries(flat.flatMap((key, i) => i % 2 ? [] : [[key, Number(flat[i + 1])]]));
      },
      note: async (ns, key) => {
        const text = await admin.get(prefixOf(ns) + key);
        const noted = text === null ? null : /,"user":"([\w-]{43})","userUntil":(\d+)\}$/.exec(text);
        return noted === null ? undefined : { tag: noted[1], until: Number(noted[2]) };
      },
      expiry: { left: async (ns, user) => await admin.pttl(await indexKey(ns, user)), slack: 5_000 },
      sends: {
        save: ["EVALSHA"],
        list: ["EVALSHA"],
        update: ["EVALSHA"],
        reindex: ["EVALSHA", "EVALSHA", "EVALSHA"], // asks, extends the entry, touches
        plain: ["EVALSHA", "EVALSHA"],
      },
    },
  });

  storeSuites(`RedisStore over ${label}`, {
    reportsCurrent: true,
    expiredSave: true,
    tombstoneTouch: true,
    skews: [10 * 60_000, -10 * 60_000],
    countsByClock: false,
    open: async (ns, options) =>
      new RedisStore({ client: (await open()).client, prefix: prefixOf(ns), ...options }),
    close: async () => {
      await dropPrefix(prefix);
      await shared?.close();
    },
    raw: async (ns, key) => {
      const text = await admin.get(prefixOf(ns) + key);
      return text === null ? undefined : JSON.parse(text);
    },
    ttl: async (ns, key) => {
      const ttl = await admin.pttl(prefixOf(ns) + key);
      return ttl < 0 ? undefined : ttl;
    },
    counted: async (ns) => {
      const { client, sent } = recording((await open()).client);
      return { store: new RedisStore({ client, prefix: prefixOf(ns) }), sent: () => sent.length };
    },
    corrupt: {
      forms: ["{not json", JSON.stringify({ data: [], version: 0 })],
      write: async (ns, key, form) => void (await admin.set(prefixOf(ns) + key, form, "PX", 60_000)),
      read: async (ns, key) => (await admin.get(prefixOf(ns) + key)) ?? undefined,
      warning: /corrupt session record/,
    },
    // A port nothing listens on: a real refused connection (once, through ioredis).
    unreachable: label === "ioredis" ? unreachable : undefined,
    locks: {
      byClock: false,
      owner: async (ns, key) => (await admin.get(`${prefixOf(ns)}lock:${key}`)) ?? undefined,
    },
    users: {
      byClock: true,
      apart: async (ns) => {
        const connection = await connect();
        return {
          store: new RedisStore({ client: connection.client, prefix: prefixOf(ns) }),
          close: connection.close,
        };
      },
      rawKeys: async (ns) => {
        const keys: string[] = [];
        let cursor = "0";
        do {
          const [next, page] = await admin.scan(cursor, "MATCH", `${prefixOf(ns)}*`, "COUNT", 1000);
          keys.push(...page);
          cursor = next;
        } while (cursor !== "0");
        return keys;
      },
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

    it("lets keys vanish by the TTL the store's clock set, 10 minutes ahead of or behind Redis'", async () => {
      for (const skew of [10 * 60_000, -10 * 60_000]) {
        // Count agrees with load under the skew.
        const counting = new RedisStore({
          client: connection.client,
          prefix: `${own}clock${skew}:count:`,
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

    it("reports, to each of 20 racing writers, a record newer than the one it expected", async () => {
      const refusals = await raceOfReportedConflicts(store, randomKey());
      assert.ok(refusals > 0, "no writer was refused");
      assert.equal(await raceOfCreates(store, randomKey(), false), 19);
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
      // Locks and users' indexes under the prefix are not sessions.
      assert.equal(await glob.lock(keys[0]!, "owner", 60_000), true);
      assert.equal(await glob.save(keys[1]!, record({ user: "ada" }, 2), 1, { user: "ada" }), true);
      assert.equal(await glob.count(), 3);
      assert.equal(await sibling.count(), 1);
    });
  });
}

describe("RedisStore over @upstash/redis", () => {
  it("went through the REST bridge", () => {
    assert.ok(bridge && bridge.requests > 0, "no request reached the bridge");
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
