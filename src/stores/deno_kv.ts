/**
 * `DenoKvStore`: sessions in Deno KV (local SQLite or Deno Deploy), with a real compare-and-set
 * through `kv.atomic().check(...)`. See docs/stores/deno-kv.md.
 *
 * @module
 */
import {
  assertLockArguments,
  assertStorageKey,
  assertTouchArguments,
  type SaveIndex,
  type SaveResult,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
  touchExtends,
} from "../store.ts";
import { userTag } from "../user_tag.ts";
import { Hints } from "./deno_kv/hints.ts";
import {
  checkPrefix,
  checkUser,
  countLive,
  listIndex,
  listLapsed,
  listOldIndex,
  LOCK_PART,
  USERS_PART,
} from "./deno_kv/keys.ts";
import { releaseLock, takeLock } from "./deno_kv/lock.ts";
import { ATTEMPTS, decode, type Decoded, encode, kvCall, withUser } from "./deno_kv/record.ts";
import type {
  DenoKvAtomicLike,
  DenoKvEntryLike,
  DenoKvKey,
  DenoKvLike,
  DenoKvStoreOptions,
} from "./deno_kv/types.ts";

export type {
  DenoKvAtomicLike,
  DenoKvEntryLike,
  DenoKvKey,
  DenoKvKeyPart,
  DenoKvLike,
  DenoKvStoreOptions,
} from "./deno_kv/types.ts";

/**
 * Keeps sessions in Deno KV. A save is one atomic commit guarded by
 * `check({ key, versionstamp })`: a true compare-and-set, so concurrent writers on one session
 * never lose an update, and a destroyed session is never written back. Records are stored as
 * their JSON text (at most 64 KiB V8-serialized); each keeps its `expiresAt`, which the `now`
 * clock judges (Deno KV's `expireIn` only removes leftovers, later). Locks and the index of each
 * user's sessions are entries of their own under the prefix. Round trips, limits and layout are on
 * docs/stores/deno-kv.md.
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
   * Locks: yes (a checked commit on the lock's entry). Sessions per user: yes (the index entry
   * is written in the record's own commit).
   */
  readonly capabilities: StoreCapabilities = { compareAndSet: true, ttl: true, locks: true, users: true };
  #kv: DenoKvLike;
  #prefix: DenoKvKey;
  #prefixBytes: number;
  #now: () => number;
  #hints = new Hints();

  /**
   * Creates a store over an open Deno KV database.
   *
   * @param options See {@linkcode DenoKvStoreOptions}.
   * @throws {TypeError} When `kv` does not look like a `Deno.Kv`, or `prefix` is not an array of
   *   key parts.
   * @throws {RangeError} When `prefix` takes more than 1,996 bytes encoded: a lock's key would
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
    this.#prefixBytes = checkPrefix(prefix);
    this.#kv = kv as DenoKvLike;
    this.#prefix = [...prefix];
    this.#now = options.now ?? Date.now;
  }

  /**
   * Reads a record (one read).
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
   * the record whose version is `expectedVersion`; never recreates a missing record. With `index`,
   * the same commit writes the key into the user's index; without it, a record stays indexed
   * under its user.
   *
   * @param key The storage key.
   * @param record The record to store.
   * @param expectedVersion The version the caller loaded, or `null` to create.
   * @param index The user to index the key under, if any.
   * @returns `true` when written. When refused: a `SaveConflict` with the record read when the
   *   refusal was decided (`null` when absent or expired), or `false` when the entry kept
   *   changing under three rounds of read and commit.
   * @throws {TypeError} When `key` is not a storage key, the record's version or times are not
   *   finite numbers, or `index.user` is not a string.
   * @throws {SessionDataError} When the data is not a JSON object (a `BigInt`, a cycle).
   * @throws {SessionConfigError} With `index`, when the prefix takes over 1,951 bytes encoded
   *   (no room for an index key); nothing is written.
   * @throws {SessionTooLargeError} Over Deno KV's 64 KiB value limit; nothing is written.
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
    const user = index === undefined ? undefined : checkUser(this.#prefixBytes, index.user);
    if (await this.#saveBlind(key, record, text, expectedVersion, user)) return true;
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
   * Removes a record; no error if it is absent. Its lock is left alone; its index entry lapses
   * with the record's old expiry.
   *
   * @param key The storage key.
   * @throws {TypeError} When `key` is not a storage key.
   * @throws {StoreUnavailableError} When Deno KV fails.
   */
  async destroy(key: string): Promise<void> {
    assertStorageKey(key);
    this.#hints.forget(key);
    await kvCall("delete", () => this.#kv.delete([...this.#prefix, key]));
  }

  /**
   * Extends a live record's expiry (and its index entry's), keeping data and version, when it is
   * at `version`, not a tombstone and expires before `expiresAt`: a read, then one commit guarded
   * by the versionstamp read, up to three rounds.
   *
   * @param key The storage key.
   * @param expiresAt The new expiry, in milliseconds since the epoch.
   * @param version The version the caller read.
   * @returns `true` when extended; `false` when nothing was written.
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
   * Locks `key` for `owner` (`{ owner, until: now + ttlMs }`, a commit guarded by
   * the versionstamp read) unless another owner's lock is live by the store's clock. Of concurrent
   * takers exactly one commits; the owner that holds it takes it again (extending it).
   *
   * @param key The storage key of the session.
   * @param owner Who takes it; only this owner can release it.
   * @param ttlMs How long the lock lasts unless released, in milliseconds.
   * @returns `true` when taken, `false` while another owner holds a live lock.
   * @throws {TypeError} When `key` is not a storage key or `owner` is not a non-empty string.
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
    assertLockArguments(owner, ttlMs);
    return await takeLock(this.#kv, [...this.#prefix, LOCK_PART, key], { owner, ttlMs, now: this.#now });
  }

  /**
   * Releases the lock named `key` if, and only if, `owner` holds it: a lock another owner took
   * in between is left alone.
   *
   * @param key The storage key of the session.
   * @param owner The owner that took it.
   * @throws {TypeError} When `key` is not a storage key.
   * @throws {StoreUnavailableError} When Deno KV fails.
   */
  async unlock(key: string, owner: string): Promise<void> {
    assertStorageKey(key);
    assertLockArguments(owner);
    await releaseLock(this.#kv, [...this.#prefix, LOCK_PART, key], owner);
  }

  /**
   * The storage keys indexed under `user` whose records had not expired at their last write under
   * that user: listings of `[...prefix, "users", userTag(user)]` and of the earlier layout's
   * `[...prefix, "user", user]`. May also hold keys whose records have since ended, been destroyed
   * or changed hands.
   *
   * @param user The user's id.
   * @returns The storage keys, each once.
   * @throws {TypeError} When `user` is not a string.
   * @throws {StoreUnavailableError} When Deno KV fails.
   */
  async keysOfUser(user: string): Promise<string[]> {
    if (typeof user !== "string") throw new TypeError(`Invalid user: "${String(user)}" is not a string`);
    const [keys, old] = await Promise.all([
      listIndex(this.#kv, [...this.#prefix, USERS_PART, await userTag(user)], this.#now()),
      listOldIndex(this.#kv, this.#prefix, this.#prefixBytes, user, this.#now()),
    ]);
    return [...new Set([...keys, ...old])];
  }

  /**
   * Removes expired (and unreadable) records before Deno KV gets to them, with lapsed locks and
   * index entries. Optional: reads never return them meanwhile.
   *
   * @returns How many records were removed (locks and index entries are not counted).
   * @throws {StoreUnavailableError} When Deno KV fails.
   */
  async cleanup(): Promise<number> {
    let removed = 0;
    for (const { entry, record } of await listLapsed(this.#kv, this.#prefix, this.#now())) {
      // Guarded by the versionstamp: an entry refreshed since the listing is kept.
      const result = await kvCall(
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
   * Counts the live records under the prefix (reads the whole prefix: for dashboards).
   *
   * @returns How many unexpired sessions are stored.
   * @throws {StoreUnavailableError} When Deno KV fails.
   */
  async count(): Promise<number> {
    return await countLive(this.#kv, this.#prefix, this.#now());
  }

  /**
   * The fast path, one commit and no read: a create expects the key absent; an update expects the
   * entry this store last read or wrote, when that had the expected version and had not expired.
   */
  async #saveBlind(
    key: string,
    record: StoredSession,
    text: string,
    expectedVersion: number | null,
    user: string | undefined,
  ): Promise<boolean> {
    if (expectedVersion === null) return await this.#commit(key, record, text, null, user);
    const seen = this.#hints.get(key);
    if (seen === undefined || seen.version !== expectedVersion || seen.expiresAt <= this.#now()) return false;
    return await this.#commit(key, record, text, seen.versionstamp, user ?? seen.user);
  }

  async #get(key: string): Promise<DenoKvEntryLike> {
    return await kvCall("get", () => this.#kv.get([...this.#prefix, key]));
  }

  /** Parses an entry; remembers its versionstamp when it holds a live record. */
  #live(key: string, entry: DenoKvEntryLike): Decoded | null {
    const decoded = entry.versionstamp === null || typeof entry.value !== "string"
      ? null
      : decode(entry.value);
    if (decoded === null || decoded.record.expiresAt <= this.#now()) {
      this.#hints.forget(key);
      return null;
    }
    const { version, expiresAt } = decoded.record;
    this.#hints.remember(key, { version, versionstamp: entry.versionstamp!, expiresAt, user: decoded.user });
    return decoded;
  }

  /**
   * One atomic commit guarded by `versionstamp`; a record already expired is deleted instead.
   * With a user, the same commit writes the index entry, expiring with the record. `expireIn` is
   * relative, so Deno KV's clock only decides when a leftover goes, never whether a record is live.
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
    const result = await kvCall("commit", () => operation.commit());
    if (!result.ok) return false;
    if (ttl > 0 && result.versionstamp !== undefined) {
      const { version, expiresAt } = record;
      this.#hints.remember(key, { version, versionstamp: result.versionstamp, expiresAt, user });
    } else {
      this.#hints.forget(key);
    }
    return true;
  }
}
