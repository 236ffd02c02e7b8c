/**
 * Explicit locks (CherryPy's `locking = 'explicit'`): a lock on a session for a critical
 * section whose side effects lie outside the session (charging a card once). It is time-limited:
 * the store lets it go after its `ttl` even if its holder never releases it. Compare-and-set
 * stays what keeps the session's own data consistent; a lock is opt-in, for the rest.
 *
 * @module
 */
import { type Handle, leaveTurn } from "./backend.ts";
import { backoff, storeError } from "./conflict.ts";
import { SessionConfigError, SessionConflictError } from "./errors.ts";
import { createSessionId, storageKeyOf } from "./id.ts";
import { observationsHold, replay } from "./session_data.ts";
import { isEnded, type SessionStore } from "./store.ts";

/**
 * Options of `session.lock()`.
 *
 * @example
 * ```ts
 * import type { LockOptions } from "websession";
 * import assert from "node:assert/strict";
 *
 * const options: LockOptions = { ttl: 30, wait: 0 }; // hold 30 s at most; refuse at once if taken
 * assert.equal(options.wait, 0);
 * ```
 */
export interface LockOptions {
  /**
   * Seconds after which the lock expires by itself if it is not released (a crashed holder
   * never blocks longer).
   * @default 30
   */
  ttl?: number;
  /**
   * Seconds to wait for a lock another request holds before giving up with
   * `SessionConflictError` (409); `0` refuses at once.
   * @default 10
   */
  wait?: number;
}

/**
 * A lock on a session, from `session.lock()`. Released by `release()` or at the end of the
 * request (or by `commitSession`), whichever comes first; the store lets it go by itself once
 * its `ttl` has passed.
 *
 * @example
 * ```ts
 * import { getSession, MemoryStore, withSession } from "websession";
 * import assert from "node:assert/strict";
 *
 * let charged = 0;
 * const handler = withSession(async (req: Request) => {
 *   const session = await getSession<{ paid?: boolean }>(req);
 *   const lock = await session.lock({ wait: 0 });
 *   if (!session.get("paid")) {
 *     charged++; // the side effect outside the session happens once
 *     session.set("paid", true);
 *   }
 *   await session.save();
 *   await lock.release();
 *   return new Response("ok");
 * }, { store: new MemoryStore(), secrets: ["a secret of at least thirty-two characters"] });
 * const first = await handler(new Request("https://example.com/"));
 * const cookie = first.headers.get("set-cookie")!.split(";")[0]!;
 * await handler(new Request("https://example.com/", { headers: { cookie } }));
 * assert.equal(charged, 1);
 * ```
 */
export interface SessionLock {
  /** `true` until released. */
  readonly held: boolean;
  /** Releases the lock; does nothing the second time. */
  release(): Promise<void>;
}

/** A lock this request holds: taken from the store by `acquire`, in `h.locks` until released. */
class RequestLock implements SessionLock {
  #h: Handle;
  #store: SessionStore;
  readonly key: string;
  readonly owner: string;
  /** Takes not yet released: a lock is re-entrant within its request. */
  count = 1;
  /** When it lapses unless extended (ms, `performance.now()`: a clock that never steps). */
  until: number;
  held = true;

  constructor(h: Handle, store: SessionStore, key: string, owner: string, until: number) {
    this.#h = h;
    this.#store = store;
    this.key = key;
    this.owner = owner;
    this.until = until;
  }

  async release(): Promise<void> {
    if (!this.held) return;
    if (--this.count > 0) return;
    await this.#end();
  }

  /** Releases the lock whatever its count (the end of the request). */
  async end(): Promise<void> {
    if (!this.held) return;
    this.count = 0;
    await this.#end();
  }

  async #end(): Promise<void> {
    this.held = false;
    const locks = this.#h.locks;
    if (locks !== undefined) locks.splice(locks.indexOf(this), 1);
    try {
      await this.#store.unlock!(this.key, this.owner);
    } catch (error) {
      throw storeError("release a lock", error);
    }
  }
}

function seconds(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !(value >= 0) || value > 86_400) {
    throw new RangeError(`Invalid ${name}: "${String(value)}" must be a number of seconds from 0 to 86400`);
  }
  return value;
}

/**
 * Takes a lock on the session's storage key, waiting (bounded) while another request holds it,
 * then brings the session up to the record as it stands.
 *
 * @throws {SessionConfigError} When the store cannot hold a lock.
 * @throws {SessionConflictError} When another request kept it past `wait`.
 * @throws {StoreUnavailableError} When the store fails.
 */
export async function takeLock(h: Handle, options: LockOptions = {}): Promise<SessionLock> {
  const store = h.store as SessionStore;
  if (h.o.sealed || typeof store.lock !== "function" || typeof store.unlock !== "function") {
    throw new SessionConfigError("Session store cannot hold a lock: its capabilities say locks: false");
  }
  const ttlMs = Math.max(1, seconds("ttl", options.ttl, 30) * 1000);
  const waitMs = seconds("wait", options.wait, 10) * 1000;
  const key = h.key ?? h.minted?.key ?? await storageKeyOf(h.id);
  const held = heldLock(h, key);
  if (held !== undefined) {
    // Re-entrant: the request holds it already (an earlier lock(), or its turn across
    // processes). Counted; a longer ttl extends it, a shorter one never shortens it.
    const until = performance.now() + ttlMs;
    if (until > held.until) {
      try {
        if (!await store.lock(key, held.owner, ttlMs)) {
          throw new Error("it had expired and another owner took it");
        }
      } catch (error) {
        throw storeError("extend a lock", error);
      }
      held.until = until;
    }
    held.count++;
    return held;
  }
  const lock = await acquire(h, store, key, ttlMs, waitMs);
  if (lock === undefined) {
    throw new SessionConflictError(
      `Session is locked by another request: gave up after waiting ${waitMs / 1000} s`,
    );
  }
  try {
    await catchUp(h, store);
  } catch (error) {
    await lock.release().catch(() => {});
    throw error;
  }
  return lock;
}

function heldLock(h: Handle, key: string): RequestLock | undefined {
  for (const lock of h.locks ?? []) {
    if (lock instanceof RequestLock && lock.held && lock.key === key) return lock;
  }
  return undefined;
}

/** Takes a lock on `key` from the store, waiting at most `waitMs`; `undefined` when it did not. */
async function acquire(
  h: Handle,
  store: SessionStore,
  key: string,
  ttlMs: number,
  waitMs: number,
): Promise<RequestLock | undefined> {
  const owner = createSessionId();
  const start = performance.now();
  for (let attempt = 1;; attempt++) {
    let taken: boolean;
    try {
      taken = await store.lock!(key, owner, ttlMs);
    } catch (error) {
      throw storeError("take a lock", error);
    }
    if (taken) {
      const lock = new RequestLock(h, store, key, owner, performance.now() + ttlMs);
      (h.locks ??= []).push(lock);
      return lock;
    }
    if (performance.now() - start >= waitMs) return undefined;
    await backoff(Math.min(attempt, 8));
  }
}

/**
 * How long the lock that makes a turn across processes lives at most (ms). Short on purpose: it
 * only orders requests (the compare-and-set keeps them correct), so a request that runs longer
 * merely stops excluding others, while a lock orphaned by a killed process or a store outage (its
 * release failed) would hold every other process's requests of the session for as long as it
 * lives.
 */
const TURN_LOCK_MS = 5_000;

/**
 * Takes the turn across processes: a lock on the session's key, before loading, once other
 * processes were seen writing it (a conflict on the key). Waits at most `waitMs`, then goes on
 * without it (the compare-and-set still decides). Does nothing on a store without locks. A later
 * `session.lock()` of the request shares this lock. (Named `takeTurnLock` for its importer in
 * `backends/server.ts`.)
 */
export async function takeTurnLock(h: Handle, key: string, waitMs: number): Promise<void> {
  const store = h.store as SessionStore;
  if (typeof store.lock !== "function" || typeof store.unlock !== "function") return;
  if (heldLock(h, key) !== undefined) return;
  await acquire(h, store, key, TURN_LOCK_MS, waitMs);
}

/**
 * Brings a loaded session up to the record as it stands once the lock is held: the critical
 * section must see what the previous holder wrote. Changes made before `lock()` are replayed on
 * it when that is a serial order (what they looked at is unchanged); otherwise the request is
 * refused.
 */
async function catchUp(h: Handle, store: SessionStore): Promise<void> {
  // A save of this request still in flight writes a record of its own making: wait for it (its
  // operations leave the log when it lands), or they would be replayed on it a second time.
  if (h.chain !== undefined) await h.chain.then(ignore, ignore);
  if (h.base === undefined || h.key === undefined) return;
  let fresh;
  try {
    fresh = await store.load(h.key);
  } catch (error) {
    throw storeError("load", error);
  }
  if (fresh !== null && fresh.version === h.base.version) return;
  if (fresh === null || isEnded(fresh) || fresh.expiresAt <= h.o.now()) {
    throw new SessionConflictError(
      "Session was ended by a concurrent request while this one waited for its lock",
    );
  }
  if (!observationsHold(h, h.base.data, fresh.data)) {
    throw new SessionConflictError(
      "Session changed while this request waited for its lock, under what it had already read: call lock() first",
    );
  }
  const landed = replay(h.ops, fresh.data, h.serializer);
  h.base = fresh;
  h.version = fresh.version;
  h.expiresAt = fresh.expiresAt;
  h.data = landed.data;
  h.flash = landed.flash;
  if (landed.flashOut.size > 0) h.flashOut = landed.flashOut;
}

function ignore(): void {}

/** Releases every lock a request still holds (at the end of the request). */
export async function releaseAll(h: Handle): Promise<void> {
  const locks = h.locks;
  if (locks === undefined || locks.length === 0) return;
  for (const lock of [...locks]) {
    try {
      await (lock instanceof RequestLock ? lock.end() : lock.release());
    } catch {
      // It expires by itself.
    }
  }
}

/**
 * A failed open gives up what it took (the store's lock, the turn): the session's next request
 * goes on at once. Throws `error` on.
 */
export async function openFailed(h: Handle, error: unknown): Promise<never> {
  if (h.locks !== undefined) await releaseAll(h);
  leaveTurn(h);
  throw error;
}
