/**
 * `MemoryStore`: sessions in this process's memory. The embedded default of `withSession`.
 *
 * @module
 */
import {
  assertLockArguments,
  assertStorageKey,
  assertTouchArguments,
  isEnded,
  type SaveConflict,
  type SaveIndex,
  type SaveResult,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
  stringifyData,
} from "../store.ts";

/**
 * How many held records each write examines for expiry, in a rolling pass: a pass ends within
 * `size / (SWEEP_STEP - 1)` writes, so expired records stay a fraction of the live ones.
 */
const SWEEP_STEP = 8;

/**
 * Options of {@linkcode MemoryStore}.
 *
 * @example
 * ```ts
 * import { MemoryStore, type MemoryStoreOptions } from "websession";
 * import assert from "node:assert/strict";
 *
 * let clock = 0;
 * const options: MemoryStoreOptions = { maxSessions: 2, now: () => clock };
 * const store = new MemoryStore(options);
 * const record = { data: {}, version: 1, createdAt: 0, expiresAt: 60_000 };
 * for (const key of ["a", "b", "c"]) await store.save(key.repeat(43), record, null);
 * assert.equal(await store.count(), 2); // full: the least recently written ("a") made room
 * assert.equal(await store.load("a".repeat(43)), null);
 * clock = 60_000; // the injected clock passes expiresAt
 * assert.equal(await store.load("b".repeat(43)), null);
 * ```
 */
export interface MemoryStoreOptions {
  /**
   * The most sessions held at once. When full, the least recently written session (saved or
   * touched) is dropped to make room: a flood of new visitors cannot exhaust memory. Each
   * session costs about 300 bytes beyond the JSON text of its data.
   * @default Infinity
   */
  maxSessions?: number;
  /**
   * The clock, in milliseconds since the epoch (injectable for tests).
   * @default Date.now
   */
  now?: () => number;
}

/**
 * Keeps sessions in a `Map` in this process: fast, compare-and-set, lost on restart and not
 * shared between processes or isolates.
 *
 * - Data is held as JSON text (a load is a fresh copy; data that is not plain JSON is refused
 *   with a `SessionDataError` on save). A refused save reports the record it lost to.
 * - Expired records go as the store is used, with no timer (each write examines the next 8 of
 *   a rolling pass); `cleanup()` drops them all at once. `maxSessions` bounds the store,
 *   dropping the least recently written session. Docs: docs/stores/memory.md.
 *
 * @example
 * ```ts
 * import { MemoryStore } from "websession";
 * import assert from "node:assert/strict";
 *
 * let clock = 1_000;
 * const store = new MemoryStore({ maxSessions: 10_000, now: () => clock });
 * const record = (n: number) => ({ data: { n }, version: 1, createdAt: clock, expiresAt: clock + 1_000 });
 * await store.save("a".repeat(43), record(1), null);
 * assert.equal((await store.load("a".repeat(43)))?.data.n, 1);
 * clock += 1_000; // "a" expires; the next write sweeps it away, with no cleanup() call
 * await store.save("b".repeat(43), record(2), null);
 * assert.equal(store.size, 1);
 * ```
 */
export class MemoryStore implements SessionStore {
  /** Compare-and-set: yes (single-threaded `Map`). Native expiry: no; see the class notes. */
  readonly capabilities: StoreCapabilities = { compareAndSet: true, ttl: false, locks: true, users: true };
  #records = new Map<string, Entry>();
  /** Locks (`lock`): owner and expiry by key, apart from the records. */
  #locks = new Map<string, { owner: string; until: number }>();
  /** Storage keys by user id; pruned of keys whose records are gone when listed. */
  #users = new Map<string, Set<string>>();
  #max: number;
  #now: () => number;
  /** Where the rolling expiry pass stands; a new pass starts when it is done. */
  #cursor: MapIterator<Entry> | undefined;

  /**
   * Creates an empty store.
   *
   * @param options See {@linkcode MemoryStoreOptions}.
   * @throws {RangeError} When `maxSessions` is not a positive integer.
   */
  constructor(options: MemoryStoreOptions = {}) {
    const max = options.maxSessions ?? Infinity;
    if (max !== Infinity && (!Number.isSafeInteger(max) || max < 1)) {
      throw new RangeError(`Invalid maxSessions: "${max}" is not a positive integer`);
    }
    this.#max = max;
    this.#now = options.now ?? Date.now;
  }

  /** Records held now, expired ones not yet swept included (`count()` counts live ones). */
  get size(): number {
    return this.#records.size;
  }

  #entry(key: string, now: number): Entry | undefined {
    const entry = this.#records.get(key);
    if (entry !== undefined && entry.expiresAt <= now) {
      this.#drop(key, entry);
      return undefined;
    }
    return entry;
  }

  /** Throws unless `key` is a storage key; a key held already was checked when it was written. */
  #checkKey(key: string): void {
    if (!this.#records.has(key)) assertStorageKey(key);
  }

  /** Removes a record and its place in the per-user index. */
  #drop(key: string, entry: Entry | undefined): void {
    this.#records.delete(key);
    if (entry?.user !== undefined) this.#unindex(key, entry);
  }

  #unindex(key: string, entry: Entry): void {
    const keys = this.#users.get(entry.user!);
    if (keys === undefined) return;
    keys.delete(key);
    if (keys.size === 0) this.#users.delete(entry.user!);
  }

  /** Reads a record; `null` when missing or expired. The record is a fresh copy. */
  load(key: string): Promise<StoredSession | null> {
    try {
      this.#checkKey(key);
      const entry = this.#entry(key, this.#now());
      return Promise.resolve(entry === undefined ? null : toRecord(entry));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Compare-and-set on the version; creates only when `expectedVersion` is `null`.
   *
   * @returns `true` when written; when refused, a {@linkcode SaveConflict} with the record as
   *   it stands (`null` when absent or expired).
   * @throws {SessionDataError} When `record.data` is not a JSON object `JSON.stringify` can
   *   write (a `BigInt`, a cycle); nothing is written.
   */
  save(
    key: string,
    record: StoredSession,
    expectedVersion: number | null,
    index?: SaveIndex,
  ): Promise<SaveResult> {
    try {
      return Promise.resolve(this.#save(key, record, expectedVersion, index?.user));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #save(
    key: string,
    record: StoredSession,
    expectedVersion: number | null,
    user: string | undefined,
  ): SaveResult {
    this.#checkKey(key);
    const data = stringifyData(record.data);
    const now = this.#now();
    const current = this.#entry(key, now);
    if (expectedVersion === null ? current !== undefined : current?.version !== expectedVersion) {
      const conflict: SaveConflict = { current: current === undefined ? null : toRecord(current) };
      return conflict;
    }
    if (record.expiresAt <= now) {
      this.#drop(key, current);
      return true;
    }
    if (current?.user !== undefined && current.user !== user) this.#unindex(key, current);
    const entry = new Entry(
      key,
      data,
      record.version,
      record.createdAt,
      record.expiresAt,
      user,
      isEnded(record),
    );
    if (user !== undefined) {
      let keys = this.#users.get(user);
      if (keys === undefined) this.#users.set(user, keys = new Set());
      keys.add(key);
    }
    if (current === undefined) this.#makeRoom();
    else if (this.#max !== Infinity) this.#records.delete(key); // bounded: most recently written last
    this.#records.set(key, entry);
    this.#sweepStep(now);
    return true;
  }

  /** Removes a record; no error if absent. */
  destroy(key: string): Promise<void> {
    try {
      assertStorageKey(key);
    } catch (error) {
      return Promise.reject(error);
    }
    this.#drop(key, this.#records.get(key));
    return Promise.resolve();
  }

  /**
   * Extends a live record's expiry to `expiresAt` (milliseconds since the epoch) when it is at
   * `version`, is not a tombstone and expires before `expiresAt`: a compare-and-set on the
   * expiry, decided and written in one synchronous step. Data and version stay as they are.
   *
   * @returns `true` when extended; `false` when the record is missing, expired, at another
   *   version, ended, or already expires at or after `expiresAt` (nothing is written).
   * @throws {TypeError} When `key` is not a storage key, `expiresAt` is not finite or `version`
   *   is not a positive integer.
   */
  touch(key: string, expiresAt: number, version: number): Promise<boolean> {
    try {
      this.#checkKey(key);
      assertTouchArguments(expiresAt, version);
    } catch (error) {
      return Promise.reject(error);
    }
    const now = this.#now();
    const entry = this.#entry(key, now);
    if (entry === undefined || entry.version !== version || entry.ended || expiresAt <= entry.expiresAt) {
      return Promise.resolve(false);
    }
    entry.expiresAt = expiresAt;
    if (this.#max !== Infinity) {
      this.#records.delete(key); // bounded: most recently written last
      this.#records.set(key, entry);
    }
    this.#sweepStep(now);
    return Promise.resolve(true);
  }

  /**
   * Locks `key` for `owner` for `ttlMs` milliseconds; `false` while another
   * owner holds a live one.
   */
  lock(key: string, owner: string, ttlMs: number): Promise<boolean> {
    try {
      assertStorageKey(key);
      assertLockArguments(owner, ttlMs);
    } catch (error) {
      return Promise.reject(error);
    }
    const now = this.#now();
    const held = this.#locks.get(key);
    if (held !== undefined && held.owner !== owner && held.until > now) return Promise.resolve(false);
    // Locks a crashed holder never released go as new ones are taken.
    let checked = 0;
    for (const [other, lock] of this.#locks) {
      if (++checked > SWEEP_STEP) break;
      if (lock.until <= now) this.#locks.delete(other);
    }
    this.#locks.set(key, { owner, until: now + ttlMs });
    return Promise.resolve(true);
  }

  /** Releases the lock named `key` if `owner` holds it. */
  unlock(key: string, owner: string): Promise<void> {
    try {
      assertStorageKey(key);
      assertLockArguments(owner);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.#locks.get(key)?.owner === owner) this.#locks.delete(key);
    return Promise.resolve();
  }

  /** The storage keys saved with `user` in their index (keys whose records are gone are dropped). */
  keysOfUser(user: string): Promise<string[]> {
    const keys = this.#users.get(user);
    if (keys === undefined) return Promise.resolve([]);
    const now = this.#now();
    for (const key of keys) if (this.#entry(key, now) === undefined) keys.delete(key);
    if (keys.size === 0) this.#users.delete(user);
    return Promise.resolve([...keys]);
  }

  /** Drops every expired record now; returns how many. */
  cleanup(): Promise<number> {
    return Promise.resolve(this.#sweepAll());
  }

  /** How many live records are held (expired ones are dropped first). */
  count(): Promise<number> {
    this.#sweepAll();
    return Promise.resolve(this.#records.size);
  }

  /** One step of the rolling pass: examines up to `SWEEP_STEP` records after the last one seen. */
  #sweepStep(now: number): void {
    // `for...of` resumes the pass where the last write left it (a Map iterator has no `return`,
    // so `break` leaves it open) and, unlike `next()` calls, allocates no result per record.
    let examined = 0;
    for (const entry of (this.#cursor ??= this.#records.values())) {
      if (entry.expiresAt <= now) this.#drop(entry.key, entry);
      if (++examined === SWEEP_STEP) return;
    }
    this.#cursor = undefined; // the next write starts a new pass
  }

  #sweepAll(): number {
    const now = this.#now();
    let removed = 0;
    for (const [key, lock] of this.#locks) if (lock.until <= now) this.#locks.delete(key);
    for (const [key, entry] of this.#records) {
      if (entry.expiresAt <= now) {
        this.#drop(key, entry);
        removed++;
      }
    }
    return removed;
  }

  #makeRoom(): void {
    while (this.#records.size >= this.#max) {
      const oldest = this.#records.keys().next().value as string;
      this.#drop(oldest, this.#records.get(oldest));
    }
  }
}

/** One held record: its data as JSON text, its version and times as numbers. */
class Entry {
  /** The storage key it is held under. */
  readonly key: string;
  readonly data: string;
  readonly version: number;
  readonly createdAt: number;
  expiresAt: number;
  /** The user the record is indexed under, if any. */
  user: string | undefined;
  /** The record is a tombstone (`isEnded`): a touch never extends it. */
  readonly ended: boolean;
  constructor(
    key: string,
    data: string,
    version: number,
    createdAt: number,
    expiresAt: number,
    user: string | undefined,
    ended: boolean,
  ) {
    this.key = key;
    this.data = data;
    this.version = version;
    this.createdAt = createdAt;
    this.expiresAt = expiresAt;
    this.user = user;
    this.ended = ended;
  }
}

function toRecord(entry: Entry): StoredSession {
  return {
    data: JSON.parse(entry.data),
    version: entry.version,
    createdAt: entry.createdAt,
    expiresAt: entry.expiresAt,
  };
}
