// Contention on the built package: 30 requests in flight on ONE session, per store and client,
// each subject on the same store object:
// - websession, GET, the README's first example (`update("visits", n => n + 1)`): refused (409)
//   count, handler runs per request, lost increments, p99;
// - websession, POST, `get` then `set` (an observed key, not safe to re-run): refused %, p99;
// - the lock subject (bench/lock_subject.mjs: a plain per-session lock taken before loading,
//   CherryPy's implicit locking) under the same two loads: p99, the reference for websession's
//   "turns".
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
import { load } from "./entry.mjs";
import { timed } from "./timed.mjs";
import { Child } from "./measure.ts";
// deno-lint-ignore no-explicit-any
type Any = any;

export const IN_FLIGHT = 30;
/** Unmeasured rounds per subject and load before the measured ones. */
const WARM_ROUNDS = 3;
const SECRET = "benchmark secret: at least thirty-two characters";
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

type Handler = (r: Request) => Promise<Response>;
interface Subject {
  get: Handler;
  post: Handler;
  read: Handler;
  runs: () => number;
}

async function newCookie(subject: Subject): Promise<string> {
  const response = await subject.get(new Request("https://bench.example/count"));
  await response.arrayBuffer();
  const cookie = response.headers.getSetCookie().map((h) => h.split(";", 1)[0]).join("; ");
  if (!cookie) throw new Error(`no cookie (status ${response.status})`);
  return cookie;
}

async function visits(subject: Subject, cookie: string): Promise<number> {
  const r = await subject.read(new Request("https://bench.example/read", { headers: { cookie } }));
  return Number(await r.text());
}

/** One round: IN_FLIGHT requests on one fresh session; the samples and the increments lost. */
async function round(subject: Subject, method: "GET" | "POST") {
  const cookie = await newCookie(subject);
  const results = await Promise.all(
    Array.from(
      { length: IN_FLIGHT },
      () => timed(subject[method === "GET" ? "get" : "post"], method, cookie),
    ),
  );
  const lost = 1 + results.filter((r) => r.status === 200).length - (await visits(subject, cookie));
  return { results, lost };
}

/**
 * websession and the lock subject under one load, round by round in turn (so that neither gets the
 * quieter half of the machine's minute), each after `WARM_ROUNDS` unmeasured rounds (so that neither
 * pays the compiler's first runs in its figures; measured first and cold, websession's p99 on
 * MemoryStore once read 6x the lock's, while warm the two cost the same per request).
 * `rounds` rounds of IN_FLIGHT requests on one fresh session each.
 */
async function measurePair(
  subjects: [Subject, Subject],
  method: "GET" | "POST",
  rounds: number,
  budgetMs: number,
): Promise<[Load, Load]> {
  for (let i = 0; i < WARM_ROUNDS; i++) for (const subject of subjects) await round(subject, method);
  const tallies = subjects.map((subject) => ({
    samples: [] as Array<{ ms: number; status: number }>,
    lost: 0,
    runs0: subject.runs(),
  }));
  const t0 = performance.now();
  for (let r = 0; r < rounds; r++) {
    if (r >= 3 && performance.now() - t0 > budgetMs) break;
    for (const [i, subject] of subjects.entries()) {
      const { results, lost } = await round(subject, method);
      tallies[i]!.samples.push(...results);
      tallies[i]!.lost += lost;
    }
  }
  return subjects.map((subject, i) => {
    const { samples, lost, runs0 } = tallies[i]!;
    // Handler runs of the measured requests only: each round's session-creating request and final
    // read run the handler once each.
    const runs = subject.runs() - runs0 - 2 * (samples.length / IN_FLIGHT);
    return summarizeLoad(samples, runs / samples.length, lost);
  }) as [Load, Load];
}

interface StoreSetup {
  name: string;
  open(): Promise<{ store: Any; close(): Promise<void> }>;
}

function setups(run: string, stores: Record<string, Any>, bridges: {
  upstash(): Promise<UpstashBridge>;
  neon(): Promise<NeonBridge>;
}): StoreSetup[] {
  const redis = (
    name: string,
    connect: () => Promise<{ client: Any; close(): Promise<void> }>,
  ): StoreSetup => ({
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
  });
  const sql = (
    name: string,
    connect: () => Promise<{ client: Any; close(): Promise<void> }>,
  ): StoreSetup => ({
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
  });
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

function websessionSubject(core: Any, store: Any): Subject {
  let runs = 0;
  const options = { store, secrets: SECRET, onError: () => {} };
  return {
    // The README's first example.
    get: core.withSession(async (req: Request) => {
      runs++;
      const session = await core.getSession(req);
      session.update("visits", (n = 0) => n + 1);
      return new Response(`visit ${session.get("visits")}`);
    }, options),
    post: core.withSession(async (req: Request) => {
      runs++;
      const session = await core.getSession(req);
      session.set("visits", (session.get("visits") ?? 0) + 1);
      return new Response("ok");
    }, options),
    read: core.withSession(async (req: Request) => {
      runs++;
      return new Response(String((await core.getSession(req)).get("visits") ?? 0));
    }, options),
    runs: () => runs,
  };
}

function lockSubject(createLockedSessions: Any, store: Any): Subject {
  let runs = 0;
  const sessions = createLockedSessions({ store, secret: SECRET });
  return {
    get: sessions.wrap((_req: Request, s: Any) => {
      runs++;
      s.update("visits", (n = 0) => n + 1);
      return new Response(`visit ${s.get("visits")}`);
    }),
    post: sessions.wrap((_req: Request, s: Any) => {
      runs++;
      s.set("visits", (s.get("visits") ?? 0) + 1);
      return new Response("ok");
    }),
    read: sessions.wrap((_req: Request, s: Any) => {
      runs++;
      return new Response(String(s.get("visits") ?? 0));
    }),
    runs: () => runs,
  };
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
  const perProcess = IN_FLIGHT / processes;
  const table = `websession_bench_mp_${run}`;
  const prefix = `websession-bench-mp:${run}:`;
  let client: Any;
  let store: Any;
  if (kind === "redis") {
    client = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
    store = new stores.RedisStore({ client, prefix });
  } else {
    client = new pg.Pool({ connectionString: DATABASE_URL, max: 4 });
    store = new stores.PostgresStore({ client, table });
    await store.migrate();
  }
  const local = websessionSubject(core, store);
  const children = Array.from(
    { length: processes },
    (_, i) =>
      new Child(`process ${i + 1}`, "bench/contention_child.mjs", [], {
        env: { BENCH_PKG: pkg, KIND: kind, PREFIX: prefix, TABLE: table, REDIS_URL, DATABASE_URL },
      }),
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
        const answers = await Promise.all(children.map((c) => c.ask({ method, cookie, n: perProcess })));
        for (const a of answers) {
          samples.push(...(a.samples as typeof samples));
          runs += a.runs as number;
        }
        lost += 1 + samples.slice(-IN_FLIGHT).filter((s) => s.status === 200).length -
          (await visits(local, cookie));
      }
      result[method === "GET" ? "get" : "post"] = summarizeLoad(samples, runs / samples.length, lost);
    }
    return {
      store: kind === "redis" ? "RedisStore (ioredis)" : "PostgresStore (pg)",
      processes,
      websession: result,
    };
  } finally {
    await Promise.all(children.map((c) => c.close()));
    if (kind === "redis") {
      const keys = await client.keys(`${prefix}*`);
      if (keys.length > 0) await client.del(...keys);
      client.disconnect();
    } else {
      await client.query(`DROP TABLE IF EXISTS "${table}"`);
      await client.end();
    }
  }
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
  const { createLockedSessions } = await import(new URL("./lock_subject.mjs", import.meta.url).href);
  const run = crypto.randomUUID().slice(0, 8);
  let upstash: UpstashBridge | undefined;
  let neonBridge: NeonBridge | undefined;
  const bridges = {
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
  };
  const rows: ContentionRow[] = [];
  try {
    for (const setup of setups(run, stores, bridges)) {
      options.log(`  ${setup.name}`);
      let opened: Awaited<ReturnType<StoreSetup["open"]>> | undefined;
      try {
        opened = await setup.open();
        const ws = websessionSubject(core, opened.store);
        const lock = lockSubject(createLockedSessions, opened.store);
        const [wsGet, lockGet] = await measurePair([ws, lock], "GET", options.rounds, options.budgetMs);
        const [wsPost, lockPost] = await measurePair([ws, lock], "POST", options.rounds, options.budgetMs);
        rows.push({
          store: setup.name,
          processes: 1,
          websession: { get: wsGet, post: wsPost },
          lock: { get: lockGet, post: lockPost },
        });
      } catch (error) {
        const message = String((error as Error)?.message ?? error).slice(0, 300);
        options.log(`  ${setup.name}: ${message}`);
        rows.push({ store: setup.name, processes: 1, error: message } as ContentionRow);
      } finally {
        await opened?.close().catch(() => {});
      }
    }
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
    await upstash?.close();
    await neonBridge?.close();
  }
  return rows;
}
