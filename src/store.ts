/**
 * The contract between `withSession` and a store, and small helpers for writing stores.
 *
 * A store keeps versioned records under a storage key. `withSession` never hands a store the
 * session id itself, only `SHA-256(id)` in base64url (43 characters), so a leaked table or key
 * space holds nothing that works as a cookie.
 *
 * @module
 */

/** Session data: a JSON object. */
export type SessionData = Record<string, unknown>;

/**
 * One stored session. Times are milliseconds since the epoch.
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

/** What a store can promise. `withSession` and the docs rely on these being honest. */
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
}

/**
 * A server-side session store.
 *
 * - `load` returns `null` for a missing or expired record, and throws when the store cannot
 *   answer: an outage is never reported as "no such session".
 * - `save` is a compare-and-set. With `expectedVersion === null` it creates the record only if
 *   the key is absent; otherwise it replaces the record only if the stored version equals
 *   `expectedVersion`. It never creates a record that is missing (a destroyed session stays
 *   destroyed). It returns `false` when the condition fails, and throws on an outage.
 * - `destroy` is idempotent.
 * - `touch` moves `expiresAt` of an existing record without rewriting data or version; it does
 *   nothing for a missing record.
 */
export interface SessionStore {
  /** What this store guarantees. */
  readonly capabilities: StoreCapabilities;
  /**
   * Reads a record; `null` when missing or expired. `minVersion` is given only to stores whose
   * capabilities say `staleReads`: the version the client has already seen.
   */
  load(key: string, minVersion?: number): Promise<StoredSession | null>;
  /** Compare-and-set; `false` on a version conflict or when the record to update is gone. */
  save(key: string, record: StoredSession, expectedVersion: number | null): Promise<boolean>;
  /** Removes a record; no error if it is absent. */
  destroy(key: string): Promise<void>;
  /** Extends an existing record's expiry without rewriting its data. */
  touch?(key: string, expiresAt: number): Promise<void>;
  /** Removes expired records and returns how many; for stores without native expiry. */
  cleanup?(): Promise<number>;
  /** How many live sessions the store holds. */
  count?(): Promise<number>;
}

/** A cookie the sealed store wants sent: `name=value`. */
export interface SealedCookie {
  /** The cookie name: the session cookie's name, or `name.N` for chunk N. */
  name: string;
  /** The cookie value, already safe for a cookie (base64url and `.`). */
  value: string;
}

/** A session opened from cookies by a {@linkcode SealedSessionStore}. */
export interface OpenedSession {
  /** The session id carried inside the seal. */
  id: string;
  /** The record carried inside the seal. */
  record: StoredSession;
  /** The seal used a retired secret: `withSession` re-seals it on the next write. */
  stale: boolean;
}

/**
 * A store with no server copy: the record travels sealed in the cookie itself
 * (`CookieStore`). `withSession` asks it for the cookies to send instead of a storage key.
 * It can neither compare-and-set nor revoke on its own; its capabilities say so.
 */
export interface SealedSessionStore {
  /** Marks the store as cookie-sealed. */
  readonly sealed: true;
  /** What this store guarantees (`compareAndSet: false`). */
  readonly capabilities: StoreCapabilities & { revocation: boolean };
  /**
   * Opens the session from the request's cookies. `get(name)` returns a cookie's value.
   * Returns `null` when there is no session cookie, and throws a `TypeError` describing why a
   * present cookie is invalid (tampered, expired, unknown key, missing chunk).
   */
  open(get: (name: string) => string | undefined, name: string): Promise<OpenedSession | null>;
  /**
   * Seals a record into the cookies to send. Cookies of the request named `name` or `name.N`
   * that are not in the result are cleared by `withSession`.
   * Throws `SessionTooLargeError` when the record does not fit.
   */
  seal(id: string, record: StoredSession, name: string): Promise<SealedCookie[]>;
  /** Called when a session is destroyed or regenerated, for an optional revocation list. */
  revoke?(id: string, record: StoredSession): Promise<void>;
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
 * import { assertStorageKey } from "websession";
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
 * Checks that a value read back from a store is a well-formed record, and returns it typed.
 * Stores use it on everything they parse so that a corrupt record reads as missing (and is
 * reported) instead of crashing a request.
 *
 * @param value Anything, typically the result of `JSON.parse`.
 * @returns The record, or `null` when the shape is wrong.
 * @example
 * ```ts
 * import { toStoredSession } from "websession";
 * import assert from "node:assert/strict";
 *
 * assert.equal(toStoredSession({ data: [], version: 1 }), null);
 * const ok = { data: {}, version: 1, createdAt: 0, expiresAt: 1 };
 * assert.deepEqual(toStoredSession(ok), ok);
 * ```
 */
export function toStoredSession(value: unknown): StoredSession | null {
  if (typeof value !== "object" || value === null) return null;
  const record = value as Record<string, unknown>;
  const { data, version, createdAt, expiresAt } = record;
  if (typeof data !== "object" || data === null || Array.isArray(data)) return null;
  if (!Number.isSafeInteger(version) || (version as number) < 1) return null;
  if (!Number.isFinite(createdAt) || !Number.isFinite(expiresAt)) return null;
  return value as StoredSession;
}

/**
 * Parses a JSON-encoded record, as written by `JSON.stringify(record)`.
 *
 * @param text The JSON text.
 * @returns The record, or `null` when the text is not a well-formed record.
 * @example
 * ```ts
 * import { parseStoredSession } from "websession";
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
 * Tells whether a value is a {@linkcode SealedSessionStore} rather than a server store.
 *
 * @param store A store.
 * @returns `true` for a cookie-sealed store.
 * @example
 * ```ts
 * import { isSealedStore, MemoryStore } from "websession";
 * import assert from "node:assert/strict";
 *
 * assert.equal(isSealedStore(new MemoryStore()), false);
 * ```
 */
export function isSealedStore(store: SessionStore | SealedSessionStore): store is SealedSessionStore {
  return (store as SealedSessionStore).sealed === true;
}
