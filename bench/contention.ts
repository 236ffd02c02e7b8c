// Contention: 100 concurrent update() writers on ONE session against the same 100 writers on 100
// sessions (the same load, no contention) and one writer alone, per store and client: MemoryStore,
// FileStore, RedisStore over ioredis, node-redis and @upstash/redis (through a bridge that
// forwards to the same Redis), PostgresStore over pg, postgres.js and Neon's driver (its Pool over
// WebSocket and neon() over HTTP, through a bridge that forwards to the same PostgreSQL). Under
// the default policy (`merge`) on every store; `retry` and `reject` on MemoryStore too.
//
// Every store call the core makes is counted (a load, a save, a touch or a destroy is one round
// trip on a remote store: one Lua script, one SQL statement). "Round trips per conflict" is the
// calls the contended writers made beyond what the same writers made on separate sessions,
// divided by the saves the store refused.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis as IoRedis } from "ioredis";
import { createClient } from "redis";
import { Redis as UpstashRedis } from "@upstash/redis";
import pg from "pg";
import postgres from "postgres";
import { neon, neonConfig, Pool as NeonPool } from "@neondatabase/serverless";
import { WebSocket } from "ws";
import { startUpstashBridge, type UpstashBridge } from "../tests/bridges/upstash.ts";
import { type NeonBridge, startNeonBridge } from "../tests/bridges/neon.ts";
import {
  FileStore,
  getSession,
  MemoryStore,
  PostgresStore,
  type RedisLike,
  RedisStore,
  type SessionOptions,
  type SessionStore,
  type SqlLike,
  withSession,
} from "./websession.ts";
import { cookiePool } from "./inprocess.ts";
import { SECRET } from "./subjects.ts";

/** Latency figures in milliseconds. */
export interface Latency {
  p50: number;
  p99: number;
  max: number;
}

/** Store calls, by kind. */
export interface Calls {
  loads: number;
  saves: number;
  /** Saves the store refused (a version conflict). */
  refused: number;
  other: number;
}

/** One store and policy. */
export interface ContentionRow {
  store: string;
  policy: "merge" | "retry" | "reject";
  writers: number;
  rounds: number;
  /** Requests answered 200, and answered 409 (refused), on the one session. */
  ok: number;
  conflicts: number;
  /** Acknowledged increments missing from the final count. */
  lost: number;
  /** Store calls of the contended writers, and of the same writers on separate sessions. */
  contendedCalls: Calls;
  spreadCalls: Calls;
  /** Extra store calls per refused save; NaN when no save was refused. */
  roundTripsPerConflict: number;
  /** Store saves per request on the one session (1 = no retry). */
  savesPerRequest: number;
  contended: Latency;
  /** The same number of concurrent writers, each on its own session. */
  spread: Latency;
  /** One writer at a time. */
  alone: Latency;
  error?: string;
}

export const WRITERS = 100;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function latency(samples: number[]): Latency {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted.at(-1)! };
}

/** Passes every call through to the store, counting them. */
class CountingStore implements SessionStore {
  readonly capabilities: SessionStore["capabilities"];
  calls: Calls = { loads: 0, saves: 0, refused: 0, other: 0 };
  touch?: SessionStore["touch"];
  #inner: SessionStore;
  constructor(inner: SessionStore) {
    this.#inner = inner;
    this.capabilities = inner.capabilities;
    if (inner.touch) {
      this.touch = (key, expiresAt, version) => {
        this.calls.other++;
        return inner.touch!(key, expiresAt, version);
      };
    }
  }
  load(key: string, minVersion?: number) {
    this.calls.loads++;
    return minVersion === undefined ? this.#inner.load(key) : this.#inner.load(key, minVersion);
  }
  async save(key: string, record: Parameters<SessionStore["save"]>[1], expected: number | null) {
    this.calls.saves++;
    const result = await this.#inner.save(key, record, expected);
    if (result !== true) this.calls.refused++;
    return result;
  }
  destroy(key: string) {
    this.calls.other++;
    return this.#inner.destroy(key);
  }
  snapshot(): Calls {
    return { ...this.calls };
  }
}

function minus(a: Calls, b: Calls): Calls {
  return {
    loads: a.loads - b.loads,
    saves: a.saves - b.saves,
    refused: a.refused - b.refused,
    other: a.other - b.other,
  };
}
function plus(a: Calls, b: Calls): Calls {
  return {
    loads: a.loads + b.loads,
    saves: a.saves + b.saves,
    refused: a.refused + b.refused,
    other: a.other + b.other,
  };
}
const total = (c: Calls) => c.loads + c.saves + c.other;

async function timed(
  handler: (r: Request) => Promise<Response>,
  cookie: string,
): Promise<{ ms: number; status: number }> {
  const start = performance.now();
  const response = await handler(new Request("https://bench.example/count", { headers: { cookie } }));
  await response.arrayBuffer();
  return { ms: performance.now() - start, status: response.status };
}

async function one(
  storeName: string,
  inner: SessionStore,
  policy: ContentionRow["policy"],
  maxRounds: number,
  budgetMs: number,
): Promise<ContentionRow> {
  const store = new CountingStore(inner);
  const options: SessionOptions = { store, secrets: SECRET, conflict: policy, onError: () => {} };
  const count = withSession(async (req: Request) => {
    const session = await getSession<{ visits?: number }>(req);
    return new Response(`visit ${session.update("visits", (n = 0) => n + 1)}`);
  }, options);
  const read = withSession(async (req: Request) => {
    const session = await getSession<{ visits?: number }>(req);
    return new Response(String(session.get("visits") ?? 0));
  }, options);
  const instance = { count, read, writes: () => undefined, close: () => Promise.resolve() };
  const spreadPool = await cookiePool(instance, WRITERS);

  const contended: number[] = [];
  const spread: number[] = [];
  const alone: number[] = [];
  let contendedCalls: Calls = { loads: 0, saves: 0, refused: 0, other: 0 };
  let spreadCalls: Calls = { loads: 0, saves: 0, refused: 0, other: 0 };
  let ok = 0;
  let conflicts = 0;
  let lost = 0;
  // Up to `maxRounds` rounds, fewer (but at least two when allowed) once `budgetMs` is spent.
  const start = performance.now();
  let rounds = 0;
  for (; rounds < maxRounds; rounds++) {
    if (rounds >= Math.min(2, maxRounds) && performance.now() - start > budgetMs) break;
    // 100 writers on one fresh session.
    const [cookie] = await cookiePool(instance, 1);
    let before = store.snapshot();
    const results = await Promise.all(Array.from({ length: WRITERS }, () => timed(count, cookie!)));
    contendedCalls = plus(contendedCalls, minus(store.snapshot(), before));
    for (const result of results) {
      contended.push(result.ms);
      if (result.status === 200) ok++;
      else if (result.status === 409) conflicts++;
      else throw new Error(`Contended writer answered ${result.status}`);
    }
    const final = Number(
      await (await read(new Request("https://bench.example/read", { headers: { cookie: cookie! } }))).text(),
    );
    lost += 1 + results.filter((r) => r.status === 200).length - final;

    // The same 100 writers, each on its own session.
    before = store.snapshot();
    const spreadResults = await Promise.all(spreadPool.map((c) => timed(count, c)));
    spreadCalls = plus(spreadCalls, minus(store.snapshot(), before));
    for (const result of spreadResults) spread.push(result.ms);
    for (const c of spreadPool.slice(0, 10)) alone.push((await timed(count, c)).ms);
  }
  return {
    store: storeName,
    policy,
    writers: WRITERS,
    rounds,
    ok,
    conflicts,
    lost,
    contendedCalls,
    spreadCalls,
    roundTripsPerConflict: contendedCalls.refused > 0
      ? (total(contendedCalls) - total(spreadCalls)) / contendedCalls.refused
      : NaN,
    savesPerRequest: contendedCalls.saves / (rounds * WRITERS),
    contended: latency(contended),
    spread: latency(spread),
    alone: latency(alone),
  };
}

interface StoreSetup {
  name: string;
  open(): Promise<{ store: SessionStore; close(): Promise<void> }>;
}

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";

/** Every store and client of the table. */
function setups(
  run: string,
  bridges: { upstash(): Promise<UpstashBridge>; neon(): Promise<NeonBridge> },
): StoreSetup[] {
  const admin = () => new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
  const redis = (
    name: string,
    connect: () => Promise<{ client: RedisLike; close(): Promise<void> }>,
  ): StoreSetup => ({
    name,
    async open() {
      const { client, close } = await connect();
      const prefix = `websession-bench-contention:${run}:${name.replace(/\W+/g, "")}:`;
      return {
        store: new RedisStore({ client, prefix }),
        async close() {
          await close();
          const cleaner = admin();
          let cursor = "0";
          do {
            const [next, keys] = await cleaner.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
            if (keys.length > 0) await cleaner.del(...keys);
            cursor = next;
          } while (cursor !== "0");
          cleaner.disconnect();
        },
      };
    },
  });
  const sql = (
    name: string,
    connect: () => Promise<{ client: SqlLike; close(): Promise<void> }>,
  ): StoreSetup => ({
    name,
    async open() {
      const { client, close } = await connect();
      const table = `websession_bench_${run}_${name.replace(/\W+/g, "_").toLowerCase()}`.slice(0, 60);
      const store = new PostgresStore({ client, table });
      await store.migrate();
      return {
        store,
        async close() {
          await close();
          const cleaner = new pg.Pool({ connectionString: DATABASE_URL, max: 1 });
          await cleaner.query(`DROP TABLE IF EXISTS "${table}"`);
          await cleaner.end();
        },
      };
    },
  });
  return [
    {
      name: "MemoryStore",
      open: () => Promise.resolve({ store: new MemoryStore(), close: () => Promise.resolve() }),
    },
    {
      name: "FileStore",
      async open() {
        const dir = await mkdtemp(join(tmpdir(), "websession-contention-"));
        return { store: new FileStore({ dir }), close: () => rm(dir, { recursive: true, force: true }) };
      },
    },
    redis("RedisStore (ioredis)", () => {
      const client = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
      return Promise.resolve({ client, close: () => Promise.resolve(client.disconnect()) });
    }),
    redis("RedisStore (node-redis)", async () => {
      const client = await createClient({ url: REDIS_URL }).connect();
      return { client: client as unknown as RedisLike, close: async () => void (await client.quit()) };
    }),
    redis("RedisStore (@upstash/redis, HTTP)", async () => {
      const bridge = await bridges.upstash();
      const client = new UpstashRedis({ url: bridge.url, token: bridge.token, enableTelemetry: false });
      return { client: client as unknown as RedisLike, close: () => Promise.resolve() };
    }),
    sql("PostgresStore (pg)", () => {
      const client = new pg.Pool({ connectionString: DATABASE_URL, max: 10 });
      return Promise.resolve({ client, close: () => client.end() });
    }),
    sql("PostgresStore (postgres.js)", () => {
      const client = postgres(DATABASE_URL, { max: 10, onnotice: () => {} });
      return Promise.resolve({
        client: client as unknown as SqlLike,
        close: () => client.end({ timeout: 5 }),
      });
    }),
    sql("PostgresStore (Neon, WebSocket)", async () => {
      await bridges.neon();
      const client = new NeonPool({ connectionString: DATABASE_URL, max: 10 });
      return { client: client as unknown as SqlLike, close: () => client.end() };
    }),
    sql("PostgresStore (Neon, HTTP)", async () => {
      await bridges.neon();
      return { client: neon(DATABASE_URL) as unknown as SqlLike, close: () => Promise.resolve() };
    }),
  ];
}

/**
 * Runs every store and client under `merge`, and MemoryStore under `retry` and `reject` too.
 *
 * @param options `rounds`: at most this many rounds per store and policy; `budgetMs`: no new
 *   round starts after this much time on one store (two rounds at least); `only`: store names to
 *   run (all when absent).
 */
export async function runContention(
  options: { rounds: number; budgetMs: number; log: (line: string) => void; only?: string[] },
): Promise<ContentionRow[]> {
  const rows: ContentionRow[] = [];
  const run = crypto.randomUUID().slice(0, 8);
  let upstash: UpstashBridge | undefined;
  let neonBridge: NeonBridge | undefined;
  const bridges = {
    async upstash() {
      upstash ??= await startUpstashBridge({ redisUrl: REDIS_URL });
      return upstash;
    },
    async neon() {
      if (neonBridge === undefined) {
        const url = new URL(DATABASE_URL);
        neonBridge = await startNeonBridge({
          ...(url.port ? { port: Number(url.port) } : {}),
          database: url.pathname.slice(1) || "test",
        });
        neonConfig.webSocketConstructor = WebSocket;
        neonConfig.wsProxy = neonBridge.wsProxy;
        neonConfig.useSecureWebSocket = false;
        neonConfig.pipelineTLS = false;
        neonConfig.pipelineConnect = false;
        neonConfig.fetchEndpoint = neonBridge.fetchEndpoint;
      }
      return neonBridge;
    },
  };
  try {
    for (const setup of setups(run, bridges)) {
      if (options.only && !options.only.includes(setup.name)) continue;
      const policies = setup.name === "MemoryStore"
        ? (["merge", "retry", "reject"] as const)
        : (["merge"] as const);
      for (const policy of policies) {
        options.log(`  ${setup.name} ${policy}`);
        let opened: Awaited<ReturnType<StoreSetup["open"]>> | undefined;
        try {
          opened = await setup.open();
          rows.push(await one(setup.name, opened.store, policy, options.rounds, options.budgetMs));
        } catch (error) {
          const message = String((error as Error)?.message ?? error).slice(0, 300);
          options.log(`  ${setup.name} ${policy}: ${message}`);
          rows.push(
            { store: setup.name, policy, writers: WRITERS, rounds: 0, error: message } as ContentionRow,
          );
        } finally {
          await opened?.close().catch(() => {});
        }
      }
    }
  } finally {
    await upstash?.close();
    await neonBridge?.close();
  }
  return rows;
}
