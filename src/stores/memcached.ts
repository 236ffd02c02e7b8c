/**
 * `MemcachedStore`: sessions in Memcached, with compare-and-set by Memcached's own CAS tokens
 * (`gets` / `cas`, `add` to create only if absent) and native expiry, over the user's own
 * `memcache-client` client (or any client of its shape). Memcached is a cache: it may evict
 * items, a restart loses them, and it cannot count keys. Docs: docs/stores/memcached.md.
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
import { addItem, casItem, type Commands, statsTime } from "./memcached/client.ts";
import {
  encodeData,
  entryUntil,
  exptimeOf,
  type Held,
  heldOf,
  type IndexMark,
  itemValue,
  LOCK_SUFFIX,
} from "./memcached/item.ts";
import { releaseLock, takeLock } from "./memcached/locks.ts";
import { type MemcachedStoreOptions, resolveOptions } from "./memcached/options.ts";
import { UserIndex } from "./memcached/user_index.ts";

export type { MemcacheClientLike } from "./memcached/client.ts";
export type { MemcachedStoreOptions } from "./memcached/options.ts";

/** How many times a create retries when the key keeps vanishing between `add` and `gets`. */
const CREATE_ATTEMPTS = 3;

/**
 * Keeps sessions in Memcached, one item per session holding the record as JSON, with
 * Memcached's own expiry (no `cleanup()`): CherryPy's `MemcachedSession`, with compare-and-set
 * instead of a process-local lock. `load` is one `get`; a create is one `add`; an update or a
 * `touch` is `gets`, a version check, then `cas` with that token (atomic, two round trips);
 * `destroy` is one `delete`. A save with an `index` enters the key in the user's index item
 * first. This process's clock alone decides expiry. Client errors pass through (`withSession`
 * answers 503); give the client a short `cmdTimeout`. Docs (eviction, restarts, the user index,
 * limits): docs/stores/memcached.md.
 *
 * @example
 * ```ts
 * import { MemcachedStore } from "websession/memcached";
 * import { MemcacheClient } from "memcache-client";
 * import assert from "node:assert/strict";
 *
 * const client = new MemcacheClient({ server: "127.0.0.1:11211", cmdTimeout: 2_000 });
 * const store = new MemcachedStore({ client, prefix: "example:" });
 * const key = "m".repeat(43);
 * const now = Date.now();
 * await store.destroy(key);
 * const v1 = { data: { a: 1 }, version: 1, createdAt: now, expiresAt: now + 60_000 };
 * assert.equal(await store.save(key, v1, null), true);
 * assert.equal((await store.load(key))?.data.a, 1);
 * assert.equal(await store.save(key, { ...v1, data: { a: 2 }, version: 2 }, 1), true);
 * // A writer that read version 1 is refused, and told what it lost to.
 * const lost = await store.save(key, { ...v1, data: { a: 9 }, version: 2 }, 1);
 * assert.ok(lost !== true && lost !== false && lost.current?.version === 2);
 * await store.destroy(key);
 * client.shutdown();
 * ```
 */
export class MemcachedStore implements SessionStore {
  /**
   * Compare-and-set: yes (Memcached's CAS tokens). Native expiry: yes (exptime). Locks: yes
   * (`add`, and `cas` to take over an expired one or to release), as evictable as any item.
   * Sessions per user: yes (an index item per user, as evictable as any item).
   */
  readonly capabilities: StoreCapabilities = { compareAndSet: true, ttl: true, locks: true, users: true };
  #commands: Commands;
  #prefix: string;
  #maxValueBytes: number;
  #onCorrupt: (key: string, error: Error) => void;
  #now: () => number;
  #users: UserIndex;
  /**
   * The Memcached server's clock: the `time` of one `stats` command, as milliseconds since the
   * epoch, in whole seconds (up to about two seconds behind). Present when the client can send
   * `stats` (`memcache-client`'s `cmd`). Asked only to stamp and judge an ended session's grace
   * (`SessionStore.time`); expiry stays with the `now` clock. Docs: Clock.
   *
   * @example
   * ```ts
   * import { MemcacheClient } from "memcache-client";
   * import { MemcachedStore } from "websession/memcached";
   * import assert from "node:assert/strict";
   *
   * const client = new MemcacheClient({ server: "127.0.0.1:11211", cmdTimeout: 2_000 });
   * const store = new MemcachedStore({ client, prefix: "example:" });
   * const time = await store.time!("m".repeat(43));
   * assert.equal(time % 1000, 0); // whole seconds
   * assert.ok(Math.abs(time - Date.now()) < 60_000); // Memcached on this machine shares its clock
   * client.shutdown();
   * ```
   */
  readonly time?: (key: string) => Promise<number>;

  /**
   * Creates a store over the user's connected Memcached client.
   *
   * @param options See {@linkcode MemcachedStoreOptions}.
   * @throws {TypeError} When `client` is not of the supported shape, or `prefix` is not printable
   *   ASCII without spaces or is too long for a Memcached key.
   * @throws {RangeError} When `maxItemSize` is not an integer large enough for a record.
   */
  constructor(options: MemcachedStoreOptions) {
    const { commands, prefix, maxValueBytes, maxIndexBytes, onCorrupt, now } = resolveOptions(options);
    this.#commands = commands;
    this.#prefix = prefix;
    this.#maxValueBytes = maxValueBytes;
    this.#onCorrupt = onCorrupt;
    this.#now = now;
    this.#users = new UserIndex(commands, prefix, maxIndexBytes, onCorrupt, now);
    const stats = commands.stats;
    if (stats !== undefined) {
      this.time = async function time(key: string): Promise<number> {
        assertStorageKey(key);
        return statsTime(await stats());
      };
    }
  }

  /**
   * Reads a record with one `get`.
   *
   * @param key The storage key.
   * @returns The record, or `null` when missing, expired or corrupt (reported to `onCorrupt`).
   * @throws {TypeError} When `key` is not a storage key. Client errors pass through.
   */
  async load(key: string): Promise<StoredSession | null> {
    assertStorageKey(key);
    const value = await this.#commands.get(this.#prefix + key);
    if (value === undefined || value === null) return null;
    const held = this.#decode(key, value);
    return held === null || held.record.expiresAt <= this.#now() ? null : held.record;
  }

  /**
   * Compare-and-set: `add` to create (an item whose record expired by this process's clock is
   * replaced by `cas`), else `gets`, a version check, and `cas` with the token read. A record
   * already past its `expiresAt` is stored expired: the save counts as done and leaves nothing.
   * With `index`, the key enters the user's index item before the record is written, and the
   * record notes until when that entry lasts (docs: Sessions per user).
   *
   * @param key The storage key.
   * @param record The record to store.
   * @param expectedVersion The stored version to replace, or `null` to create only if absent.
   * @param index The user whose index lists the key (`index.user`, a non-empty string).
   * @returns `true` when written. When refused on what `gets` read (the record is missing,
   *   expired, or at another version), a `SaveConflict` with that record (`null` when missing or
   *   expired); when `cas` finds the item changed since, `false`.
   * @throws {TypeError} When `key` is not a storage key, the record's times or version are not
   *   finite numbers, or `index.user` is not a non-empty string. Client errors pass through,
   *   and an `Error` when other processes kept winning the compare-and-set of the user's index
   *   for 10 seconds.
   * @throws {SessionDataError} When the data cannot be written as JSON (a `BigInt`, a cycle).
   * @throws {SessionTooLargeError} When the record does not fit in one Memcached item, or the
   *   user's index would not (about 16,000 live sessions of one user with a 1 MiB item).
   */
  async save(
    key: string,
    record: StoredSession,
    expectedVersion: number | null,
    index?: SaveIndex,
  ): Promise<SaveResult> {
    assertStorageKey(key);
    if (index !== undefined && (typeof index?.user !== "string" || index.user === "")) {
      throw new TypeError(`Invalid index: user "${String(index?.user)}" is not a non-empty string`);
    }
    const data = encodeData(record, this.#maxValueBytes);
    const exptime = exptimeOf(record.expiresAt, this.#now());
    const item = this.#prefix + key;
    if (expectedVersion === null) {
      const mark = await this.#mark(key, record.expiresAt, index, undefined);
      return await this.#create(key, item, itemValue(record, data, mark), exptime);
    }
    const found = await this.#read(key, item);
    if (found === "missing" || found === "corrupt") return found === "missing" ? { current: null } : false;
    if (found.record.version !== expectedVersion) return { current: found.record };
    const mark = await this.#mark(key, record.expiresAt, index, found.mark);
    return await casItem(this.#commands, item, itemValue(record, data, mark), found.cas, exptime) ===
      "STORED";
  }

  async #create(key: string, item: string, value: string, exptime: number): Promise<SaveResult> {
    for (let attempt = 0; attempt < CREATE_ATTEMPTS; attempt++) {
      if (await addItem(this.#commands, item, value, exptime) === "STORED") return true;
      const found = await this.#read(key, item, true);
      if (found === "corrupt") return false;
      if (found === "missing") continue; // gone since the add: try again
      if (found.record.expiresAt > this.#now()) return { current: found.record };
      // Expired by this process's clock though Memcached still holds it: replace that item.
      const reply = await casItem(this.#commands, item, value, found.cas, exptime);
      if (reply === "STORED") return true;
      if (reply === "EXISTS") return false;
    }
    return false;
  }

  /**
   * Removes a record with one `delete`; no error if it is absent.
   *
   * @param key The storage key.
   * @throws {TypeError} When `key` is not a storage key. Client errors pass through.
   */
  async destroy(key: string): Promise<void> {
    assertStorageKey(key);
    await this.#commands.delete(this.#prefix + key);
  }

  /**
   * Extends a live record's expiry (stored `expiresAt` and the item's exptime), data and version
   * untouched, when it is at `version`, not ended, and expires before `expiresAt`: `gets`, then
   * `cas` of the same record, so a save or end in between makes it miss.
   *
   * @param key The storage key.
   * @param expiresAt The new expiry, in milliseconds since the epoch.
   * @param version The version the caller read.
   * @returns `true` when extended; `false` when nothing was written.
   * @throws {TypeError} When `key` is not a storage key, `expiresAt` is not finite or `version`
   *   is not a positive integer. Client errors pass through.
   */
  async touch(key: string, expiresAt: number, version: number): Promise<boolean> {
    assertStorageKey(key);
    assertTouchArguments(expiresAt, version);
    const item = this.#prefix + key;
    const found = await this.#read(key, item);
    if (typeof found === "string") return false;
    // The version check and the write are one `cas`: a save or end in between makes it miss.
    if (!touchExtends(found.record, expiresAt, version)) return false;
    const record = { ...found.record, expiresAt };
    const data = encodeData(record, this.#maxValueBytes);
    const mark = await this.#mark(key, expiresAt, undefined, found.mark);
    const value = itemValue(record, data, mark);
    const reply = await casItem(this.#commands, item, value, found.cas, exptimeOf(expiresAt, this.#now()));
    return reply === "STORED";
  }

  /**
   * The storage keys in the user's index whose entries have not expired: one `get` of the index
   * item. A superset of the user's live sessions (the caller checks each record); an evicted
   * index misses them until they are saved with `index` again.
   *
   * @param user The user's id.
   * @returns The keys, in no particular order; `[]` when the index is missing or corrupt
   *   (reported to `onCorrupt` under `user:` and the hash of the id).
   * @throws {TypeError} When `user` is not a non-empty string. Client errors pass through.
   * @example
   * ```ts
   * import { MemcachedStore } from "websession/memcached";
   * import { MemcacheClient } from "memcache-client";
   * import assert from "node:assert/strict";
   *
   * const client = new MemcacheClient({ server: "127.0.0.1:11211", cmdTimeout: 2_000 });
   * const store = new MemcachedStore({ client, prefix: `example-users-${Date.now()}:` });
   * const [phone, laptop] = ["p".repeat(43), "l".repeat(43)];
   * const now = Date.now();
   * const record = { data: { user: "ada" }, version: 1, createdAt: now, expiresAt: now + 60_000 };
   * // The core passes the user with the save that sets it; the index is written first.
   * await store.save(phone, record, null, { user: "ada" });
   * await store.save(laptop, record, null, { user: "ada" });
   * assert.deepEqual((await store.keysOfUser("ada")).sort(), [laptop, phone]);
   * assert.deepEqual(await store.keysOfUser("grace"), []);
   * client.shutdown();
   * ```
   */
  async keysOfUser(user: string): Promise<string[]> {
    if (typeof user !== "string" || user === "") {
      throw new TypeError(`Invalid user: "${String(user)}" is not a non-empty string`);
    }
    return await this.#users.keysOf(user);
  }

  /**
   * Locks `key` for `owner` for `ttlMs` milliseconds: `add` of a lock item, or
   * `cas` over a lock expired by this process's clock or that `owner` holds (extending it). Of
   * concurrent takers exactly one wins. An evicted lock can be taken by another owner early.
   *
   * @param key The storage key.
   * @param owner Who takes it; only this owner can release it.
   * @param ttlMs How long the lock lasts unless released, in milliseconds.
   * @returns `true` when taken, `false` when another owner holds a live lock.
   * @throws {TypeError} When `key` is not a storage key or `owner` is not a non-empty string.
   * @throws {RangeError} When `ttlMs` is not a positive finite number.
   */
  async lock(key: string, owner: string, ttlMs: number): Promise<boolean> {
    assertStorageKey(key);
    assertLockArguments(owner, ttlMs);
    return await takeLock(this.#commands, this.#prefix + key + LOCK_SUFFIX, owner, ttlMs, this.#now);
  }

  /**
   * Releases the lock named `key` if, and only if, `owner` holds it: `gets`, then `cas` of an
   * already expired item, so a lock another owner took in between is left alone.
   *
   * @param key The storage key.
   * @param owner The owner that took it.
   * @throws {TypeError} When `key` is not a storage key.
   */
  async unlock(key: string, owner: string): Promise<void> {
    assertStorageKey(key);
    assertLockArguments(owner);
    await releaseLock(this.#commands, this.#prefix + key + LOCK_SUFFIX, owner);
  }

  /**
   * The index mark a record expiring at `expiresAt` must carry, entering the key in the user's
   * index first when the entry it has (`previous`) does not last that long. The user is
   * `index.user`, else the one `previous` names; `undefined` when neither (not indexed).
   */
  async #mark(
    key: string,
    expiresAt: number,
    index: SaveIndex | undefined,
    previous: IndexMark | undefined,
  ): Promise<IndexMark | undefined> {
    const user = index === undefined ? previous?.user : await userTag(index.user);
    if (user === undefined) return undefined;
    const now = this.#now();
    if (expiresAt <= now) return undefined; // stored expired: nothing to find
    if (previous !== undefined && previous.user === user && previous.until >= expiresAt) return previous;
    const until = entryUntil(expiresAt, now);
    await this.#users.enter(user, key, until);
    return { user, until };
  }

  /**
   * Reads the record and its CAS token with `gets`. `"missing"` for no item or, unless
   * `withExpired`, a record past its `expiresAt`.
   */
  async #read(
    key: string,
    item: string,
    withExpired = false,
  ): Promise<{ record: StoredSession; mark: IndexMark | undefined; cas: string } | "missing" | "corrupt"> {
    const hit = await this.#commands.gets(item);
    if (hit === undefined || hit.value === undefined || hit.value === null) return "missing";
    const held = this.#decode(key, hit.value);
    if (held === null) return "corrupt";
    if (!withExpired && held.record.expiresAt <= this.#now()) return "missing";
    return { record: held.record, mark: held.mark, cas: hit.cas };
  }

  #decode(key: string, value: unknown): Held | null {
    const held = heldOf(value);
    if (held === null) {
      this.#onCorrupt(
        key,
        new TypeError(`Corrupt session record: not a well-formed record at "${this.#prefix + key}"`),
      );
    }
    return held;
  }
}
