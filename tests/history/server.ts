// One server process of a deployment: serves the history app over HTTP on a free loopback port
// and prints `listening <port>` once it accepts connections. Several of these share one store.
//
//   node --import tsx tests/history/server.ts
//
// Configured by the environment:
//   HISTORY_STORE       file | ioredis | node-redis | postgres | memcached
//   HISTORY_DIR         FileStore's directory
//   HISTORY_REDIS_URL   redis://host:port          HISTORY_PREFIX   key prefix (Redis, Memcached)
//   HISTORY_DATABASE_URL, HISTORY_TABLE             (the table exists: the test migrates it)
//   HISTORY_MEMCACHED   host:port
//   HISTORY_CONFLICT    merge (default) | retry | reject | overwrite
//   HISTORY_SKEW_MS     this process's clock runs this far ahead (app and store)
//   HISTORY_STALE_LOCK_MS  FileStore's staleLockMs
//   HISTORY_TIMEOUT_MS  the store client's command timeout (default 2000)
//   HISTORY_DELAY_MS    the hold inside each handler run (default 30)
import type { ConflictPolicy, SessionStore } from "../../mod.ts";
import { FileStore } from "../../src/stores/file.ts";
import { RedisStore } from "../../src/stores/redis.ts";
import { PostgresStore } from "../../src/stores/postgres.ts";
import { MemcachedStore } from "../../src/stores/memcached.ts";
import { serveFetch } from "../http/server.ts";
import { historyApp } from "./app.ts";

const env = process.env;
const skew = Number(env.HISTORY_SKEW_MS ?? 0);
const now = skew === 0 ? undefined : () => Date.now() + skew;
const timeout = Number(env.HISTORY_TIMEOUT_MS ?? 2_000);
const clock = now ? { now } : {};

async function openStore(): Promise<SessionStore> {
  switch (env.HISTORY_STORE) {
    case "file":
      return new FileStore({
        dir: env.HISTORY_DIR!,
        ...(env.HISTORY_STALE_LOCK_MS ? { staleLockMs: Number(env.HISTORY_STALE_LOCK_MS) } : {}),
        ...clock,
      });
    case "ioredis": {
      const { Redis } = await import("ioredis");
      const client = new Redis(env.HISTORY_REDIS_URL!, { commandTimeout: timeout, maxRetriesPerRequest: 1 });
      client.on("error", () => {}); // told to the request as a store failure
      return new RedisStore({ client, prefix: env.HISTORY_PREFIX, ...clock });
    }
    case "node-redis": {
      const { createClient } = await import("redis");
      const client = createClient({ url: env.HISTORY_REDIS_URL, socket: { connectTimeout: timeout } });
      client.on("error", () => {});
      await client.connect();
      return new RedisStore({ client, prefix: env.HISTORY_PREFIX, ...clock });
    }
    case "postgres": {
      const { default: pg } = await import("pg");
      const client = new pg.Pool({ connectionString: env.HISTORY_DATABASE_URL, max: 10 });
      client.on("error", () => {}); // an idle connection ended by the server
      return new PostgresStore({ client, table: env.HISTORY_TABLE, ...clock });
    }
    case "memcached": {
      const { MemcacheClient } = await import("memcache-client");
      const client = new MemcacheClient({
        server: env.HISTORY_MEMCACHED!,
        cmdTimeout: timeout,
        connectTimeout: timeout,
      });
      return new MemcachedStore({ client, prefix: env.HISTORY_PREFIX, ...clock });
    }
    default:
      throw new Error(`Unknown HISTORY_STORE: ${env.HISTORY_STORE}`);
  }
}

const store = await openStore();
const handler = historyApp({
  store,
  conflict: (env.HISTORY_CONFLICT ?? "merge") as ConflictPolicy,
  ...(now ? { now } : {}),
  delayMs: Number(env.HISTORY_DELAY_MS ?? 30),
});
const server = await serveFetch(handler);
process.stdout.write(`listening ${new URL(server.url).port}\n`);
process.on("SIGTERM", () => {
  void server.close().finally(() => process.exit(0));
});
