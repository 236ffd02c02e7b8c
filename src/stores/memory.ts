/**
 * `MemoryStore`: sessions in this process's memory. The embedded default of `withSession`.
 *
 * @module
 */
import {
  assertStorageKey,
  parseStoredSession,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
} from "../store.ts";

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
   * The most sessions kept at once. When full, the least recently written session is dropped
   * to make room: a flood of new visitors cannot exhaust memory.
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
 * shared between processes or isolates. Each record is held as JSON text, so a loaded record
 * is always a fresh copy and a session costs little beyond its data.
 *
 * @example
 * ```ts
 * import { MemoryStore } from "websession";
 * import assert from "node:assert/strict";
 *
 * const store = new MemoryStore({ maxSessions: 10_000 });
 * const key = "k".repeat(43);
 * const now = Date.now();
 * assert.equal(await store.save(key, { data: { a: 1 }, version: 1, createdAt: now, expiresAt: now + 1000 }, null), true);
 * assert.equal((await store.load(key))?.data.a, 1);
 * assert.equal(await store.count(), 1);
 * ```
 */
export class MemoryStore implements SessionStore {
  /** Compare-and-set: yes (single-threaded `Map`). Native expiry: no, see `cleanup()`. */
  readonly capabilities: StoreCapabilities = { compareAndSet: true, ttl: false };
  #records = new Map<string, Entry>();
  #max: number;
  #now: () => number;

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

  #entry(key: string): Entry | undefined {
    const entry = this.#records.get(key);
    if (entry !== undefined && entry.expiresAt <= this.#now()) {
      this.#records.delete(key);
      return undefined;
    }
    return entry;
  }

  /** Reads a record; `null` when missing or expired. */
  load(key: string): Promise<StoredSession | null> {
    assertStorageKey(key);
    const entry = this.#entry(key);
    return Promise.resolve(entry === undefined ? null : parseStoredSession(entry.text));
  }

  /** Compare-and-set on the version; creates only when `expectedVersion` is `null`. */
  save(key: string, record: StoredSession, expectedVersion: number | null): Promise<boolean> {
    assertStorageKey(key);
    const current = this.#entry(key);
    if (expectedVersion === null ? current !== undefined : current?.version !== expectedVersion) {
      return Promise.resolve(false);
    }
    if (record.expiresAt <= this.#now()) {
      this.#records.delete(key);
      return Promise.resolve(true);
    }
    const entry: Entry = {
      version: record.version,
      expiresAt: record.expiresAt,
      text: JSON.stringify(record),
    };
    if (current === undefined) this.#makeRoom();
    else if (this.#max !== Infinity) this.#records.delete(key); // bounded: most recently written last
    this.#records.set(key, entry);
    return Promise.resolve(true);
  }

  /** Removes a record; no error if absent. */
  destroy(key: string): Promise<void> {
    assertStorageKey(key);
    this.#records.delete(key);
    return Promise.resolve();
  }

  /** Moves an existing record's expiry; does nothing when it is missing. */
  touch(key: string, expiresAt: number): Promise<void> {
    assertStorageKey(key);
    const entry = this.#entry(key);
    const record = entry === undefined ? null : parseStoredSession(entry.text);
    if (record !== null) {
      record.expiresAt = expiresAt;
      this.#records.set(key, { version: record.version, expiresAt, text: JSON.stringify(record) });
    }
    return Promise.resolve();
  }

  /** Drops expired records; returns how many. */
  cleanup(): Promise<number> {
    return Promise.resolve(this.#sweep());
  }

  /** How many live records are held (expired ones are swept first). */
  count(): Promise<number> {
    this.#sweep();
    return Promise.resolve(this.#records.size);
  }

  #sweep(): number {
    const now = this.#now();
    let removed = 0;
    for (const [key, entry] of this.#records) {
      if (entry.expiresAt <= now) {
        this.#records.delete(key);
        removed++;
      }
    }
    return removed;
  }

  #makeRoom(): void {
    while (this.#records.size >= this.#max) {
      const oldest = this.#records.keys().next().value as string;
      this.#records.delete(oldest);
    }
  }
}

/** One held record: its version and expiry beside its JSON, so a save parses nothing. */
interface Entry {
  version: number;
  expiresAt: number;
  text: string;
}
