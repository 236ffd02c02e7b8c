// The reach features in a Cloudflare Worker: one API for a web app (the session cookie) and a
// native client (`Authorization: Bearer`, headerTransport({ cookie: true })), every handler behind
// csrf(), and `serializer: richValues` unless the RICH binding says "0" (the same Worker before
// the switch). Its options are built once per `env`, as the README builds them.
//
// The `STORE` binding picks the store:
//   do     DurableObjectStore over the SESSIONS_DO binding (SessionDurableObject below)
//   kv     CloudflareKvStore over the SESSIONS_KV binding
//   redis  RedisStore over @upstash/redis (Redis.fromEnv: UPSTASH_REDIS_REST_URL/_TOKEN), REDIS_PREFIX
//
// Routes (all but /stats go through withSession(csrf(...))):
//   POST /login?user=U  regenerate(), then signs U in
//   POST /logout        destroy()
//   GET  /me            { user, n, note }: who is signed in, the counter, the note
//   POST /count         session.update("n", n + 1), holding the session HOLD_MS so that requests overlap
//   GET  /form          { token }: the session's CSRF token (csrfToken)
//   POST /note?text=T   sets the note (what CSRF protects)
//   POST /rich?seed=S   stores the rich values of `richFor(S)` (a Date, a Map, a Set, a URL, a BigInt)
//   GET  /rich          those values as the handler reads them, each checked for its class
//                       (`describeRich`), or null where a value is not there or not of its class
//                       (both in reach_values.ts)
//   GET  /stats         the most requests of one credential (Authorization, else Cookie) that
//                       this isolate was serving at once
import { Redis } from "@upstash/redis/cloudflare";
import { getSession, type SessionOptions, withSession } from "../../mod.ts";
import { csrf, csrfToken } from "../../src/csrf.ts";
import { richValues } from "../../src/serializer.ts";
import { CloudflareKvStore, type KvNamespaceLike } from "../../src/stores/cloudflare_kv.ts";
import {
  type DurableObjectNamespaceLike,
  DurableObjectStore,
  SessionDurableObject,
} from "../../src/stores/durable_object.ts";
import { RedisStore } from "../../src/stores/redis.ts";
import type { SessionStore } from "../../src/store.ts";
import { headerTransport } from "../../src/transport.ts";
import { type Data, describeRich, richFor } from "./reach_values.ts";

export { SessionDurableObject };

/** The Worker's bindings. */
export interface Env {
  STORE: string;
  SESSION_SECRET: string;
  /** "0": no serializer (plain JSON, as before the switch); anything else: richValues. */
  RICH?: string;
  SESSIONS_DO?: DurableObjectNamespaceLike;
  SESSIONS_KV?: KvNamespaceLike;
  UPSTASH_REDIS_REST_URL?: string;
  UPSTASH_REDIS_REST_TOKEN?: string;
  UPSTASH_DISABLE_TELEMETRY?: string;
  REDIS_PREFIX?: string;
}

/** How long /count holds the session (ms), so that requests of one session overlap. */
const HOLD_MS = 25;

const optionsByEnv = new WeakMap<Env, SessionOptions<Data>>();

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
    case "redis":
      return new RedisStore({ client: Redis.fromEnv(env as never), prefix: need(env, "REDIS_PREFIX") });
    default:
      throw new Error(`Unknown STORE binding: "${env.STORE}"`);
  }
}

function sessionOptions(_request: Request, env: Env): SessionOptions<Data> {
  let options = optionsByEnv.get(env);
  if (options === undefined) {
    options = {
      store: storeFor(env),
      secrets: [env.SESSION_SECRET],
      transport: headerTransport({ cookie: true }),
      ...(env.RICH === "0" ? {} : { serializer: richValues }),
    };
    optionsByEnv.set(env, options);
  }
  return options;
}

/** How many requests of one credential are being served now, and the most at once. */
const now = new Map<string, number>();
const most = new Map<string, number>();

function credentialOf(request: Request): string {
  return request.headers.get("authorization") ?? request.headers.get("cookie") ?? "none";
}

function hold(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const app = withSession(
  csrf(async function reach(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const session = await getSession<Data>(request);
    const route = `${request.method} ${url.pathname}`;
    switch (route) {
      case "POST /login":
        session.regenerate();
        session.set("user", url.searchParams.get("user") ?? "ada");
        return Response.json({ user: session.get("user") });
      case "POST /logout":
        session.destroy();
        return Response.json({ user: null });
      case "GET /me":
        return Response.json({
          user: session.get("user") ?? null,
          n: session.get("n") ?? null,
          note: session.get("note") ?? null,
        });
      case "POST /count": {
        await hold(HOLD_MS);
        session.update("n", (n = 0) => n + 1);
        return Response.json({ counted: true });
      }
      case "GET /form":
        return Response.json({ token: await csrfToken(session) });
      case "POST /note":
        session.set("note", url.searchParams.get("text") ?? "");
        return Response.json({ saved: session.get("note") });
      case "POST /rich": {
        const values = richFor(Number(url.searchParams.get("seed")));
        for (const [key, value] of Object.entries(values)) session.set(key as keyof Data, value as never);
        return Response.json({ stored: true });
      }
      case "GET /rich":
        return Response.json(describeRich(session.toJSON()));
      default:
        return new Response("Not found", { status: 404 });
    }
  }),
  sessionOptions,
);

export default {
  async fetch(request: Request, env: Env, ctx: unknown): Promise<Response> {
    if (new URL(request.url).pathname === "/stats") return Response.json(Object.fromEntries(most));
    const credential = credentialOf(request);
    const at = (now.get(credential) ?? 0) + 1;
    now.set(credential, at);
    if (at > (most.get(credential) ?? 0)) most.set(credential, at);
    try {
      return await (app as (...args: unknown[]) => Promise<Response>)(request, env, ctx);
    } finally {
      const left = now.get(credential)! - 1;
      if (left === 0) now.delete(credential);
      else now.set(credential, left);
    }
  },
};
