/**
 * The shapes `CloudflareKvStore` takes: its options and the part of a Workers KV binding it uses,
 * so that the store never imports Cloudflare's types. Exported from `websession/cloudflare-kv`.
 *
 * @module
 */
/**
 * Options of a KV write (a subset of Workers' `KVNamespacePutOptions`).
 *
 * @example
 * ```ts
 * import { CloudflareKvStore, type KvPutOptionsLike } from "websession/cloudflare-kv";
 * import assert from "node:assert/strict";
 *
 * // What the store asks KV for on each write (a Map stands in for the `env.SESSIONS` binding).
 * const puts: KvPutOptionsLike[] = [];
 * const store = new CloudflareKvStore({
 *   namespace: {
 *     get: async () => null,
 *     put: async (_key, _value, options) => void puts.push(options ?? {}),
 *     delete: async () => {},
 *     list: async () => ({ keys: [], list_complete: true }),
 *   },
 * });
 * const now = Date.now();
 * await store.save("k".repeat(43), { data: {}, version: 1, createdAt: now, expiresAt: now + 10_000 }, null);
 * // 10 s to live and a day kept after (expiredRetention); reads still stop at expiresAt.
 * assert.equal(puts[0]?.expirationTtl, 10 + 86_400);
 * assert.deepEqual(puts[0]?.metadata, { version: 1, expiresAt: now + 10_000 });
 * ```
 */
export interface KvPutOptionsLike {
  /** Seconds from now until KV drops the key; KV takes no less than 60. */
  expirationTtl?: number;
  /** Small JSON metadata kept beside the value and returned by `list`. */
  metadata?: unknown;
}

/**
 * One key of a KV listing.
 *
 * @example
 * ```ts
 * import { CloudflareKvStore, type KvListKeyLike } from "websession/cloudflare-kv";
 * import assert from "node:assert/strict";
 *
 * // A live key, and one past its expiresAt that KV has not dropped yet.
 * const now = Date.now();
 * const keys: KvListKeyLike[] = [
 *   { name: `websession:${"a".repeat(43)}`, metadata: { version: 1, expiresAt: now + 60_000 } },
 *   { name: `websession:${"b".repeat(43)}`, metadata: { version: 4, expiresAt: now - 1 } },
 * ];
 * const namespace = { get: async () => null, put: async () => {}, delete: async () => {} };
 * const store = new CloudflareKvStore({ namespace: { ...namespace, list: async () => ({ keys, list_complete: true }) } });
 * assert.equal(await store.count(), 1); // counted from the metadata, without reading values
 * ```
 */
export interface KvListKeyLike {
  /** The key. */
  name: string;
  /** When KV drops the key, in seconds since the epoch. */
  expiration?: number;
  /** The metadata written with the value. */
  metadata?: unknown;
}

/**
 * The part of a Workers `KVNamespace` binding this store uses; `env.SESSIONS` fits as is.
 *
 * @example
 * ```ts
 * import { CloudflareKvStore, type KvNamespaceLike } from "websession/cloudflare-kv";
 * import assert from "node:assert/strict";
 *
 * // A Map stands in for the binding here.
 * const values = new Map<string, { value: string; metadata: unknown }>();
 * const namespace: KvNamespaceLike = {
 *   get: async (key) => values.get(key)?.value ?? null,
 *   put: async (key, value, options) => void values.set(key, { value, metadata: options?.metadata }),
 *   delete: async (key) => void values.delete(key),
 *   list: async ({ prefix = "" } = {}) => ({
 *     keys: [...values].filter(([name]) => name.startsWith(prefix)).map(([name, { metadata }]) => ({ name, metadata })),
 *     list_complete: true,
 *   }),
 * };
 * const store = new CloudflareKvStore({ namespace });
 * const key = "k".repeat(43);
 * const now = Date.now();
 * await store.save(key, { data: { a: 1 }, version: 1, createdAt: now, expiresAt: now + 60_000 }, null);
 * assert.equal(JSON.parse(values.get(`websession:${key}`)!.value).version, 1);
 * assert.equal(await store.count(), 1);
 * // destroy() writes the session's end key, which no save overwrites and no load or count shows.
 * await store.destroy(key);
 * assert.equal(JSON.parse(values.get(`websession:ended:${key}`)!.value).version, 2);
 * assert.equal(await store.load(key), null);
 * assert.equal(await store.save(key, { data: { a: 2 }, version: 2, createdAt: now, expiresAt: now + 60_000 }, 1), false);
 * assert.equal(await store.count(), 0);
 * ```
 */
export interface KvNamespaceLike {
  /** Reads a value as text; `null` when absent. */
  get(key: string, type: "text"): Promise<string | null>;
  /** Writes a value. */
  put(key: string, value: string, options?: KvPutOptionsLike): Promise<void>;
  /** Deletes a key; no error if absent. */
  delete(key: string): Promise<void>;
  /** Lists keys under a prefix, a page at a time. */
  list(options?: { prefix?: string; cursor?: string; limit?: number }): Promise<{
    keys: KvListKeyLike[];
    list_complete: boolean;
    cursor?: string;
  }>;
}

/**
 * Options of {@linkcode CloudflareKvStore}; each is explained on docs/stores/cloudflare-kv.md.
 *
 * @example
 * ```ts
 * import { CloudflareKvStore, type CloudflareKvStoreOptions } from "websession/cloudflare-kv";
 * import { StoreUnavailableError } from "websession";
 * import assert from "node:assert/strict";
 *
 * // This location still has version 1; the client's signed cookie says it has seen version 2.
 * const now = Date.now();
 * const stale = JSON.stringify({ data: {}, version: 1, createdAt: now, expiresAt: now + 60_000 });
 * const options: CloudflareKvStoreOptions = {
 *   namespace: {
 *     get: async (key: string) => (key.startsWith("app1:ended:") ? null : stale), // no end key
 *     put: async () => {},
 *     delete: async () => {},
 *     list: async () => ({ keys: [], list_complete: true }),
 *   },
 *   prefix: "app1:",
 *   staleReadRetries: 1,
 *   staleReadDelay: 10,
 * };
 * const store = new CloudflareKvStore(options);
 * assert.equal((await store.load("k".repeat(43)))?.version, 1);
 * await assert.rejects(store.load("k".repeat(43), 2), StoreUnavailableError); // not served silently
 * ```
 */
export interface CloudflareKvStoreOptions {
  /** The KV namespace binding, e.g. `env.SESSIONS` (required). */
  namespace: KvNamespaceLike;
  /**
   * Prepended to every key; at most 463 bytes of UTF-8 (KV's 512-byte key limit with the end key
   * `prefix + "ended:" + storageKey`), 419 where sessions are indexed per user.
   * @default "websession:"
   */
  prefix?: string;
  /**
   * More reads when this location answers an older version than `load`'s `minVersion`, or no
   * record, before reporting the stale read (a non-negative integer).
   * @default 2
   */
  staleReadRetries?: number;
  /** Milliseconds between those reads (a non-negative integer). @default 100 */
  staleReadDelay?: number;
  /**
   * Seconds an ended session's end key is kept at the least from its write (KV's propagation
   * delay); an integer of at least 60.
   * @default 60
   */
  tombstoneTtl?: number;
  /**
   * Seconds KV keeps a record past its `expiresAt`, so that it reads as expired rather than as
   * not here yet (a non-negative integer). Reads never return it.
   * @default 86_400
   */
  expiredRetention?: number;
  /** The clock that decides expiry, in ms since the epoch: `withSession`'s `now`. @default Date.now */
  now?: () => number;
}
