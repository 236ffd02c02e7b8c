// What RedisStore's test files give the shared store cases, over one Redis or a cluster: stores
// under `prefix`, one namespace each, and an ioredis client (`admin`) that looks behind them.
import type { Cluster, Redis } from "ioredis";
import { type RedisLike, RedisStore } from "../../src/stores/redis.ts";
import type { StoreCaseHooks } from "../conformance/store_cases.ts";
import { recordingClient, redisCommandOf } from "./remote_cases.ts";

/** Where the stores and the raw keys are, and how to reach them. */
export interface RedisHookOptions {
  /** Raw access to the same Redis, a single node or a cluster (once the stores are open). */
  admin(): Redis | Cluster;
  /** The prefix of every namespace. */
  prefix: string;
  /** The client the stores share. */
  client(): Promise<RedisLike>;
  /** Requests of an HTTP bridge between the client and Redis, which must equal the commands. */
  requests?: () => number;
  /** A node's first NOSCRIPT answer is retried with EVAL (a cluster's nodes): not counted. */
  retriesScripts?: boolean;
}

/** The hooks every RedisStore gives, for the cases that look behind the store. */
export function redisHooks(
  { admin, prefix, client, requests, retriesScripts }: RedisHookOptions,
): StoreCaseHooks {
  const at = (ns: string, key: string) => `${prefix}${ns}:${key}`;
  const rawAt = async (name: string) => {
    const text = await admin().get(name);
    return text === null ? undefined : JSON.parse(text);
  };
  return {
    reportsCurrent: true,
    expiredSave: true,
    tombstoneTouch: true,
    skews: [10 * 60_000, -10 * 60_000],
    countsByClock: false,
    vanishes: true,
    open: async (ns, options) =>
      new RedisStore({ client: await client(), prefix: `${prefix}${ns}:`, ...options }),
    raw: (ns, key) => rawAt(at(ns, key)),
    ttl: async (ns, key) => {
      const ttl = await admin().pttl(at(ns, key));
      return ttl < 0 ? undefined : ttl;
    },
    calls: {
      open: async (ns) => {
        const { client: recording, sent } = recordingClient(await client(), (property, args) => {
          const command = redisCommandOf(property, args);
          return retriesScripts && command === "EVAL" ? undefined : command;
        });
        return { store: new RedisStore({ client: recording, prefix: `${prefix}${ns}:` }), sent, requests };
      },
      expected: { create: ["EVALSHA"], read: ["GET"], update: ["EVALSHA"] },
    },
    corrupt: {
      forms: ["{not json", JSON.stringify({ data: [], version: 0 })],
      write: async (ns, key, form) => void (await admin().set(at(ns, key), form, "PX", 60_000)),
      read: async (ns, key) => (await admin().get(at(ns, key))) ?? undefined,
      warning: /corrupt session record/,
    },
    driverError: {
      cause: async (ns, key) => void (await admin().lpush(at(ns, key), "not a string")),
      message: /WRONGTYPE/,
      intact: async (ns, key) => (await admin().type(at(ns, key))) === "list",
    },
    byDefault: {
      open: async () => new RedisStore({ client: await client() }),
      raw: (key) => rawAt(`websession:${key}`),
    },
    claims: {
      capabilities: { compareAndSet: true, ttl: true, locks: true, users: true },
      lacks: ["cleanup"],
    },
  };
}
