/**
 * The clients the Redis store accepts, told apart by shape, and the few commands it sends over
 * each (`commandsOf`). See docs/stores/redis.md.
 *
 * @module
 */

/**
 * The shape of an `@upstash/redis` client (`new Redis({ url, token })` or `Redis.fromEnv()`),
 * with or without `automaticDeserialization` and auto-pipelining.
 *
 * @example
 * ```ts
 * import type { UpstashRedisLike } from "websession/redis";
 * import assert from "node:assert/strict";
 *
 * const methods: (keyof UpstashRedisLike)[] = ["get", "del", "eval", "evalsha", "scan"];
 * assert.equal(methods.length, 5);
 * ```
 */
export interface UpstashRedisLike {
  /** `GET key`; the value may come back already JSON-parsed. */
  get(key: string): Promise<unknown>;
  /** `DEL key...`. */
  del(...keys: string[]): Promise<unknown>;
  /** `EVAL script numkeys key... arg...`. */
  eval(script: string, keys: string[], args: string[]): Promise<unknown>;
  /** `EVALSHA sha1 numkeys key... arg...`. */
  evalsha(sha1: string, keys: string[], args: string[]): Promise<unknown>;
  /** `SCAN cursor MATCH pattern COUNT count`. */
  scan(cursor: string | number, options: { match: string; count: number }): Promise<unknown>;
}

/**
 * The shape of an `ioredis` client (`new Redis(url)`): any client with a variadic `call`.
 *
 * @example
 * ```ts
 * import type { IoRedisLike } from "websession/redis";
 * import assert from "node:assert/strict";
 *
 * const client: IoRedisLike = { call: async (command) => (command === "GET" ? null : 0) };
 * assert.equal(await client.call("GET", "k"), null);
 * ```
 */
export interface IoRedisLike {
  /** Sends one command with its arguments and resolves with the raw reply. */
  call(command: string, ...args: (string | number)[]): Promise<unknown>;
}

/**
 * The shape of an `ioredis` Redis Cluster client (`new Cluster([{ host, port }])`): `call`
 * routes each command by its key, and `nodes("master")` lists a client per master.
 *
 * @example
 * ```ts
 * import type { IoRedisClusterLike } from "websession/redis";
 * import assert from "node:assert/strict";
 *
 * const methods: (keyof IoRedisClusterLike)[] = ["isCluster", "call", "nodes"];
 * assert.equal(methods.length, 3);
 * ```
 */
export interface IoRedisClusterLike extends IoRedisLike {
  /** `true` on an ioredis `Cluster`: how it is told apart from a single-node client. */
  readonly isCluster: true;
  /** The clients of the cluster's nodes with a role; the store asks for the masters. */
  nodes(role: "master"): IoRedisLike[];
}

/**
 * The shape of a node-redis v4+ client (`await createClient({ url }).connect()`).
 *
 * @example
 * ```ts
 * import type { NodeRedisLike } from "websession/redis";
 * import assert from "node:assert/strict";
 *
 * const methods: (keyof NodeRedisLike)[] = ["sendCommand", "evalSha"];
 * assert.equal(methods.length, 2);
 * ```
 */
export interface NodeRedisLike {
  /** Sends one command given as an array of strings and resolves with the raw reply. */
  sendCommand(args: string[]): Promise<unknown>;
  /** `EVALSHA`; node-redis names it in camel case, which is how it is told apart. */
  evalSha(sha1: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  /** `EVAL`. */
  eval(script: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
}

/**
 * The shape of a node-redis v4+ Redis Cluster client
 * (`await createCluster({ rootNodes }).connect()`): `sendCommand` takes the key that routes the
 * command, and `masters` with `nodeClient` reach each master.
 *
 * @example
 * ```ts
 * import type { NodeRedisClusterLike } from "websession/redis";
 * import assert from "node:assert/strict";
 *
 * const methods: (keyof NodeRedisClusterLike)[] = ["sendCommand", "evalSha", "eval", "masters", "nodeClient"];
 * assert.equal(methods.length, 5);
 * ```
 */
export interface NodeRedisClusterLike {
  /** Sends one command to the node that serves `firstKey`. */
  sendCommand(firstKey: string, isReadonly: boolean, args: string[]): Promise<unknown>;
  /** `EVALSHA`, routed by the first key. */
  evalSha(sha1: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  /** `EVAL`, routed by the first key. */
  eval(script: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  /** The masters the client knows of. */
  readonly masters: readonly unknown[];
  /** The connected client of one of `masters`. */
  nodeClient(node: unknown): Promise<{ sendCommand(args: string[]): Promise<unknown> }>;
}

/**
 * Any client {@linkcode RedisStore} accepts. Told apart by shape: `nodeClient` is a node-redis
 * cluster, a camel-case `evalSha` is node-redis, `isCluster` is an ioredis cluster, a `call`
 * method is ioredis, `evalsha` and `scan` without `call` is Upstash.
 *
 * @example
 * ```ts
 * import type { RedisLike } from "websession/redis";
 * import assert from "node:assert/strict";
 *
 * const client: RedisLike = { call: async () => null };
 * assert.equal(typeof client, "object");
 * ```
 */
export type RedisLike =
  | UpstashRedisLike
  | IoRedisLike
  | IoRedisClusterLike
  | NodeRedisLike
  | NodeRedisClusterLike;

export type Scan = (cursor: string, match: string) => Promise<unknown>;

/** The few commands the store sends, over whichever client it was given. */
export interface Commands {
  /** The client is a cluster client. */
  cluster: boolean;
  get(key: string): Promise<unknown>;
  del(key: string): Promise<unknown>;
  evalsha(sha1: string, keys: string[], args: string[]): Promise<unknown>;
  eval(source: string, keys: string[], args: string[]): Promise<unknown>;
  /** One `SCAN` per master: one on a single node. */
  scanners(): Promise<Scan[]>;
  /** `TIME`, on the node that serves `key` where the client routes by key. */
  time(key: string): Promise<unknown>;
}

// Upstash's client has no method of its own for TIME: a script returns it (read-only).
const TIME_SCRIPT = "return redis.call('TIME')";

const SCAN_COUNT = 1000;

function ioScan(redis: IoRedisLike): Scan {
  return (cursor, match) => redis.call("SCAN", cursor, "MATCH", match, "COUNT", SCAN_COUNT);
}

function nodeScan(redis: { sendCommand(args: string[]): Promise<unknown> }): Scan {
  return (cursor, match) => redis.sendCommand(["SCAN", cursor, "MATCH", match, "COUNT", String(SCAN_COUNT)]);
}

const INVALID_CLIENT = "Invalid Redis client: expected an @upstash/redis, ioredis or node-redis client";

/**
 * The commands over `client`, told apart by shape: `nodeClient` is a node-redis cluster, a
 * camel-case `evalSha` is node-redis, a `call` method is ioredis (`isCluster`: its cluster),
 * `evalsha` and `scan` without `call` is Upstash.
 *
 * @throws {TypeError} When `client` is none of these shapes.
 */
export function commandsOf(client: RedisLike): Commands {
  const any = client as unknown as Record<string, unknown>;
  if (typeof client !== "object" || client === null) throw new TypeError(INVALID_CLIENT);
  if (
    typeof any.nodeClient === "function" && typeof any.evalSha === "function" &&
    typeof any.sendCommand === "function"
  ) {
    return nodeRedisClusterCommands(client as NodeRedisClusterLike);
  }
  if (typeof any.evalSha === "function" && typeof any.sendCommand === "function") {
    return nodeRedisCommands(client as NodeRedisLike);
  }
  if (typeof any.call === "function") {
    return ioRedisCommands(client as IoRedisLike, any.isCluster === true && typeof any.nodes === "function");
  }
  if (typeof any.evalsha === "function" && typeof any.scan === "function" && typeof any.get === "function") {
    return upstashCommands(client as UpstashRedisLike);
  }
  throw new TypeError(INVALID_CLIENT);
}

function nodeRedisClusterCommands(redis: NodeRedisClusterLike): Commands {
  return {
    cluster: true,
    get: (key) => redis.sendCommand(key, true, ["GET", key]),
    del: (key) => redis.sendCommand(key, false, ["DEL", key]),
    evalsha: (sha1, keys, args) => redis.evalSha(sha1, { keys, arguments: args }),
    eval: (source, keys, args) => redis.eval(source, { keys, arguments: args }),
    scanners: async () =>
      (await Promise.all(redis.masters.map((node) => redis.nodeClient(node)))).map(nodeScan),
    time: (key) => redis.sendCommand(key, true, ["TIME"]),
  };
}

function nodeRedisCommands(redis: NodeRedisLike): Commands {
  return {
    cluster: false,
    get: (key) => redis.sendCommand(["GET", key]),
    del: (key) => redis.sendCommand(["DEL", key]),
    evalsha: (sha1, keys, args) => redis.evalSha(sha1, { keys, arguments: args }),
    eval: (source, keys, args) => redis.eval(source, { keys, arguments: args }),
    scanners: () => Promise.resolve([nodeScan(redis)]),
    time: () => redis.sendCommand(["TIME"]),
  };
}

function ioRedisCommands(redis: IoRedisLike, cluster: boolean): Commands {
  return {
    cluster,
    get: (key) => redis.call("GET", key),
    del: (key) => redis.call("DEL", key),
    evalsha: (sha1, keys, args) => redis.call("EVALSHA", sha1, keys.length, ...keys, ...args),
    eval: (source, keys, args) => redis.call("EVAL", source, keys.length, ...keys, ...args),
    scanners: () =>
      Promise.resolve(cluster ? (redis as IoRedisClusterLike).nodes("master").map(ioScan) : [ioScan(redis)]),
    time: () => redis.call("TIME"),
  };
}

function upstashCommands(redis: UpstashRedisLike): Commands {
  return {
    cluster: false,
    get: (key) => redis.get(key),
    del: (key) => redis.del(key),
    evalsha: (sha1, keys, args) => redis.evalsha(sha1, keys, args),
    eval: (source, keys, args) => redis.eval(source, keys, args),
    scanners: () => Promise.resolve([(cursor, match) => redis.scan(cursor, { match, count: SCAN_COUNT })]),
    time: () => redis.eval(TIME_SCRIPT, [], []),
  };
}

/**
 * Milliseconds since the epoch from a `TIME` reply: `[seconds, microseconds]`, as strings, bytes,
 * or (Upstash with automatic deserialization) numbers.
 */
export function timeOf(reply: unknown): number {
  if (Array.isArray(reply) && reply.length === 2) {
    const [seconds, micros] = reply.map((part) => Number(text(part) ?? part));
    if (Number.isSafeInteger(seconds) && Number.isSafeInteger(micros)) {
      return seconds! * 1000 + micros! / 1000;
    }
  }
  throw new TypeError(`Unexpected TIME reply from the Redis client: "${String(reply).slice(0, 64)}"`);
}

export function isNoScript(error: unknown): boolean {
  return error instanceof Error && /\bNOSCRIPT\b/.test(error.message);
}

/** A reply string as the client hands it over: a string, or bytes. */
export function text(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (value instanceof Uint8Array) return new TextDecoder().decode(value);
  return undefined;
}

const GLOB = /[*?[\]\\]/g;

/** How many keys are `prefix` and 43 characters (a storage key), by `SCAN` on every master. */
export async function countKeys(commands: Commands, prefix: string): Promise<number> {
  const match = prefix.replace(GLOB, "\\$&") + "?".repeat(43);
  let total = 0;
  for (const scan of await commands.scanners()) {
    let cursor = "0";
    do {
      const reply = await scan(cursor, match);
      if (!Array.isArray(reply) || reply.length !== 2 || !Array.isArray(reply[1])) {
        throw new TypeError("Unexpected SCAN reply from the Redis client");
      }
      cursor = String(reply[0]);
      total += reply[1].length;
    } while (cursor !== "0");
  }
  return total;
}
