// What the tests of TieredStore share: the real Redis and PostgreSQL on loopback, fresh tables
// and Redis prefixes under one run's (removed at the end), and a record to save.
import { after } from "node:test";
import { Redis as IoRedis } from "ioredis";
import pg from "pg";
import type { StoredSession } from "../../../src/store.ts";
import { PostgresStore } from "../../../src/stores/postgres.ts";
import { dropPrefix, REDIS_URL } from "../composed.ts";
import { storeTables } from "../../conformance/util.ts";

const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
/** Part of every prefix and table a test file uses, so that runs never meet. */
export const RUN = crypto.randomUUID().slice(0, 8);

/** Raw access to the Redis the caches use. */
export const redis = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 10 });
const tables: string[] = [];
/** A PostgresStore on a fresh table, migrated. */
export async function table(name: string): Promise<PostgresStore> {
  const full = `tiered_${RUN}_${name}`;
  tables.push(full);
  const store = new PostgresStore({ client: pool, table: full });
  await store.migrate();
  return store;
}
after(async () => {
  await dropPrefix(redis, `tiered-test:${RUN}:`);
  for (const name of tables) await pool.query(`DROP TABLE IF EXISTS ${storeTables(name)}`);
  redis.disconnect();
  await pool.end();
});

/** A record of `data` that lives `ttl` ms from now. */
export function record(data: Record<string, unknown>, version = 1, ttl = 60_000): StoredSession {
  const now = Date.now();
  return { data, version, createdAt: now, expiresAt: now + ttl };
}
