/**
 * `TieredStore`: a fast cache store in front of a durable store (Redis or Workers KV in front of
 * PostgreSQL or a Durable Object). The durable store is the truth; the cache only ever holds a
 * copy that its version says is no older than what it replaces.
 *
 * @module
 */
import { SessionError } from "../errors.ts";
import { logError } from "../log.ts";
import type { SessionLogger } from "../options.ts";
import {
  assertServerStore,
  assertStorageKey,
  assertTouchArguments,
  checkedSaveResult,
  isEnded,
  type SaveIndex,
  type SaveResult,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
} from "../store.ts";
import { type Entry, entryOf, supersedes, wrap } from "./tiered/entry.ts";

/**
 * Options of {@linkcode TieredStore}.
 *
 * @example
 * ```ts
 * import { MemoryStore } from "websession";
 * import { TieredStore, type TieredStoreOptions } from "websession/tiered";
 * import assert from "node:assert/strict";
 *
 * const options: TieredStoreOptions = {
 *   cache: new MemoryStore({ maxSessions: 10_000 }),
 *   durable: new MemoryStore(), // PostgresStore, DurableObjectStore, FileStore, ...
 *   cacheTtl: 30,
 * };
 * const store = new TieredStore(options);
 * assert.equal(store.capabilities.compareAndSet, true);
 * ```
 */
export interface TieredStoreOptions {
  /**
   * The store read first: `RedisStore`, `MemcachedStore`, `CloudflareKvStore`, a bounded
   * `MemoryStore`. Give it a key space of its own (a prefix, a namespace): it holds entries in
   * a format of this store's (the durable record and its version inside), not records another
   * store could read.
   */
  cache: SessionStore;
  /**
   * The store of record, which decides every write by its compare-and-set: `PostgresStore`,
   * `DurableObjectStore`, `FileStore`, `RedisStore` with persistence.
   */
  durable: SessionStore;
  /**
   * The longest a cache entry is served before the durable store is read again, in seconds:
   * the bound on how old a read can be after a write the cache missed (it was unreachable, or
   * refused the entry) while it kept an older one. Each entry also expires with its session.
   * @default 60
   */
  cacheTtl?: number;
  /**
   * After a cache failure, how long the cache is left alone (reads go straight to the durable
   * store, writes skip the cache), in milliseconds, so that an outage does not cost every
   * request a timeout. A write skipped this way is a write the cache missed (see `cacheTtl`).
   * @default 1000
   */
  cacheRetryAfter?: number;
  /**
   * Where cache failures are reported, as `withSession` reports errors: the first in full, then
   * one line a minute with a count.
   * @default console
   */
  logger?: Pick<SessionLogger, "error">;
  /**
   * The clock, in milliseconds since the epoch (injectable for tests).
   * @default Date.now
   */
  now?: () => number;
}

/**
 * Keeps sessions in a durable store with a cache in front of it. Reads go to the cache and fall
 * back to the durable store, which refills the cache; writes are decided by the durable store's
 * compare-and-set, then copied into the cache.
 *
 * The contract, in short (docs/stores/tiered.md gives the whole of it):
 * - A copy goes into the cache only by the cache's own compare-and-set, and only over an entry
 *   holding an older durable version (or the same version expiring earlier: a touch); a late
 *   refill changes nothing, and an ended session is never brought back. `destroy` leaves a mark.
 * - An evicted, flushed or unreachable cache is a miss: the durable store answers, nobody is
 *   logged out, no update is lost; a cache failure is logged, never answered. A durable outage
 *   throws (`withSession` answers 503, never a fresh id), except for reads the cache answers.
 * - A read can be stale only after a write the cache missed, for at most `cacheTtl`; with Workers
 *   KV as the cache, for KV's propagation delay too (the store then reports `staleReads`). A
 *   write is never lost: the durable store decides it.
 *
 * Capabilities: compare-and-set, locks and sessions per user are the durable store's (and
 * `lock`, `unlock`, `keysOfUser`, `count` go to it); native expiry only when both have it
 * (`cleanup` runs on both); stale reads when either has them.
 *
 * @example
 * ```ts
 * import { getSession, MemoryStore, withSession } from "websession";
 * import { TieredStore } from "websession/tiered";
 * import assert from "node:assert/strict";
 *
 * const cache = new MemoryStore({ maxSessions: 1_000 });
 * const durable = new MemoryStore(); // stands in for PostgresStore here
 * const handler = withSession(async (req: Request) => {
 *   const session = await getSession<{ visits?: number }>(req);
 *   return new Response(String(session.update("visits", (n = 0) => n + 1)));
 * }, { store: new TieredStore({ cache, durable }), secrets: ["a secret of at least thirty-two characters"] });
 *
 * const first = await handler(new Request("https://example.com/"));
 * const cookie = first.headers.get("set-cookie")!.split(";")[0]!;
 * assert.equal(await first.text(), "1");
 * assert.equal(await cache.count(), 1); // a copy, written after the durable store said yes
 * await cache.cleanup();
 * // Another process with an empty cache (or this one after a flush): the durable store answers.
 * const other = withSession(async (req: Request) => {
 *   const session = await getSession<{ visits?: number }>(req);
 *   return new Response(String(session.update("visits", (n = 0) => n + 1)));
 * }, {
 *   store: new TieredStore({ cache: new MemoryStore(), durable }),
 *   secrets: ["a secret of at least thirty-two characters"],
 * });
 * const second = await other(new Request("https://example.com/", { headers: { cookie } }));
 * assert.equal(await second.text(), "2");
 * ```
 */
export class TieredStore implements SessionStore {
  /** Compare-and-set, locks and users: the durable store's. See the class notes. */
  readonly capabilities: StoreCapabilities;
  /** Present when the durable store has `touch`: durable first, then the cache. */
  readonly touch?: (key: string, expiresAt: number, version: number) => Promise<boolean>;
  /** Present when either store has `cleanup`: both run; answers the durable store's count. */
  readonly cleanup?: () => Promise<number>;
  /** The durable store's `count`, when it has one. */
  readonly count?: () => Promise<number>;
  /** Locks in the durable store, when it has them. */
  readonly lock?: (key: string, owner: string, ttlMs: number) => Promise<boolean>;
  /** Locks in the durable store, when it has them. */
  readonly unlock?: (key: string, owner: string) => Promise<void>;
  /** The durable store's index of sessions per user, when it has one. */
  readonly keysOfUser?: (user: string) => Promise<string[]>;
  /** The durable store's clock, when it has one (the grace of an ended session; see `SessionStore.time`). */
  readonly time?: (key: string) => Promise<number>;
  #cache: SessionStore;
  #durable: SessionStore;
  #ttl: number;
  #retryAfter: number;
  #logger: Pick<SessionLogger, "error">;
  #now: () => number;
  /** Until when the cache is left alone after a failure. */
  #cacheDownUntil = 0;

  /**
   * Creates a store over a cache and a durable store.
   *
   * @param options See {@linkcode TieredStoreOptions}.
   * @throws {TypeError} When `cache` or `durable` is not a server store (a `CookieStore` has no
   *   server copy), they are the same store, or `logger`/`now` have the wrong shape.
   * @throws {RangeError} When `cacheTtl` is not a positive number of seconds or
   *   `cacheRetryAfter` not a non-negative number of milliseconds.
   */
  constructor(options: TieredStoreOptions) {
    const { cache, durable } = options ?? ({} as TieredStoreOptions);
    assertServerStore("cache", cache);
    assertServerStore("durable", durable);
    if (cache === durable) throw new TypeError("Invalid cache: it is the durable store itself");
    const ttl = options.cacheTtl ?? 60;
    if (typeof ttl !== "number" || !(ttl > 0) || !Number.isFinite(ttl)) {
      throw new RangeError(`Invalid cacheTtl: "${String(ttl)}" is not a positive number of seconds`);
    }
    const retryAfter = options.cacheRetryAfter ?? 1000;
    if (typeof retryAfter !== "number" || !(retryAfter >= 0) || !Number.isFinite(retryAfter)) {
      throw new RangeError(
        `Invalid cacheRetryAfter: "${String(retryAfter)}" is not a non-negative number of milliseconds`,
      );
    }
    const logger = options.logger ?? console;
    if (typeof logger?.error !== "function") {
      throw new TypeError("Invalid logger: expected an object with error(), such as console");
    }
    if (options.now !== undefined && typeof options.now !== "function") {
      throw new TypeError(`Invalid now: "${String(options.now)}" is not a function`);
    }
    this.#cache = cache;
    this.#durable = durable;
    this.#ttl = ttl * 1000;
    this.#retryAfter = retryAfter;
    this.#logger = logger;
    this.#now = options.now ?? Date.now;
    const c = cache.capabilities;
    const d = durable.capabilities;
    this.capabilities = {
      compareAndSet: d.compareAndSet,
      ttl: d.ttl && c.ttl,
      staleReads: d.staleReads === true || c.staleReads === true,
      locks: d.locks === true,
      users: d.users === true,
    };
    if (durable.touch) this.touch = (key, expiresAt, version) => this.#touch(key, expiresAt, version);
    if (durable.cleanup || cache.cleanup) this.cleanup = () => this.#cleanup();
    if (durable.count) this.count = () => durable.count!();
    if (d.locks && durable.lock && durable.unlock) {
      this.lock = (key, owner, ttlMs) => durable.lock!(key, owner, ttlMs);
      this.unlock = (key, owner) => durable.unlock!(key, owner);
    }
    if (durable.keysOfUser) this.keysOfUser = (user) => durable.keysOfUser!(user);
    if (durable.time) this.time = (key) => durable.time!(key);
  }

  /**
   * Reads the cache, and on a miss (nothing cached, a mark, an entry past `cacheTtl`, a cache
   * failure, or an entry older than `minVersion`) the durable store, refilling the cache with
   * what it answered.
   *
   * @param key The storage key.
   * @param minVersion The version the client has seen (given when `capabilities.staleReads`).
   * @returns The record (a tombstone included), or `null` when the durable store has none.
   * @throws {TypeError} When `key` is not a storage key. The durable store's errors pass through.
   */
  async load(key: string, minVersion?: number): Promise<StoredSession | null> {
    assertStorageKey(key);
    const held = await this.#read(key);
    if (held !== undefined && "record" in held) {
      const { record } = held;
      const behind = minVersion !== undefined && record.version < minVersion && !isEnded(record);
      if (record.expiresAt > this.#now() && !behind) return record;
    }
    const basis = this.#now();
    const record = minVersion !== undefined && this.#durable.capabilities.staleReads
      ? await this.#durable.load(key, minVersion)
      : await this.#durable.load(key);
    if (record !== null) await this.#fill(key, record, basis);
    return record;
  }

  /**
   * Saves by the durable store's compare-and-set, then copies what it decided into the cache:
   * the record when it was written, the record that won when it reports one (so the next load
   * is not served the version that lost), a mark when the record is gone.
   *
   * @param key The storage key.
   * @param record The record to store.
   * @param expectedVersion The version the caller loaded, or `null` to create only if absent.
   * @param index The user to index the key under: the durable store's index.
   * @returns The durable store's answer.
   * @throws {TypeError} When `key` is not a storage key. The durable store's errors pass through.
   */
  async save(
    key: string,
    record: StoredSession,
    expectedVersion: number | null,
    index?: SaveIndex,
  ): Promise<SaveResult> {
    assertStorageKey(key);
    const basis = this.#now();
    const result = checkedSaveResult(
      index === undefined
        ? await this.#durable.save(key, record, expectedVersion)
        : await this.#durable.save(key, record, expectedVersion, index),
    );
    if (result === true) {
      await this.#fill(key, record, basis);
    } else if (result !== false) {
      if (result.current === null) await this.#forget(key, basis);
      else await this.#fill(key, result.current, basis);
    } else {
      // Refused with nothing said: learn the record as it stands, so that the caller's reload
      // is not served the cached version that just lost.
      let current: StoredSession | null | undefined;
      try {
        current = await this.#durable.load(key);
      } catch {
        current = null;
      }
      if (current === null) await this.#forget(key, basis);
      else await this.#fill(key, current, basis);
    }
    return result;
  }

  /**
   * Removes the record from the durable store, then leaves a mark in the cache that refuses
   * any refill that started before it.
   *
   * @param key The storage key.
   * @throws {TypeError} When `key` is not a storage key. The durable store's errors pass through.
   */
  async destroy(key: string): Promise<void> {
    assertStorageKey(key);
    await this.#durable.destroy(key);
    await this.#forget(key, this.#now(), true);
  }

  async #touch(key: string, expiresAt: number, version: number): Promise<boolean> {
    assertStorageKey(key);
    assertTouchArguments(expiresAt, version);
    const basis = this.#now();
    const touched = await this.#durable.touch!(key, expiresAt, version);
    if (touched === true) {
      const held = await this.#read(key);
      if (held !== undefined && "record" in held && held.record.version === version) {
        await this.#fill(key, { ...held.record, expiresAt }, basis);
      }
    }
    return touched;
  }

  async #cleanup(): Promise<number> {
    if (this.#cache.cleanup && this.#usable()) {
      try {
        await this.#cache.cleanup();
      } catch (error) {
        this.#failed("clean up", error);
      }
    }
    return this.#durable.cleanup ? await this.#durable.cleanup() : 0;
  }

  /** The cache's entry, or `undefined` when it has none, a corrupt one, or fails. */
  async #read(key: string): Promise<Entry | undefined> {
    if (!this.#usable()) return undefined;
    try {
      const held = await this.#cache.load(key);
      return held === null ? undefined : entryOf(held) ?? undefined;
    } catch (error) {
      this.#failed("load", error);
      return undefined;
    }
  }

  /**
   * Copies `record` into the cache, by the cache's compare-and-set, unless the entry there is
   * at least as new. `basis` is when the durable operation that produced `record` started.
   */
  async #fill(key: string, record: StoredSession, basis: number): Promise<void> {
    if (!this.#usable()) return;
    const until = Math.min(record.expiresAt, basis + this.#ttl);
    try {
      for (let attempt = 0; attempt < 4; attempt++) {
        const held = await this.#cache.load(key);
        const entry = held === null ? null : entryOf(held);
        if (entry !== null && !supersedes(record, basis, entry)) return;
        const copy = wrap({ record }, held, record.createdAt, until);
        if (await this.#cache.save(key, copy, held === null ? null : held.version) === true) return;
      }
      // Four other writers in a row: leave it to them; whatever they left lasts `cacheTtl` at most.
    } catch (error) {
      this.#failed("save", error);
      // The cache may still hold an older entry: mark it, if the cache answers at all.
      if (!(error instanceof SessionError)) return;
      await this.#forget(key, basis);
    }
  }

  /**
   * Replaces what the cache holds under `key` with a mark (`always`: even when it holds
   * nothing), so that reads fall through and refills that started before `at` are refused.
   */
  async #forget(key: string, at: number, always = false): Promise<void> {
    if (!this.#usable()) return;
    try {
      for (let attempt = 0; attempt < 4; attempt++) {
        const held = await this.#cache.load(key);
        if (held === null && !always) return;
        const mark = wrap({ forgottenAt: at }, held, at, Math.max(at, this.#now()) + this.#ttl);
        if (await this.#cache.save(key, mark, held === null ? null : held.version) === true) return;
      }
    } catch (error) {
      this.#failed("save", error);
    }
  }

  #usable(): boolean {
    return this.#cacheDownUntil === 0 || this.#now() >= this.#cacheDownUntil;
  }

  #failed(action: string, error: unknown): void {
    // A record the cache cannot hold (too large, say) is no outage: only the key is skipped.
    if (!(error instanceof SessionError) || error.code === "ERR_SESSION_STORE_UNAVAILABLE") {
      this.#cacheDownUntil = this.#now() + this.#retryAfter;
    }
    const reason = error instanceof Error ? error.message : String(error);
    logError(
      this.#logger as SessionLogger,
      new Error(`TieredStore cache failed to ${action}, served by the durable store: ${reason}`, {
        cause: error,
      }),
      { key: "TieredStore cache" },
    );
  }
}
