/**
 * The Memcached store's options and their checks. Docs: docs/stores/memcached.md.
 *
 * @module
 */
import type { SessionLogger } from "../../session_options.ts";
import { storeHooks } from "../../store.ts";
import { type Commands, commandsOf, type MemcacheClientLike } from "./client.ts";
import {
  ITEM_OVERHEAD,
  KEY_LENGTH,
  LOCK_SUFFIX,
  MAX_KEY_BYTES,
  MAX_PREFIX_BYTES,
  PREFIX,
  USER_INFIX,
} from "./item.ts";

/**
 * Options of {@linkcode MemcachedStore}. Docs: docs/stores/memcached.md (the options table).
 *
 * @example
 * ```ts
 * import { MemcachedStore, type MemcachedStoreOptions } from "websession/memcached";
 * import { MemcacheClient } from "memcache-client";
 * import assert from "node:assert/strict";
 *
 * const client = new MemcacheClient({ server: "127.0.0.1:11211", cmdTimeout: 2_000 });
 * const corrupt: string[] = [];
 * const options: MemcachedStoreOptions = {
 *   client,
 *   prefix: "example-options:",
 *   maxItemSize: 64 * 1024, // memcached -I 64k
 *   onCorrupt: (key) => void corrupt.push(key),
 * };
 * const store = new MemcachedStore(options);
 * const key = "c".repeat(43);
 * await client.set(`example-options:${key}`, "not a record", { lifetime: 60 });
 * assert.equal(await store.load(key), null); // reads as missing, and is reported
 * assert.deepEqual(corrupt, [key]);
 * await store.destroy(key);
 * client.shutdown();
 * ```
 */
export interface MemcachedStoreOptions {
  /** The user's connected client: `memcache-client`, or any client of its shape. */
  client: MemcacheClientLike;
  /**
   * Prepended to every item's key (docs: Keys). Printable ASCII without spaces, at most 201
   * bytes, so that every key fits Memcached's 250.
   * @default "websession:"
   */
  prefix?: string;
  /**
   * The server's largest item, in bytes (Memcached's `-I`): a record that would not fit is
   * refused with `SessionTooLargeError` before anything is sent.
   * @default 1048576 (1 MiB, Memcached's default)
   */
  maxItemSize?: number;
  /**
   * Called when a stored value is not a well-formed record; the session then reads as missing.
   * @default a warning to `logger`
   */
  onCorrupt?: (key: string, error: Error) => void;
  /**
   * Where warnings go; pass `withSession`'s logger.
   * @default console
   */
  logger?: Pick<SessionLogger, "warn">;
  /**
   * The clock, in milliseconds since the epoch, that alone decides whether a record has expired
   * (Memcached's own expiry only frees the memory, a little later).
   * @default Date.now
   */
  now?: () => number;
}

/** The options checked, with their defaults and the byte budgets they give. */
export interface ResolvedOptions {
  commands: Commands;
  prefix: string;
  /** The most bytes a record's item value may take. */
  maxValueBytes: number;
  /** The most bytes a user's index item value may take. */
  maxIndexBytes: number;
  onCorrupt: (key: string, error: Error) => void;
  now: () => number;
}

/**
 * Checks `options` and fills in the defaults.
 *
 * @throws {TypeError} When `client` is not of the supported shape, or `prefix` is not printable
 *   ASCII without spaces or is too long for a Memcached key.
 * @throws {RangeError} When `maxItemSize` is not an integer large enough for a record.
 */
export function resolveOptions(options: MemcachedStoreOptions): ResolvedOptions {
  if (typeof options !== "object" || options === null) {
    throw new TypeError("Invalid MemcachedStore options: expected an object with a client");
  }
  const commands = commandsOf(options.client);
  const prefix = options.prefix ?? "websession:";
  if (typeof prefix !== "string" || !PREFIX.test(prefix)) {
    throw new TypeError(
      `Invalid prefix: "${String(prefix)}" must be printable ASCII without spaces or control characters`,
    );
  }
  if (prefix.length + KEY_LENGTH + LOCK_SUFFIX.length > MAX_KEY_BYTES) {
    throw new TypeError(
      `Invalid prefix: "${prefix}" is ${prefix.length} bytes; at most ${MAX_PREFIX_BYTES} fit in a Memcached key`,
    );
  }
  const maxItemSize = options.maxItemSize ?? 1024 * 1024;
  if (!Number.isSafeInteger(maxItemSize) || maxItemSize < 1024) {
    throw new RangeError(`Invalid maxItemSize: "${maxItemSize}" must be an integer of at least 1024 bytes`);
  }
  const { now, onCorrupt } = storeHooks(options);
  return {
    commands,
    prefix,
    maxValueBytes: maxItemSize - ITEM_OVERHEAD - prefix.length - KEY_LENGTH,
    maxIndexBytes: maxItemSize - ITEM_OVERHEAD - prefix.length - USER_INFIX.length - KEY_LENGTH,
    onCorrupt,
    now,
  };
}
