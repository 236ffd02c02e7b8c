/**
 * `CloudflareKvStore`: sessions in Cloudflare Workers KV. Eventually consistent, no
 * compare-and-set: read what it cannot guarantee before choosing it over `DurableObjectStore`.
 *
 * @module
 */
import { StoreUnavailableError } from "../errors.ts";
import {
  assertStorageKey,
  parseStoredSession,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
} from "../store.ts";

/**
 * Options of a KV write (a subset of Workers' `KVNamespacePutOptions`).
 *
 * @example
 * ```ts
 * import { CloudflareKvStore, type KvPutOptionsLike } from "websession/cloudflare-kv";
 * import assert from "node:assert/strict";
 *
 * // What the store asks KV for on each write (a Map stands in for the `env.SESSIONS` binding).
 * const values = new Map<string, string>();
 * const puts: KvPutOptionsLike[] = [];
 * const store = new CloudflareKvStore({
 *   namespace: {
 *     get: async (key) => values.get(key) ?? null,
 *     put: async (key, value, options) => void (values.set(key, value), puts.push(options ?? {})),
 *     delete: async (key) => void values.delete(key),
 *     list: async () => ({ keys: [], list_complete: true }),
 *   },
 * });
 * const now = Date.now();
 * await store.save("k".repeat(43), { data: {}, version: 1, createdAt: now, expiresAt: now + 10_000 }, null);
 * assert.equal(puts[0]?.expirationTtl, 60); // KV's minimum; reads still stop at expiresAt
 * assert.deepEqual(puts[0]?.metadata, { version: 1, expiresAt: now + 10_000 });
 * ```
 */
export interface KvPutOptionsLike {
  /** Seconds from now until KV drops the key; at least 60. */
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
 * // A listing as KV returns it: a live key, and one past its expiresAt that KV has not dropped yet.
 * const now = Date.now();
 * const keys: KvListKeyLike[] = [
 *   { name: "websession:a", metadata: { version: 1, expiresAt: now + 60_000 } },
 *   { name: "websession:b", metadata: { version: 4, expiresAt: now - 1 } },
 * ];
 * const store = new CloudflareKvStore({
 *   namespace: {
 *     get: async () => null,
 *     put: async () => {},
 *     delete: async () => {},
 *     list: async () => ({ keys, list_complete: true }),
 *   },
 * });
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
 * The part of a Workers `KVNamespace` binding this store uses, so that the store never imports
 * Cloudflare's types and `env.SESSIONS` fits as is.
 *
 * @example
 * ```ts
 * import { CloudflareKvStore, type KvNamespaceLike } from "websession/cloudflare-kv";
 * import assert from "node:assert/strict";
 *
 * // In a Worker, `env.SESSIONS` (a KVNamespace) fits as is; a Map stands in for it here.
 * const values = new Map<string, string>();
 * const namespace: KvNamespaceLike = {
 *   get: async (key) => values.get(key) ?? null,
 *   put: async (key, value) => void values.set(key, value),
 *   delete: async (key) => void values.delete(key),
 *   list: async ({ prefix = "" } = {}) => ({
 *     keys: [...values.keys()].filter((name) => name.startsWith(prefix)).map((name) => ({ name })),
 *     list_complete: true,
 *   }),
 * };
 * const store = new CloudflareKvStore({ namespace });
 * const key = "k".repeat(43);
 * const now = Date.now();
 * await store.save(key, { data: { a: 1 }, version: 1, createdAt: now, expiresAt: now + 60_000 }, null);
 * assert.equal(JSON.parse(values.get(`websession:${key}`)!).version, 1);
 * assert.equal(await store.count(), 1);
 * await store.destroy(key);
 * assert.equal(values.size, 0);
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
 * Options of {@linkcode CloudflareKvStore}.
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
 *     get: async () => stale,
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
  /** The KV namespace binding, e.g. `env.SESSIONS`. */
  namespace: KvNamespaceLike;
  /**
   * Prepended to every storage key.
   * @default "websession:"
   */
  prefix?: string;
  /**
   * How many more times `load` reads when it sees an older version than `minVersion`, before
   * it reports the stale read.
   * @default 2
   */
  staleReadRetries?: number;
  /**
   * Milliseconds between those reads.
   * @default 100
   */
  staleReadDelay?: number;
  /**
   * The clock, in milliseconds since the epoch (injectable for tests).
   * @default Date.now
   */
  now?: () => number;
}

/** Metadata written beside each record, so a listing needs no value reads. */
interface KvRecordMetadata {
  version: number;
  expiresAt: number;
}

/** Workers KV refuses an `expirationTtl` under 60 seconds. */
const MIN_TTL_SECONDS = 60;

/**
 * Keeps sessions in Workers KV: cheap, global reads, and the right choice for sessions that are
 * read far more often than written. Its capabilities say `compareAndSet: false`, and here is
 * plainly what that means.
 *
 * What it cannot guarantee:
 * - **No compare-and-set.** A save reads the stored version and writes only if it is the expected
 *   one, and never recreates a missing record; but the read and the write are two operations. Two
 *   requests that save the same session at the same moment can both succeed: the last write wins
 *   and the other's changes (an increment, say) are lost. Use `DurableObjectStore` when parallel
 *   writes to one session must never lose an update.
 * - **Eventually consistent.** A write can take 60 seconds or more to be seen at other Cloudflare
 *   locations; meanwhile they read the older version. With `load(key, minVersion)` (the version
 *   the client last saw, carried in its signed cookie) an older version is read again and then
 *   reported as `StoreUnavailableError` rather than silently served. A record written elsewhere and
 *   not visible yet reads as missing: that cannot be told apart from a destroyed one.
 * - **Destroy propagates late.** Other locations may still read a destroyed session for up to a
 *   minute.
 * - **60-second minimum expiry.** KV drops a key no sooner than 60 s after the write; each record
 *   keeps its `expiresAt`, and a read never returns a record past it.
 *
 * @example
 * ```ts
 * import { CloudflareKvStore, type KvNamespaceLike } from "websession/cloudflare-kv";
 * import assert from "node:assert/strict";
 *
 * // In a Worker this is a binding, `env.SESSIONS`; a Map stands in for it here.
 * const values = new Map<string, string>();
 * const namespace: KvNamespaceLike = {
 *   get: async (key) => values.get(key) ?? null,
 *   put: async (key, value) => void values.set(key, value),
 *   delete: async (key) => void values.delete(key),
 *   list: async () => ({ keys: [...values.keys()].map((name) => ({ name })), list_complete: true }),
 * };
 * const store = new CloudflareKvStore({ namespace });
 * assert.equal(store.capabilities.compareAndSet, false);
 * const key = "k".repeat(43);
 * const now = Date.now();
 * assert.equal(await store.save(key, { data: { a: 1 }, version: 1, createdAt: now, expiresAt: now + 60_000 }, null), true);
 * assert.equal((await store.load(key))?.data.a, 1);
 * ```
 */
export class CloudflareKvStore implements SessionStore {
  /**
   * Compare-and-set: no (read-then-write, eventually consistent). Native expiry: yes. Stale reads:
   * yes, so `withSession` carries the last seen version in the cookie and passes it to `load`.
   */
  readonly capabilities: StoreCapabilities = { compareAndSet: false, ttl: true, staleReads: true };
  #namespace: KvNamespaceLike;
  #prefix: string;
  #retries: number;
  #delay: number;
  #now: () => number;

  /**
   * Creates a store over a Workers KV namespace binding.
   *
   * @param options See {@linkcode CloudflareKvStoreOptions}.
   * @throws {TypeError} When `namespace` does not look like a KV binding or `prefix` is not a string.
   * @throws {RangeError} When `staleReadRetries` or `staleReadDelay` is negative or not an integer.
   */
  constructor(options: CloudflareKvStoreOptions) {
    const namespace = options?.namespace as Partial<KvNamespaceLike> | undefined;
    if (
      typeof namespace?.get !== "function" || typeof namespace.put !== "function" ||
      typeof namespace.delete !== "function" || typeof namespace.list !== "function"
    ) {
      throw new TypeError("Invalid namespace: expected a Workers KV namespace binding");
    }
    const prefix = options.prefix ?? "websession:";
    if (typeof prefix !== "string") {
      throw new TypeError(`Invalid prefix: "${String(prefix)}" is not a string`);
    }
    const retries = options.staleReadRetries ?? 2;
    const delay = options.staleReadDelay ?? 100;
    for (const [name, value] of [["staleReadRetries", retries], ["staleReadDelay", delay]] as const) {
      if (!Number.isSafeInteger(value) || value < 0) {
        throw new RangeError(`Invalid ${name}: "${value}" is not a non-negative integer`);
      }
    }
    this.#namespace = namespace as KvNamespaceLike;
    this.#prefix = prefix;
    this.#retries = retries;
    this.#delay = delay;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Reads a record. With `minVersion`, a record older than that is a stale read from a location
   * KV has not caught up with yet: it is read again (`staleReadRetries` times) and then reported.
   *
   * @param key The storage key.
   * @param minVersion The version the client has already seen, if known (from its signed cookie).
   * @returns The record, or `null` when missing, expired or unreadable.
   * @throws {TypeError} When `key` is not a storage key.
   * @throws {StoreUnavailableError} When KV fails, or keeps answering a version older than `minVersion`.
   */
  async load(key: string, minVersion?: number): Promise<StoredSession | null> {
    assertStorageKey(key);
    let record = await this.#read(key);
    for (let retry = 0; minVersion !== undefined && record !== null && record.version < minVersion; retry++) {
      if (retry >= this.#retries) {
        throw new StoreUnavailableError(
          `Stale read from Workers KV: version "${record.version}" is older than "${minVersion}" the client has seen`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, this.#delay));
      record = await this.#read(key);
    }
    return record;
  }

  /**
   * Best-effort compare-and-set: reads the stored version and writes only when it matches
   * (`null`: only when absent). Never recreates a missing record. Two saves racing between
   * that read and the write can both succeed: see the class notes.
   *
   * @param key The storage key.
   * @param record The record to store.
   * @param expectedVersion The version the caller loaded, or `null` to create.
   * @returns `false` when the stored version is not the expected one or the record is gone.
   * @throws {TypeError} When `key` is not a storage key.
   * @throws {StoreUnavailableError} When KV fails.
   */
  async save(key: string, record: StoredSession, expectedVersion: number | null): Promise<boolean> {
    assertStorageKey(key);
    const current = await this.#read(key);
    if (expectedVersion === null ? current !== null : current?.version !== expectedVersion) return false;
    await this.#write(key, record);
    return true;
  }

  /**
   * Removes a record; no error if it is absent. Other locations may see it for up to a minute.
   *
   * @param key The storage key.
   * @throws {TypeError} When `key` is not a storage key.
   * @throws {StoreUnavailableError} When KV fails.
   */
  async destroy(key: string): Promise<void> {
    assertStorageKey(key);
    await this.#call("delete", () => this.#namespace.delete(this.#prefix + key));
  }

  /**
   * Moves an existing record's expiry, keeping its data and version (a read and a rewrite: KV
   * cannot change a key's expiry alone). Does nothing for a missing or expired record.
   *
   * @param key The storage key.
   * @param expiresAt The new expiry, in milliseconds since the epoch.
   * @throws {TypeError} When `key` is not a storage key.
   * @throws {StoreUnavailableError} When KV fails.
   */
  async touch(key: string, expiresAt: number): Promise<void> {
    assertStorageKey(key);
    const current = await this.#read(key);
    if (current !== null) await this.#write(key, { ...current, expiresAt });
  }

  /**
   * Counts the unexpired records under the prefix from a KV listing (itself eventually
   * consistent, and a paged read of the whole prefix: for dashboards, not for every request).
   *
   * @returns How many unexpired sessions the listing shows.
   * @throws {StoreUnavailableError} When KV fails.
   */
  async count(): Promise<number> {
    const now = this.#now();
    let live = 0;
    let cursor: string | undefined;
    do {
      const page = await this.#call(
        "list",
        () =>
          this.#namespace.list(
            cursor === undefined ? { prefix: this.#prefix } : { prefix: this.#prefix, cursor },
          ),
      );
      for (const { metadata } of page.keys) {
        const expiresAt = (metadata as Partial<KvRecordMetadata> | null | undefined)?.expiresAt;
        if (typeof expiresAt !== "number" || expiresAt > now) live++;
      }
      cursor = page.list_complete ? undefined : page.cursor;
    } while (cursor !== undefined);
    return live;
  }

  async #read(key: string): Promise<StoredSession | null> {
    const text = await this.#call("get", () => this.#namespace.get(this.#prefix + key, "text"));
    if (text === null) return null;
    const record = parseStoredSession(text);
    return record !== null && record.expiresAt > this.#now() ? record : null;
  }

  async #write(key: string, record: StoredSession): Promise<void> {
    const remaining = record.expiresAt - this.#now();
    if (remaining <= 0) {
      await this.#call("delete", () => this.#namespace.delete(this.#prefix + key));
      return;
    }
    const metadata: KvRecordMetadata = { version: record.version, expiresAt: record.expiresAt };
    const expirationTtl = Math.max(MIN_TTL_SECONDS, Math.ceil(remaining / 1000));
    await this.#call(
      "put",
      () => this.#namespace.put(this.#prefix + key, JSON.stringify(record), { expirationTtl, metadata }),
    );
  }

  async #call<T>(what: string, operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      throw new StoreUnavailableError(
        `Workers KV ${what} failed: ${(error as Error)?.message ?? String(error)}`,
        {
          cause: error,
        },
      );
    }
  }
}
