/**
 * `CloudflareKvStore`: sessions in Cloudflare Workers KV. Eventually consistent, no
 * compare-and-set: read what it cannot guarantee before choosing it over `DurableObjectStore`.
 *
 * @module
 */
import {
  SessionConfigError,
  SessionDataError,
  SessionTooLargeError,
  StoreUnavailableError,
} from "../errors.ts";
import {
  assertStorageKey,
  assertTouchArguments,
  ENDED_KEY,
  isEnded,
  parseStoredSession,
  type SaveIndex,
  type SaveResult,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
  touchExtends,
} from "../store.ts";
import { userTag } from "../user_tag.ts";

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
 * // A listing as KV returns it: a live key, and one past its expiresAt that KV has not dropped yet.
 * const now = Date.now();
 * const keys: KvListKeyLike[] = [
 *   { name: `websession:${"a".repeat(43)}`, metadata: { version: 1, expiresAt: now + 60_000 } },
 *   { name: `websession:${"b".repeat(43)}`, metadata: { version: 4, expiresAt: now - 1 } },
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
 * const values = new Map<string, { value: string; metadata: unknown }>();
 * const namespace: KvNamespaceLike = {
 *   get: async (key) => values.get(key)?.value ?? null,
 *   put: async (key, value, options) => void values.set(key, { value, metadata: options?.metadata }),
 *   delete: async (key) => void values.delete(key),
 *   list: async ({ prefix = "" } = {}) => ({
 *     keys: [...values].filter(([name]) => name.startsWith(prefix)).map(([name, { metadata }]) => ({
 *       name,
 *       metadata,
 *     })),
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
   * Prepended to every key the store writes. At most 463 bytes of UTF-8, so that a session's
   * end key, `prefix + "ended:" + storageKey`, stays within KV's 512-byte limit.
   * @default "websession:"
   */
  prefix?: string;
  /**
   * How many more times `load` reads when this location answers an older version than
   * `minVersion`, or no record at all, before it reports the stale read (a non-negative integer).
   * @default 2
   */
  staleReadRetries?: number;
  /**
   * Milliseconds between those reads (a non-negative integer). KV caches a key at each location
   * for 60 s by default, so a short wait helps only with a write still in flight.
   * @default 100
   */
  staleReadDelay?: number;
  /**
   * Seconds that a tombstone (the record of an ended session) is kept at the least, counted from
   * its write, whatever its `expiresAt` says: KV's propagation delay, so that every location
   * sees the session end rather than its record vanish. The end key holding it is kept this
   * much longer again after its `expiresAt` and `expiredRetention`. An integer of at least 60.
   * @default 60
   */
  tombstoneTtl?: number;
  /**
   * Seconds that KV keeps a record after its `expiresAt` (a non-negative integer). Reads never
   * return it; it is kept so that a client coming back with the cookie of an expired session is
   * told that it expired (a fresh session starts), where a missing record would read as a
   * location KV has not reached yet (`StoreUnavailableError`, 503; see the class notes). Sessions
   * with persistent cookies (the default) need little: the browser drops the cookie at
   * `expiresAt`. Raise it for session cookies (`persistent: false`), which a browser may keep for
   * days.
   * @default 86_400
   */
  expiredRetention?: number;
  /**
   * The clock that decides whether a record has expired, in milliseconds since the epoch. Give
   * it the same clock as `withSession`'s `now`, which computes `expiresAt`. KV's own expiry is
   * set relative to it (`expirationTtl`) and only removes what no read would return.
   * @default Date.now
   */
  now?: () => number;
}

/** Metadata written beside each record, so a listing needs no value reads. */
interface KvRecordMetadata {
  version: number;
  expiresAt: number;
  /** Present on a tombstone, which `count()` does not count. */
  ended?: true;
}

/**
 * Where a record is indexed: the user, and until when (ms, by the store's clock) the index key
 * `${prefix}users:${userTag(user)}:${key}` is kept (`until` 0: not written in that layout yet).
 */
interface Indexed {
  user: string;
  until: number;
}

/**
 * What a read found at this location: the record's key, unless the session's end key is there,
 * which wins over whatever the record's key holds (its tombstone is then the record found).
 */
type Found =
  | { kind: "absent" }
  | { kind: "unreadable" }
  | { kind: "record"; record: StoredSession; destroyed: boolean; index: Indexed | undefined };

/** Workers KV refuses an `expirationTtl` under 60 seconds. */
const MIN_TTL_SECONDS = 60;

/** Workers KV's limits: a key of 512 bytes, a value of 25 MiB. */
const MAX_KEY_BYTES = 512;
const MAX_VALUE_BYTES = 25 * 1024 * 1024;

/** The length of a storage key (base64url SHA-256). */
const STORAGE_KEY_LENGTH = 43;

/**
 * A top-level field of the stored JSON that marks a tombstone left by `destroy()`: it refuses
 * writes like any tombstone, and reads as no session (an ended session's tombstone written by
 * `withSession` reads as itself).
 */
const DESTROYED_FIELD = "destroyed";

/** A top-level field of the stored JSON: the user the record is indexed under, and until when. */
const INDEX_FIELD = "index";

/**
 * Index keys are `${prefix}users:${userTag(user)}:${storageKey}`: the user's tag (the store
 * kit's rule), never the id, so that listings show no personal data and every index key is
 * 93 bytes after the prefix. No storage key holds a ":".
 */
const USERS_PART = "users:";
const INDEX_KEY_BYTES = USERS_PART.length + STORAGE_KEY_LENGTH + 1 + STORAGE_KEY_LENGTH;

/**
 * The earlier layout, `${prefix}user:${user}:${storageKey}` with the raw id, is still read by
 * `keysOfUser` (never written) so that sessions indexed before the upgrade are found until they
 * lapse. Its keys never collide with the new ones: "user:" is not a prefix of "users:".
 * Remove this read (`#oldKeysOfUser`) once the longest session lifetime (the larger of
 * `absoluteTimeout` and `remember.absoluteTimeout`) has passed since the upgrade: by then every
 * record indexed the old way has been written again (any save or touch rewrites its index key in
 * the new layout) or has expired, and its old key lapses a day after that (`INDEX_KEEP_MS`).
 */
const OLD_USER_PART = "user:";

/** A stored index of the current layout says so; one without it names an old-layout key. */
const HASHED_FIELD = "hashed";

/**
 * The end of a session lives in a key of its own, `${prefix}ended:${storageKey}`, written once
 * and never by a save of data: a late data write at a location that had not seen the end can
 * land in the record's key, never in this one, so once KV converges the session reads as ended.
 */
const END_PART = "ended:";

/**
 * How long an index key is kept past the record's `expiresAt` when it is written, in ms: a
 * session kept alive rewrites its index key about once a day of activity, not on every save.
 */
const INDEX_KEEP_MS = 86_400_000;

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
 *   writes to one session must never lose an update. A refused save answers plain `false`: what it
 *   read was not read atomically with anything.
 * - **Eventually consistent.** A write can take 60 seconds or more to be seen at other Cloudflare
 *   locations; meanwhile they read the older version, or nothing. With `load(key, minVersion)`
 *   (the version the client last saw, carried in its signed cookie) an older version, or no
 *   record at all, is read again and then reported as `StoreUnavailableError` (503) rather than
 *   served, so a location that has not seen a session yet never hands its user a fresh one. A
 *   record that has expired is kept `expiredRetention` past `expiresAt` so that it reads as
 *   expired, not as missing; a client presenting the cookie of a session whose record KV no
 *   longer holds at all (the cookie outlived `expiresAt` by more than that) gets that 503 too.
 *   A touch (a new `expiresAt`, same version) is not detected as stale: a location still on the
 *   old `expiresAt` may end the session early, which `touchAfter` (half the idle timeout) makes
 *   unlikely.
 * - **Ending a session takes a minute to reach every location, then holds.** `withSession` ends
 *   a session by saving a tombstone, and `destroy()` writes one; this store writes it to the
 *   session's end key, `${prefix}ended:${storageKey}`, which no save of data ever writes, and
 *   reads that key beside the record's on every `load`, `save` and `touch` (two reads in
 *   parallel): once it is there, the session reads as ended whatever the record's key holds,
 *   and nothing is written over it. A location that has not seen the end yet (KV's propagation
 *   delay, and as long as its cache of the key lasts) still reads the live record, and a save
 *   or touch there still lands in the record's key; but once KV converges the end key wins, so
 *   the ended session stays ended. The end key is kept until the tombstone's `expiresAt` (at
 *   least `tombstoneTtl` after the end), then `expiredRetention`, then `tombstoneTtl` again:
 *   longer than any record a late write can leave, as long as the idle timeout is no longer
 *   than `expiredRetention` (a day by default) and KV propagates within `tombstoneTtl`.
 * - **One write a second per key.** KV refuses a second write to the same key within a second
 *   (an error, answered 503), for example two saves of one session in the same second. Ending
 *   a session writes its end key, not the record's, so a logout right after a save is not one.
 * - **60-second minimum expiry.** KV drops a key no sooner than 60 s after the write; each record
 *   keeps its `expiresAt`, and a read never returns a record past it.
 * - **Limits.** Keys of 512 bytes (the prefix may take 463, or 419 where sessions are indexed
 *   per user; a user's id of any length fits), values of 25 MiB of UTF-8 JSON: a
 *   larger record is refused with `SessionTooLargeError` before anything is written. Lone
 *   surrogates and NUL characters round-trip (JSON escapes them).
 * - **No leases.** KV cannot take a key for one writer (no compare-and-set, and a write is seen
 *   elsewhere only later), so `capabilities.locks` is `false` and `session.lock()` throws
 *   `SessionConfigError`. Use `DurableObjectStore` where a side effect must run once.
 * - **Sessions per user, best effort.** A save given an `index` writes an index key
 *   `${prefix}users:${userTag(user)}:${storageKey}` before the record (the user's tag, never the
 *   id itself: see the store kit's `userTag`), and the record remembers its user,
 *   so later saves and touches keep that key for as long as the record lives (rewriting it about
 *   once a day of activity). `keysOfUser` lists those keys, and a KV listing is eventually
 *   consistent: a session created or ended at another location in the last minute or so may be
 *   missing from the list, or still in it. Two saves racing on one session can also drop the
 *   record's memory of its user (the last write wins); its index key then lapses a day after the
 *   record would have expired when it was indexed, and a session kept alive past that is no
 *   longer listed. "Log out everywhere" is therefore best effort here.
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
   * Leases: no (see the class notes). Sessions per user: yes, best effort (see the class notes).
   */
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
    const prefix = options.prefix ?? "websession:";
    if (typeof prefix !== "string") {
      throw new TypeError(`Invalid prefix: "${String(prefix)}" is not a string`);
    }
    const prefixBytes = new TextEncoder().encode(prefix).length;
    if (prefixBytes + END_PART.length + STORAGE_KEY_LENGTH > MAX_KEY_BYTES) {
      throw new RangeError(
        `Invalid prefix: "${prefixBytes}" bytes, at most "${
          MAX_KEY_BYTES - END_PART.length - STORAGE_KEY_LENGTH
        }" leave room for an end key within KV's 512-byte key limit`,
      );
    }
    const retries = options.staleReadRetries ?? 2;
    const delay = options.staleReadDelay ?? 100;
    const retention = options.expiredRetention ?? 86_400;
    for (
      const [name, value] of [
        ["staleReadRetries", retries],
        ["staleReadDelay", delay],
        ["expiredRetention", retention],
      ] as const
    ) {
      if (!Number.isSafeInteger(value) || value < 0) {
        throw new RangeError(`Invalid ${name}: "${value}" is not a non-negative integer`);
      }
    }
    const tombstoneTtl = options.tombstoneTtl ?? MIN_TTL_SECONDS;
    if (!Number.isSafeInteger(tombstoneTtl) || tombstoneTtl < MIN_TTL_SECONDS) {
      throw new RangeError(`Invalid tombstoneTtl: "${tombstoneTtl}" is not an integer of at least 60`);
    }
    this.#namespace = namespace as KvNamespaceLike;
    this.#prefix = prefix;
    this.#retries = retries;
    this.#delay = delay;
    this.#tombstoneMs = tombstoneTtl * 1000;
    this.#retentionSeconds = retention;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Reads a record. With `minVersion` (at least 1: the client has seen the session), a record
   * older than that, or no record at all, is a stale read from a location KV has not caught up
   * with yet: it is read again (`staleReadRetries` times) and then reported. A tombstone is never
   * stale: an ended session stays ended. The session's end key is read beside its record's, in
   * parallel, and wins: once it is here, the session reads as ended whatever the record's key
   * holds.
   *
   * @param key The storage key.
   * @param minVersion The version the client has already seen, if known (from its signed cookie).
   * @returns The record (a tombstone included), or `null` when expired, unreadable, destroyed
   *   with `destroy()`, or missing where the client has seen no version.
   * @throws {TypeError} When `key` is not a storage key.
   * @throws {StoreUnavailableError} When KV fails, or keeps answering a version older than
   *   `minVersion`, or no record, for a session the client has seen.
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
   * Best-effort compare-and-set: reads the stored version and writes only when it matches
   * (`null`: only when absent). Never recreates a missing record, and never writes over a
   * tombstone it can see (an ended session stays ended). Two saves racing between that read and
   * the write can both succeed, and a location that has not seen the end yet can still write the
   * record's key: see the class notes.
   *
   * A tombstone (data `{ [ENDED_KEY]: true }`) is written to the session's end key, never to the
   * record's, with an `expiresAt` at least `tombstoneTtl` ahead; a save of data never writes the
   * end key.
   *
   * With `index`, once the version check passes, the index key
   * `${prefix}users:${userTag(user)}:${storageKey}` is written before the record (a refused save writes
   * neither). Without it, a record already indexed stays indexed under its user.
   *
   * @param key The storage key.
   * @param record The record to store.
   * @param expectedVersion The version the caller loaded, or `null` to create.
   * @param index The user to index the key under, if any.
   * @returns `true` when written; `false` when the stored version is not the expected one, the
   *   record is gone or expired, or a tombstone is stored.
   * @throws {TypeError} When `key` is not a storage key, the record's version or times are not
   *   finite numbers, or `index.user` is not a string.
   * @throws {SessionDataError} When the data is not a JSON object (a `BigInt`, a cycle).
   * @throws {SessionConfigError} With `index`, when `prefix` is over 419 bytes, which leaves no
   *   room for an index key within KV's 512-byte key limit; nothing is written.
   * @throws {SessionTooLargeError} When the record is over KV's 25 MiB value limit; nothing is
   *   written.
   * @throws {StoreUnavailableError} When KV fails.
   */
  async save(
    key: string,
    record: StoredSession,
    expectedVersion: number | null,
    index?: SaveIndex,
  ): Promise<SaveResult> {
    assertStorageKey(key);
    const user = index === undefined ? undefined : this.#checkUser(index.user);
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
    const indexed = await this.#index(
      key,
      toWrite,
      user !== undefined && user !== carried?.user ? { user, until: 0 } : carried,
    );
    await this.#write(key, toWrite, indexed === undefined ? text : encode(toWrite, indexed));
    return true;
  }

  /**
   * Ends a session for good (admin use): writes its end key, a tombstone kept at least
   * `tombstoneTtl` and until the record would have expired, and past that (see the class notes),
   * which this store refuses to write over; `load` then answers `null`, as for a deleted record,
   * whatever the record's key holds. A session already ended is left as it is. Other locations
   * may still read the live record until KV converges (a minute or more), and a save there can
   * still land in the record's key, but not bring the session back once KV has converged.
   *
   * @param key The storage key.
   * @throws {TypeError} When `key` is not a storage key.
   * @throws {StoreUnavailableError} When KV fails.
   */
  async destroy(key: string): Promise<void> {
    assertStorageKey(key);
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
   * Extends a live record's expiry, keeping its data and version, when the record this location
   * reads is at `version`, is not a tombstone and expires before `expiresAt`; then rewrites it
   * (KV cannot change a key's expiry alone). Best effort, like `save`: KV has no
   * compare-and-set, so the check and the write are two operations, and a save landing between
   * them, or one this location has not seen yet, can be overwritten by the rewrite (the last
   * write wins; see the class notes).
   *
   * @param key The storage key.
   * @param expiresAt The new expiry, in milliseconds since the epoch.
   * @param version The version the caller read.
   * @returns `true` when rewritten; `false` when this location reads no live record at
   *   `version`, reads a tombstone, or reads one already expiring at or after `expiresAt`
   *   (nothing is written).
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
   * The storage keys indexed under `user`, from a KV listing of the prefix
   * `${prefix}users:${userTag(user)}:` (paged), and of the earlier layout's
   * `${prefix}user:${user}:`, which sessions indexed before the upgrade still hold until they
   * lapse (see `OLD_USER_PART` for when that read goes). Best effort: the listing is eventually
   * consistent, so a session indexed at another location in the last minute or so may be
   * missing, and keys of sessions that have since ended or expired may be listed (see the class
   * notes).
   *
   * @param user The user's id.
   * @returns The storage keys, each once.
   * @throws {TypeError} When `user` is not a string.
   * @throws {StoreUnavailableError} When KV fails.
   * @example
   * ```ts
   * import { CloudflareKvStore } from "websession/cloudflare-kv";
   * import { userTag } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * // In a Worker this is a binding, `env.SESSIONS`; a Map stands in for it here.
   * const values = new Map<string, string>();
   * const store = new CloudflareKvStore({
   *   namespace: {
   *     get: async (key) => values.get(key) ?? null,
   *     put: async (key, value) => void values.set(key, value),
   *     delete: async (key) => void values.delete(key),
   *     list: async ({ prefix = "" } = {}) => ({
   *       keys: [...values.keys()].filter((name) => name.startsWith(prefix)).map((name) => ({ name })),
   *       list_complete: true,
   *     }),
   *   },
   * });
   * const now = Date.now();
   * const record = { data: { user: "ada@example.com" }, version: 1, createdAt: now, expiresAt: now + 60_000 };
   * await store.save("a".repeat(43), record, null, { user: "ada@example.com" });
   * // The index key names the user by its tag, never by the id.
   * assert.ok(values.has(`websession:users:${await userTag("ada@example.com")}:${"a".repeat(43)}`));
   * assert.ok([...values.keys()].every((name) => !name.includes("ada")));
   * assert.deepEqual(await store.keysOfUser("ada@example.com"), ["a".repeat(43)]);
   * assert.equal(await store.count(), 1); // index keys are not sessions
   * ```
   */
  async keysOfUser(user: string): Promise<string[]> {
    if (typeof user !== "string") throw new TypeError(`Invalid user: "${String(user)}" is not a string`);
    const [keys, old] = await Promise.all([
      this.#listIndex(`${this.#prefix}${USERS_PART}${await userTag(user)}:`),
      this.#oldKeysOfUser(user),
    ]);
    return [...new Set([...keys, ...old])];
  }

  /**
   * The keys indexed under `user` in the earlier layout, `${prefix}user:${user}:${storageKey}`:
   * read, never written, until the longest session lifetime has passed since the upgrade (see
   * `OLD_USER_PART`). An id too long for that layout was never indexed in it.
   */
  #oldKeysOfUser(user: string): Promise<string[]> {
    const prefix = `${this.#prefix}${OLD_USER_PART}${user}:`;
    if (new TextEncoder().encode(prefix).length + STORAGE_KEY_LENGTH > MAX_KEY_BYTES) {
      return Promise.resolve([]);
    }
    return this.#listIndex(prefix);
  }

  /** The storage keys listed under an index prefix (paged), exactly one storage key after it. */
  async #listIndex(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.#call(
        "list",
        () => this.#namespace.list(cursor === undefined ? { prefix } : { prefix, cursor }),
      );
      for (const { name } of page.keys) {
        // Exactly one storage key after the prefix: not the key of a user whose id continues it.
        if (name.length === prefix.length + STORAGE_KEY_LENGTH) keys.push(name.slice(prefix.length));
      }
      cursor = page.list_complete ? undefined : page.cursor;
    } while (cursor !== undefined);
    return keys;
  }

  /**
   * Counts the unexpired records under the prefix from a KV listing (itself eventually
   * consistent, and a paged read of the whole prefix: for dashboards, not for every request).
   * Tombstones are not counted.
   *
   * @returns How many unexpired sessions the listing shows.
   * @throws {StoreUnavailableError} When KV fails.
   */
  async count(): Promise<number> {
    const now = this.#now();
    const endPrefix = this.#prefix + END_PART;
    const live: string[] = [];
    const ended = new Set<string>();
    let cursor: string | undefined;
    do {
      const page = await this.#call(
        "list",
        () =>
          this.#namespace.list(
            cursor === undefined ? { prefix: this.#prefix } : { prefix: this.#prefix, cursor },
          ),
      );
      for (const { name, metadata } of page.keys) {
        if (name.length === endPrefix.length + STORAGE_KEY_LENGTH && name.startsWith(endPrefix)) {
          ended.add(name.slice(endPrefix.length));
          continue;
        }
        if (name.length !== this.#prefix.length + STORAGE_KEY_LENGTH) continue; // an index key
        const known = metadata as Partial<KvRecordMetadata> | null | undefined;
        if (known?.ended === true) continue;
        if (typeof known?.expiresAt !== "number" || known.expiresAt > now) {
          live.push(name.slice(this.#prefix.length));
        }
      }
      cursor = page.list_complete ? undefined : page.cursor;
    } while (cursor !== undefined);
    return live.filter((key) => !ended.has(key)).length;
  }

  /**
   * What this location holds for `key`, expired or not: the record's key and the end key, read
   * in parallel. An end key, when there is one, decides: the session has ended, whatever the
   * record's key holds (a data write may have landed there after the end).
   */
  async #read(key: string): Promise<Found> {
    const [text, end] = await Promise.all([
      this.#call("get", () => this.#namespace.get(this.#prefix + key, "text")),
      this.#call("get", () => this.#namespace.get(this.#endKey(key), "text")),
    ]);
    const found = this.#parse(text);
    if (end === null) return found;
    const ended = this.#parse(end);
    if (ended.kind === "record" && isEnded(ended.record)) return ended;
    // An end key that cannot be read still says the session ended.
    const stored = found.kind === "record" ? found.record : undefined;
    const now = this.#now();
    return {
      kind: "record",
      record: {
        data: { [ENDED_KEY]: true },
        version: (stored?.version ?? 0) + 1,
        createdAt: stored?.createdAt ?? now,
        expiresAt: Math.max(stored?.expiresAt ?? now, now + this.#tombstoneMs),
      },
      destroyed: false,
      index: undefined,
    };
  }

  /** A stored value as found: absent, unreadable, or a record with what the store notes beside it. */
  #parse(text: string | null): Found {
    if (text === null) return { kind: "absent" };
    const parsed = parseStoredSession(text);
    if (parsed === null) return { kind: "unreadable" };
    const { [DESTROYED_FIELD]: destroyed, [INDEX_FIELD]: index, ...record } = parsed as StoredSession & {
      [DESTROYED_FIELD]?: unknown;
      [INDEX_FIELD]?: unknown;
    };
    return { kind: "record", record, destroyed: destroyed === true, index: indexedOf(index) };
  }

  /** The key that holds the end of the session stored under `key`. */
  #endKey(key: string): string {
    return `${this.#prefix}${END_PART}${key}`;
  }

  /**
   * Writes the end of a session to its end key: the tombstone (marked `destroyed` by
   * `destroy()`), kept until its `expiresAt`, then `expiredRetention`, then `tombstoneTtl` more,
   * so that it outlives any record a late data write can leave in the record's key (see the
   * class notes). Written once; nothing else writes it.
   */
  async #end(key: string, tombstone: StoredSession, destroyed: boolean): Promise<void> {
    const text = encode(destroyed ? { ...tombstone, [DESTROYED_FIELD]: true } as StoredSession : tombstone);
    const remaining = Math.max(0, Math.ceil((tombstone.expiresAt - this.#now()) / 1000));
    const expirationTtl = remaining + this.#retentionSeconds + this.#tombstoneMs / 1000;
    const metadata: KvRecordMetadata = {
      version: tombstone.version,
      expiresAt: tombstone.expiresAt,
      ended: true,
    };
    await this.#call("put", () => this.#namespace.put(this.#endKey(key), text, { expirationTtl, metadata }));
  }

  /** The user's id, checked to be a string; the prefix, checked to leave room for its index key. */
  #checkUser(user: unknown): string {
    if (typeof user !== "string") {
      throw new TypeError(`Invalid index: user "${String(user)}" is not a string`);
    }
    const bytes = new TextEncoder().encode(this.#prefix).length;
    if (bytes + INDEX_KEY_BYTES > MAX_KEY_BYTES) {
      throw new SessionConfigError(
        `Invalid prefix: "${bytes}" bytes leave no room for a user's index key within Workers KV's 512-byte key limit; at most "${
          MAX_KEY_BYTES - INDEX_KEY_BYTES
        }" bytes index sessions per user`,
      );
    }
    return user;
  }

  /**
   * Writes the index key before the record when the record would outlive it (a new index has
   * `until` 0), kept `INDEX_KEEP_MS` past the record's `expiresAt`; returns the index the record
   * then carries. A tombstone keeps the index it had without rewriting it.
   */
  async #index(
    key: string,
    record: StoredSession,
    indexed: Indexed | undefined,
  ): Promise<Indexed | undefined> {
    if (
      indexed === undefined || isEnded(record) || indexed.until >= record.expiresAt + MIN_TTL_SECONDS * 1000
    ) {
      return indexed;
    }
    const now = this.#now();
    const until = Math.max(record.expiresAt, now) + INDEX_KEEP_MS;
    const expirationTtl = Math.max(MIN_TTL_SECONDS, Math.ceil((until - now) / 1000));
    const name = `${this.#prefix}${USERS_PART}${await userTag(indexed.user)}:${key}`;
    await this.#call("put", () => this.#namespace.put(name, "", { expirationTtl }));
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

  /**
   * Writes `text` (the record's JSON) with a relative expiry: KV keeps the key until `expiresAt`
   * and `expiredRetention` beyond, never under its 60-second minimum.
   */
  async #write(key: string, record: StoredSession, text: string): Promise<void> {
    const remaining = Math.max(0, Math.ceil((record.expiresAt - this.#now()) / 1000));
    const expirationTtl = Math.max(MIN_TTL_SECONDS, remaining + this.#retentionSeconds);
    const metadata: KvRecordMetadata = isEnded(record)
      ? { version: record.version, expiresAt: record.expiresAt, ended: true }
      : { version: record.version, expiresAt: record.expiresAt };
    await this.#call("put", () => this.#namespace.put(this.#prefix + key, text, { expirationTtl, metadata }));
  }

  async #call<T>(what: string, operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      // `encode` measures first; KV's own refusal of a value over its limit means the same.
      if (
        what === "put" && /value length of \d+ exceeds limit|too large/i.test((error as Error)?.message ?? "")
      ) {
        throw new SessionTooLargeError(`Session too large for Workers KV: ${(error as Error).message}`, {
          cause: error,
        });
      }
      throw new StoreUnavailableError(
        `Workers KV ${what} failed: ${(error as Error)?.message ?? String(error)}`,
        {
          cause: error,
        },
      );
    }
  }
}

/**
 * The index a stored record carries, if well-formed. One written in the earlier layout (not
 * marked `hashed`) reads as not written yet (`until` 0), so the next save or touch writes the
 * record's index key in the current layout.
 */
function indexedOf(value: unknown): Indexed | undefined {
  const index = value as (Partial<Indexed> & { [HASHED_FIELD]?: unknown }) | null | undefined;
  if (typeof index?.user !== "string" || typeof index.until !== "number") return undefined;
  return { user: index.user, until: index[HASHED_FIELD] === true ? index.until : 0 };
}

/** Why `found` is a stale read for a client that has seen `minVersion`, or `undefined`. */
function staleness(found: Found, minVersion: number | undefined): string | undefined {
  if (minVersion === undefined || !(minVersion >= 1)) return undefined;
  if (found.kind === "absent") {
    return `no record of a session the client has seen at version "${minVersion}"`;
  }
  if (found.kind === "record" && !isEnded(found.record) && found.record.version < minVersion) {
    return `version "${found.record.version}" is older than "${minVersion}" the client has seen`;
  }
  return undefined;
}

/**
 * The record's JSON text, checked before anything is written: well-formed numbers, JSON data, and
 * a UTF-8 size within KV's value limit.
 */
function encode(record: StoredSession, index?: Indexed): string {
  const { version, createdAt, expiresAt, data } = record;
  if (!Number.isSafeInteger(version) || !Number.isFinite(createdAt) || !Number.isFinite(expiresAt)) {
    throw new TypeError(
      `Invalid record: version "${version}", createdAt "${createdAt}" and expiresAt "${expiresAt}" must be finite`,
    );
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new SessionDataError("Session data cannot be stored: not a JSON object");
  }
  let text: string;
  try {
    const stored = index === undefined
      ? record
      : { ...record, [INDEX_FIELD]: { ...index, [HASHED_FIELD]: true } };
    text = JSON.stringify(stored);
  } catch (error) {
    throw new SessionDataError(
      `Session data cannot be stored: not JSON-serializable: ${(error as Error).message}`,
      { cause: error },
    );
  }
  // UTF-8 takes 1 to 3 bytes per UTF-16 code unit: measure only when the bound is unclear.
  if (text.length * 3 > MAX_VALUE_BYTES) {
    const size = new TextEncoder().encode(text).length;
    if (size > MAX_VALUE_BYTES) {
      throw new SessionTooLargeError(
        `Session too large for Workers KV: "${size}" bytes of JSON, at most "${MAX_VALUE_BYTES}" fit in one value`,
      );
    }
  }
  return text;
}
