// What the RedisStore test files over a real Redis Cluster share: a cluster of 3 masters with a
// replica each, started on loopback when a file first imports this module (by
// tests/cluster/redis_cluster.ts) and stopped after that file's tests, raw access to it, both
// cluster clients (ioredis `Cluster` and node-redis `createCluster`), and where each key lives.
import { after } from "node:test";
import assert from "node:assert/strict";
import { Cluster } from "ioredis";
import { createCluster } from "redis";
import type { RedisLike } from "../../../src/stores/redis.ts";
import { type RedisCluster, startRedisCluster } from "../../cluster/redis_cluster.ts";

/** Part of every prefix a test file uses, so that runs never meet. */
export const RUN = crypto.randomUUID().slice(0, 8);

let cluster: RedisCluster | undefined;
let admin: Cluster | undefined;
/** Raw access to the cluster (once it has started). */
export const adminOf = (): Cluster => admin!;
/** The cluster (once it has started). */
export const clusterOf = (): RedisCluster => cluster!;
const starting = (async () => {
  cluster = await startRedisCluster({ masters: 3, replicas: 1 });
  admin = new Cluster(cluster.rootNodes, { redisOptions: { maxRetriesPerRequest: 1 } });
  return cluster;
})();
// Keep an unawaited failure from being reported twice; every `before` and `open` awaits `starting`.
starting.catch(() => {});
after(async () => {
  admin?.disconnect();
  await (cluster ?? await starting.catch(() => undefined))?.stop();
});

export interface Connection {
  client: RedisLike;
  close(): void | Promise<void>;
}

/** Both cluster clients, by label, each connecting anew when called. */
export const clients: [string, () => Promise<Connection>][] = [
  ["ioredis Cluster", async () => {
    const { rootNodes } = await starting;
    const client = new Cluster(rootNodes, { redisOptions: { maxRetriesPerRequest: 1 } });
    return { client, close: () => client.disconnect() };
  }],
  ["node-redis createCluster", async () => {
    const { rootNodes } = await starting;
    const client = createCluster({
      rootNodes: rootNodes.map(({ host, port }) => ({ url: `redis://${host}:${port}` })),
    });
    client.on("error", () => {}); // reconnections during a failover are reported here
    await client.connect();
    return { client, close: async () => void (await client.close()) };
  }],
];

/** Every key under `prefix`, on every master. */
export async function keysUnder(prefix: string): Promise<string[]> {
  const pattern = prefix.replace(/[*?[\]\\]/g, "\\$&") + "*";
  const keys: string[] = [];
  for (const node of admin!.nodes("master")) {
    let cursor = "0";
    do {
      const [next, found] = await node.scan(cursor, "MATCH", pattern, "COUNT", 1000);
      keys.push(...found);
      cursor = next;
    } while (cursor !== "0");
  }
  return keys;
}

/** Deletes every key under `prefix`. */
export async function dropPrefix(prefix: string): Promise<void> {
  for (const key of await keysUnder(prefix)) await admin!.del(key);
}

/** The user indexes under `prefix` that hold an entry for `member`. */
export async function indexesHolding(prefix: string, member: string): Promise<string[]> {
  const indexes = await keysUnder(`${prefix}user:`);
  const scores = await Promise.all(indexes.map((key) => admin!.zscore(key, member)));
  return indexes.filter((_, i) => scores[i] !== null);
}

/** The slot of `key`. */
export function slotOf(key: string): Promise<number> {
  return admin!.call("CLUSTER", "KEYSLOT", key) as Promise<number>;
}

/** The port of the master that serves `key`'s slot, as the cluster says now. */
export async function masterOf(key: string): Promise<number> {
  const slot = await slotOf(key);
  const slots = await admin!.cluster("SLOTS") as unknown as [number, number, [string, number, string]][];
  const range = slots.find(([from, to]) => slot >= from && slot <= to);
  assert.ok(range, `no master serves slot ${slot}`);
  return range[2][1];
}

export type ScriptKind = "record" | "user" | "lock";

// Wraps a client so that every script the store runs through it is recorded by its first key's
// kind: "record", "user" (a user's index) or "lock". Only EVALSHA counts: the EVAL that follows
// a NOSCRIPT answer (a node that has not seen the script yet) is a one-time retry. `before` runs
// before each script is sent.
export function recordingScripts(
  client: RedisLike,
  prefix: string,
  before: (kind: ScriptKind) => void | Promise<void> = () => {},
): { client: RedisLike; sent: ScriptKind[] } {
  const sent: ScriptKind[] = [];
  const kind = (key: string): ScriptKind =>
    key.startsWith(`${prefix}user:`) ? "user" : key.startsWith(`${prefix}lock:`) ? "lock" : "record";
  const proxy = new Proxy(client as object, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== "function") return value;
      if (property === "call") {
        return async (command: string, ...args: unknown[]) => {
          if (/^EVALSHA$/i.test(command)) {
            sent.push(kind(String(args[2])));
            await before(kind(String(args[2])));
          }
          return await Reflect.apply(value, target, [command, ...args]);
        };
      }
      if (property === "evalSha") {
        return async (script: string, options: { keys: string[] }) => {
          sent.push(kind(options.keys[0]!));
          await before(kind(options.keys[0]!));
          return await Reflect.apply(value, target, [script, options]);
        };
      }
      return value.bind(target);
    },
  });
  return { client: proxy as RedisLike, sent };
}
