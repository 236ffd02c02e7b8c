/**
 * The Redis store's options and their checks. Docs: docs/stores/redis.md.
 *
 * @module
 */
import type { SessionLogger } from "../../session_options.ts";
import { storeHooks } from "../../store.ts";
import { type Commands, commandsOf, type RedisLike } from "./clients.ts";

/**
 * Options of {@linkcode RedisStore}. Docs: docs/stores/redis.md (the options table).
 *
 * @example
 * ```ts
 * import { RedisStore, type RedisStoreOptions } from "websession/redis";
 * import { Redis } from "ioredis";
 * import assert from "node:assert/strict";
 *
 * const client = new Redis("redis://127.0.0.1:6379", { maxRetriesPerRequest: 1 }); // fail fast on an outage
 * const corrupt: string[] = [];
 * const options: RedisStoreOptions = {
 *   client,
 *   prefix: "example-options:",
 *   onCorrupt: (key) => void corrupt.push(key),
 * };
 * const store = new RedisStore(options);
 * const key = "c".repeat(43);
 * await client.set(`example-options:${key}`, "not a record", "PX", 60_000);
 * assert.equal(await store.load(key), null); // reads as missing, and is reported
 * assert.deepEqual(corrupt, [key]);
 * await client.del(`example-options:${key}`);
 * client.disconnect();
 * ```
 */
export interface RedisStoreOptions {
  /** The user's connected client; the store never connects, disconnects or configures it. */
  client: RedisLike;
  /**
   * Prepended to every key: `prefix + key` (a session, `key` the 43-character storage key),
   * `prefix + "lock:" + key` (a lock), `prefix + "user:{" + tag + "}"` (a user's index).
   * `count()` scans it: give each application its own.
   * @default "websession:"
   */
  prefix?: string;
  /**
   * The client talks to a Redis Cluster (one slot per script): a save that indexes a user
   * writes the index first, with a script of its own. Set it for a cluster behind a proxy.
   * @default whether the client is a cluster client
   */
  cluster?: boolean;
  /**
   * Told of a stored value that is not a well-formed record (it reads as missing, and a save
   * over it is refused); replaces the warning to `logger`.
   * @default a warning to `logger`
   */
  onCorrupt?: (key: string, error: Error) => void;
  /**
   * Where warnings go; pass `withSession`'s logger.
   * @default console
   */
  logger?: Pick<SessionLogger, "warn">;
  /**
   * The clock that decides expiry, in ms since the epoch: a record is live while
   * `expiresAt > now()`, and a key lives `expiresAt - now()` ms (Redis' own clock is never
   * compared with `expiresAt`). Give it `withSession`'s clock.
   * @default Date.now
   */
  now?: () => number;
}

/** The options checked, with their defaults. */
export interface ResolvedOptions {
  commands: Commands;
  prefix: string;
  cluster: boolean;
  onCorrupt: (key: string, error: Error) => void;
  now: () => number;
}

/**
 * Checks `options` and fills in the defaults.
 *
 * @throws {TypeError} When `client` is none of the supported shapes, `prefix` is not a string,
 *   `cluster` is not a boolean, `now` is not a function or `logger` has no `warn` method.
 */
export function resolveOptions(options: RedisStoreOptions): ResolvedOptions {
  if (typeof options !== "object" || options === null) {
    throw new TypeError("Invalid RedisStore options: expected an object with a client");
  }
  const commands = commandsOf(options.client);
  const prefix = options.prefix ?? "websession:";
  if (typeof prefix !== "string") {
    throw new TypeError(`Invalid prefix: "${String(prefix)}" is not a string`);
  }
  if (options.cluster !== undefined && typeof options.cluster !== "boolean") {
    throw new TypeError(`Invalid cluster: "${String(options.cluster)}" is not a boolean`);
  }
  const { now, onCorrupt } = storeHooks(options);
  return {
    commands,
    prefix,
    cluster: options.cluster ?? commands.cluster,
    onCorrupt,
    now,
  };
}
