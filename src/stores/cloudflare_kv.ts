/**
 * `CloudflareKvStore`: sessions in Cloudflare Workers KV. Eventually consistent, no
 * compare-and-set: read what it cannot guarantee (docs/stores/cloudflare-kv.md) before choosing
 * it over `DurableObjectStore`.
 *
 * @module
 */
import { StoreUnavailableError } from "../errors.ts";
import {
  assertStorageKey,
  assertTouchArguments,
  ENDED_KEY,
  isEnded,
  type SaveIndex,
  type SaveResult,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
  touchExtends,
} from "../store.ts";
import { forgetWritten } from "../turns.ts";
import { userTag } from "../user_tag.ts";
import {
  checkPrefix,
  checkUser,
  countLive,
  END_PART,
  INDEX_KEEP_MS,
  kvCall,
  listIndex,
  listOldIndex,
  USERS_PART,
} from "./cloudflare_kv/keys.ts";
import {
  encode,
  type Found,
  type Indexed,
  metadataOf,
  MIN_TTL_SECONDS,
  parseFound,
  staleness,
  withEnd,
} from "./cloudflare_kv/record.ts";

import type { CloudflareKvStoreOptions, KvNamespaceLike } from "./cloudflare_kv/types.ts";

export type {
  CloudflareKvStoreOptions,
  KvListKeyLike,
  KvNamespaceLike,
  KvPutOptionsLike,
} from "./cloudflare_kv/types.ts";

/**
 * Keeps sessions in Workers KV: cheap, global reads, for sessions read far more often than
 * written. Its capabilities say `compareAndSet: false` and `locks: false`: a save is a read then
 * a write, so two concurrent saves can both land (last write wins); a write takes a minute or
 * more to reach other locations, whose reads of an older version (by `load`'s `minVersion`) are
 * retried and then reported as `StoreUnavailableError`; the end of a session lives in an end key
 * of its own, `${prefix}ended:${storageKey}`, read beside the record and never written by a save;
 * sessions per user are best effort. What that means, and every limit, is on
 * docs/stores/cloudflare-kv.md.
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
  /** No compare-and-set, no locks; native expiry; stale reads; sessions per user (best effort). */
  readonly capabilities: StoreCapabilities = {
    compareAndSet: false,
    ttl: true,
    staleReads: true,
    locks: false,
    users: true,
  };
  #namespace: KvNamespaceLike;
  #prefix: string;
  #retries: number;
  #delay: number;
  #tombstoneMs: number;
  #retentionSeconds: number;
  #now: () => number;

  /**
   * Creates a store over a Workers KV namespace binding.
   *
   * @param options See {@linkcode CloudflareKvStoreOptions}.
   * @throws {TypeError} When `namespace` does not look like a KV binding or `prefix` is not a string.
   * @throws {RangeError} When `prefix` is over 463 bytes of UTF-8; when `staleReadRetries`,
   *   `staleReadDelay` or `expiredRetention` is negative or not an integer; when `tombstoneTtl` is
   *   not an integer of at least 60.
   */
  constructor(options: CloudflareKvStoreOptions) {
    const namespace = options?.namespace as Partial<KvNamespaceLike> | undefined;
    if (
      typeof namespace?.get !== "function" || typeof namespace.put !== "function" ||
      typeof namespace.delete !== "function" || typeof namespace.list !== "function"
    ) {
      throw new TypeError("Invalid namespace: expected a Workers KV namespace binding");
    }
    this.#prefix = checkPrefix(options.prefix ?? "websession:");
    const counts = [
      ["staleReadRetries", options.staleReadRetries ?? 2],
      ["staleReadDelay", options.staleReadDelay ?? 100],
      ["expiredRetention", options.expiredRetention ?? 86_400],
    ] as const;
    for (const [name, value] of counts) {
      if (!Number.isSafeInteger(value) || value < 0) {
        throw new RangeError(`Invalid ${name}: "${value}" is not a non-negative integer`);
      }
    }
    const tombstoneTtl = options.tombstoneTtl ?? MIN_TTL_SECONDS;
    if (!Number.isSafeInteger(tombstoneTtl) || tombstoneTtl < MIN_TTL_SECONDS) {
      throw new RangeError(`Invalid tombstoneTtl: "${tombstoneTtl}" is not an integer of at least 60`);
    }
    this.#namespace = namespace as KvNamespaceLike;
    this.#retries = counts[0][1];
    this.#delay = counts[1][1];
    this.#retentionSeconds = counts[2][1];
    this.#tombstoneMs = tombstoneTtl * 1000;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Reads a record and, in parallel, the session's end key, which wins. With `minVersion` (at
   * least 1), an older record or none is a stale read: read again `staleReadRetries` times, then
   * reported. A tombstone is never stale.
   *
   * @param key The storage key.
   * @param minVersion The version the client has already seen (from its signed cookie), if known.
   * @returns The record (a tombstone included), or `null` when expired, unreadable, destroyed
   *   with `destroy()`, or missing where the client has seen no version.
   * @throws {TypeError} When `key` is not a storage key.
   * @throws {StoreUnavailableError} When KV fails, or keeps answering a stale read.
   */
  async load(key: string, minVersion?: number): Promise<StoredSession | null> {
    assertStorageKey(key);
    let found = await this.#read(key);
    for (let retry = 0;; retry++) {
      const stale = staleness(found, minVersion);
      if (stale === undefined) break;
      if (retry >= this.#retries) throw new StoreUnavailableError(`Stale read from Workers KV: ${stale}`);
      await new Promise((resolve) => setTimeout(resolve, this.#delay));
      found = await this.#read(key);
    }
    if (found.kind !== "record" || found.destroyed) return null;
    return this.#live(found.record);
  }

  /**
   * Best-effort compare-and-set: reads, and writes only when the stored version is
   * `expectedVersion` (`null`: when absent); never recreates a missing record nor writes over a
   * tombstone it sees. A tombstone goes to the end key. With `index`, the user's index key is
   * written before the record once the check passes; without it, a record keeps its index.
   *
   * @param key The storage key.
   * @param record The record to store.
   * @param expectedVersion The version the caller loaded, or `null` to create.
   * @param index The user to index the key under, if any.
   * @returns `true` when written; `false` when refused (a plain `false`: nothing was read atomically).
   * @throws {TypeError} When `key` is not a storage key, the record's version or times are not
   *   finite numbers, or `index.user` is not a string.
   * @throws {SessionDataError} When the data is not a JSON object (a `BigInt`, a cycle).
   * @throws {SessionConfigError} With `index`, when `prefix` is over 419 bytes; nothing is written.
   * @throws {SessionTooLargeError} Over KV's 25 MiB value limit; nothing is written.
   * @throws {StoreUnavailableError} When KV fails.
   */
  async save(
    key: string,
    record: StoredSession,
    expectedVersion: number | null,
    index?: SaveIndex,
  ): Promise<SaveResult> {
    assertStorageKey(key);
    const user = index === undefined ? undefined : checkUser(this.#prefix, index.user);
    const toWrite = isEnded(record) ? this.#lasting(record) : record;
    const text = encode(toWrite);
    // Checked with the user's id too, before the index key is written.
    if (user !== undefined) encode(toWrite, { user, until: Number.MAX_SAFE_INTEGER });
    const found = await this.#read(key);
    if (found.kind === "record" && isEnded(found.record)) return false;
    const current = found.kind === "record" ? this.#live(found.record) : null;
    if (expectedVersion === null ? current !== null : current?.version !== expectedVersion) return false;
    // The end of a session goes to its end key, where no save of data can overwrite it.
    if (isEnded(toWrite)) {
      await this.#end(key, toWrite, false);
      return true;
    }
    // A new user is indexed anew; otherwise the record keeps the index it had.
    const carried = current === null || found.kind !== "record" ? undefined : found.index;
    const fresh = user !== undefined && user !== carried?.user ? { user, until: 0 } : carried;
    const indexed = await this.#index(key, toWrite, fresh);
    await this.#write(key, toWrite, indexed === undefined ? text : encode(toWrite, indexed));
    return true;
  }

  /**
   * Ends a session for good (admin use): writes its end key (a tombstone marked destroyed), after
   * which `load` answers `null` at every location KV has reached. A session already ended is left
   * as it is.
   *
   * @param key The storage key.
   * @throws {TypeError} When `key` is not a storage key.
   * @throws {StoreUnavailableError} When KV fails.
   */
  async destroy(key: string): Promise<void> {
    assertStorageKey(key);
    // Sessions of this isolate no longer prefer the record it wrote to KV's answer (see `staleReads`).
    forgetWritten(this, key);
    const found = await this.#read(key);
    const stored = found.kind === "record" ? found.record : null;
    if (stored !== null && isEnded(stored)) return;
    const now = this.#now();
    const tombstone = this.#lasting({
      data: { [ENDED_KEY]: true },
      version: (stored?.version ?? 0) + 1,
      createdAt: stored?.createdAt ?? now,
      expiresAt: stored?.expiresAt ?? now,
    });
    await this.#end(key, tombstone, true);
  }

  /**
   * Extends a live record's expiry, keeping data and version, when this location reads it at
   * `version`, not a tombstone, expiring before `expiresAt`; then rewrites it. Best effort like
   * `save`: the check and the write are two operations.
   *
   * @param key The storage key.
   * @param expiresAt The new expiry, in milliseconds since the epoch.
   * @param version The version the caller read.
   * @returns `true` when rewritten; `false` when nothing was written.
   * @throws {TypeError} When `key` is not a storage key, `expiresAt` is not finite or `version`
   *   is not a positive integer.
   * @throws {StoreUnavailableError} When KV fails.
   */
  async touch(key: string, expiresAt: number, version: number): Promise<boolean> {
    assertStorageKey(key);
    assertTouchArguments(expiresAt, version);
    const found = await this.#read(key);
    if (found.kind !== "record" || !touchExtends(this.#live(found.record), expiresAt, version)) return false;
    const record = { ...found.record, expiresAt };
    const indexed = await this.#index(key, record, found.index);
    await this.#write(key, record, encode(record, indexed));
    return true;
  }

  /**
   * The storage keys indexed under `user`, from KV listings of `${prefix}users:${userTag(user)}:`
   * and of the earlier layout's `${prefix}user:${user}:`. Best effort: listings are eventually
   * consistent.
   *
   * @param user The user's id.
   * @returns The storage keys, each once.
   * @throws {TypeError} When `user` is not a string.
   * @throws {StoreUnavailableError} When KV fails.
   */
  async keysOfUser(user: string): Promise<string[]> {
    if (typeof user !== "string") throw new TypeError(`Invalid user: "${String(user)}" is not a string`);
    const [keys, old] = await Promise.all([
      listIndex(this.#namespace, `${this.#prefix}${USERS_PART}${await userTag(user)}:`),
      listOldIndex(this.#namespace, this.#prefix, user),
    ]);
    return [...new Set([...keys, ...old])];
  }

  /**
   * Counts the unexpired records under the prefix from a KV listing (eventually consistent, a
   * paged read of the whole prefix: for dashboards). Tombstones and index keys are not counted.
   *
   * @returns How many unexpired sessions the listing shows.
   * @throws {StoreUnavailableError} When KV fails.
   */
  async count(): Promise<number> {
    return await countLive(this.#namespace, this.#prefix, this.#now());
  }

  /** What this location holds for `key`, expired or not: the record's key and the end key, in parallel. */
  async #read(key: string): Promise<Found> {
    const [text, end] = await Promise.all([
      kvCall("get", () => this.#namespace.get(this.#prefix + key, "text")),
      kvCall("get", () => this.#namespace.get(this.#prefix + END_PART + key, "text")),
    ]);
    return withEnd(parseFound(text), end, this.#now(), this.#tombstoneMs);
  }

  /**
   * Writes the end of a session to its end key, kept until its `expiresAt`, then
   * `expiredRetention`, then `tombstoneTtl` more: it outlives any record a late data write can
   * leave in the record's key. Written once; nothing else writes it.
   */
  async #end(key: string, tombstone: StoredSession, destroyed: boolean): Promise<void> {
    const text = encode(tombstone, undefined, destroyed);
    const remaining = Math.max(0, Math.ceil((tombstone.expiresAt - this.#now()) / 1000));
    const expirationTtl = remaining + this.#retentionSeconds + this.#tombstoneMs / 1000;
    const options = { expirationTtl, metadata: metadataOf(tombstone) };
    await kvCall("put", () => this.#namespace.put(this.#prefix + END_PART + key, text, options));
  }

  /**
   * Writes the index key before the record when the record would outlive it (a new index has
   * `until` 0), kept `INDEX_KEEP_MS` past the record's `expiresAt`; returns the index the record
   * then carries. A tombstone keeps the index it had without rewriting it.
   */
  async #index(key: string, record: StoredSession, indexed?: Indexed): Promise<Indexed | undefined> {
    if (
      indexed === undefined || isEnded(record) || indexed.until >= record.expiresAt + MIN_TTL_SECONDS * 1000
    ) {
      return indexed;
    }
    const now = this.#now();
    const until = Math.max(record.expiresAt, now) + INDEX_KEEP_MS;
    const expirationTtl = Math.max(MIN_TTL_SECONDS, Math.ceil((until - now) / 1000));
    const name = `${this.#prefix}${USERS_PART}${await userTag(indexed.user)}:${key}`;
    await kvCall("put", () => this.#namespace.put(name, "", { expirationTtl }));
    return { user: indexed.user, until };
  }

  /** The record when live by this store's clock, else `null`. */
  #live(record: StoredSession): StoredSession | null {
    return record.expiresAt > this.#now() ? record : null;
  }

  /** A tombstone that lasts at least `tombstoneTtl` from now. */
  #lasting(tombstone: StoredSession): StoredSession {
    const floor = this.#now() + this.#tombstoneMs;
    return tombstone.expiresAt >= floor ? tombstone : { ...tombstone, expiresAt: floor };
  }

  /** Writes the record's JSON, kept until `expiresAt` and `expiredRetention` beyond (KV's 60 s at the least). */
  async #write(key: string, record: StoredSession, text: string): Promise<void> {
    const remaining = Math.max(0, Math.ceil((record.expiresAt - this.#now()) / 1000));
    const expirationTtl = Math.max(MIN_TTL_SECONDS, remaining + this.#retentionSeconds);
    const options = { expirationTtl, metadata: metadataOf(record) };
    await kvCall("put", () => this.#namespace.put(this.#prefix + key, text, options));
  }
}
