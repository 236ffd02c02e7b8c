/**
 * `DenoKvStore`: sessions in Deno KV (local SQLite or Deno Deploy), with a real compare-and-set
 * through `kv.atomic().check(...)`.
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
  parseStoredSession,
  type SaveIndex,
  type SaveResult,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
  touchExtends,
} from "../store.ts";
import { userTag } from "../user_tag.ts";
import { v8SerializedStringSize } from "../v8_size.ts";

/**
 * One part of a Deno KV key (the same union as `Deno.KvKeyPart`).
 *
 * @example
 * ```ts
 * import { type DenoKvKeyPart, DenoKvStore } from "websession/deno-kv";
 * import assert from "node:assert/strict";
 *
 * // A prefix per tenant: strings, numbers, bigints, booleans and bytes all work as key parts.
 * const tenant: DenoKvKeyPart[] = ["sessions", "tenant", 42];
 * const kv = await Deno.openKv(":memory:");
 * const store = new DenoKvStore({ kv, prefix: tenant });
 * const now = Date.now();
 * await store.save("k".repeat(43), { data: {}, version: 1, createdAt: now, expiresAt: now + 60_000 }, null);
 * const keys = [];
 * for await (const entry of kv.list({ prefix: tenant })) keys.push(entry.key);
 * assert.deepEqual(keys, [[...tenant, "k".repeat(43)]]);
 * kv.close();
 * ```
 */
export type DenoKvKeyPart = Uint8Array | string | number | bigint | boolean | symbol;

/**
 * A Deno KV key (the same shape as `Deno.KvKey`).
 *
 * @example
 * ```ts
 * import { type DenoKvKey, DenoKvStore } from "websession/deno-kv";
 * import assert from "node:assert/strict";
 *
 * const kv = await Deno.openKv(":memory:");
 * const store = new DenoKvStore({ kv }); // default prefix: ["websession"]
 * const storageKey = "k".repeat(43);
 * const now = Date.now();
 * await store.save(storageKey, { data: {}, version: 1, createdAt: now, expiresAt: now + 60_000 }, null);
 * const key: DenoKvKey = ["websession", storageKey];
 * assert.notEqual((await kv.get(key)).versionstamp, null);
 * kv.close();
 * ```
 */
export type DenoKvKey = readonly DenoKvKeyPart[];

/**
 * An entry read from Deno KV; `versionstamp` is `null` when the key is absent.
 *
 * @example
 * ```ts
 * import { type DenoKvEntryLike, DenoKvStore } from "websession/deno-kv";
 * import assert from "node:assert/strict";
 *
 * const kv = await Deno.openKv(":memory:");
 * const store = new DenoKvStore({ kv });
 * const key = "k".repeat(43);
 * const now = Date.now();
 * const absent: DenoKvEntryLike = await kv.get(["websession", key]);
 * assert.equal(absent.versionstamp, null);
 * await store.save(key, { data: { a: 1 }, version: 1, createdAt: now, expiresAt: now + 60_000 }, null);
 * const entry: DenoKvEntryLike = await kv.get(["websession", key]);
 * assert.equal(typeof entry.value, "string"); // the record's JSON text
 * assert.equal(JSON.parse(entry.value as string).data.a, 1);
 * kv.close();
 * ```
 */
export interface DenoKvEntryLike {
  /** The entry's key. */
  readonly key: DenoKvKey;
  /** The stored value, `null` when absent. */
  readonly value: unknown;
  /** The versionstamp of the last write, `null` when absent. */
  readonly versionstamp: string | null;
}

/**
 * The part of `Deno.AtomicOperation` this store uses.
 *
 * @example
 * ```ts
 * import type { DenoKvAtomicLike } from "websession/deno-kv";
 * import assert from "node:assert/strict";
 *
 * // The compare-and-set the store builds on: commit only if the key is still as it was read.
 * const kv = await Deno.openKv(":memory:");
 * const create = (): DenoKvAtomicLike =>
 *   kv.atomic().check({ key: ["k"], versionstamp: null }).set(["k"], "v1");
 * assert.equal((await create().commit()).ok, true);
 * assert.equal((await create().commit()).ok, false); // no longer absent
 * kv.close();
 * ```
 */
export interface DenoKvAtomicLike {
  /** Adds a condition: the key's versionstamp must equal `versionstamp` (`null`: absent). */
  check(...checks: { key: DenoKvKey; versionstamp: string | null }[]): DenoKvAtomicLike;
  /** Adds a write. */
  set(key: DenoKvKey, value: unknown, options?: { expireIn?: number }): DenoKvAtomicLike;
  /** Adds a deletion. */
  delete(key: DenoKvKey): DenoKvAtomicLike;
  /** Commits when every check holds: `{ ok: true, versionstamp }`, else `{ ok: false }`. */
  commit(): Promise<{ ok: boolean; versionstamp?: string }>;
}

/**
 * The part of `Deno.Kv` this store uses, so that the store never imports Deno's own types and a
 * `Deno.Kv` (from `Deno.openKv()`) fits as is.
 *
 * @example
 * ```ts
 * import { type DenoKvLike, DenoKvStore } from "websession/deno-kv";
 * import assert from "node:assert/strict";
 *
 * const denoKv = await Deno.openKv(":memory:"); // or a file path, or Deno Deploy's KV
 * const kv: DenoKvLike = denoKv; // a Deno.Kv fits as is
 * const store = new DenoKvStore({ kv });
 * assert.equal(store.capabilities.compareAndSet, true);
 * const key = "k".repeat(43);
 * const now = Date.now();
 * assert.equal(
 *   await store.save(key, { data: {}, version: 1, createdAt: now, expiresAt: now + 60_000 }, null),
 *   true,
 * );
 * assert.equal((await store.load(key))?.version, 1);
 * denoKv.close();
 * ```
 */
export interface DenoKvLike {
  /** Reads one entry (strongly consistent by default). */
  get(key: DenoKvKey): Promise<DenoKvEntryLike>;
  /** Starts an atomic operation. */
  atomic(): DenoKvAtomicLike;
  /** Deletes one key. */
  delete(key: DenoKvKey): Promise<void>;
  /** Lists the entries under a prefix. */
  list(selector: { prefix: DenoKvKey }): AsyncIterable<DenoKvEntryLike>;
}

/**
 * Options of {@linkcode DenoKvStore}.
 *
 * @example
 * ```ts
 * import { DenoKvStore, type DenoKvStoreOptions } from "websession/deno-kv";
 * import assert from "node:assert/strict";
 *
 * let clock = Date.now();
 * const kv = await Deno.openKv(":memory:");
 * const options: DenoKvStoreOptions = { kv, prefix: ["app", "sessions"], now: () => clock };
 * const store = new DenoKvStore(options);
 * const key = "k".repeat(43);
 * await store.save(key, { data: {}, version: 1, createdAt: clock, expiresAt: clock + 1000 }, null);
 * assert.equal((await store.load(key))?.version, 1);
 * clock += 1000; // past expiresAt: never returned, even before Deno KV drops the key
 * assert.equal(await store.load(key), null);
 * kv.close();
 * ```
 */
export interface DenoKvStoreOptions {
  /** The application's open KV database, e.g. `await Deno.openKv()` (required). */
  kv: DenoKvLike;
  /**
   * The key prefix: a session lives at `[...prefix, storageKey]`, its lease (`session.lock()`)
   * at `[...prefix, "lease", storageKey]` and its entry in a user's index at
   * `[...prefix, "users", userTag(user), storageKey]` (the user's tag, never the id). Key parts
   * are strings, numbers, bigints, booleans or `Uint8Array`s; encoded, the prefix may take at
   * most 1,996 bytes, so that a lease's key stays within Deno KV's 2,048-byte limit (a string
   * part takes its UTF-8 length plus 2), and at most 1,951 where sessions are indexed per user.
   * Give each store a prefix that is not the start of another store's prefix followed by
   * `"lease"`, `"users"` or `"user"`.
   * @default ["websession"]
   */
  prefix?: DenoKvKey;
  /**
   * The clock that decides whether a record has expired, in milliseconds since the epoch. Give
   * it the same clock as `withSession`'s `now`, which computes `expiresAt`: expiry is one
   * comparison against one clock (Deno KV's own `expireIn` only removes leftovers, later).
   * @default Date.now
   */
  now?: () => number;
}

interface Seen {
  version: number;
  versionstamp: string;
  expiresAt: number;
  /** The user the record is indexed under, carried to every later write of it. */
  user: string | undefined;
}

/** A record as stored, and the user it is indexed under. */
interface Decoded {
  record: StoredSession;
  user: string | undefined;
}

/** A lease as stored: its owner and when it lapses by the application's clock (ms). */
interface Lease {
  owner: string;
  until: number;
}

/** Versionstamps kept per generation; two generations bound the memory the hints take. */
const HINTS_PER_GENERATION = 4096;

/** Attempts of a read-check-commit round when the entry moved under us without a conflict. */
const ATTEMPTS = 3;

/** Deno KV's limit on a value, as V8 serializes it. */
const MAX_VALUE_BYTES = 65_536;

/** Deno KV's limit on a key written, encoded. */
const MAX_KEY_BYTES = 2_048;

/** The encoded size of the storage key part: a 43-character string, its type byte and end byte. */
const STORAGE_KEY_PART_BYTES = 45;

/** The key part that holds leases, `[...prefix, "lease", storageKey]`, and its encoded size. */
const LEASE_PART = "lease";
const LEASE_PART_BYTES = 7;

/**
 * The key part that holds the per-user index, `[...prefix, "users", userTag(user), storageKey]`:
 * the user's tag (the store kit's rule), never the id, so that listings show no personal data
 * and an entry's key has one size whatever the id. Its encoded size, and an entry's after the
 * prefix (the part, a 43-character tag, a storage key).
 */
const USERS_PART = "users";
const INDEX_KEY_BYTES = 7 + 45 + STORAGE_KEY_PART_BYTES;

/**
 * The earlier layout, `[...prefix, "user", user, storageKey]` with the raw id, and its encoded
 * size: `keysOfUser` still reads it (never writes it) so that sessions indexed before the
 * upgrade are found. Remove that read (`#oldKeysOfUser`) and this part in `cleanup()` once the
 * longest session lifetime (the larger of `absoluteTimeout` and `remember.absoluteTimeout`)
 * has passed since the upgrade: by then every record indexed the old way has been written
 * again (each commit of it writes its entry in the new layout) or has expired, and Deno KV has
 * dropped its old entry, which expired with it.
 */
const OLD_USER_PART = "user";
const OLD_USER_PART_BYTES = 6;

/** The longest prefix, encoded: a lease's key must fit in Deno KV's key limit. */
const MAX_PREFIX_BYTES = MAX_KEY_BYTES - STORAGE_KEY_PART_BYTES - LEASE_PART_BYTES;

/** The field of the stored JSON, beside the record's own, that names the user it is indexed under. */
const INDEXED_USER = "indexedUser";

/**
 * Keeps sessions in Deno KV. A save is one atomic commit guarded by
 * `check({ key, versionstamp })`: a true compare-and-set, so concurrent writers on one session
 * never lose an update, and a destroyed session is never written back.
 *
 * Records are stored as their JSON text, so data round-trips exactly as in every other store
 * (lone surrogates and NUL characters included: JSON escapes them). Deno KV V8-serializes the
 * text and takes at most 64 KiB: one byte a character when every character is Latin-1, two
 * bytes a character otherwise, so a record of 65,530 ASCII characters fits, and one of 32,765
 * characters with any non-Latin-1 character among them (a record indexed under a user also
 * carries the user's id). A larger record is refused with `SessionTooLargeError` before anything
 * is written.
 *
 * Expiry: each record keeps its `expiresAt`, and a read never returns a record past it by the
 * store's clock (`now`, the same clock as `withSession`'s). Deno KV's `expireIn` (set from
 * `expiresAt`) only removes leftovers, about a minute late; `cleanup()` removes them early if
 * wanted (for a `Deno.cron`), but is never required.
 *
 * Round trips: `load` is one read; an update after a `load` through the same store instance is
 * one commit (the store remembers the versionstamp it read); otherwise, or when that commit is
 * refused, it reads once and commits once. A create is one commit.
 *
 * A refused save reports the record it lost to (a `SaveConflict`) when the refusal was decided
 * by a read: the store read the entry, saw another version (or none), and wrote nothing, so the
 * record read is the record as it stood when the save was refused. A refused commit says
 * nothing by itself (Deno KV answers only `ok: false`), so the store never reports what it did
 * not read; it then reads and decides again (two round trips in all), and answers plain `false`
 * only when the entry kept moving (touches) through three rounds.
 *
 * Leases (`session.lock()`): a lease lives at `[...prefix, "lease", storageKey]`, apart from the
 * record, as `{ owner, until }`. Taking one is a read and one commit guarded by the lease
 * entry's versionstamp, so of concurrent takers exactly one wins; a lease is free once `until`
 * has passed by the store's clock, and Deno KV drops the entry by itself (`expireIn`) later.
 *
 * Sessions per user: a save given an `index` also writes
 * `[...prefix, "users", userTag(user), storageKey]` (the user's tag, see the store kit's
 * `userTag`; never the id) in the same atomic commit as the record, so a key is listed by `keysOfUser` exactly when its
 * save landed. The record remembers the user it is indexed under, and every later write of it
 * (a save, a touch) rewrites the index entry in the same commit, with the record's expiry: the
 * entry lives as long as the record, and Deno KV drops both.
 *
 * @example
 * ```ts
 * import { DenoKvStore } from "websession/deno-kv";
 * import assert from "node:assert/strict";
 *
 * const kv = await Deno.openKv(":memory:");
 * const store = new DenoKvStore({ kv, prefix: ["sessions"] });
 * const key = "k".repeat(43);
 * const now = Date.now();
 * assert.equal(await store.save(key, { data: { a: 1 }, version: 1, createdAt: now, expiresAt: now + 60_000 }, null), true);
 * const loaded = await store.load(key);
 * assert.equal(loaded?.version, 1);
 * assert.equal(await store.save(key, { ...loaded!, data: { a: 2 }, version: 2 }, 1), true);
 * // A stale writer is refused and told what it lost to.
 * const refused = await store.save(key, { ...loaded!, data: { a: 3 }, version: 2 }, 1);
 * assert.deepEqual(refused, { current: { ...loaded!, data: { a: 2 }, version: 2 } });
 * kv.close();
 * ```
 */
export class DenoKvStore implements SessionStore {
  /**
   * Compare-and-set: yes (atomic `check` on the versionstamp). Native expiry: yes (`expireIn`).
   * Leases: yes (a checked commit on the lease entry). Sessions per user: yes (the index entry
   * is written in the record's own commit).
   */
  readonly capabilities: StoreCapabilities = { compareAndSet: true, ttl: true, locks: true, users: true };
  #kv: DenoKvLike;
  #prefix: DenoKvKey;
  #prefixBytes: number;
  #now: () => number;
  #young = new Map<string, Seen>();
  #old = new Map<string, Seen>();

  /**
   * Creates a store over an open Deno KV database.
   *
   * @param options See {@linkcode DenoKvStoreOptions}.
   * @throws {TypeError} When `kv` does not look like a `Deno.Kv`, or `prefix` is not an array of
   *   key parts.
   * @throws {RangeError} When `prefix` takes more than 1,996 bytes encoded: a lease's key would
   *   pass Deno KV's 2,048-byte limit.
   */
  constructor(options: DenoKvStoreOptions) {
    const kv = options?.kv as Partial<DenoKvLike> | undefined;
    if (
      typeof kv?.get !== "function" || typeof kv.atomic !== "function" || typeof kv.list !== "function" ||
      typeof kv.delete !== "function"
    ) {
      throw new TypeError("Invalid kv: expected a Deno.Kv from Deno.openKv()");
    }
    const prefix = options.prefix ?? ["websession"];
    if (!Array.isArray(prefix)) {
      throw new TypeError(`Invalid prefix: "${String(prefix)}" is not an array of key parts`);
    }
    const prefixBytes = prefix.reduce((sum: number, part: unknown) => sum + keyPartSize(part), 0);
    if (prefixBytes > MAX_PREFIX_BYTES) {
      throw new RangeError(
        `Invalid prefix: "${prefixBytes}" bytes encoded, at most "${MAX_PREFIX_BYTES}" leave room for a lease's key within Deno KV's 2048-byte key limit`,
      );
    }
    this.#kv = kv as DenoKvLike;
    this.#prefix = [...prefix];
    this.#prefixBytes = prefixBytes;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Reads a record.
   *
   * @param key The storage key.
   * @returns The record, or `null` when missing, expired or unreadable.
   * @throws {TypeError} When `key` is not a storage key.
   * @throws {StoreUnavailableError} When Deno KV fails.
   */
  async load(key: string): Promise<StoredSession | null> {
    assertStorageKey(key);
    const entry = await this.#get(key);
    return this.#live(key, entry)?.record ?? null;
  }

  /**
   * Compare-and-set: creates when `expectedVersion` is `null` and the key is absent, or replaces
   * the record whose version is `expectedVersion`. Never recreates a missing record.
   *
   * With `index`, the same commit writes the key into the user's index (see `keysOfUser`); a
   * refused save indexes nothing. Without it, a record already indexed stays indexed under its
   * user, the entry's expiry following the record's.
   *
   * @param key The storage key.
   * @param record The record to store.
   * @param expectedVersion The version the caller loaded, or `null` to create.
   * @param index The user to index the key under, if any.
   * @returns `true` when written. When refused (a version conflict, or the record to update is
   *   gone or expired): a `SaveConflict` with the record read when the refusal was decided
   *   (`null` when absent or expired), or `false` when the entry kept changing under three
   *   rounds of read and commit.
   * @throws {TypeError} When `key` is not a storage key, the record's version or times are not
   *   finite numbers, or `index.user` is not a string.
   * @throws {SessionDataError} When the data is not a JSON object (a `BigInt`, a cycle); nothing
   *   is written.
   * @throws {SessionConfigError} With `index`, when the prefix takes over 1,951 bytes encoded,
   *   which leaves no room for an index key within Deno KV's 2,048-byte key limit; nothing is
   *   written.
   * @throws {SessionTooLargeError} When the record exceeds Deno KV's 64 KiB value limit; nothing
   *   is written.
   * @throws {StoreUnavailableError} When Deno KV fails.
   */
  async save(
    key: string,
    record: StoredSession,
    expectedVersion: number | null,
    index?: SaveIndex,
  ): Promise<SaveResult> {
    assertStorageKey(key);
    const text = encode(record);
    const user = index === undefined ? undefined : this.#checkUser(index.user);
    // Fast path, one commit: a create expects the key absent; an update expects the entry this
    // store last read or wrote, when that entry had the expected version and had not expired.
    if (expectedVersion === null) {
      if (await this.#commit(key, record, text, null, user)) return true;
    } else {
      const seen = this.#hint(key);
      if (seen !== undefined && seen.version === expectedVersion && seen.expiresAt > this.#now()) {
        if (await this.#commit(key, record, text, seen.versionstamp, user ?? seen.user)) return true;
      }
    }
    // Slow path: read the entry, decide on its version, commit against its versionstamp. A
    // refused commit means the entry moved in between (a save or a touch): decide again.
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const entry = await this.#get(key);
      const current = this.#live(key, entry);
      // Refused on what this read saw: that read is the record as it stands.
      if (expectedVersion === null ? current !== null : current?.record.version !== expectedVersion) {
        return { current: current?.record ?? null };
      }
      // An expired or unreadable leftover counts as absent and may be replaced by a create.
      if (await this.#commit(key, record, text, entry.versionstamp, user ?? current?.user)) return true;
    }
    return false;
  }

  /**
   * Removes a record; no error if it is absent. Its lease, if any, is left alone; its index
   * entry lapses with the record's old expiry (`keysOfUser` may list the key until then).
   *
   * @param key The storage key.
   * @throws {TypeError} When `key` is not a storage key.
   * @throws {StoreUnavailableError} When Deno KV fails.
   */
  async destroy(key: string): Promise<void> {
    assertStorageKey(key);
    this.#forget(key);
    await this.#call("delete", () => this.#kv.delete([...this.#prefix, key]));
  }

  /**
   * Extends a live record's expiry without changing its data or version (and its index entry's
   * with it), when the record is at `version`, is not a tombstone and expires before
   * `expiresAt`: a read, then one commit guarded by the versionstamp read, so the record cannot
   * have changed in between. A refused commit (the entry moved: a save, another touch) is
   * decided again on a fresh read, up to three rounds.
   *
   * @param key The storage key.
   * @param expiresAt The new expiry, in milliseconds since the epoch.
   * @param version The version the caller read.
   * @returns `true` when extended; `false` when the record is missing, expired, at another
   *   version, ended, or already expires at or after `expiresAt`, or kept moving through three
   *   rounds (nothing is written).
   * @throws {TypeError} When `key` is not a storage key, `expiresAt` is not finite or `version`
   *   is not a positive integer.
   * @throws {StoreUnavailableError} When Deno KV fails.
   */
  async touch(key: string, expiresAt: number, version: number): Promise<boolean> {
    assertStorageKey(key);
    assertTouchArguments(expiresAt, version);
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const entry = await this.#get(key);
      const current = this.#live(key, entry);
      if (current === null || !touchExtends(current.record, expiresAt, version)) return false;
      const record = { ...current.record, expiresAt };
      if (await this.#commit(key, record, encode(record), entry.versionstamp, current.user)) return true;
    }
    return false;
  }

  /**
   * Takes the lease named `key` for `owner`: reads the lease entry, and commits
   * `{ owner, until: now + ttlMs }` guarded by the versionstamp it read, unless another owner's
   * lease is live by the store's clock. Of concurrent takers exactly one commits; the owner that
   * holds it takes it again (extending it).
   *
   * @param key The storage key of the session.
   * @param owner Who takes it; only this owner can release it.
   * @param ttlMs How long the lease lasts unless released, in milliseconds.
   * @returns `true` when taken, `false` while another owner holds a live lease.
   * @throws {TypeError} When `key` is not a storage key or `owner` is not a string.
   * @throws {RangeError} When `ttlMs` is not a positive finite number.
   * @throws {StoreUnavailableError} When Deno KV fails.
   * @example
   * ```ts
   * import { DenoKvStore } from "websession/deno-kv";
   * import assert from "node:assert/strict";
   *
   * let clock = Date.now();
   * const kv = await Deno.openKv(":memory:");
   * const store = new DenoKvStore({ kv, now: () => clock });
   * const key = "k".repeat(43);
   * assert.equal(await store.lock(key, "request-1", 30_000), true);
   * assert.equal(await store.lock(key, "request-2", 30_000), false); // held
   * clock += 30_000; // lapsed by the store's clock, even before Deno KV drops the entry
   * assert.equal(await store.lock(key, "request-2", 30_000), true);
   * await store.unlock(key, "request-1"); // not its owner any more: nothing happens
   * assert.equal(await store.lock(key, "request-3", 30_000), false);
   * kv.close();
   * ```
   */
  async lock(key: string, owner: string, ttlMs: number): Promise<boolean> {
    assertStorageKey(key);
    checkLease(owner, ttlMs);
    const leaseKey = [...this.#prefix, LEASE_PART, key];
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const entry = await this.#call("get", () => this.#kv.get(leaseKey));
      const held = entry.versionstamp === null ? null : leaseOf(entry.value);
      const now = this.#now();
      if (held !== null && held.owner !== owner && held.until > now) return false;
      const lease: Lease = { owner, until: now + ttlMs };
      const result = await this.#call(
        "commit",
        () =>
          this.#kv.atomic().check({ key: leaseKey, versionstamp: entry.versionstamp })
            .set(leaseKey, lease, { expireIn: Math.ceil(ttlMs) }).commit(),
      );
      if (result.ok) return true;
      // Another taker (or a release) committed in between: decide again on what stands now.
    }
    return false;
  }

  /**
   * Releases the lease named `key` if, and only if, `owner` holds it: a read, and a deletion
   * guarded by the versionstamp read, so a lease another owner took in between is left alone.
   *
   * @param key The storage key of the session.
   * @param owner The owner that took it.
   * @throws {TypeError} When `key` is not a storage key.
   * @throws {StoreUnavailableError} When Deno KV fails.
   */
  async unlock(key: string, owner: string): Promise<void> {
    assertStorageKey(key);
    const leaseKey = [...this.#prefix, LEASE_PART, key];
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const entry = await this.#call("get", () => this.#kv.get(leaseKey));
      if (entry.versionstamp === null || leaseOf(entry.value)?.owner !== owner) return;
      const result = await this.#call(
        "commit",
        () =>
          this.#kv.atomic().check({ key: leaseKey, versionstamp: entry.versionstamp }).delete(leaseKey)
            .commit(),
      );
      if (result.ok) return;
    }
  }

  /**
   * The storage keys indexed under `user` whose records had not expired at their last write
   * under that user: one listing of `[...prefix, "users", userTag(user)]`, and one of the
   * earlier layout's `[...prefix, "user", user]`, which sessions indexed before the upgrade
   * still hold until they lapse (see `OLD_USER_PART` for when that read goes). A key whose
   * record was saved with that user in its `index` is listed for as long as the record lives;
   * the list may also hold keys whose records have since ended, been destroyed or changed hands.
   *
   * @param user The user's id.
   * @returns The storage keys, each once.
   * @throws {TypeError} When `user` is not a string.
   * @throws {StoreUnavailableError} When Deno KV fails.
   * @example
   * ```ts
   * import { DenoKvStore } from "websession/deno-kv";
   * import { userTag } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * const kv = await Deno.openKv(":memory:");
   * const store = new DenoKvStore({ kv });
   * const now = Date.now();
   * const record = { data: { user: "ada@example.com" }, version: 1, createdAt: now, expiresAt: now + 60_000 };
   * await store.save("a".repeat(43), record, null, { user: "ada@example.com" });
   * await store.save("b".repeat(43), record, null); // not indexed
   * assert.deepEqual(await store.keysOfUser("ada@example.com"), ["a".repeat(43)]);
   * // Written in the record's own commit, under the user's tag, never the id.
   * const tag = await userTag("ada@example.com");
   * assert.notEqual((await kv.get(["websession", "users", tag, "a".repeat(43)])).versionstamp, null);
   * kv.close();
   * ```
   */
  async keysOfUser(user: string): Promise<string[]> {
    if (typeof user !== "string") throw new TypeError(`Invalid user: "${String(user)}" is not a string`);
    const [keys, old] = await Promise.all([
      this.#listIndex([...this.#prefix, USERS_PART, await userTag(user)]),
      this.#oldKeysOfUser(user),
    ]);
    return [...new Set([...keys, ...old])];
  }

  /**
   * The keys indexed under `user` in the earlier layout, `[...prefix, "user", user, key]`: read,
   * never written, until the longest session lifetime has passed since the upgrade (see
   * `OLD_USER_PART`). An id too long for that layout was never indexed in it.
   */
  #oldKeysOfUser(user: string): Promise<string[]> {
    const bytes = this.#prefixBytes + OLD_USER_PART_BYTES + keyPartSize(user) + STORAGE_KEY_PART_BYTES;
    if (bytes > MAX_KEY_BYTES) return Promise.resolve([]);
    return this.#listIndex([...this.#prefix, OLD_USER_PART, user]);
  }

  /** The storage keys of the live entries one key part under `prefix` (an index's listing). */
  async #listIndex(prefix: DenoKvKey): Promise<string[]> {
    const now = this.#now();
    const keys: string[] = [];
    await this.#call("list", async () => {
      for await (const entry of this.#kv.list({ prefix })) {
        const key = entry.key[prefix.length];
        if (entry.key.length !== prefix.length + 1 || typeof key !== "string") continue;
        if (typeof entry.value === "number" && entry.value <= now) continue;
        keys.push(key);
      }
    });
    return keys;
  }

  /**
   * Removes expired (and unreadable) records before Deno KV gets to them, along with lapsed
   * leases and index entries. Optional: Deno KV expires all of them by itself, about a minute
   * late, and reads never return them meanwhile.
   *
   * @returns How many records were removed (leases and index entries are not counted).
   * @throws {StoreUnavailableError} When Deno KV fails.
   */
  async cleanup(): Promise<number> {
    const now = this.#now();
    let removed = 0;
    const stale: { entry: DenoKvEntryLike; record: boolean }[] = [];
    const depth = this.#prefix.length;
    await this.#call("list", async () => {
      for await (const entry of this.#kv.list({ prefix: this.#prefix })) {
        const kind = entry.key.length - depth;
        if (kind === 1) {
          const record = typeof entry.value === "string" ? parseStoredSession(entry.value) : null;
          if (record === null || record.expiresAt <= now) stale.push({ entry, record: true });
        } else if (kind === 2 && entry.key[depth] === LEASE_PART) {
          const lease = leaseOf(entry.value);
          if (lease === null || lease.until <= now) stale.push({ entry, record: false });
        } else if (kind === 3 && (entry.key[depth] === USERS_PART || entry.key[depth] === OLD_USER_PART)) {
          if (typeof entry.value !== "number" || entry.value <= now) stale.push({ entry, record: false });
        }
      }
    });
    for (const { entry, record } of stale) {
      // Guarded by the versionstamp: an entry refreshed since the listing is kept.
      const result = await this.#call(
        "commit",
        () =>
          this.#kv.atomic().check({ key: entry.key, versionstamp: entry.versionstamp }).delete(entry.key)
            .commit(),
      );
      if (result.ok && record) removed++;
    }
    return removed;
  }

  /**
   * Counts the live records under the prefix (reads the whole prefix: for dashboards, not for
   * every request).
   *
   * @returns How many unexpired sessions are stored.
   * @throws {StoreUnavailableError} When Deno KV fails.
   */
  async count(): Promise<number> {
    const now = this.#now();
    const depth = this.#prefix.length + 1;
    let live = 0;
    await this.#call("list", async () => {
      for await (const entry of this.#kv.list({ prefix: this.#prefix })) {
        if (entry.key.length !== depth) continue; // a lease or an index entry
        const record = typeof entry.value === "string" ? parseStoredSession(entry.value) : null;
        if (record !== null && record.expiresAt > now) live++;
      }
    });
    return live;
  }

  async #get(key: string): Promise<DenoKvEntryLike> {
    return await this.#call("get", () => this.#kv.get([...this.#prefix, key]));
  }

  /** Parses an entry; remembers its versionstamp when it holds a live record. */
  #live(key: string, entry: DenoKvEntryLike): Decoded | null {
    if (entry.versionstamp === null || typeof entry.value !== "string") {
      this.#forget(key);
      return null;
    }
    const decoded = decode(entry.value);
    if (decoded === null || decoded.record.expiresAt <= this.#now()) {
      this.#forget(key);
      return null;
    }
    this.#remember(key, {
      version: decoded.record.version,
      versionstamp: entry.versionstamp,
      expiresAt: decoded.record.expiresAt,
      user: decoded.user,
    });
    return decoded;
  }

  /** The user's id, checked to be a string; the prefix, checked to leave room for its index key. */
  #checkUser(user: unknown): string {
    if (typeof user !== "string") {
      throw new TypeError(`Invalid index: user "${String(user)}" is not a string`);
    }
    if (this.#prefixBytes + INDEX_KEY_BYTES > MAX_KEY_BYTES) {
      throw new SessionConfigError(
        `Invalid prefix: "${this.#prefixBytes}" bytes encoded leave no room for a user's index key within Deno KV's 2,048-byte key limit; at most "${
          MAX_KEY_BYTES - INDEX_KEY_BYTES
        }" bytes index sessions per user`,
      );
    }
    return user;
  }

  /**
   * One atomic commit guarded by `versionstamp`; a record already expired is deleted instead.
   * With a user, the same commit writes the index entry, expiring with the record. `expireIn`
   * is relative, so Deno KV's clock only decides when a leftover goes, never whether a record is
   * live.
   */
  async #commit(
    key: string,
    record: StoredSession,
    text: string,
    versionstamp: string | null,
    user: string | undefined,
  ): Promise<boolean> {
    const kvKey = [...this.#prefix, key];
    const ttl = Math.ceil(record.expiresAt - this.#now());
    const checked = this.#kv.atomic().check({ key: kvKey, versionstamp });
    let operation: DenoKvAtomicLike;
    if (ttl <= 0) {
      operation = checked.delete(kvKey);
    } else if (user === undefined) {
      operation = checked.set(kvKey, text, { expireIn: ttl });
    } else {
      operation = checked.set(kvKey, withUser(text, user), { expireIn: ttl })
        .set([...this.#prefix, USERS_PART, await userTag(user), key], record.expiresAt, { expireIn: ttl });
    }
    const result = await this.#call("commit", () => operation.commit());
    if (!result.ok) return false;
    if (ttl > 0 && result.versionstamp !== undefined) {
      this.#remember(key, {
        version: record.version,
        versionstamp: result.versionstamp,
        expiresAt: record.expiresAt,
        user,
      });
    } else {
      this.#forget(key);
    }
    return true;
  }

  #hint(key: string): Seen | undefined {
    return this.#young.get(key) ?? this.#old.get(key);
  }

  #remember(key: string, seen: Seen): void {
    if (this.#young.size >= HINTS_PER_GENERATION && !this.#young.has(key)) {
      this.#old = this.#young;
      this.#young = new Map();
    }
    this.#young.set(key, seen);
  }

  #forget(key: string): void {
    this.#young.delete(key);
    this.#old.delete(key);
  }

  async #call<T>(what: string, operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      // The size check in `encode` measures the usual case; Deno KV's own refusal, for a string V8
      // keeps at two bytes a character though every character is Latin-1, means the same.
      if (error instanceof TypeError && /value too large/i.test(error.message)) {
        throw new SessionTooLargeError(`Session too large for Deno KV: ${error.message}`, { cause: error });
      }
      throw new StoreUnavailableError(
        `Deno KV ${what} failed: ${(error as Error)?.message ?? String(error)}`,
        {
          cause: error,
        },
      );
    }
  }
}

/** Checks a lease's owner and duration. */
function checkLease(owner: unknown, ttlMs: unknown): void {
  if (typeof owner !== "string") throw new TypeError(`Invalid owner: "${String(owner)}" is not a string`);
  if (typeof ttlMs !== "number" || !(ttlMs > 0) || !Number.isFinite(ttlMs)) {
    throw new RangeError(`Invalid ttlMs: "${String(ttlMs)}" must be a positive number of milliseconds`);
  }
}

/** A stored lease, or `null` when the value is not one. */
function leaseOf(value: unknown): Lease | null {
  if (typeof value !== "object" || value === null) return null;
  const { owner, until } = value as Record<string, unknown>;
  return typeof owner === "string" && typeof until === "number" ? { owner, until } : null;
}

/** The record and the user it is indexed under, from the stored JSON text. */
function decode(text: string): Decoded | null {
  const parsed = parseStoredSession(text) as (StoredSession & { [INDEXED_USER]?: unknown }) | null;
  if (parsed === null) return null;
  if (!(INDEXED_USER in parsed)) return { record: parsed, user: undefined };
  const { [INDEXED_USER]: user, ...record } = parsed;
  return { record, user: typeof user === "string" ? user : undefined };
}

/** The record's JSON text with the user it is indexed under, checked against the value limit. */
function withUser(text: string, user: string): string {
  const indexed = `${text.slice(0, -1)},"${INDEXED_USER}":${JSON.stringify(user)}}`;
  const size = v8SerializedStringSize(indexed);
  if (size > MAX_VALUE_BYTES) {
    throw new SessionTooLargeError(
      `Session too large for Deno KV: "${size}" bytes serialized with its user's id, at most "${MAX_VALUE_BYTES}" fit in one value`,
    );
  }
  return indexed;
}

/**
 * The record's JSON text, checked before anything is written: well-formed numbers, JSON data, and
 * a V8-serialized size within Deno KV's value limit.
 */
function encode(record: StoredSession): string {
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
    text = JSON.stringify(record);
  } catch (error) {
    throw new SessionDataError(
      `Session data cannot be stored: not JSON-serializable: ${(error as Error).message}`,
      { cause: error },
    );
  }
  const size = v8SerializedStringSize(text);
  if (size > MAX_VALUE_BYTES) {
    throw new SessionTooLargeError(
      `Session too large for Deno KV: "${size}" bytes serialized, at most "${MAX_VALUE_BYTES}" fit in one value`,
    );
  }
  return text;
}

/** An upper bound of a key part's encoded size in Deno KV (exact for strings and bytes). */
function keyPartSize(part: unknown): number {
  if (typeof part === "string") return escapedSize(new TextEncoder().encode(part));
  if (part instanceof Uint8Array) return escapedSize(part);
  if (typeof part === "number") return 9;
  if (typeof part === "boolean") return 1;
  if (typeof part === "bigint") return 2 + Math.ceil((part < 0n ? -part : part).toString(16).length / 2);
  throw new TypeError(
    `Invalid prefix: key part "${String(part)}" is not a string, number, bigint, boolean or Uint8Array`,
  );
}

/** A type byte, the bytes with each NUL escaped as two bytes, and an end byte. */
function escapedSize(bytes: Uint8Array): number {
  let size = bytes.length + 2;
  for (const byte of bytes) if (byte === 0) size++;
  return size;
}
