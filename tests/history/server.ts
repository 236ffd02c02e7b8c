// One server process of a deployment: serves the history app over HTTP on a free loopback port
// and prints `listening <port>` once it accepts connections. Several of these share one store.
//
//   node --import tsx tests/history/server.ts
//
// Configured by the environment:
//   HISTORY_STORE       file | ioredis | node-redis | postgres | memcached, or a store made of
//                       stores: tiered (a Redis cache at HISTORY_CACHE_URL in front of PostgreSQL),
//                       migrating-redis (ioredis at HISTORY_REDIS_URL to PostgreSQL),
//                       migrating-file (FileStore at HISTORY_DIR to PostgreSQL),
//                       cookie (CookieStore sealed with HISTORY_COOKIE_SECRET),
//                       migrating-cookie (that CookieStore to ioredis at HISTORY_REDIS_URL)
//   HISTORY_CACHE_URL   redis://host:port of the tiered cache (a server of its own: it is flushed)
//   HISTORY_DIR         FileStore's directory
//   HISTORY_REDIS_URL   redis://host:port          HISTORY_PREFIX   key prefix (Redis, Memcached)
//   HISTORY_DATABASE_URL, HISTORY_TABLE             (the table exists: the test migrates it)
//   HISTORY_MEMCACHED   host:port
//   HISTORY_CONFLICT    merge (default) | retry | reject | overwrite
//   HISTORY_SKEW_MS     this process's clock runs this far ahead (app and store)
//   HISTORY_STALE_LOCK_MS  FileStore's staleLockMs
//   HISTORY_TIMEOUT_MS  the store client's command timeout (default 2000)
//   HISTORY_DELAY_MS    the hold inside each handler run (default 30)
import type { ConflictPolicy, SealedSessionStore, SessionStore } from "../../mod.ts";
import { CookieStore } from "../../src/stores/cookie.ts";
import { FileStore } from "../../src/stores/file.ts";
import { RedisStore } from "../../src/stores/redis.ts";
import { PostgresStore } from "../../src/stores/postgres.ts";
import { MemcachedStore } from "../../src/stores/memcached.ts";
import { TieredStore } from "../../src/stores/tiered.ts";
import { MigratingStore } from "../../src/stores/migrating.ts";
import { serveFetch } from "../http/server.ts";
import { historyApp } from "./app.ts";

const env = process.env;
const skew = Number(env.HISTORY_SKEW_MS ?? 0);
const now = skew === 0 ? undefined : () => Date.now() + skew;
const timeout = Number(env.HISTORY_TIMEOUT_MS ?? 2_000);
const clock = now ? { now } : {};

async function openStore(kind = env.HISTORY_STORE): Promise<SessionStore> {
  switch (kind) {
    case "file":
      return new FileStore({
        dir: env.HISTORY_DIR!,
        ...(env.HISTORY_STALE_LOCK_MS ? { staleLockMs: Number(env.HISTORY_STALE_LOCK_MS) } : {}),
        ...clock,
      });
    case "ioredis":
      return await ioredisStore(env.HISTORY_REDIS_URL!);
    case "tiered":
      return new TieredStore({
        cache: await ioredisStore(env.HISTORY_CACHE_URL!),
        durable: await openStore("postgres"),
        logger: { error() {} }, // a cache outage is expected in some cells
        ...clock,
      });
    case "migrating-redis":
      return new MigratingStore({
        from: await openStore("ioredis"),
        to: await openStore("postgres"),
        ...clock,
      });
    case "migrating-file":
      return new MigratingStore({ from: await openStore("file"), to: await openStore("postgres"), ...clock });
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

async function ioredisStore(url: string): Promise<SessionStore> {
  const { Redis } = await import("ioredis");
  const client = new Redis(url, { commandTimeout: timeout, maxRetriesPerRequest: 1 });
  client.on("error", () => {}); // told to the request as a store failure
  return new RedisStore({ client, prefix: env.HISTORY_PREFIX, ...clock });
}

function cookieStore(): CookieStore {
  return new CookieStore({ secrets: env.HISTORY_COOKIE_SECRET!, ...clock });
}

const kind = env.HISTORY_STORE;
const store: SessionStore | SealedSessionStore = kind === "cookie"
  ? cookieStore()
  : kind === "migrating-cookie"
  ? new MigratingStore({ from: cookieStore(), to: await openStore("ioredis") })
  : await openStore();
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
