// The Node side of the remote-store suites that run inside workerd (tests/runtime/workerd_remote.ts):
// starts the Upstash REST bridge (-> the real Redis) and the Neon HTTP SQL bridge (-> the real
// PostgreSQL) on 127.0.0.1 before Miniflare starts, hands their addresses to the Worker as plain
// text bindings, and once the Worker is done checks from Node that its traffic went through both
// bridges and that it left nothing behind (removing whatever it did leave).
import { Redis as IoRedis } from "ioredis";
import pg from "pg";
import { type NeonBridge, startNeonBridge } from "../bridges/neon.ts";
import { startUpstashBridge, type UpstashBridge } from "../bridges/upstash.ts";

/** The text bindings the runner Worker receives for the remote stores. */
export interface RemoteBindings {
  /** The Upstash bridge, under the names `Redis.fromEnv(env)` reads. */
  UPSTASH_REDIS_REST_URL: string;
  UPSTASH_REDIS_REST_TOKEN: string;
  UPSTASH_DISABLE_TELEMETRY: string;
  /** Every Redis key this run writes starts with it. */
  REDIS_PREFIX: string;
  /** The connection string given to `neon()`; the bridge runs its queries on this database. */
  DATABASE_URL: string;
  /** `neonConfig.fetchEndpoint`: the Neon bridge's HTTP SQL endpoint. */
  NEON_FETCH_ENDPOINT: string;
  /** Every PostgreSQL table this run creates starts with it. */
  POSTGRES_TABLE: string;
}

/** A check made from Node after the Worker ran, reported like one of its tests. */
export interface RemoteCheck {
  name: string;
  ok: boolean;
  message?: string;
}

/** The running bridges of one workerd run. */
export interface RemoteBackends {
  bindings: RemoteBindings;
  /** Checks the run's traffic and leftovers, removes any leftover, and stops the bridges. */
  finish(): Promise<RemoteCheck[]>;
}

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";

/**
 * Starts both bridges for one workerd run; `mode` names the run in the Redis prefix and table
 * name, so that two runs never share data.
 */
export async function startRemoteBackends(mode: "compat" | "nocompat"): Promise<RemoteBackends> {
  const run = `${mode}_${crypto.randomUUID().slice(0, 8)}`;
  const prefix = `websession-test:workerd-${run}:`;
  const table = `websession_test_workerd_${run}`;
  const database = new URL(DATABASE_URL);

  let upstash: UpstashBridge | undefined;
  let neon: NeonBridge | undefined;
  try {
    upstash = await startUpstashBridge({ redisUrl: REDIS_URL });
    neon = await startNeonBridge({
      host: database.hostname,
      ...(database.port ? { port: Number(database.port) } : {}),
      database: database.pathname.slice(1) || "test",
      user: decodeURIComponent(database.username) || "postgres",
    });
  } catch (error) {
    await upstash?.close();
    throw error;
  }
  const redisBridge = upstash;
  const neonBridge = neon;

  return {
    bindings: {
      UPSTASH_REDIS_REST_URL: redisBridge.url,
      UPSTASH_REDIS_REST_TOKEN: redisBridge.token,
      UPSTASH_DISABLE_TELEMETRY: "1",
      REDIS_PREFIX: prefix,
      DATABASE_URL,
      NEON_FETCH_ENDPOINT: neonBridge.fetchEndpoint,
      POSTGRES_TABLE: table,
    },
    async finish() {
      const checks: RemoteCheck[] = [];
      const check = async (name: string, body: () => string | undefined | Promise<string | undefined>) => {
        try {
          const problem = await body();
          checks.push(problem === undefined ? { name, ok: true } : { name, ok: false, message: problem });
        } catch (error) {
          checks.push({ name, ok: false, message: error instanceof Error ? error.message : String(error) });
        }
      };
      const group = "Upstash Redis and Neon Postgres from workerd (checked from Node)";

      const via = `${group} > the Worker's traffic reached`;
      await check(`${via} the real Redis through the Upstash bridge`, () => {
        return redisBridge.requests > 0 ? undefined : "the Upstash bridge answered no request";
      });
      await check(`${via} the real PostgreSQL through the Neon HTTP bridge`, () => {
        return neonBridge.requests > 0 ? undefined : "the Neon bridge answered no HTTP query";
      });

      const redis = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
      redis.on("error", () => {});
      try {
        await check(`${group} > the Worker removed every Redis key it wrote`, async () => {
          const left: string[] = [];
          const pattern = prefix.replace(/[*?[\]\\]/g, "\\$&") + "*";
          let cursor = "0";
          do {
            const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
            left.push(...keys);
            if (keys.length > 0) await redis.del(...keys);
            cursor = next;
          } while (cursor !== "0");
          return left.length === 0 ? undefined : `${left.length} keys left under ${prefix} (now removed)`;
        });
      } finally {
        redis.disconnect();
      }

      const admin = new pg.Client({ connectionString: DATABASE_URL });
      try {
        await check(`${group} > the Worker dropped every table it created`, async () => {
          await admin.connect();
          const { rows } = await admin.query<{ name: string }>(
            `SELECT table_name AS name FROM information_schema.tables WHERE table_name LIKE $1`,
            [`${table.replace(/_/g, "\\_")}%`],
          );
          for (const { name } of rows) await admin.query(`DROP TABLE IF EXISTS "${name}"`);
          return rows.length === 0
            ? undefined
            : `tables left: ${rows.map((row) => row.name).join(", ")} (now dropped)`;
        });
      } finally {
        await admin.end().catch(() => {});
        await redisBridge.close();
        await neonBridge.close();
      }
      return checks;
    },
  };
}
