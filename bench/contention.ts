// Contention on the built package: 30 requests in flight on ONE session, per store and client,
// each subject on the same store object:
// - websession, GET, the README's first example (`update("visits", n => n + 1)`): refused (409)
//   count, handler runs per request, lost increments, p99;
// - websession, POST, `get` then `set` (an observed key, not safe to re-run): refused %, p99;
// - the lock subject (bench/lock_subject.mjs: a plain per-session lock taken before loading,
//   CherryPy's implicit locking) under the same two loads: p99, the reference for websession's
//   "turns".
// The rounds and subjects are bench/contention_rounds.mjs's, run in this process for the stores
// Node reaches, in Deno for DenoKvStore (bench/contention_deno.mjs), and for DurableObjectStore in
// a Worker in Miniflare that this process sends each request to (bench/contention_workerd.ts).
// And 3 processes x 10 requests in flight on one session sharing Redis (ioredis) and PostgreSQL
// (pg), websession only (bench/contention_child.mjs). websession comes from the built package's
// public entry points (bench/entry.mjs).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis as IoRedis } from "ioredis";
import { createClient } from "redis";
import { Redis as UpstashRedis } from "@upstash/redis";
import pg from "pg";
import postgres from "postgres";
import { MemcacheClient } from "memcache-client";
import { neon, neonConfig, Pool as NeonPool } from "@neondatabase/serverless";
import { WebSocket } from "ws";
import { startUpstashBridge, type UpstashBridge } from "../tests/bridges/upstash.ts";
import { type NeonBridge, startNeonBridge } from "../tests/bridges/neon.ts";
import {
  IN_FLIGHT,
  lockSubject,
  measurePair,
  newCookie,
  type Subject,
  type Tally,
  visits,
  websessionSubject,
} from "./contention_rounds.mjs";
import { openDurableObjects } from "./contention_workerd.ts";
import { load } from "./entry.mjs";
import { Child } from "./measure.ts";
// deno-lint-ignore no-explicit-any
type Any = any;

export { IN_FLIGHT };
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const MEMCACHED = process.env.MEMCACHED_SERVER ?? "127.0.0.1:11211";

export interface Load {
  requests: number;
  refused: number;
  errors: number;
  runs: number;
  lost: number;
  p50: number;
  p99: number;
  max: number;
}
export interface ContentionRow {
  store: string;
  processes: number;
  websession: { get: Load; post: Load };
  lock?: { get: Load; post: Load };
  error?: string;
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
}
export function summarizeLoad(
  samples: Array<{ ms: number; status: number }>,
  runs: number,
  lost: number,
): Load {
  const ms = samples.map((s) => s.ms).sort((a, b) => a - b);
  return {
    requests: samples.length,
    refused: samples.filter((s) => s.status === 409).length,
    errors: samples.filter((s) => s.status !== 409 && s.status !== 200).length,
    runs,
    lost,
    p50: pct(ms, 50),
    p99: pct(ms, 99),
    max: ms.at(-1) ?? NaN,
  };
}

/** A store opened in this process. */
interface StoreSetup {
  name: string;
  open(): Promise<{ store: Any; close(): Promise<void> }>;
}

/** A row of both subjects, wherever they run: `measure` answers websession's tally, then the lock's. */
interface PairSetup {
  name: string;
  open(): Promise<{
    measure(method: "GET" | "POST", rounds: number, budgetMs: number): Promise<[Tally, Tally]>;
    close(): Promise<void>;
  }>;
}

interface Bridges {
  upstash(): Promise<UpstashBridge>;
  neon(): Promise<NeonBridge>;
}

/** A RedisStore through the client `connect` gives, under a prefix of its own (removed after). */
function redisSetup(
  run: string,
  stores: Record<string, Any>,
  name: string,
  connect: () => Promise<{ client: Any; close(): Promise<void> }>,
): StoreSetup {
  return {
    name,
    async open() {
      const { client, close } = await connect();
      const prefix = `websession-bench:${run}:${name.replace(/\W+/g, "")}:`;
      return {
        store: new stores.RedisStore({ client, prefix }),
        async close() {
          await close();
          const cleaner = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
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
  };
}

/** A PostgresStore through the client `connect` gives, in a table of its own (dropped after). */
function sqlSetup(
  run: string,
  stores: Record<string, Any>,
  name: string,
  connect: () => Promise<{ client: Any; close(): Promise<void> }>,
): StoreSetup {
  return {
    name,
    async open() {
      const { client, close } = await connect();
      const table = `websession_bench_${run}_${name.replace(/\W+/g, "_").toLowerCase()}`.slice(0, 60);
      const store = new stores.PostgresStore({ client, table });
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
  };
}

/** MemoryStore and FileStore: no client to choose. */
function localSetups(stores: Record<string, Any>): StoreSetup[] {
  return [
    {
      name: "MemoryStore",
      open: () => Promise.resolve({ store: new stores.MemoryStore(), close: async () => {} }),
    },
    {
      name: "FileStore",
      async open() {
        const dir = await mkdtemp(join(tmpdir(), "websession-bench-"));
        return {
          store: new stores.FileStore({ dir }),
          close: () => rm(dir, { recursive: true, force: true }),
        };
      },
    },
  ];
}

/** Redis and PostgreSQL through each client (the serverless ones over the bridges), Memcached. */
function clientSetups(run: string, stores: Record<string, Any>, bridges: Bridges): StoreSetup[] {
  const redis = (name: string, connect: Parameters<typeof redisSetup>[3]) =>
    redisSetup(run, stores, name, connect);
  const sql = (name: string, connect: Parameters<typeof sqlSetup>[3]) => sqlSetup(run, stores, name, connect);
  return [
    redis("RedisStore (ioredis)", () => {
      const client = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
      return Promise.resolve({ client, close: () => Promise.resolve(client.disconnect()) });
    }),
    redis("RedisStore (node-redis)", async () => {
      const client = await createClient({ url: REDIS_URL }).connect();
      return { client, close: async () => void (await client.quit()) };
    }),
    redis("RedisStore (@upstash/redis over the bridge)", async () => {
      const bridge = await bridges.upstash();
      return {
        client: new UpstashRedis({ url: bridge.url, token: bridge.token, enableTelemetry: false }),
        close: async () => {},
      };
    }),
    sql("PostgresStore (pg)", () => {
      const client = new pg.Pool({ connectionString: DATABASE_URL, max: 10 });
      return Promise.resolve({ client, close: () => client.end() });
    }),
    sql("PostgresStore (postgres.js)", () => {
      const client = postgres(DATABASE_URL, { max: 10, onnotice: () => {} });
      return Promise.resolve({ client, close: () => client.end({ timeout: 5 }) });
    }),
    sql("PostgresStore (Neon WebSocket over the bridge)", async () => {
      await bridges.neon();
      const client = new NeonPool({ connectionString: DATABASE_URL, max: 10 });
      return { client, close: () => client.end() };
    }),
    sql("PostgresStore (Neon HTTP over the bridge)", async () => {
      await bridges.neon();
      return { client: neon(DATABASE_URL), close: async () => {} };
    }),
    {
      name: "MemcachedStore (memcache-client)",
      open() {
        const client = new MemcacheClient({ server: MEMCACHED, cmdTimeout: 5_000 });
        return Promise.resolve({
          store: new stores.MemcachedStore({ client, prefix: `websession-bench-${run}-` }),
          close: () => Promise.resolve(void client.shutdown()),
        });
      },
    },
  ];
}

/** Both subjects in this process over one store object. */
function inProcess(setup: StoreSetup, core: Any): PairSetup {
  return {
    name: setup.name,
    async open() {
      const opened = await setup.open();
      const subjects: [Subject, Subject] = [websessionSubject(core, opened.store), lockSubject(opened.store)];
      return {
        measure: (method, rounds, budgetMs) => measurePair(subjects, method, rounds, budgetMs),
        close: opened.close,
      };
    },
  };
}

/** Both subjects in Deno over one DenoKvStore (bench/contention_deno.mjs), on Deno KV in a temp file. */
function denoKv(pkg: string): PairSetup {
  return {
    name: "DenoKvStore (Deno)",
    async open() {
      const child = new Child("Deno KV", "bench/contention_deno.mjs", [], {
        runtime: "Deno",
        runtimeArgs: ["--unstable-kv"],
        env: { BENCH_PKG: pkg },
      });
      try {
        await child.ready;
      } catch (error) {
        await child.close();
        throw error;
      }
      return {
        measure: async (method, rounds, budgetMs) =>
          (await child.ask({ method, rounds, budgetMs })).tallies as [Tally, Tally],
        close: () => child.close(),
      };
    },
  };
}

/** Both subjects in one Worker over one DurableObjectStore, in Miniflare (bench/contention_workerd.ts). */
function durableObjects(pkg: string): PairSetup {
  return { name: "DurableObjectStore (Miniflare)", open: () => openDurableObjects(pkg) };
}

/** One row: GET then POST, each websession and the lock in alternating rounds; an error row on failure. */
async function pairRow(
  setup: PairSetup,
  options: { rounds: number; budgetMs: number; log: (line: string) => void },
): Promise<ContentionRow> {
  options.log(`  ${setup.name}`);
  let opened: Awaited<ReturnType<PairSetup["open"]>> | undefined;
  try {
    opened = await setup.open();
    const loads = [];
    for (const method of ["GET", "POST"] as const) {
      const tallies = await opened.measure(method, options.rounds, options.budgetMs);
      loads.push(tallies.map((t) => summarizeLoad(t.samples, t.runs, t.lost)));
    }
    const [[wsGet, lockGet], [wsPost, lockPost]] = loads as [[Load, Load], [Load, Load]];
    return {
      store: setup.name,
      processes: 1,
      websession: { get: wsGet, post: wsPost },
      lock: { get: lockGet, post: lockPost },
    };
  } catch (error) {
    const message = String((error as Error)?.message ?? error).slice(0, 300);
    options.log(`  ${setup.name}: ${message}`);
    return { store: setup.name, processes: 1, error: message } as ContentionRow;
  } finally {
    await opened?.close().catch(() => {});
  }
}

/** The store of the multi-process rows, opened here too (for the sessions' creation and reading). */
async function sharedStore(
  stores: Record<string, Any>,
  kind: "redis" | "postgres",
  names: { prefix: string; table: string },
): Promise<{ store: Any; close(): Promise<void> }> {
  if (kind === "redis") {
    const client = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
    return {
      store: new stores.RedisStore({ client, prefix: names.prefix }),
      async close() {
        const keys = await client.keys(`${names.prefix}*`);
        if (keys.length > 0) await client.del(...keys);
        client.disconnect();
      },
    };
  }
  const client = new pg.Pool({ connectionString: DATABASE_URL, max: 4 });
  const close = async () => {
    await client.query(`DROP TABLE IF EXISTS "${names.table}"`);
    await client.end();
  };
  const store = new stores.PostgresStore({ client, table: names.table });
  await store.migrate().catch(async (error: unknown) => {
    await close().catch(() => {});
    throw error;
  });
  return { store, close };
}

/** 3 processes x 10 in flight on one session, websession only. */
async function multiProcess(
  core: Any,
  stores: Record<string, Any>,
  pkg: string,
  kind: "redis" | "postgres",
  run: string,
  rounds: number,
): Promise<ContentionRow> {
  const processes = 3;
  const names = { table: `websession_bench_mp_${run}`, prefix: `websession-bench-mp:${run}:` };
  const shared = await sharedStore(stores, kind, names);
  const local = websessionSubject(core, shared.store);
  const env = {
    BENCH_PKG: pkg,
    KIND: kind,
    PREFIX: names.prefix,
    TABLE: names.table,
    REDIS_URL,
    DATABASE_URL,
  };
  const children = Array.from(
    { length: processes },
    (_, i) => new Child(`process ${i + 1}`, "bench/contention_child.mjs", [], { env }),
  );
  try {
    await Promise.all(children.map((c) => c.ready));
    const result: Record<"get" | "post", Load> = {} as never;
    for (const method of ["GET", "POST"] as const) {
      const samples: Array<{ ms: number; status: number }> = [];
      let runs = 0;
      let lost = 0;
      for (let round = 0; round < rounds; round++) {
        const cookie = await newCookie(local);
        const n = IN_FLIGHT / processes;
        const answers = await Promise.all(children.map((c) => c.ask({ method, cookie, n })));
        for (const a of answers) {
          samples.push(...(a.samples as typeof samples));
          runs += a.runs as number;
        }
        lost += 1 + samples.slice(-IN_FLIGHT).filter((s) => s.status === 200).length -
          (await visits(local, cookie));
      }
      result[method === "GET" ? "get" : "post"] = summarizeLoad(samples, runs / samples.length, lost);
    }
    const store = kind === "redis" ? "RedisStore (ioredis)" : "PostgresStore (pg)";
    return { store, processes, websession: result };
  } finally {
    await Promise.all(children.map((c) => c.close()));
    await shared.close();
  }
}

/** The Upstash and Neon bridges, each started on first use. */
function lazyBridges(): Bridges & { close(): Promise<void> } {
  let upstash: UpstashBridge | undefined;
  let neonBridge: NeonBridge | undefined;
  return {
    async upstash() {
      return upstash ??= await startUpstashBridge({ redisUrl: REDIS_URL });
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
    async close() {
      await upstash?.close();
      await neonBridge?.close();
    },
  };
}

export async function runContention(options: {
  pkg: string;
  rounds: number;
  budgetMs: number;
  multiRounds: number;
  log: (line: string) => void;
}): Promise<ContentionRow[]> {
  const at = (specifier: string) => load(specifier, options.pkg);
  const core = await at("websession");
  const stores: Record<string, Any> = {
    MemoryStore: core.MemoryStore,
    FileStore: (await at("websession/file")).FileStore,
    RedisStore: (await at("websession/redis")).RedisStore,
    PostgresStore: (await at("websession/postgres")).PostgresStore,
    MemcachedStore: (await at("websession/memcached")).MemcachedStore,
  };
  const run = crypto.randomUUID().slice(0, 8);
  const bridges = lazyBridges();
  const rows: ContentionRow[] = [];
  try {
    const pairs = [
      ...[...localSetups(stores), ...clientSetups(run, stores, bridges)].map((s) => inProcess(s, core)),
      denoKv(options.pkg),
      durableObjects(options.pkg),
    ];
    for (const setup of pairs) rows.push(await pairRow(setup, options));
    for (const kind of ["redis", "postgres"] as const) {
      options.log(`  3 processes sharing ${kind}`);
      try {
        rows.push(await multiProcess(core, stores, options.pkg, kind, run, options.multiRounds));
      } catch (error) {
        const message = String((error as Error)?.message ?? error).slice(0, 300);
        options.log(`  3 processes ${kind}: ${message}`);
        rows.push({ store: kind, processes: 3, error: message } as ContentionRow);
      }
    }
  } finally {
    await bridges.close();
  }
  return rows;
}
