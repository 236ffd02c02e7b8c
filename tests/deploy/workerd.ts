// Serves the deployment Worker (tests/deploy/worker.ts) in Miniflare, one isolate per cell, and
// starts what its remote stores reach: the Upstash REST bridge (-> the real Redis) and the Neon
// HTTP bridge (-> the real PostgreSQL). Node only.
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Redis as IoRedis } from "ioredis";
import { Log, LogLevel, Miniflare } from "miniflare";
import pg from "pg";
import { PostgresStore } from "../../src/stores/postgres.ts";
import { type NeonBridge, startNeonBridge } from "../bridges/neon.ts";
import { startUpstashBridge, type UpstashBridge } from "../bridges/upstash.ts";
import type { Stats } from "./app.ts";
import type { Send } from "./driver.ts";

/** The newest date this Miniflare's workerd accepts is 2026-05-03. */
export const COMPATIBILITY_DATE = "2026-04-01";

/** The secret the Worker signs cookies with (a test value). */
export const SECRET = "deploy cells: a test secret of 32+ characters";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";

const bundles = new Map<string, Promise<string>>();

/** A Worker of this folder as one ES module, built as a Worker build would (workerd conditions). */
export function bundleWorker(entry: string): Promise<string> {
  let bundled = bundles.get(entry);
  if (bundled === undefined) {
    bundled = build({
      entryPoints: [fileURLToPath(new URL(entry, import.meta.url))],
      bundle: true,
      format: "esm",
      platform: "neutral",
      mainFields: ["module", "main"],
      conditions: ["workerd", "worker", "browser"],
      target: "es2022",
      write: false,
      logLevel: "silent",
    }).then((result) => result.outputFiles[0]!.text);
    bundles.set(entry, bundled);
  }
  return bundled;
}

/** The deployment Worker (worker.ts) as one ES module. */
export function workerScript(): Promise<string> {
  return bundleWorker("./worker.ts");
}

/** A served Worker: send requests into it, read its stats, stop it. */
export interface Served {
  send: Send;
  stats(): Promise<Stats>;
  /** GET a path outside the session app (/stale-counts). */
  get(path: string): Promise<unknown>;
  close(): Promise<void>;
}

/** Starts one Miniflare (one isolate) serving the Worker with `bindings`. */
export async function serveWorker(bindings: Record<string, string>): Promise<Served> {
  const mf = new Miniflare({
    modules: [{ type: "ESModule", path: "worker.js", contents: await workerScript() }],
    compatibilityDate: COMPATIBILITY_DATE,
    bindings: { SESSION_SECRET: SECRET, ...bindings },
    kvNamespaces: ["SESSIONS_KV"],
    durableObjects: { SESSIONS_DO: "SessionDurableObject" },
    log: new Log(process.env.DEPLOY_VERBOSE === "1" ? LogLevel.WARN : LogLevel.NONE),
  });
  await mf.ready;
  const url = (path: string) => `https://deploy.test${path}`;
  return {
    send: async (path, init) => {
      const response = await mf.dispatchFetch(url(path), {
        method: init.method,
        headers: init.cookie ? { cookie: `session=${init.cookie}` } : {},
      });
      return response as unknown as Response;
    },
    stats: async () => (await (await mf.dispatchFetch(url("/stats"))).json()) as Stats,
    get: async (path) => await (await mf.dispatchFetch(url(path))).json(),
    close: () => mf.dispose(),
  };
}

/** The bridges and what the remote cells write: a Redis prefix and a PostgreSQL table. */
export interface Remote {
  bindings: {
    UPSTASH_REDIS_REST_URL: string;
    UPSTASH_REDIS_REST_TOKEN: string;
    UPSTASH_DISABLE_TELEMETRY: string;
    REDIS_PREFIX: string;
    DATABASE_URL: string;
    NEON_FETCH_ENDPOINT: string;
    POSTGRES_TABLE: string;
  };
  upstash: UpstashBridge;
  neon: NeonBridge;
  /** Removes the Redis keys and the table, and stops the bridges. */
  close(): Promise<void>;
}

/** Starts both bridges and creates the sessions table (with the store's own migrate()). */
export async function startRemote(): Promise<Remote> {
  const run = crypto.randomUUID().slice(0, 8);
  const prefix = `websession-test:deploy-${run}:`;
  const table = `websession_test_deploy_${run}`;
  const database = new URL(DATABASE_URL);
  const upstash = await startUpstashBridge({ redisUrl: REDIS_URL });
  let neon: NeonBridge;
  try {
    neon = await startNeonBridge({
      host: database.hostname,
      ...(database.port ? { port: Number(database.port) } : {}),
      database: database.pathname.slice(1) || "test",
      user: decodeURIComponent(database.username) || "postgres",
    });
  } catch (error) {
    await upstash.close();
    throw error;
  }
  const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
  await new PostgresStore({ client: admin, table }).migrate();
  return {
    bindings: {
      UPSTASH_REDIS_REST_URL: upstash.url,
      UPSTASH_REDIS_REST_TOKEN: upstash.token,
      UPSTASH_DISABLE_TELEMETRY: "1",
      REDIS_PREFIX: prefix,
      DATABASE_URL,
      NEON_FETCH_ENDPOINT: neon.fetchEndpoint,
      POSTGRES_TABLE: table,
    },
    upstash,
    neon,
    async close() {
      try {
        await admin.query(`DROP TABLE IF EXISTS "${table}", "${table}_leases"`);
        await dropPrefix(prefix);
      } finally {
        await admin.end().catch(() => {});
        await upstash.close();
        await neon.close();
      }
    },
  };
}

/** Deletes every Redis key under `prefix`. */
export async function dropPrefix(prefix: string): Promise<void> {
  const redis = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
  redis.on("error", () => {});
  try {
    const pattern = prefix.replace(/[*?[\]\\]/g, "\\$&") + "*";
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
      if (keys.length > 0) await redis.del(...keys);
      cursor = next;
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
}
