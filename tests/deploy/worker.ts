// The deployment app as a Cloudflare Worker, built the way the README and examples/workers build
// it: the options are a function of (request, env, ctx) that returns one object per `env`, so the
// store (and withSession's resolved options) is shared by every request of the isolate.
//
// The `STORE` binding picks the store:
//   do        DurableObjectStore over the SESSIONS_DO binding (SessionDurableObject below)
//   kv        CloudflareKvStore over the SESSIONS_KV binding
//   stale-kv  CloudflareKvStore over a stand-in of SESSIONS_KV whose reads lag its writes
//             (STALE_MS, STALE_SHARE; see stale_kv.ts)
//   redis     RedisStore over @upstash/redis (Redis.fromEnv: UPSTASH_REDIS_REST_URL/_TOKEN)
//   postgres  PostgresStore over neon() (DATABASE_URL; NEON_FETCH_ENDPOINT, the HTTP endpoint)
import { Redis } from "@upstash/redis/cloudflare";
import { neon, neonConfig } from "@neondatabase/serverless";
import type { SessionOptions } from "../../mod.ts";
import { CloudflareKvStore, type KvNamespaceLike } from "../../src/stores/cloudflare_kv.ts";
import {
  type DurableObjectNamespaceLike,
  DurableObjectStore,
  SessionDurableObject,
} from "../../src/stores/durable_object.ts";
import { PostgresStore } from "../../src/stores/postgres.ts";
import { RedisStore } from "../../src/stores/redis.ts";
import type { SessionStore } from "../../src/store.ts";
import { createDeployApp, type Data } from "./app.ts";
import { staleKv, type StaleKvCounts } from "./stale_kv.ts";

export { SessionDurableObject };

/** The Worker's bindings. */
export interface Env {
  STORE: string;
  SESSION_SECRET: string;
  SESSIONS_DO?: DurableObjectNamespaceLike;
  SESSIONS_KV?: KvNamespaceLike;
  STALE_MS?: string;
  STALE_SHARE?: string;
  UPSTASH_REDIS_REST_URL?: string;
  UPSTASH_REDIS_REST_TOKEN?: string;
  UPSTASH_DISABLE_TELEMETRY?: string;
  REDIS_PREFIX?: string;
  DATABASE_URL?: string;
  NEON_FETCH_ENDPOINT?: string;
  POSTGRES_TABLE?: string;
}

const optionsByEnv = new WeakMap<Env, SessionOptions<Data>>();
const staleCounts = new WeakMap<Env, StaleKvCounts>();

function need(env: Env, name: keyof Env): string {
  const value = env[name];
  if (typeof value !== "string" || value === "") throw new Error(`The Worker has no ${name} binding`);
  return value;
}

function storeFor(env: Env): SessionStore {
  switch (env.STORE) {
    case "do":
      return new DurableObjectStore({ namespace: env.SESSIONS_DO! });
    case "kv":
      return new CloudflareKvStore({ namespace: env.SESSIONS_KV! });
    case "stale-kv": {
      const namespace = staleKv(env.SESSIONS_KV!, {
        windowMs: Number(need(env, "STALE_MS")),
        share: Number(need(env, "STALE_SHARE")),
      });
      staleCounts.set(env, namespace.counts);
      return new CloudflareKvStore({ namespace });
    }
    case "redis":
      return new RedisStore({
        client: Redis.fromEnv(env as never),
        prefix: need(env, "REDIS_PREFIX"),
      });
    case "postgres":
      neonConfig.fetchEndpoint = need(env, "NEON_FETCH_ENDPOINT");
      return new PostgresStore({
        client: neon(need(env, "DATABASE_URL")),
        table: need(env, "POSTGRES_TABLE"),
      });
    default:
      throw new Error(`Unknown STORE binding: "${env.STORE}"`);
  }
}

function sessionOptions(_request: Request, env: Env): SessionOptions<Data> {
  let options = optionsByEnv.get(env);
  if (options === undefined) {
    options = { store: storeFor(env), secrets: [env.SESSION_SECRET] };
    optionsByEnv.set(env, options);
  }
  return options;
}

const app = createDeployApp(sessionOptions);

export default {
  fetch(request: Request, env: Env, ctx: unknown): Promise<Response> {
    if (new URL(request.url).pathname === "/stale-counts") {
      return Promise.resolve(Response.json(staleCounts.get(env) ?? null));
    }
    return (app as (...args: unknown[]) => Promise<Response>)(request, env, ctx);
  },
};
