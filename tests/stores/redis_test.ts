// RedisStore against the real Redis on loopback, through every client it accepts: ioredis,
// node-redis, and @upstash/redis over HTTP through a bridge that forwards to the same Redis.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Redis as IoRedis } from "ioredis";
import { createClient } from "redis";
import { Redis as UpstashRedis } from "@upstash/redis";
import { type RedisLike, RedisStore } from "../../src/stores/redis.ts";
import { storeSuites } from "../conformance/store_cases.ts";
import { lockUserCases } from "../conformance/lock_user_cases.ts";
import { startUpstashBridge, type UpstashBridge } from "../bridges/upstash.ts";
import { deadPort } from "../services.ts";
import { redisHooks, redisLockUserHooks } from "./redis_hooks.ts";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const RUN = crypto.randomUUID().slice(0, 8);

// Raw access to the same Redis, to look behind the store and to clean up.
const admin = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
after(() => admin.disconnect());

/** Every key under `prefix`, whose glob characters match themselves. */
async function keysUnder(prefix: string): Promise<string[]> {
  const pattern = prefix.replace(/[*?[\]\\]/g, "\\$&") + "*";
  const keys: string[] = [];
  let cursor = "0";
  do {
    const [next, page] = await admin.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    keys.push(...page);
    cursor = next;
  } while (cursor !== "0");
  return keys;
}

async function dropPrefix(prefix: string): Promise<void> {
  const keys = await keysUnder(prefix);
  if (keys.length > 0) await admin.del(...keys);
}

interface Connection {
  client: RedisLike;
  close(): void | Promise<void>;
}

let bridge: UpstashBridge | undefined;
async function upstash(options: { automaticDeserialization: boolean; enableAutoPipelining: boolean }) {
  bridge ??= await startUpstashBridge({ redisUrl: REDIS_URL });
  return new UpstashRedis({ url: bridge.url, token: bridge.token, enableTelemetry: false, ...options });
}
after(async () => {
  await bridge?.close();
});

const clients: [string, () => Connection | Promise<Connection>][] = [
  ["ioredis", () => {
    const client = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
    return { client, close: () => client.disconnect() };
  }],
  ["node-redis", async () => {
    const client = await createClient({ url: REDIS_URL }).connect();
    return { client, close: async () => void (await client.quit()) };
  }],
  ["@upstash/redis, deserialization on, auto-pipelining on", async () => ({
    client: await upstash({ automaticDeserialization: true, enableAutoPipelining: true }),
    close: async () => {},
  })],
  ["@upstash/redis, deserialization off, auto-pipelining on", async () => ({
    client: await upstash({ automaticDeserialization: false, enableAutoPipelining: true }),
    close: async () => {},
  })],
  ["@upstash/redis, deserialization off, auto-pipelining off", async () => ({
    client: await upstash({ automaticDeserialization: false, enableAutoPipelining: false }),
    close: async () => {},
  })],
];

async function unreachable() {
  const client = new IoRedis({
    host: "127.0.0.1",
    port: await deadPort(),
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  client.on("error", () => {});
  return { store: new RedisStore({ client }), close: () => client.disconnect() };
}

for (const [label, connect] of clients) {
  const prefix = `websession-test:${RUN}:${label.replace(/[^a-z]+/g, "-")}:`;
  const prefixOf = (ns: string) => `${prefix}${ns}:`;
  let shared: Connection | undefined;
  const open = async () => (shared ??= await connect());
  // Before storeSuites, whose close drops the prefix and the connection these use too.
  lockUserCases(
    `RedisStore over ${label}`,
    redisLockUserHooks({ admin: () => admin, prefix, client: async () => (await open()).client }),
  );

  storeSuites(`RedisStore over ${label}`, {
    ...redisHooks({
      admin: () => admin,
      prefix,
      client: async () => (await open()).client,
      requests: label.startsWith("@upstash") ? () => bridge!.requests : undefined,
    }),
    close: async () => {
      await dropPrefix(prefix);
      await shared?.close();
    },
    badOptions: label === "ioredis"
      ? [
        ["a client of no known shape", () => new RedisStore({ client: {} as RedisLike })],
        ["no client", () => new RedisStore({ client: null as unknown as RedisLike })],
        ["a prefix that is no string", () => new RedisStore({ client: admin, prefix: 5 as never })],
        ["a clock that is no function", () => new RedisStore({ client: admin, now: 5 as never })],
      ]
      : undefined,
    // A port nothing listens on: a real refused connection (once, through ioredis).
    unreachable: label === "ioredis" ? unreachable : undefined,
    locks: {
      byClock: false,
      owner: async (ns, key) => (await admin.get(`${prefixOf(ns)}lock:${key}`)) ?? undefined,
    },
    users: {
      byClock: true,
      apart: async (ns) => {
        const connection = await connect();
        return {
          store: new RedisStore({ client: connection.client, prefix: prefixOf(ns) }),
          close: connection.close,
        };
      },
      rawKeys: (ns) => keysUnder(prefixOf(ns)),
    },
  });
}

describe("RedisStore over @upstash/redis", () => {
  it("went through the REST bridge", () => {
    assert.ok(bridge && bridge.requests > 0, "no request reached the bridge");
  });
});
