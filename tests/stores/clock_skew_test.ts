// Clock skew between application servers: the grace of a session ended by a request (60 s during
// which a request still carrying its cookie is taken for one in flight) is stamped and judged by
// the store's clock where the store has one (`SessionStore.time`), so two servers whose clocks
// are 90 s apart judge it alike.
//
// Two "application servers" in one process: two option sets (each with its own store object
// over the same real server, as two machines would have) whose `now` clocks are 90 s apart.
// Server A logs out; server B then receives the old cookie with a write. Shortly after the end it
// must be in grace (409, no Set-Cookie, nothing stored); once the grace has passed by the store's
// clock (the tombstone's stamp moved 61 s back, as if it had been written 61 s earlier), a new
// session starts. On Redis (ioredis, node-redis), PostgreSQL (pg, postgres.js), Memcached and a
// Durable Object in Miniflare. Then: every client kind reads its server's clock; stores without a
// clock keep the application's (the bound the docs state); the clock is asked only on the rare
// paths; an outage of the clock falls back to the application's.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Redis as IoRedis } from "ioredis";
import { createClient } from "redis";
import { Redis as UpstashRedis } from "@upstash/redis";
import pg from "pg";
import postgres from "postgres";
import { neon, neonConfig, Pool as NeonPool } from "@neondatabase/serverless";
import { WebSocket } from "ws";
import { MemcacheClient } from "memcache-client";
import type { Miniflare } from "miniflare";
import {
  getSession,
  MemoryStore,
  type SessionEvent,
  type SessionStore,
  type StoredSession,
  withSession,
} from "../../mod.ts";
import { ENDED_AT_KEY, endedAt, isEnded } from "../../src/store.ts";
import { storageKeyOf } from "../../src/id.ts";
import { ENDED_GRACE_MS } from "../../src/conflict.ts";
import { RedisStore } from "../../src/stores/redis.ts";
import { PostgresStore } from "../../src/stores/postgres.ts";
import { MemcachedStore } from "../../src/stores/memcached.ts";
import { DurableObjectStore } from "../../src/stores/durable_object.ts";
import { TieredStore } from "../../src/stores/tiered.ts";
import { MigratingStore } from "../../src/stores/migrating.ts";
import { randomKey, storeTables } from "../conformance/util.ts";
import { startUpstashBridge, type UpstashBridge } from "../bridges/upstash.ts";
import { type NeonBridge, startNeonBridge } from "../bridges/neon.ts";
import { MEMCACHED_SERVER, skipWithoutMemcached } from "../services.ts";
import { nodeNamespace, startMiniflare } from "../workers/miniflare.ts";

const SECRET = "clock skew test secret, at least 32 characters";
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const RUN = crypto.randomUUID().slice(0, 8);
/** How far apart the two application servers' clocks are, in milliseconds. */
const SKEW = 90_000;
const ORIGIN = "https://app.example";

type Clock = () => number;

/** One kind of store over one real server: a store object per application server. */
interface Backend {
  name: string;
  skip?: () => Promise<string | undefined>;
  /** Connects (once); returns how to make a store with a given application clock. */
  start(): Promise<(now: Clock) => SessionStore>;
  stop(): Promise<void>;
}

/** An application server: `withSession` over its own store object, with its own clock. */
function appServer(store: SessionStore, now: Clock, onEvent?: (event: SessionEvent) => void) {
  return withSession(async (req: Request) => {
    const session = await getSession<{ user?: string; note?: string }>(req);
    const path = new URL(req.url).pathname;
    if (path === "/login") {
      session.regenerate();
      session.set("user", "ada");
    } else if (path === "/logout") {
      session.destroy();
    } else if (path === "/write") {
      session.set("note", "written after the end");
    }
    return Response.json({ user: session.get("user") ?? null, note: session.get("note") ?? null });
  }, { store, secrets: SECRET, now, ...(onEvent && { onEvent }) });
}

function post(path: string, cookie?: string): Request {
  return new Request(ORIGIN + path, { method: "POST", headers: cookie ? { cookie } : {} });
}

function cookieOf(response: Response): string {
  const set = response.headers.get("set-cookie");
  assert.ok(set, "expected a Set-Cookie");
  return set.split(";")[0]!;
}

async function keyOf(cookie: string): Promise<string> {
  const value = cookie.slice(cookie.indexOf("=") + 1);
  return await storageKeyOf(value.slice(0, value.indexOf(".")));
}

/**
 * Server A (clock `skewA` ms off the true one) signs in and logs out; returns the old cookie
 * and its storage key. Server B keeps the true clock.
 */
async function endOnA(make: (now: Clock) => SessionStore, skewA: number) {
  const clockA: Clock = () => Date.now() + skewA;
  const a = appServer(make(clockA), clockA);
  const login = await a(post("/login"));
  assert.equal(login.status, 200);
  const cookie = cookieOf(login);
  const logout = await a(post("/logout", cookie));
  assert.equal(logout.status, 200);
  return { cookie, key: await keyOf(cookie) };
}

/** Moves the tombstone's end stamp `ms` back, as if the end had happened that much earlier. */
async function age(store: SessionStore, key: string, ms: number): Promise<void> {
  const tombstone = await store.load(key);
  assert.ok(tombstone !== null && isEnded(tombstone), "expected the tombstone of the ended session");
  const stamp = endedAt(tombstone);
  assert.equal(typeof stamp, "number");
  const older: StoredSession = {
    ...tombstone,
    data: { ...tombstone.data, [ENDED_AT_KEY]: stamp! - ms },
    version: tombstone.version + 1,
  };
  assert.equal(await store.save(key, older, tombstone.version), true);
}

/** B's write within the grace: refused, no cookie, nothing stored (the tombstone stays). */
async function assertInGrace(storeB: SessionStore, b: (req: Request) => Promise<Response>, cookie: string) {
  const key = await keyOf(cookie);
  const before = await storeB.load(key);
  const countBefore = await storeB.count?.();
  const response = await b(post("/write", cookie));
  assert.equal(response.status, 409, "a write with the old cookie within the grace is refused");
  assert.equal(response.headers.get("set-cookie"), null, "no cookie within the grace");
  assert.deepEqual(await storeB.load(key), before, "the tombstone is left as it was");
  if (countBefore !== undefined) assert.equal(await storeB.count!(), countBefore, "no session was stored");
}

/** B's write after the grace: a new session starts with its own cookie, and the write lands. */
async function assertNewSession(
  storeB: SessionStore,
  b: (req: Request) => Promise<Response>,
  cookie: string,
) {
  const response = await b(post("/write", cookie));
  assert.equal(response.status, 200, "after the grace the old cookie counts as unknown");
  const fresh = cookieOf(response);
  assert.notEqual(fresh, cookie);
  const record = await storeB.load(await keyOf(fresh));
  assert.equal(record?.data.note, "written after the end");
}

const upstashBridge: { bridge?: UpstashBridge } = {};
const neonBridge: { bridge?: NeonBridge } = {};
after(async () => {
  await upstashBridge.bridge?.close();
  await neonBridge.bridge?.close();
});

function redisBackend(
  name: string,
  connect: () => Promise<{ client: unknown; close(): Promise<void> }>,
): Backend {
  let close = async () => {};
  return {
    name,
    async start() {
      const connection = await connect();
      close = connection.close;
      const prefix = `websession:skew:${RUN}:${crypto.randomUUID().slice(0, 6)}:`;
      return (now) => new RedisStore({ client: connection.client as IoRedis, prefix, now });
    },
    stop: () => close(),
  };
}

function postgresBackend(name: string, connect: () => { client: unknown; close(): Promise<void> }): Backend {
  let close = async () => {};
  const table = `websession_skew_${RUN}_${name.replace(/\W/g, "_")}`;
  return {
    name,
    async start() {
      const connection = connect();
      close = async () => {
        await new PostgresStore({ client: connection.client as pg.Pool, table }).migrate();
        await (connection.client as pg.Pool).query?.(
          `DROP TABLE IF EXISTS ${storeTables(table)}`,
          [],
        );
        await (connection.client as { unsafe?: (q: string) => Promise<unknown> }).unsafe?.(
          `DROP TABLE IF EXISTS ${storeTables(table)}`,
        );
        await connection.close();
      };
      await new PostgresStore({ client: connection.client as pg.Pool, table }).migrate();
      return (now) => new PostgresStore({ client: connection.client as pg.Pool, table, now });
    },
    stop: () => close(),
  };
}

let miniflare: Miniflare | undefined;

const backends: Backend[] = [
  redisBackend("Redis over ioredis", () => {
    const client = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
    return Promise.resolve({ client, close: () => Promise.resolve(client.disconnect()) });
  }),
  redisBackend("Redis over node-redis", async () => {
    const client = await createClient({ url: REDIS_URL }).connect();
    return { client, close: async () => void (await client.quit()) };
  }),
  postgresBackend("PostgreSQL over pg", () => {
    const client = new pg.Pool({ connectionString: DATABASE_URL, max: 4 });
    return { client, close: () => client.end() };
  }),
  postgresBackend("PostgreSQL over postgres.js", () => {
    const client = postgres(DATABASE_URL, { max: 4, onnotice: () => {} });
    return { client, close: () => client.end() };
  }),
  {
    name: "Memcached",
    skip: skipWithoutMemcached,
    start() {
      const client = new MemcacheClient({ server: MEMCACHED_SERVER, cmdTimeout: 2_000 });
      this.stop = () => Promise.resolve(client.shutdown());
      const prefix = `skew:${RUN}:`;
      return Promise.resolve((now: Clock) => new MemcachedStore({ client, prefix, now }));
    },
    stop: async () => {},
  },
  {
    name: "Durable Object (Miniflare)",
    async start() {
      miniflare ??= await startMiniflare();
      const namespace = await nodeNamespace(miniflare, "SESSIONS_DO");
      return (now) => new DurableObjectStore({ namespace, now });
    },
    stop: async () => {
      await miniflare?.dispose();
      miniflare = undefined;
    },
  },
];

for (const backend of backends) {
  describe(`Clock skew between application servers: ${backend.name}`, async () => {
    const skip = await backend.skip?.();
    let make: (now: Clock) => SessionStore;
    before(async () => {
      if (skip === undefined) make = await backend.start();
    });
    after(() => skip === undefined ? backend.stop() : undefined);

    // B keeps the true clock; A runs 90 s behind it, then 90 s ahead.
    for (const [label, skewA] of [["behind", -SKEW], ["ahead", SKEW]] as const) {
      it(`A ${label} by 90 s logs out; B, shortly after, is in grace: 409, no cookie, nothing stored`, {
        skip,
      }, async () => {
        const { cookie } = await endOnA(make, skewA);
        const storeB = make(Date.now);
        await assertInGrace(storeB, appServer(storeB, Date.now), cookie);
      });

      it(
        `A ${label} by 90 s logs out; once the grace has passed by the store's clock, B starts a new session`,
        {
          skip,
        },
        async () => {
          const { cookie, key } = await endOnA(make, skewA);
          const storeB = make(Date.now);
          await age(storeB, key, ENDED_GRACE_MS + 1_000);
          await assertNewSession(storeB, appServer(storeB, Date.now), cookie);
        },
      );
    }
  });
}

describe("The store's clock, over every client kind", () => {
  const key = randomKey();

  /** A store's time: milliseconds (not seconds or microseconds) by this machine's clock. */
  async function assertTime(store: SessionStore, resolutionMs = 1): Promise<void> {
    const before = Date.now();
    const time = await store.time!(key);
    const after = Date.now();
    assert.equal(typeof time, "number");
    assert.ok(
      time >= before - resolutionMs - 1_000 && time <= after + 1_000,
      `time ${time} not near ${before}`,
    );
  }

  it("RedisStore: ioredis, node-redis, Upstash (automatic deserialization on and off)", async () => {
    const io = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
    const node = await createClient({ url: REDIS_URL }).connect();
    upstashBridge.bridge ??= await startUpstashBridge({ redisUrl: REDIS_URL });
    const { url, token } = upstashBridge.bridge;
    try {
      for (
        const client of [
          io,
          node,
          new UpstashRedis({ url, token, enableTelemetry: false }),
          new UpstashRedis({ url, token, enableTelemetry: false, automaticDeserialization: false }),
        ]
      ) {
        await assertTime(new RedisStore({ client, prefix: `websession:skew:${RUN}:` }));
      }
    } finally {
      io.disconnect();
      await node.quit();
    }
  });

  it("PostgresStore: pg, postgres.js, Neon over WebSocket and over HTTP", async () => {
    neonBridge.bridge ??= await startNeonBridge();
    neonConfig.webSocketConstructor = WebSocket;
    neonConfig.wsProxy = neonBridge.bridge.wsProxy;
    neonConfig.useSecureWebSocket = false;
    neonConfig.pipelineTLS = false;
    neonConfig.pipelineConnect = false;
    neonConfig.fetchEndpoint = neonBridge.bridge.fetchEndpoint;
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
    const js = postgres(DATABASE_URL, { max: 2, onnotice: () => {} });
    const ws = new NeonPool({ connectionString: DATABASE_URL, max: 2 });
    try {
      for (const client of [pool, js, ws, neon(DATABASE_URL)]) {
        await assertTime(new PostgresStore({ client, table: `websession_skew_${RUN}_time` }));
      }
    } finally {
      await pool.end();
      await js.end();
      await ws.end();
    }
  });

  it("MemcachedStore: whole seconds of the server's clock; none without a client that sends stats", async (t) => {
    const skip = await skipWithoutMemcached();
    if (skip !== undefined) return t.skip(skip);
    const client = new MemcacheClient({ server: MEMCACHED_SERVER, cmdTimeout: 2_000 });
    try {
      const store = new MemcachedStore({ client, prefix: `skew:${RUN}:` });
      // Whole seconds that Memcached moves once a second: up to about two seconds behind.
      await assertTime(store, 2_000);
      assert.equal((await store.time!(key)) % 1000, 0);
      const { get, gets, add, cas, delete: del } = client;
      const bare = new MemcachedStore({
        client: {
          get: get.bind(client),
          gets: gets.bind(client),
          add: add.bind(client),
          cas: cas.bind(client),
          delete: del.bind(client),
        } as never,
      });
      assert.equal(bare.time, undefined);
    } finally {
      client.shutdown();
    }
  });

  it("TieredStore and MigratingStore take the clock of the store that holds the truth", async () => {
    const io = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
    try {
      const redis = new RedisStore({ client: io, prefix: `websession:skew:${RUN}:` });
      const durable = new TieredStore({ cache: new MemoryStore(), durable: redis });
      await assertTime(durable);
      assert.equal(new TieredStore({ cache: redis, durable: new MemoryStore() }).time, undefined);
      await assertTime(new MigratingStore({ from: new MemoryStore(), to: redis }));
      assert.equal(new MigratingStore({ from: redis, to: new MemoryStore() }).time, undefined);
    } finally {
      io.disconnect();
    }
  });
});

describe("Stores without a clock, and the clock's cost", () => {
  it("a store without a clock judges by the application's: in grace without skew, a new session past it (the stated bound)", async () => {
    const shared = new MemoryStore();
    assert.equal((shared as SessionStore).time, undefined);
    // No skew: the same clock stamps and judges.
    const same = await endOnA(() => shared, 0);
    await assertInGrace(shared, appServer(shared, Date.now), same.cookie);
    // A 90 s behind B, with no store clock: B judges the end by its own clock, 90 s after A's
    // stamp, past the grace: a new session starts (the bound the docs state: the servers' skew).
    const skewed = await endOnA(() => shared, -SKEW);
    await assertNewSession(shared, appServer(shared, Date.now), skewed.cookie);
  });

  it("asks the store's clock only to stamp an end and to judge a tombstone, never on a plain read or write", async () => {
    const store = Object.assign(new MemoryStore(), { time: () => Promise.resolve(Date.now()) });
    const events: SessionEvent[] = [];
    const app = appServer(store, Date.now, (event) => void events.push(event));
    const times = () => events.filter((e) => e.type === "store" && e.operation === "time").length;
    const operations = () =>
      events.filter((e) => e.type === "store").map((e) => e.type === "store" && e.operation);

    const cookie = cookieOf(await app(post("/login")));
    events.length = 0;
    assert.equal((await app(new Request(ORIGIN + "/", { headers: { cookie } }))).status, 200); // a plain read
    assert.equal((await app(post("/write", cookie))).status, 200); // a plain write
    assert.ok(operations().includes("load") && operations().includes("save"));
    assert.equal(times(), 0, "no clock call on a plain read or write");

    assert.equal((await app(post("/logout", cookie))).status, 200);
    assert.equal(times(), 1, "one clock call to stamp the end");
    assert.equal((await app(post("/write", cookie))).status, 409);
    assert.equal(times(), 2, "one clock call to judge the tombstone");
  });

  it("when the store's clock never answers, a log out still ends (the application's clock judges)", {
    timeout: 60_000, // without the bound on the wait, the log out below never answered
  }, async () => {
    let asked = 0;
    const store = Object.assign(new MemoryStore(), {
      time: (): Promise<number> => {
        asked++;
        return new Promise<number>(() => {}); // a stalled connection
      },
    });
    const app = appServer(store, Date.now);
    const cookie = cookieOf(await app(post("/login")));
    const logout = await app(post("/logout", cookie));
    assert.equal(logout.status, 200);
    assert.ok(asked > 0, "the store's clock was asked");
    const tombstone = await store.load(await keyOf(cookie));
    assert.ok(tombstone !== null && isEnded(tombstone));
    assert.equal(typeof endedAt(tombstone), "number");
    await assertInGrace(store, app, cookie);
  });

  it("when the store's clock fails, a log out still works and the application's clock judges", async () => {
    const store = Object.assign(new MemoryStore(), {
      time: (): Promise<number> => Promise.reject(new Error("clock unreachable")),
    });
    const app = appServer(store, Date.now);
    const cookie = cookieOf(await app(post("/login")));
    const logout = await app(post("/logout", cookie));
    assert.equal(logout.status, 200);
    assert.match(logout.headers.get("set-cookie") ?? "", /Max-Age=0|Expires=Thu, 01 Jan 1970/i);
    const tombstone = await store.load(await keyOf(cookie));
    assert.ok(tombstone !== null && isEnded(tombstone));
    assert.equal(typeof endedAt(tombstone), "number");
    await assertInGrace(store, app, cookie);
  });
});
