/**
 * `MigratingStore`: switches an application from one store to another without signing anyone
 * out. Reads the new store and falls back to the old; a session moves on its next save.
 *
 * @module
 */
import {
  assertServerStore,
  assertStorageKey,
  assertTouchArguments,
  checkedSaveResult,
  ENDED_AT_KEY,
  ENDED_KEY,
  endedAt,
  isEnded,
  isSealedStore,
  type SaveIndex,
  type SaveResult,
  type SealedSessionStore,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
} from "../store.ts";
import { type Backend, kBackend } from "../backend.ts";
import { movingBackend } from "../backends/moving.ts";

/**
 * The data key that marks the tombstone a move leaves in the old store: the session lives on
 * in the new one.
 *
 * @example
 * ```ts
 * import { MemoryStore } from "websession";
 * import { MigratingStore, MOVED_KEY } from "websession/migrating";
 * import assert from "node:assert/strict";
 *
 * const from = new MemoryStore();
 * const store = new MigratingStore({ from, to: new MemoryStore() });
 * const key = "m".repeat(43);
 * const now = Date.now();
 * await from.save(key, { data: { user: "ada" }, version: 1, createdAt: now, expiresAt: now + 60_000 }, null);
 * await store.save(key, { data: { user: "ada", n: 1 }, version: 2, createdAt: now, expiresAt: now + 60_000 }, 1);
 * assert.equal((await from.load(key))?.data[MOVED_KEY], true);
 * ```
 */
export const MOVED_KEY = "__moved";

/**
 * How long after a move a reader that finds the moved tombstone in `from` and nothing in `to`
 * waits for the record to arrive in `to` (the mover is between its two writes), in ms. Past
 * that, the move is taken as failed halfway (the mover crashed) and the session reads as ended.
 */
const MOVE_WAIT_MS = 10_000;

/**
 * Options of {@linkcode MigratingStore}.
 *
 * @example
 * ```ts
 * import { MemoryStore } from "websession";
 * import { MigratingStore, type MigratingStoreOptions } from "websession/migrating";
 * import assert from "node:assert/strict";
 *
 * const options: MigratingStoreOptions = { from: new MemoryStore(), to: new MemoryStore() };
 * assert.equal(new MigratingStore(options).capabilities.compareAndSet, true);
 * ```
 */
export interface MigratingStoreOptions {
  /**
   * The store sessions live in now: read when `to` has no record, and ended by each move. A
   * `CookieStore` (no server copy) is moved from by `withSession` itself: a request that
   * carries a sealed cookie and no signed id has its seal opened once, written to `to`, and gets
   * a signed id cookie instead (see the docs page, "From CookieStore").
   */
  from: SessionStore | SealedSessionStore;
  /** The store sessions move to: read first, and the only one new sessions are created in. */
  to: SessionStore;
  /**
   * The clock, in milliseconds since the epoch, for the time a move's tombstone records.
   * @default Date.now
   */
  now?: () => number;
  /**
   * With a `CookieStore` as `from`: the name its cookie was sent under (`name`, or chunks
   * `name.0`, `name.1`, ...), when it is not the session cookie's name (`cookie.name` of
   * `withSession`). Both may be the same: a sealed value and a signed id are told apart by form.
   * @default the session cookie's name
   */
  fromCookie?: string;
}

/**
 * Reads `to` and falls back to `from`; a session found in `from` moves to `to` with its next
 * save, so a deploy that switches stores keeps every user signed in. New sessions are created in
 * `to` only. Once no session is left in `from` (after the longest idle or absolute timeout),
 * replace this store with `to` itself.
 *
 * How a session moves, and why in this order:
 * 1. The save is tried on `to` first (one round trip for every session already moved).
 * 2. When `to` has no record, the `from` copy is ended first, by `from`'s own compare-and-set at
 *    the version the caller loaded: a tombstone (marked {@linkcode MOVED_KEY}) one version
 *    past it. Of two requests moving the same session, exactly one wins this; the other is
 *    refused and merges onto what won, as for any conflict.
 * 3. Then the record is created in `to`, only if absent. If that fails (`to` down), the
 *    tombstone is replaced, by compare-and-set, with the `from` record as it was (a version
 *    further), and the error passes through (503): the user stays signed in, in `from`.
 *
 * Ending the `from` copy keeps every update: a writer still on `from` (the previous deploy's
 * code, during a rolling deploy) is refused by the tombstone rather than writing to a copy nobody
 * reads again; that code sees a moved session as ended (409, no cookie changed). See
 * docs/stores/migrating.md, "How a session moves".
 *
 * **From a `CookieStore`** (no server copy), this store is `to` itself, and `withSession` and
 * `openSession` do the move: a request with a sealed cookie and no signed id of a live session has
 * its seal opened (its expiry, revocation and `endUser` honoured), its record created in `to` only
 * if absent, under an id derived from the session id inside the seal (so concurrent and replayed
 * seals of one session name one record, newer or ended since), and gets the signed id cookie, the
 * sealed ones cleared. See the docs page, "From CookieStore".
 *
 * A session ended in either store stays ended (a tombstone in `to` is read first, then `from`'s).
 *
 * Capabilities: compare-and-set and native expiry when both stores have them; locks from `to`
 * (`lock`, `unlock`); sessions per user when both keep an index (`keysOfUser` lists both);
 * `touch` (in place, in the store that holds the session) when both have it; `cleanup` runs on
 * both when `to` has one (else keep calling `from.cleanup()` as before); no `count`.
 *
 * @example
 * ```ts
 * import { getSession, MemoryStore, withSession } from "websession";
 * import { MigratingStore } from "websession/migrating";
 * import assert from "node:assert/strict";
 *
 * const secrets = ["a secret of at least thirty-two characters"];
 * const app = (store: MemoryStore | MigratingStore) =>
 *   withSession(async (req: Request) => {
 *     const session = await getSession<{ visits?: number }>(req);
 *     return new Response(String(session.update("visits", (n = 0) => n + 1)));
 *   }, { store, secrets });
 *
 * const before = new MemoryStore(); // the store of the previous deploy (FileStore, say)
 * const first = await app(before)(new Request("https://example.com/"));
 * const cookie = first.headers.get("set-cookie")!.split(";")[0]!;
 *
 * const after = new MemoryStore(); // the new one (RedisStore, say)
 * const switched = app(new MigratingStore({ from: before, to: after }));
 * const second = await switched(new Request("https://example.com/", { headers: { cookie } }));
 * assert.equal(await second.text(), "2"); // still signed in, and now kept in the new store
 * assert.equal(await after.count(), 1);
 * ```
 */
export class MigratingStore implements SessionStore {
  /** See the class notes. */
  readonly capabilities: StoreCapabilities;
  /** Present when both stores have `touch`. */
  readonly touch?: (key: string, expiresAt: number, version: number) => Promise<boolean>;
  /**
   * Present when `to` has `cleanup` (no native expiry): runs both, answers the sum. When `to`
   * expires records by itself, keep calling `from.cleanup()` where it was called before.
   */
  readonly cleanup?: () => Promise<number>;
  /** Locks in `to`, when it has them. */
  readonly lock?: (key: string, owner: string, ttlMs: number) => Promise<boolean>;
  /** Locks in `to`, when it has them. */
  readonly unlock?: (key: string, owner: string) => Promise<void>;
  /** Both stores' indexes of sessions per user, when both keep one. */
  readonly keysOfUser?: (user: string) => Promise<string[]>;
  /**
   * `to`'s clock, when it has one: every end is stamped in `to`, and its grace judged there (a
   * tombstone still in `from` is judged by it too, off by at most the two clocks' skew).
   */
  readonly time?: (key: string) => Promise<number>;
  /**
   * The `CookieStore` sessions move from, when `from` is one (else `undefined`): `withSession`
   * and `openSession` move its sealed cookies into `to`. This store itself then is `to`.
   */
  readonly sealedFrom: SealedSessionStore | undefined;
  /** With {@linkcode sealedFrom}: the sealed cookie's name, when not the session cookie's. */
  readonly fromCookie: string | undefined;
  /** With {@linkcode sealedFrom}: the backend that moves sealed cookies (the core finds it here). */
  readonly [kBackend]: Backend | undefined;
  #from: SessionStore;
  #to: SessionStore;
  #now: () => number;

  /**
   * Creates a store that moves sessions from `from` to `to`.
   *
   * @param options See {@linkcode MigratingStoreOptions}.
   * @throws {TypeError} When `to` is not a server store, `from` is neither a server store nor a
   *   sealed one (`CookieStore`), they are the same store, `now` is not a function, or
   *   `fromCookie` is not a cookie name or is given with a server store as `from`.
   */
  constructor(options: MigratingStoreOptions) {
    const { from, to } = options ?? ({} as MigratingStoreOptions);
    const sealed = typeof from === "object" && from !== null && isSealedStore(from);
    if (!sealed) assertServerStore("from", from);
    assertServerStore("to", to);
    if ((from as unknown) === to) throw new TypeError("Invalid to: it is the from store itself");
    if (options.now !== undefined && typeof options.now !== "function") {
      throw new TypeError(`Invalid now: "${String(options.now)}" is not a function`);
    }
    checkFromCookie(options.fromCookie, sealed);
    this.#to = to;
    this.#now = options.now ?? Date.now;
    this.sealedFrom = sealed ? from as SealedSessionStore : undefined;
    this.fromCookie = options.fromCookie;
    this[kBackend] = sealed ? movingBackend : undefined;
    // A sealed `from` has no server copy: every call is `to`'s.
    this.#from = sealed ? to : from as SessionStore;
    if (sealed) {
      this.capabilities = { ...to.capabilities };
      if (to.touch) this.touch = (key, expiresAt, version) => to.touch!(key, expiresAt, version);
      if (to.cleanup) this.cleanup = () => to.cleanup!();
    } else {
      this.capabilities = bothCapabilities(this.#from, to);
      const f = this.#from;
      if (f.touch && to.touch) this.touch = (key, expiresAt, version) => this.#touch(key, expiresAt, version);
      if (to.cleanup) this.cleanup = async () => (await f.cleanup?.() ?? 0) + await to.cleanup!();
    }
    if (to.time) this.time = (key) => to.time!(key);
    const t = to.capabilities;
    if (t.locks && to.lock && to.unlock) {
      this.lock = (key, owner, ttlMs) => to.lock!(key, owner, ttlMs);
      this.unlock = (key, owner) => to.unlock!(key, owner);
    }
    if (this.capabilities.users === true) {
      const f = this.#from;
      this.keysOfUser = sealed ? (user) => to.keysOfUser!(user) : async (user) => {
        const [moved, left] = await Promise.all([to.keysOfUser!(user), f.keysOfUser!(user)]);
        return [...new Set([...moved, ...left])];
      };
    }
  }

  /**
   * Reads `to`, and when it has no record, `from`. A tombstone in either is returned (the
   * session stays ended); so is the tombstone a move left in `from` when `to` has since lost the
   * record (evicted, say): the session then reads as ended, never as its older `from` copy.
   *
   * @param key The storage key.
   * @param minVersion The version the client has seen (given when `capabilities.staleReads`):
   *   passed to a store with stale reads where its answer is older than that, or missing.
   * @returns The record, or `null` when neither store has one.
   * @throws {TypeError} When `key` is not a storage key. Either store's errors pass through.
   */
  async load(key: string, minVersion?: number): Promise<StoredSession | null> {
    assertStorageKey(key);
    const to = this.#to;
    if (this.sealedFrom !== undefined) {
      return minVersion === undefined ? to.load(key) : to.load(key, minVersion);
    }
    const behind = (record: StoredSession | null) =>
      minVersion !== undefined && (record === null || (record.version < minVersion && !isEnded(record)));
    const moved = await to.load(key);
    if (moved !== null) {
      return behind(moved) && to.capabilities.staleReads ? await to.load(key, minVersion) : moved;
    }
    const left = await this.#from.load(key);
    if (left !== null && !isMoved(left)) {
      return behind(left) && this.#from.capabilities.staleReads
        ? await this.#from.load(key, minVersion)
        : left;
    }
    if (left !== null && this.#now() - (endedAt(left) ?? 0) < MOVE_WAIT_MS) {
      // Moved a moment ago: the mover may be between ending the `from` copy and creating the
      // record in `to`. Wait for it (a few round trips) rather than read the session as ended.
      for (const delay of [5, 10, 25, 50, 100, 200, 400, 800]) {
        await new Promise((resolve) => setTimeout(resolve, delay));
        const arrived = await to.load(key);
        if (arrived !== null) return arrived;
      }
    }
    // Moved, or nowhere: a location of `to` that has not seen the record yet is asked to wait.
    if (behind(null) && to.capabilities.staleReads) return await to.load(key, minVersion);
    return left;
  }

  /**
   * Saves to `to`; a record that is in `from` only is moved (see the class notes). A create
   * goes to `to` only: a new session's key is new.
   *
   * @param key The storage key.
   * @param record The record to store.
   * @param expectedVersion The version the caller loaded, or `null` to create only if absent.
   * @param index The user to index the key under.
   * @returns `true` when written. When refused, what `to` or `from` reported (a
   *   `SaveConflict` only where that store read it in the refusing step), else `false`.
   * @throws {TypeError} When `key` is not a storage key. Either store's errors pass through
   *   (after a failed move is undone).
   */
  async save(
    key: string,
    record: StoredSession,
    expectedVersion: number | null,
    index?: SaveIndex,
  ): Promise<SaveResult> {
    assertStorageKey(key);
    const to = this.#to;
    const from = this.#from;
    const result = await save(to, key, record, expectedVersion, index);
    if (result === true || expectedVersion === null || this.sealedFrom !== undefined) return result;
    if (result !== false && result.current !== null) return result;
    // `to` has no live record (or did not say): the session may still be in `from`.
    if (result === false && await to.load(key) !== null) return false;
    const left = await from.load(key);
    if (left === null) return result;
    if (isMoved(left) || left.version !== expectedVersion) return false;
    if (isEnded(record)) {
      // Ending a session that has not moved: the tombstone goes where the session lives.
      return await save(from, key, record, expectedVersion, index);
    }
    const tombstone: StoredSession = {
      data: { [ENDED_KEY]: true, [ENDED_AT_KEY]: this.#now(), [MOVED_KEY]: true },
      version: expectedVersion + 1,
      createdAt: left.createdAt,
      expiresAt: left.expiresAt,
    };
    const claimed = checkedSaveResult(await from.save(key, tombstone, expectedVersion));
    if (claimed !== true) {
      // Another request moved or changed it first: a record `from` read in the same step is
      // what won, unless it is a move (then `to` holds the session: the caller reads again).
      return claimed === false || claimed.current === null || isMoved(claimed.current) ? false : claimed;
    }
    let created: SaveResult;
    try {
      created = await save(to, key, record, null, index);
    } catch (error) {
      // `to` failed: give the session back to `from`, where it stays until the next save.
      try {
        await from.save(key, { ...left, version: tombstone.version + 1 }, tombstone.version);
      } catch {
        // Both failed: the session reads as ended until one of them answers again.
      }
      throw error;
    }
    return created;
  }

  /**
   * Removes the record from both stores, `from` first (so that no read in between finds only
   * the older copy).
   *
   * @param key The storage key.
   * @throws {TypeError} When `key` is not a storage key. Either store's errors pass through.
   */
  async destroy(key: string): Promise<void> {
    assertStorageKey(key);
    if (this.sealedFrom === undefined) await this.#from.destroy(key);
    await this.#to.destroy(key);
  }

  async #touch(key: string, expiresAt: number, version: number): Promise<boolean> {
    assertStorageKey(key);
    assertTouchArguments(expiresAt, version);
    if (await this.#to.touch!(key, expiresAt, version) === true) return true;
    // Not in `to` at that version: extend it in place in `from`, if it is still there (a moved
    // session's `from` copy is a tombstone, which a touch never extends).
    return await this.#from.touch!(key, expiresAt, version) === true;
  }
}

function save(
  store: SessionStore,
  key: string,
  record: StoredSession,
  expectedVersion: number | null,
  index: SaveIndex | undefined,
): Promise<SaveResult> {
  return index === undefined
    ? store.save(key, record, expectedVersion)
    : store.save(key, record, expectedVersion, index);
}

/** The capabilities of a move between two server stores (see the class notes). */
function bothCapabilities(from: SessionStore, to: SessionStore): StoreCapabilities {
  const f = from.capabilities;
  const t = to.capabilities;
  return {
    compareAndSet: f.compareAndSet && t.compareAndSet,
    ttl: f.ttl && t.ttl,
    staleReads: f.staleReads === true || t.staleReads === true,
    locks: t.locks === true,
    users: f.users === true && t.users === true && !!from.keysOfUser && !!to.keysOfUser,
  };
}

/** Cookie names are RFC 9110 tokens (RFC 6265bis §4.1.1). */
const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function checkFromCookie(name: unknown, sealed: boolean): void {
  if (name === undefined) return;
  if (!sealed) throw new TypeError("Invalid fromCookie: only a CookieStore as from has a cookie of its own");
  if (typeof name !== "string" || !COOKIE_NAME.test(name)) {
    throw new TypeError(`Invalid fromCookie: "${String(name)}" is not a cookie name (an RFC 9110 token)`);
  }
}

function isMoved(record: StoredSession): boolean {
  return isEnded(record) && (record.data as Record<string, unknown>)[MOVED_KEY] === true;
}
