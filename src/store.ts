/**
 * The contract between `withSession` and a store, and small helpers for writing stores.
 *
 * A store keeps versioned records under a storage key. `withSession` never hands a store the
 * session id itself, only `SHA-256(id)` in base64url (43 characters), so a leaked table or key
 * space holds nothing that works as a cookie.
 *
 * @module
 */
// Tombstones and the version-checked touch (store_rules.ts); the sealed contract (sealed_store.ts).
export {
  assertLockArguments,
  assertRecordShape,
  assertTouchArguments,
  checkedSaveResult,
  ENDED_AT_KEY,
  ENDED_BY_KEY,
  ENDED_KEY,
  endedAt,
  endedRemotely,
  isEnded,
  type StoreHookOptions,
  storeHooks,
  stringifyData,
  toStoredSession,
  touchExtends,
} from "./store_rules.ts";
import { toStoredSession } from "./store_rules.ts";
export { isSealedStore } from "./sealed_store.ts";
export type { InvalidSeal, OpenedSession, SealedCookie, SealedSessionStore } from "./sealed_store.ts";

/**
 * Session data: a JSON object.
 *
 * @example
 * ```ts
 * import { MemoryStore, type SessionData } from "websession";
 * import assert from "node:assert/strict";
 *
 * // Any JSON object: what a session holds, and what a store keeps in `StoredSession.data`.
 * const data: SessionData = { user: "ada", roles: ["admin"], prefs: { theme: "dark" } };
 * const store = new MemoryStore();
 * const key = "k".repeat(43);
 * const now = Date.now();
 * await store.save(key, { data, version: 1, createdAt: now, expiresAt: now + 60_000 }, null);
 * assert.deepEqual((await store.load(key))?.data, data);
 * ```
 */
export type SessionData = Record<string, unknown>;

/**
 * One stored session. Times are milliseconds since the epoch.
 *
 * @example
 * ```ts
 * import { MemoryStore, type StoredSession } from "websession";
 * import assert from "node:assert/strict";
 *
 * const now = Date.now();
 * const record: StoredSession<{ user: string }> = {
 *   data: { user: "ada" },
 *   version: 1,
 *   createdAt: now,
 *   expiresAt: now + 60_000,
 * };
 * const store = new MemoryStore();
 * const key = "k".repeat(43);
 * assert.equal(await store.save(key, record, null), true);
 * assert.deepEqual(await store.load(key), record);
 * // An update carries the next version and names the one it read; a second such update is refused
 * // (MemoryStore says with what: a SaveConflict holding the record that won).
 * assert.equal(await store.save(key, { ...record, version: 2 }, 1), true);
 * const refused = await store.save(key, { ...record, version: 2 }, 1);
 * assert.deepEqual(refused, { current: { ...record, version: 2 } });
 * ```
 */
export interface StoredSession<T extends SessionData = SessionData> {
  /** The session's values, JSON-serializable. */
  data: T;
  /** Starts at 1 on creation; every successful save increments it by one. */
  version: number;
  /** When the session was created; `absoluteTimeout` counts from here. */
  createdAt: number;
  /** When the session expires unless touched; a store never returns a record past this. */
  expiresAt: number;
}

/**
 * What a store can promise. `withSession` and the docs rely on these being honest.
 *
 * @example
 * ```ts
 * import { MemoryStore, type StoreCapabilities } from "websession";
 * import { CookieStore } from "websession/cookie";
 * import assert from "node:assert/strict";
 *
 * function parallelWrites({ compareAndSet }: StoreCapabilities): string {
 *   return compareAndSet ? "no update is lost" : "the last write wins";
 * }
 * assert.equal(parallelWrites(new MemoryStore().capabilities), "no update is lost");
 * const cookieStore = new CookieStore({ secrets: ["a secret of at least thirty-two characters"] });
 * assert.equal(parallelWrites(cookieStore.capabilities), "the last write wins");
 * assert.equal(new MemoryStore().capabilities.ttl, false); // call cleanup() now and then
 * ```
 */
export interface StoreCapabilities {
  /** `save` is an atomic compare-and-set on the version: concurrent writers cannot lose updates. */
  compareAndSet: boolean;
  /** The store expires records by itself; `cleanup()` is not needed. */
  ttl: boolean;
  /**
   * Reads may return an older version than was written (eventual consistency). `withSession`
   * then carries the last version the client saw in its signed cookie and passes it to
   * `load(key, minVersion)`, so the store can detect a stale read instead of serving it.
   */
  staleReads?: boolean;
  /** Locks on a session that expire by themselves (`lock`/`unlock`): what `session.lock()` needs. */
  locks?: boolean;
  /** An index of each user's sessions (`save`'s `index`, `keysOfUser`): what sessions per user need. */
  users?: boolean;
}

/**
 * What `save` is told to index: the user whose id the record holds under `userKey`. An index
 * may hold keys that no longer belong to the user (the core checks each record it lists); it
 * must never miss one, so the entry is written in the same atomic step as the record, or
 * before it.
 *
 * @example
 * ```ts
 * import { MemoryStore } from "websession";
 * import type { SaveIndex } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * const store = new MemoryStore();
 * assert.equal(store.capabilities.users, true);
 * const now = Date.now();
 * const record = { data: { userId: "ada" }, version: 1, createdAt: now, expiresAt: now + 60_000 };
 * const index: SaveIndex = { user: "ada" };
 * assert.equal(await store.save("k".repeat(43), record, null, index), true);
 * assert.deepEqual(await store.keysOfUser("ada"), ["k".repeat(43)]);
 * ```
 */
export interface SaveIndex {
  /** The user's id. */
  user: string;
}

/**
 * What a refused compare-and-set may report: the record that won, as the store holds it now.
 * A store returns it only when it read it in the same atomic step that refused the save (a Lua
 * script, one SQL statement, one call into a Durable Object); otherwise it returns plain `false`
 * and the core reads the record again.
 *
 * @example
 * ```ts
 * import { MemoryStore } from "websession";
 * import type { SaveConflict } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * const store = new MemoryStore();
 * const key = "k".repeat(43);
 * const now = Date.now();
 * const v1 = { data: { n: 1 }, version: 1, createdAt: now, expiresAt: now + 60_000 };
 * await store.save(key, v1, null);
 * await store.save(key, { ...v1, data: { n: 2 }, version: 2 }, 1);
 * // A writer that read version 1 loses, and learns what it lost to.
 * const lost = (await store.save(key, { ...v1, data: { n: 9 }, version: 2 }, 1)) as SaveConflict;
 * assert.deepEqual(lost.current?.data, { n: 2 });
 * assert.equal(lost.current?.version, 2);
 * ```
 */
export interface SaveConflict {
  /** The record the store holds now; `null` when absent or expired. */
  current: StoredSession | null;
}

/**
 * The outcome of {@linkcode SessionStore.save}: `true` when written, `false` when refused with
 * nothing more known, or a {@linkcode SaveConflict} when refused with the current record.
 *
 * @example
 * ```ts
 * import type { SaveResult } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * function describe(result: SaveResult): string {
 *   if (result === true) return "saved";
 *   if (result === false) return "refused";
 *   return result.current === null ? "refused: the record is gone" : `refused: now at v${result.current.version}`;
 * }
 * assert.equal(describe(true), "saved");
 * assert.equal(describe({ current: null }), "refused: the record is gone");
 * ```
 */
export type SaveResult = boolean | SaveConflict;

/**
 * A server-side session store.
 *
 * - `load` returns `null` for a missing or expired record, and throws when the store cannot
 *   answer: an outage is never reported as "no such session".
 * - `save` is a compare-and-set. With `expectedVersion === null` it creates the record only if
 *   the key is absent; otherwise it replaces the record only if the stored version equals
 *   `expectedVersion`. It never creates a record that is missing (a destroyed session stays
 *   destroyed). When the condition fails it returns `false` or a {@linkcode SaveConflict}
 *   with the current record, and it throws on an outage. It throws a `SessionDataError`, and
 *   writes nothing, for data it cannot store faithfully (NUL in PostgreSQL `jsonb`, say).
 * - `destroy` is idempotent.
 * - `touch(key, expiresAt, version)` is a compare-and-set on the expiry alone (see
 *   `touchExtends`): it never creates, revives, shortens or deletes.
 *
 * @example
 * ```ts
 * import { getSession, type SessionStore, type StoredSession, withSession } from "websession";
 * import assert from "node:assert/strict";
 *
 * // A store is a compare-and-set over versioned records; this one keeps them in a Map.
 * const records = new Map<string, StoredSession>();
 * const live = (key: string) => {
 *   const record = records.get(key);
 *   return record !== undefined && record.expiresAt > Date.now() ? record : undefined;
 * };
 * const store: SessionStore = {
 *   capabilities: { compareAndSet: true, ttl: false },
 *   async load(key) {
 *     const record = live(key);
 *     return record === undefined ? null : structuredClone(record);
 *   },
 *   async save(key, record, expectedVersion) {
 *     if ((live(key)?.version ?? null) !== expectedVersion) return false;
 *     records.set(key, structuredClone(record));
 *     return true;
 *   },
 *   async destroy(key) {
 *     records.delete(key);
 *   },
 * };
 *
 * const handler = withSession(async (req: Request) => {
 *   const session = await getSession<{ visits?: number }>(req);
 *   return new Response(String(session.update("visits", (n = 0) => n + 1)));
 * }, { store, secrets: ["a secret of at least thirty-two characters"] });
 * const first = await handler(new Request("https://example.com/"));
 * const cookie = first.headers.get("set-cookie")!.split(";")[0]!;
 * const second = await handler(new Request("https://example.com/", { headers: { cookie } }));
 * assert.equal(await second.text(), "2");
 * const [key, record] = [...records][0]!;
 * assert.equal(key.length, 43); // SHA-256 of the session id, never the id itself
 * assert.equal(record.version, 2);
 * ```
 */
export interface SessionStore {
  /** What this store guarantees. */
  readonly capabilities: StoreCapabilities;
  /**
   * Reads a record; `null` when missing or expired. `minVersion` is given only to stores whose
   * capabilities say `staleReads`: the version the client has already seen.
   */
  load(key: string, minVersion?: number): Promise<StoredSession | null>;
  /**
   * Compare-and-set. `true` when written. When refused (a version conflict, or the record to
   * update is gone), either `false`, or — better, where the store can in the same round trip —
   * a {@linkcode SaveConflict} carrying the record as it stands, so a merge needs no second read.
   */
  save(
    key: string,
    record: StoredSession,
    expectedVersion: number | null,
    index?: SaveIndex,
  ): Promise<SaveResult>;
  /** Removes a record; no error if it is absent. */
  destroy(key: string): Promise<void>;
  /**
   * Extends a record's expiry without rewriting its data or version, only if the record is
   * still the one the caller read: live, at `version`, not a tombstone (`isEnded`), and
   * expiring before `expiresAt`. The check and the write are one atomic step (a Lua script, one
   * SQL statement, a checked commit), so a touch never extends a session that another request
   * ended or replaced meanwhile, and never shortens one.
   *
   * Resolves to `true` when it extended the record, `false` when it wrote nothing: the record
   * is missing, expired, at another version, ended, or already expires at or after `expiresAt`
   * (a concurrent touch went further). It throws on an outage, like `save`. A store that cannot
   * compare-and-set checks what it can read (its capabilities say `compareAndSet: false`).
   *
   * Stores written for the earlier contract, `touch(key, expiresAt): Promise<void>`, resolve to
   * `undefined`: the core treats such a touch as unchecked (it learns nothing from it, as
   * before) and never takes `undefined` for `false`.
   *
   * @param key The storage key.
   * @param expiresAt The new expiry, in milliseconds since the epoch.
   * @param version The version of the record the caller loaded (a positive integer).
   */
  touch?(key: string, expiresAt: number, version: number): Promise<boolean>;
  /** Removes expired records and returns how many; for stores without native expiry. */
  cleanup?(): Promise<number>;
  /** How many live sessions the store holds. */
  count?(): Promise<number>;
  /**
   * Takes a lock named `key` for `owner`, expiring by itself after `ttlMs` milliseconds unless
   * released (a crashed holder never blocks for longer). Returns `true` when taken, `false` when
   * another owner holds a live one. Locks live apart from records (a lock and a record under
   * the same key never collide). Atomic: of concurrent takers exactly one wins.
   */
  lock?(key: string, owner: string, ttlMs: number): Promise<boolean>;
  /** Releases the lock named `key` if, and only if, `owner` holds it. */
  unlock?(key: string, owner: string): Promise<void>;
  /**
   * The storage keys indexed under a user (stores with `capabilities.users`). May include keys
   * whose records have since ended, expired or changed hands; the core checks each.
   */
  keysOfUser?(user: string): Promise<string[]>;
  /**
   * The store's own clock: milliseconds since the epoch as the store's server reads them (Redis
   * `TIME`, PostgreSQL `clock_timestamp()`, the session's Durable Object's `Date.now()`,
   * Memcached's `stats` `time`, which counts whole seconds). `key` is the storage key the time is
   * wanted for: a store with a clock per session (one Durable Object per key) asks that one;
   * others ignore it.
   *
   * It makes one clock judge the grace of a session ended by a request (60 s during which a
   * request still carrying the old cookie is taken for one in flight): the tombstone's
   * {@linkcode ENDED_AT_KEY} is stamped with this time, and a later load that finds the
   * tombstone compares it with this time too, so two application servers whose clocks disagree
   * judge it alike. The core asks only on those two rare paths (a commit that ends a session, a
   * load that finds such a tombstone), never on an ordinary read or write. A store without it
   * (one machine's memory or files; Deno KV and Workers KV, whose platform keeps the clocks
   * synchronized) leaves the application's clock to judge, and then the grace is off by the
   * application servers' clock skew. When it throws, the core falls back to the application's
   * clock for that request: a log out never fails for want of the time.
   *
   * Expiry is not decided by this clock: it stays the application's (`expiresAt > now`).
   *
   * @param key The storage key the time is wanted for.
   * @returns Milliseconds since the epoch, by the store's clock (a finite number).
   * @throws When the store cannot be reached (the core then uses its own clock).
   * @example
   * ```ts
   * import { MemoryStore, type SessionStore } from "websession";
   * import assert from "node:assert/strict";
   *
   * // A store whose server has a clock of its own reports it; here, a stand-in 90 s ahead.
   * const store: SessionStore = Object.assign(new MemoryStore(), {
   *   time: async (_key: string) => Date.now() + 90_000,
   * });
   * const at = await store.time!("k".repeat(43));
   * assert.ok(at - Date.now() > 60_000);
   * const memory: SessionStore = new MemoryStore();
   * assert.equal(memory.time, undefined); // one machine, one clock: none
   * ```
   */
  time?(key: string): Promise<number>;
}

const STORAGE_KEY = /^[A-Za-z0-9_-]{43}$/;

/**
 * Checks that `key` has the exact shape of a storage key (base64url SHA-256, 43 characters).
 * Stores call it before a key reaches a file name, a Redis key or a SQL parameter.
 *
 * @param key The storage key to check.
 * @throws {TypeError} When the key has any other shape.
 * @example
 * ```ts
 * import { assertStorageKey } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * assertStorageKey("a".repeat(43));
 * assert.throws(() => assertStorageKey("../etc/passwd"), TypeError);
 * ```
 */
export function assertStorageKey(key: string): void {
  if (typeof key !== "string" || !STORAGE_KEY.test(key)) {
    throw new TypeError(`Invalid storage key: "${String(key).slice(0, 64)}"`);
  }
}

/**
 * Parses a JSON-encoded record, as written by `JSON.stringify(record)`.
 *
 * @param text The JSON text.
 * @returns The record, or `null` when the text is not a well-formed record.
 * @example
 * ```ts
 * import { parseStoredSession } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * assert.equal(parseStoredSession("{not json"), null);
 * assert.equal(parseStoredSession('{"data":{},"version":2,"createdAt":0,"expiresAt":9}')?.version, 2);
 * ```
 */
export function parseStoredSession(text: string): StoredSession | null {
  try {
    return toStoredSession(JSON.parse(text));
  } catch {
    return null;
  }
}

/**
 * Checks that `store` is a server store (`load`, `save`, `destroy`, `capabilities`): what a
 * store made of stores (`TieredStore`, `MigratingStore`) asks of the stores it is given.
 *
 * @param name The option's name, for the message.
 * @param store The value given.
 * @throws {TypeError} When it is not one (a `CookieStore` has no server copy).
 * @example
 * ```ts
 * import { assertServerStore } from "websession/store-kit";
 * import { MemoryStore } from "websession";
 * import assert from "node:assert/strict";
 *
 * assertServerStore("cache", new MemoryStore());
 * assert.throws(() => assertServerStore("cache", {}), /Invalid cache/);
 * ```
 */
export function assertServerStore(name: string, store: unknown): asserts store is SessionStore {
  const s = store as Partial<SessionStore> | null;
  if (
    typeof s !== "object" || s === null || typeof s.load !== "function" || typeof s.save !== "function" ||
    typeof s.destroy !== "function" || typeof s.capabilities !== "object"
  ) {
    throw new TypeError(`Invalid ${name}: expected a server SessionStore (load, save, destroy)`);
  }
}
