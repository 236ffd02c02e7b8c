/**
 * `DenoKvStore`: sessions in Deno KV (local SQLite or Deno Deploy), with a real compare-and-set
 * through `kv.atomic().check(...)`.
 *
 * @module
 */
import { SessionDataError, SessionTooLargeError, StoreUnavailableError } from "../errors.ts";
import {
  assertStorageKey,
  parseStoredSession,
  type SaveResult,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
} from "../store.ts";
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
   * The key prefix: a session lives at `[...prefix, storageKey]`. Key parts are strings,
   * numbers, bigints, booleans or `Uint8Array`s; encoded, the prefix may take at most 2,003
   * bytes, so that a session's key stays within Deno KV's 2,048-byte limit (a string part takes
   * its UTF-8 length plus 2).
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

/**
 * Keeps sessions in Deno KV. A save is one atomic commit guarded by
 * `check({ key, versionstamp })`: a true compare-and-set, so concurrent writers on one session
 * never lose an update, and a destroyed session is never written back.
 *
 * Records are stored as their JSON text, so data round-trips exactly as in every other store
 * (lone surrogates and NUL characters included: JSON escapes them). Deno KV V8-serializes the
 * text and takes at most 64 KiB: one byte a character when every character is Latin-1, two
 * bytes a character otherwise, so a record of 65,530 ASCII characters fits, and one of 32,765
 * characters with any non-Latin-1 character among them. A larger record is refused with
 * `SessionTooLargeError` before anything is written.
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
  /** Compare-and-set: yes (atomic `check` on the versionstamp). Native expiry: yes (`expireIn`). */
  readonly capabilities: StoreCapabilities = { compareAndSet: true, ttl: true };
  #kv: DenoKvLike;
  #prefix: DenoKvKey;
  #now: () => number;
  #young = new Map<string, Seen>();
  #old = new Map<string, Seen>();

  /**
   * Creates a store over an open Deno KV database.
   *
   * @param options See {@linkcode DenoKvStoreOptions}.
   * @throws {TypeError} When `kv` does not look like a `Deno.Kv`, or `prefix` is not an array of
   *   key parts.
   * @throws {RangeError} When `prefix` would make keys longer than Deno KV's 2,048-byte limit.
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
    if (prefixBytes + STORAGE_KEY_PART_BYTES > MAX_KEY_BYTES) {
      throw new RangeError(
        `Invalid prefix: "${prefixBytes}" bytes encoded, at most "${
          MAX_KEY_BYTES - STORAGE_KEY_PART_BYTES
        }" leave room for the storage key within Deno KV's 2048-byte key limit`,
      );
    }
    this.#kv = kv as DenoKvLike;
    this.#prefix = [...prefix];
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
    return this.#live(key, entry);
  }

  /**
   * Compare-and-set: creates when `expectedVersion` is `null` and the key is absent, or replaces
   * the record whose version is `expectedVersion`. Never recreates a missing record.
   *
   * @param key The storage key.
   * @param record The record to store.
   * @param expectedVersion The version the caller loaded, or `null` to create.
   * @returns `true` when written. When refused (a version conflict, or the record to update is
   *   gone or expired): a `SaveConflict` with the record read when the refusal was decided
   *   (`null` when absent or expired), or `false` when the entry kept changing under three
   *   rounds of read and commit.
   * @throws {TypeError} When `key` is not a storage key, or the record's version or times are
   *   not finite numbers.
   * @throws {SessionDataError} When the data is not a JSON object (a `BigInt`, a cycle).
   * @throws {SessionTooLargeError} When the record exceeds Deno KV's 64 KiB value limit; nothing
   *   is written.
   * @throws {StoreUnavailableError} When Deno KV fails.
   */
  async save(key: string, record: StoredSession, expectedVersion: number | null): Promise<SaveResult> {
    assertStorageKey(key);
    const text = encode(record);
    // Fast path, one commit: a create expects the key absent; an update expects the entry this
    // store last read or wrote, when that entry had the expected version and had not expired.
    if (expectedVersion === null) {
      if (await this.#commit(key, record, text, null)) return true;
    } else {
      const seen = this.#hint(key);
      if (seen !== undefined && seen.version === expectedVersion && seen.expiresAt > this.#now()) {
        if (await this.#commit(key, record, text, seen.versionstamp)) return true;
      }
    }
    // Slow path: read the entry, decide on its version, commit against its versionstamp. A
    // refused commit means the entry moved in between (a save or a touch): decide again.
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const entry = await this.#get(key);
      const current = this.#live(key, entry);
      // Refused on what this read saw: that read is the record as it stands.
      if (expectedVersion === null ? current !== null : current?.version !== expectedVersion) {
        return { current };
      }
      // An expired or unreadable leftover counts as absent and may be replaced by a create.
      if (await this.#commit(key, record, text, entry.versionstamp)) return true;
    }
    return false;
  }

  /**
   * Removes a record; no error if it is absent.
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
   * Moves an existing record's expiry without changing its data or version; does nothing for a
   * missing or expired record.
   *
   * @param key The storage key.
   * @param expiresAt The new expiry, in milliseconds since the epoch.
   * @throws {TypeError} When `key` is not a storage key, or `expiresAt` is not a finite number.
   * @throws {StoreUnavailableError} When Deno KV fails.
   */
  async touch(key: string, expiresAt: number): Promise<void> {
    assertStorageKey(key);
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const entry = await this.#get(key);
      const current = this.#live(key, entry);
      if (current === null) return;
      const record = { ...current, expiresAt };
      if (await this.#commit(key, record, encode(record), entry.versionstamp)) return;
    }
  }

  /**
   * Removes expired (and unreadable) records before Deno KV gets to them. Optional: Deno KV
   * expires records by itself, about a minute late, and reads never return them meanwhile.
   *
   * @returns How many records were removed.
   * @throws {StoreUnavailableError} When Deno KV fails.
   */
  async cleanup(): Promise<number> {
    const now = this.#now();
    let removed = 0;
    const stale: DenoKvEntryLike[] = [];
    await this.#call("list", async () => {
      for await (const entry of this.#kv.list({ prefix: this.#prefix })) {
        const record = typeof entry.value === "string" ? parseStoredSession(entry.value) : null;
        if (record === null || record.expiresAt <= now) stale.push(entry);
      }
    });
    for (const entry of stale) {
      // Guarded by the versionstamp: a record refreshed since the listing is kept.
      const result = await this.#call(
        "commit",
        () =>
          this.#kv.atomic().check({ key: entry.key, versionstamp: entry.versionstamp }).delete(entry.key)
            .commit(),
      );
      if (result.ok) removed++;
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
    let live = 0;
    await this.#call("list", async () => {
      for await (const entry of this.#kv.list({ prefix: this.#prefix })) {
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
  #live(key: string, entry: DenoKvEntryLike): StoredSession | null {
    if (entry.versionstamp === null || typeof entry.value !== "string") {
      this.#forget(key);
      return null;
    }
    const record = parseStoredSession(entry.value);
    if (record === null || record.expiresAt <= this.#now()) {
      this.#forget(key);
      return null;
    }
    this.#remember(key, {
      version: record.version,
      versionstamp: entry.versionstamp,
      expiresAt: record.expiresAt,
    });
    return record;
  }

  /**
   * One atomic commit guarded by `versionstamp`; a record already expired is deleted instead.
   * `expireIn` is relative, so Deno KV's clock only decides when a leftover goes, never whether
   * a record is live.
   */
  async #commit(
    key: string,
    record: StoredSession,
    text: string,
    versionstamp: string | null,
  ): Promise<boolean> {
    const kvKey = [...this.#prefix, key];
    const ttl = Math.ceil(record.expiresAt - this.#now());
    const checked = this.#kv.atomic().check({ key: kvKey, versionstamp });
    const operation = ttl > 0 ? checked.set(kvKey, text, { expireIn: ttl }) : checked.delete(kvKey);
    const result = await this.#call("commit", () => operation.commit());
    if (!result.ok) return false;
    if (ttl > 0 && result.versionstamp !== undefined) {
      this.#remember(key, {
        version: record.version,
        versionstamp: result.versionstamp,
        expiresAt: record.expiresAt,
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
