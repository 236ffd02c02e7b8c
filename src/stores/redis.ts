/**
 * `RedisStore`: sessions in Redis, with compare-and-set by a Lua script and native expiry, over
 * the user's own `@upstash/redis`, `ioredis` or node-redis client (a Redis Cluster client too),
 * recognised by its shape. Docs: docs/stores/redis.md.
 *
 * @module
 */
import {
  assertLockArguments,
  assertRecordShape,
  assertStorageKey,
  assertTouchArguments,
  parseStoredSession,
  type SaveIndex,
  type SaveResult,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
  toStoredSession,
} from "../store.ts";
import { type Commands, countKeys, isNoScript, text, timeOf } from "./redis/clients.ts";
import { type RedisStoreOptions, resolveOptions } from "./redis/options.ts";
import {
  encode,
  INDEX,
  INDEXED,
  LOCK,
  msOf,
  SAVE,
  type Script,
  script,
  stringifyData,
  TOUCH,
  ttlOf,
  unexpectedReply,
  UNLOCK,
  untilOf,
  USERS,
} from "./redis/scripts.ts";
import { UserTags } from "./redis/users.ts";

export type {
  IoRedisClusterLike,
  IoRedisLike,
  NodeRedisClusterLike,
  NodeRedisLike,
  RedisLike,
  UpstashRedisLike,
} from "./redis/clients.ts";

export type { RedisStoreOptions } from "./redis/options.ts";

/**
 * Keeps sessions in Redis, one string key per session holding the record as JSON, with Redis'
 * own expiry (no `cleanup()`). Each operation is one round trip: `load` one `GET`, `save` and
 * `touch` one Lua script each (`EVALSHA`, then `EVAL` once if Redis lost the script), `destroy`
 * one `DEL`. `save` is an atomic compare-and-set on the version; expiry is judged by the `now`
 * option's clock only. Locks (`lock`/`unlock`, each lapsing after its time to live) and an index
 * of each user's sessions (`keysOfUser`) are scripts too. Docs (cluster, eviction, limits):
 * docs/stores/redis.md.
 *
 * @example
 * ```ts
 * import { RedisStore } from "websession/redis";
 * import type { SaveConflict } from "websession/store-kit";
 * import { Redis } from "ioredis";
 * import assert from "node:assert/strict";
 *
 * const client = new Redis("redis://127.0.0.1:6379");
 * const store = new RedisStore({ client, prefix: "example:" });
 * const key = "r".repeat(43);
 * const now = Date.now();
 * await store.destroy(key);
 * const v1 = { data: { a: 1 }, version: 1, createdAt: now, expiresAt: now + 60_000 };
 * assert.equal(await store.save(key, v1, null), true);
 * assert.equal((await store.load(key))?.data.a, 1);
 * // A writer that expected version 5 is refused, and told what is stored instead.
 * const refused = await store.save(key, { ...v1, data: { a: 2 }, version: 6 }, 5) as SaveConflict;
 * assert.deepEqual(refused.current, v1);
 * // A lock: one owner at a time.
 * assert.equal(await store.lock(key, "request-1", 30_000), true);
 * assert.equal(await store.lock(key, "request-2", 30_000), false);
 * await store.unlock(key, "request-1");
 * // Sessions per user: the save that sets the user indexes the key.
 * assert.equal(await store.save(key, { ...v1, data: { user: "ada" }, version: 2 }, 1, { user: "ada" }), true);
 * assert.deepEqual(await store.keysOfUser("ada"), [key]);
 * assert.ok(Math.abs((await store.time(key)) - Date.now()) < 60_000); // Redis' clock
 * await store.destroy(key);
 * client.disconnect();
 * ```
 */
export class RedisStore implements SessionStore {
  /** Compare-and-set (a Lua script), native expiry (`PX`), locks, an index of users' sessions. */
  readonly capabilities: StoreCapabilities = { compareAndSet: true, ttl: true, locks: true, users: true };
  #commands: Commands;
  #cluster: boolean;
  #prefix: string;
  #onCorrupt: (key: string, error: Error) => void;
  #now: () => number;
  #save = script(SAVE);
  #touch = script(TOUCH);
  #index = script(INDEX);
  #users = script(USERS);
  #lock = script(LOCK);
  #unlock = script(UNLOCK);
  #tags = new UserTags();

  /**
   * Creates a store over the user's connected Redis client.
   *
   * @param options See {@linkcode RedisStoreOptions}.
   * @throws {TypeError} When `client` is none of the supported shapes, `prefix` is not a string,
   *   `cluster` is not a boolean, `now` is not a function or `logger` has no `warn` method.
   */
  constructor(options: RedisStoreOptions) {
    const resolved = resolveOptions(options);
    this.#commands = resolved.commands;
    this.#prefix = resolved.prefix;
    this.#cluster = resolved.cluster;
    this.#onCorrupt = resolved.onCorrupt;
    this.#now = resolved.now;
  }

  /**
   * Reads a record with one `GET`.
   *
   * @param key The storage key.
   * @returns The record, or `null` when missing, expired by the `now` clock, or corrupt
   *   (reported to `onCorrupt`).
   * @throws {TypeError} When `key` is not a storage key. Driver errors pass through.
   */
  async load(key: string): Promise<StoredSession | null> {
    assertStorageKey(key);
    const value = await this.#commands.get(this.#prefix + key);
    if (value === null || value === undefined) return null;
    const record = this.#parse(key, value);
    return record === null || record.expiresAt <= this.#now() ? null : record;
  }

  /**
   * Compare-and-set in one Lua script, setting the key's time to live from `record.expiresAt`.
   * A stored record not live by `now()` counts as absent; a record already past its expiry is
   * not written (a live one at the expected version is deleted) and the save counts as done.
   *
   * @param key The storage key.
   * @param record The record to store.
   * @param expectedVersion The stored version to replace, or `null` to create only if absent.
   * @param index The user to index the key under (`keysOfUser`): in the same script on a single
   *   node, before the record on a cluster.
   * @returns `true` when written; when refused, a {@linkcode SaveConflict} with the live record
   *   the script found (`null` if none), or `false` when the stored value is corrupt (reported
   *   to `onCorrupt` and left as it is).
   * @throws {SessionDataError} When `record.data` is not a JSON object `JSON.stringify` can
   *   write (a `BigInt`, a cycle); nothing is sent.
   * @throws {TypeError} When `key` is not a storage key or `index.user` is not a string. Driver
   *   errors pass through.
   */
  async save(
    key: string,
    record: StoredSession,
    expectedVersion: number | null,
    index?: SaveIndex,
  ): Promise<SaveResult> {
    assertStorageKey(key);
    assertRecordShape(record);
    const data = stringifyData(record.data);
    if (index !== undefined && typeof index?.user !== "string") {
      throw new TypeError(`Invalid index: "${String(index?.user)}" is not a user id`);
    }
    const tag = index === undefined ? "" : await this.#tags.of(index.user);
    const recordKey = this.#prefix + key;
    const keys = tag !== "" && !this.#cluster ? [recordKey, this.#userKey(tag)] : [recordKey];
    let indexed = "";
    for (;;) {
      const now = this.#now();
      const ttl = ttlOf(record.expiresAt, now);
      const reply = await this.#eval(this.#save, keys, [
        expectedVersion === null ? "" : String(expectedVersion),
        ttl > 0 ? encode(record, data) : "",
        ttl > 0 ? String(ttl) : "",
        String(now),
        msOf(record.expiresAt),
        ttl > 0 ? tag : "",
        keys.length === 2 ? untilOf(record.expiresAt, now) : indexed,
        key,
      ]);
      if (reply === 1) return true;
      if (reply === 0) return { current: null };
      if (reply === -1 && indexed === "") {
        // A cluster: the user's index is written first, by a script of its own.
        indexed = untilOf(record.expiresAt, now);
        await this.#enter(tag, key, indexed, now);
        continue;
      }
      return this.#refusal(key, reply, expectedVersion, now);
    }
  }

  /**
   * Removes a record with one `DEL`; no error if absent. Its user-index entry stays until it
   * lapses (`keysOfUser` may list the key; the caller checks each record).
   *
   * @param key The storage key.
   * @throws {TypeError} When `key` is not a storage key. Driver errors pass through.
   */
  async destroy(key: string): Promise<void> {
    assertStorageKey(key);
    await this.#commands.del(this.#prefix + key);
  }

  /**
   * Extends a live record's expiry (stored `expiresAt` and the key's TTL) in one script, data and
   * version untouched, when it is at `version`, not a tombstone, and expires before `expiresAt`
   * by the `now` clock. When the new expiry passes what the record's user-index entry is sure to
   * last, the entry is extended first (one more script).
   *
   * @param key The storage key.
   * @param expiresAt The new expiry, in milliseconds since the epoch.
   * @param version The version the caller read.
   * @returns `true` when extended; `false` when missing, expired, at another version, ended, or
   *   already expiring at or after `expiresAt` (nothing written).
   * @throws {TypeError} When `key` is not a storage key, `expiresAt` is not finite or `version`
   *   is not a positive integer.
   * @throws {Error} When the record's user changed under five touches in a row.
   */
  async touch(key: string, expiresAt: number, version: number): Promise<boolean> {
    assertStorageKey(key);
    assertTouchArguments(expiresAt, version);
    let tag = "";
    let indexed = "";
    for (let attempt = 0; attempt < 5; attempt++) {
      const now = this.#now();
      const ttl = ttlOf(expiresAt, now);
      // A live record expires after now: an expiry not after now can extend none.
      if (ttl <= 0) return false;
      const reply = await this.#eval(this.#touch, [this.#prefix + key], [
        JSON.stringify(expiresAt),
        String(ttl),
        String(now),
        msOf(expiresAt),
        tag,
        indexed,
        String(version),
      ]);
      if (reply === 0 || reply === 1) return reply === 1;
      const wanted = Array.isArray(reply) && reply.length === 1 ? text(reply[0]) : undefined;
      if (wanted === undefined || !/^[A-Za-z0-9_-]{43}$/.test(wanted)) throw unexpectedReply(reply);
      tag = wanted;
      indexed = untilOf(expiresAt, now);
      await this.#enter(tag, key, indexed, now);
    }
    throw new Error(`Touch gave up: the user of session record "${key}" kept changing`);
  }

  /**
   * Locks `key` for `owner` in one script (`prefix + "lock:" + key`, with a
   * time to live) when no other owner holds it; the same owner extends it.
   *
   * @param key The storage key the lock is named after.
   * @param owner Who takes it: a unique, non-empty string.
   * @param ttlMs Milliseconds after which it expires unless released (rounded up; at least 1).
   * @returns `true` when taken, `false` while another owner holds it.
   * @throws {TypeError} When `key` is not a storage key or `owner` is not a non-empty string.
   * @throws {RangeError} When `ttlMs` is not a positive finite number. Driver errors pass
   *   through.
   */
  async lock(key: string, owner: string, ttlMs: number): Promise<boolean> {
    assertStorageKey(key);
    assertLockArguments(owner, ttlMs);
    const reply = await this.#eval(this.#lock, [this.#lockKey(key)], [owner, String(Math.ceil(ttlMs))]);
    if (reply !== 0 && reply !== 1) throw unexpectedReply(reply);
    return reply === 1;
  }

  /**
   * Releases the lock named `key` if, and only if, `owner` holds it (one script).
   *
   * @param key The storage key the lock is named after.
   * @param owner Who took it.
   * @throws {TypeError} When `key` is not a storage key or `owner` is not a non-empty string. Driver
   *   errors pass through.
   */
  async unlock(key: string, owner: string): Promise<void> {
    assertStorageKey(key);
    assertLockArguments(owner);
    const reply = await this.#eval(this.#unlock, [this.#lockKey(key)], [owner]);
    if (reply !== 0 && reply !== 1) throw unexpectedReply(reply);
  }

  /**
   * The storage keys indexed under `user` whose entries may still be needed by the `now` clock
   * (one script). On a cluster each listed record is then read (one `GET` each, in parallel) and
   * only live ones noting this user are kept. May list a key whose record has since changed user
   * or ended; never misses a live record saved with this user in its index.
   *
   * @param user The user's id.
   * @returns The storage keys, in no particular order.
   * @throws {TypeError} When `user` is not a string. Driver errors pass through.
   */
  async keysOfUser(user: string): Promise<string[]> {
    if (typeof user !== "string") throw new TypeError(`Invalid user: "${String(user)}" is not a string`);
    const tag = await this.#tags.of(user);
    const now = this.#now();
    const reply = await this.#eval(this.#users, [this.#userKey(tag)], [String(now)]);
    if (!Array.isArray(reply)) throw unexpectedReply(reply);
    const keys = reply.map(text).filter((key): key is string => key !== undefined && key.length === 43);
    if (!this.#cluster) return keys;
    const noted = await Promise.all(keys.map((key) => this.#notes(key, tag, now)));
    return keys.filter((_, i) => noted[i]);
  }

  /**
   * The Redis server's clock, with one `TIME` (on a node-redis cluster, the node serving `key`;
   * on Upstash, a read-only script). Asked only to stamp and judge an ended session's grace
   * (`SessionStore.time`); expiry stays with the `now` clock.
   *
   * @param key The storage key the time is wanted for.
   * @returns Milliseconds since the epoch by Redis' clock (microsecond precision).
   * @throws {TypeError} When `key` is not a storage key or the reply is not a `TIME` reply.
   *   Driver errors pass through.
   */
  async time(key: string): Promise<number> {
    assertStorageKey(key);
    return timeOf(await this.#commands.time(this.#prefix + key));
  }

  /**
   * Counts the session keys under the prefix with `SCAN` (never `KEYS`; on a cluster, on every
   * master), only keys of the session shape: for monitoring, not every request. A record that
   * has just expired may count for a few milliseconds; a cluster moving slots may miscount.
   *
   * @returns How many sessions the prefix holds.
   * @throws Driver errors pass through.
   */
  async count(): Promise<number> {
    return await countKeys(this.#commands, this.#prefix);
  }

  #lockKey(key: string): string {
    return `${this.#prefix}lock:${key}`;
  }

  #userKey(tag: string): string {
    return `${this.#prefix}user:{${tag}}`;
  }

  /** A refused save's answer from the script's `{ stored value }` reply. */
  #refusal(key: string, reply: unknown, expectedVersion: number | null, now: number): SaveResult {
    const stored = Array.isArray(reply) && reply.length === 1 ? reply[0] : undefined;
    if (stored === undefined) throw unexpectedReply(reply);
    const current = this.#parse(key, stored);
    // The script compared the same fields with the same clock; these can only fail for a value
    // it could not read, and then nothing more is known.
    if (current === null || current.version === expectedVersion) return false;
    return { current: current.expiresAt <= now ? null : current };
  }

  /** Makes `key`'s entry in the index of the user tagged `tag` last until `untilv` (one script). */
  async #enter(tag: string, key: string, untilv: string, now: number): Promise<void> {
    const reply = await this.#eval(this.#index, [this.#userKey(tag)], [key, untilv, String(now)]);
    if (reply !== 1) throw unexpectedReply(reply);
  }

  /** Whether the record at `key` is live and notes the user tagged `tag` (a cluster's check). */
  async #notes(key: string, tag: string, now: number): Promise<boolean> {
    const value = await this.#commands.get(this.#prefix + key);
    const found = text(value) ?? (value == null ? undefined : JSON.stringify(value));
    const match = found === undefined ? null : INDEXED.exec(found);
    if (match === null || match[1] !== tag) return false;
    const record = this.#parse(key, found);
    return record !== null && record.expiresAt > now;
  }

  // A stored value as the client hands it over: a string, bytes, or (Upstash with automatic
  // deserialization) the JSON already parsed. What a save notes of its user index is left out.
  #parse(key: string, value: unknown): StoredSession | null {
    const found = text(value);
    const parsed = found === undefined ? toStoredSession(value) : parseStoredSession(found);
    if (parsed === null) {
      this.#onCorrupt(
        key,
        new TypeError(`Corrupt session record: not a well-formed record at "${this.#prefix + key}"`),
      );
      return null;
    }
    const { data, version, createdAt, expiresAt } = parsed;
    return { data, version, createdAt, expiresAt };
  }

  async #eval(code: Script, keys: string[], args: string[]): Promise<unknown> {
    const sha1 = await code.sha1;
    try {
      return await this.#commands.evalsha(sha1, keys, args);
    } catch (error) {
      // Only "this server does not know the script" falls back; every other failure is real.
      if (!isNoScript(error)) throw error;
      return await this.#commands.eval(code.source, keys, args);
    }
  }
}
