// Contention: 50 concurrent writers on ONE session, under each conflict policy, against the same
// 50 writers spread over 50 sessions (the same load, no contention) and a lone writer.
import { Redis } from "ioredis";
import { getSession, MemoryStore, type SessionOptions, type SessionStore, withSession } from "../mod.ts";
import { RedisStore } from "../src/stores/redis.ts";
import { cookiePool } from "./inprocess.ts";
import { CountingStore, SECRET } from "./subjects.ts";

/** Latency figures in milliseconds. */
export interface Latency {
  p50: number;
  p99: number;
  max: number;
}

/** One store and policy. */
export interface ContentionRow {
  store: string;
  policy: "merge" | "retry" | "reject";
  writers: number;
  rounds: number;
  ok: number;
  conflicts: number;
  /** Successful increments missing from the final count. */
  lost: number;
  /** Store saves per request (1 = no retry). */
  savesPerRequest: number;
  contended: Latency;
  /** The same number of concurrent writers, each on its own session. */
  spread: Latency;
  /** One writer at a time. */
  alone: Latency;
}

const WRITERS = 50;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function latency(samples: number[]): Latency {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted.at(-1)! };
}

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
  rounds: number,
): Promise<ContentionRow> {
  const store = new CountingStore(inner); // no destroy or touch here: every write is a save
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

  const contended: number[] = [];
  let ok = 0;
  let conflicts = 0;
  let lost = 0;
  let saves = 0;
  for (let round = 0; round < rounds; round++) {
    const [cookie] = await cookiePool(instance, 1);
    const before = store.writes;
    const results = await Promise.all(Array.from({ length: WRITERS }, () => timed(count, cookie!)));
    saves += store.writes - before;
    for (const result of results) {
      contended.push(result.ms);
      if (result.status === 200) ok++;
      else if (result.status === 409) conflicts++;
      else throw new Error(`status ${result.status}`);
    }
    const final = Number(
      await (await read(new Request("https://bench.example/read", { headers: { cookie: cookie! } }))).text(),
    );
    lost += 1 + results.filter((r) => r.status === 200).length - final;
  }

  const spread: number[] = [];
  const alone: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const pool = await cookiePool(instance, WRITERS);
    const results = await Promise.all(pool.map((cookie) => timed(count, cookie)));
    for (const result of results) spread.push(result.ms);
    for (const cookie of pool.slice(0, 10)) alone.push((await timed(count, cookie)).ms);
  }
  return {
    store: storeName,
    policy,
    writers: WRITERS,
    rounds,
    ok,
    conflicts,
    lost,
    savesPerRequest: saves / (rounds * WRITERS),
    contended: latency(contended),
    spread: latency(spread),
    alone: latency(alone),
  };
}

/** Runs every policy on MemoryStore and on RedisStore. */
export async function runContention(
  options: { rounds: number; log: (line: string) => void },
): Promise<ContentionRow[]> {
  const rows: ContentionRow[] = [];
  const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379", { maxRetriesPerRequest: 1 });
  const prefix = `websession-bench-contention:${crypto.randomUUID().slice(0, 8)}:`;
  try {
    for (const policy of ["merge", "retry", "reject"] as const) {
      options.log(`  MemoryStore ${policy}`);
      rows.push(await one("MemoryStore", new MemoryStore(), policy, options.rounds));
      options.log(`  RedisStore ${policy}`);
      rows.push(
        await one("RedisStore (ioredis)", new RedisStore({ client: redis, prefix }), policy, options.rounds),
      );
    }
  } finally {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
      if (keys.length > 0) await redis.del(...keys);
      cursor = next;
    } while (cursor !== "0");
    redis.disconnect();
  }
  return rows;
}
