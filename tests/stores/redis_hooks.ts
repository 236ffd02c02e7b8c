// What RedisStore's test files give the shared store cases and the lock and user-index cases,
// over one Redis or a cluster: stores under `prefix`, one namespace each, and an ioredis client
// (`admin`) that looks behind them.
import type { Cluster, Redis } from "ioredis";
import { type RedisLike, RedisStore } from "../../src/stores/redis.ts";
import type { StoreCaseHooks } from "../conformance/store_cases.ts";
import { type LockUserHooks, tagOf } from "../conformance/lock_user_cases.ts";
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

/**
 * The hooks of the lock and user-index cases. A lock is its owner under prefix lock:key, with
 * Redis' own time to live. A user's index is a sorted set named by the user's tag, scored by
 * until when each entry lasts: as long again as the record has left. The record notes the tag
 * and that time.
 */
export function redisLockUserHooks(
  { admin, prefix, client }: Pick<RedisHookOptions, "admin" | "prefix" | "client">,
): LockUserHooks {
  const prefixOf = (ns: string) => `${prefix}${ns}:`;
  const indexKey = async (ns: string, user: string) => `${prefixOf(ns)}user:{${await tagOf(user)}}`;
  return {
    reportsCurrent: true,
    open: async (ns, now) => new RedisStore({ client: await client(), prefix: prefixOf(ns), now }),
    counted: async (ns, now) => {
      const { client: recording, sent } = recordingClient(await client(), redisCommandOf);
      return { store: new RedisStore({ client: recording, prefix: prefixOf(ns), now }), sent };
    },
    raw: async (ns, key) => (await admin().get(prefixOf(ns) + key)) ?? undefined,
    locks: {
      byClock: false,
      entry: async (ns, key) => {
        const owner = await admin().get(`${prefixOf(ns)}lock:${key}`);
        return owner === null ? undefined : { owner };
      },
      expiry: { left: (ns, key) => admin().pttl(`${prefixOf(ns)}lock:${key}`), slack: 5_000 },
      sends: { lock: ["EVALSHA"], unlock: ["EVALSHA"] },
    },
    users: {
      byClock: true,
      prunes: true,
      remembers: false,
      until: (expiresAt, now) => 2 * expiresAt - now,
      entries: async (ns, user) => {
        const flat = await admin().zrange(await indexKey(ns, user), "0", "-1", "WITHSCORES");
        return Object.fromEntries(flat.flatMap((key, i) => i % 2 ? [] : [[key, Number(flat[i + 1])]]));
      },
      note: async (ns, key) => {
        const text = await admin().get(prefixOf(ns) + key);
        const noted = text === null ? null : /,"user":"([\w-]{43})","userUntil":(\d+)\}$/.exec(text);
        return noted === null ? undefined : { tag: noted[1], until: Number(noted[2]) };
      },
      expiry: { left: async (ns, user) => await admin().pttl(await indexKey(ns, user)), slack: 5_000 },
      sends: {
        save: ["EVALSHA"],
        list: ["EVALSHA"],
        update: ["EVALSHA"],
        reindex: ["EVALSHA", "EVALSHA", "EVALSHA"], // asks, extends the entry, touches
        plain: ["EVALSHA", "EVALSHA"],
        read: ["GET"],
      },
    },
  };
}
