/**
 * `DurableObjectStore` and `SessionDurableObject`: strongly consistent sessions on Cloudflare
 * Workers. Each session lives in its own Durable Object, whose single-threaded storage makes
 * every save a true compare-and-set. Docs: `docs/stores/durable-object.md`.
 *
 * @module
 */
import { StoreUnavailableError } from "../errors.ts";
import {
  assertLockArguments,
  assertStorageKey,
  assertTouchArguments,
  type SaveIndex,
  type SaveResult,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
  toStoredSession,
} from "../store.ts";
import { encode, type Operation, sendOperation } from "./durable_object/protocol.ts";
import { userKeys, userObject } from "./durable_object/users.ts";

export {
  type DurableObjectStateLike,
  type DurableObjectStorageLike,
  SessionDurableObject,
} from "./durable_object/object.ts";

/**
 * The part of a `Response` that {@linkcode DurableObjectStore} reads.
 *
 * @example
 * ```ts
 * import { type DurableObjectResponseLike, DurableObjectStore } from "websession/durable-object";
 * import { SessionTooLargeError } from "websession";
 * import assert from "node:assert/strict";
 *
 * // A `Response` fits; the store reads its status and JSON body. 413 means the record is too large.
 * const tooLarge: DurableObjectResponseLike = Response.json({ error: "value too large" }, { status: 413 });
 * assert.equal(tooLarge.ok, false);
 * const store = new DurableObjectStore({
 *   namespace: { idFromName: (name) => name, get: () => ({ fetch: async () => tooLarge }) },
 * });
 * const now = Date.now();
 * const record = { data: {}, version: 1, createdAt: now, expiresAt: now + 60_000 };
 * await assert.rejects(store.save("k".repeat(43), record, null), SessionTooLargeError);
 * ```
 */
export interface DurableObjectResponseLike {
  /** The HTTP status. */
  readonly status: number;
  /** Whether the status is 2xx. */
  readonly ok: boolean;
  /** Reads the body as JSON. */
  json(): Promise<unknown>;
}

/**
 * A Durable Object stub: what `namespace.get(id)` returns.
 *
 * @example
 * ```ts
 * import {
 *   DurableObjectStore,
 *   type DurableObjectStubLike,
 *   SessionDurableObject,
 * } from "websession/durable-object";
 * import assert from "node:assert/strict";
 *
 * // What `env.SESSIONS.get(id)` returns in a Worker: it forwards a request to the object.
 * // Here a stub forwards to a SessionDurableObject in this process, over a Map for its storage.
 * const values = new Map<string, unknown>();
 * const object = new SessionDurableObject({
 *   storage: {
 *     get: async (key) => values.get(key),
 *     put: async (key, value) => void values.set(key, value),
 *     delete: async (key) => values.delete(key),
 *     list: async ({ prefix }) => new Map([...values].filter(([key]) => key.startsWith(prefix))),
 *     setAlarm: async () => {},
 *     deleteAlarm: async () => {},
 *   },
 * });
 * const stub: DurableObjectStubLike = { fetch: (url, init) => object.fetch(new Request(url, init)) };
 * const store = new DurableObjectStore({ namespace: { idFromName: (name) => name, get: () => stub } });
 * const key = "k".repeat(43);
 * const now = Date.now();
 * const record = { data: { a: 1 }, version: 1, createdAt: now, expiresAt: now + 60_000 };
 * assert.equal(await store.save(key, record, null), true);
 * // Decided in the object, which answers with the record it decided on.
 * assert.deepEqual(await store.save(key, { ...record, version: 2 }, 5), { current: record });
 * assert.deepEqual(await store.load(key), record);
 * ```
 */
export interface DurableObjectStubLike {
  /** Sends a request to the object (a URL and its init, as with the global `fetch`). */
  fetch(
    url: string,
    init: { method: string; headers: Record<string, string>; body: string },
  ): Promise<DurableObjectResponseLike>;
}

/**
 * The part of a Durable Object namespace binding that {@linkcode DurableObjectStore} uses, so
 * that the store never imports Cloudflare's types and `env.SESSIONS` fits as is.
 *
 * @example
 * ```ts
 * import { type DurableObjectNamespaceLike, DurableObjectStore } from "websession/durable-object";
 * import assert from "node:assert/strict";
 *
 * // In a Worker this is `env.SESSIONS`. Here each object answers that it holds no record.
 * const named: string[] = [];
 * const namespace: DurableObjectNamespaceLike<string> = {
 *   idFromName: (name) => name,
 *   get: (id) => {
 *     named.push(id);
 *     return { fetch: async () => Response.json({ record: null }) };
 *   },
 * };
 * const store = new DurableObjectStore({ namespace });
 * await store.load("a".repeat(43));
 * await store.load("b".repeat(43));
 * assert.deepEqual(named, ["a".repeat(43), "b".repeat(43)]); // one object per session
 * ```
 */
export interface DurableObjectNamespaceLike<Id = unknown> {
  /** The id of the object named `name` (always the same object for the same name). */
  idFromName(name: string): Id;
  /** A stub to talk to the object. */
  get(id: Id): DurableObjectStubLike;
}

/**
 * Options of {@linkcode DurableObjectStore}.
 *
 * @example
 * ```ts
 * import { DurableObjectStore, type DurableObjectStoreOptions } from "websession/durable-object";
 * import { StoreUnavailableError } from "websession";
 * import assert from "node:assert/strict";
 *
 * // In a Worker: { namespace: env.SESSIONS }. Here the object cannot be reached.
 * const options: DurableObjectStoreOptions = {
 *   namespace: {
 *     idFromName: (name) => name,
 *     get: () => ({ fetch: () => Promise.reject(new Error("Network connection lost")) }),
 *   },
 * };
 * const store = new DurableObjectStore(options);
 * await assert.rejects(store.load("k".repeat(43)), StoreUnavailableError); // never read as "no session"
 * ```
 */
export interface DurableObjectStoreOptions {
  /**
   * The namespace binding of a class that extends or re-exports {@linkcode SessionDurableObject},
   * e.g. `env.SESSIONS` (required).
   */
  namespace: DurableObjectNamespaceLike;
  /**
   * The clock that decides whether a record has expired, in milliseconds since the epoch. Its
   * reading travels with every operation and the object decides by it, not by its own clock:
   * give it the same clock as `withSession`'s `now`, which computes `expiresAt`.
   * @default Date.now
   */
  now?: () => number;
}

function malformed(): StoreUnavailableError {
  return new StoreUnavailableError("Durable Object answered a malformed record");
}

/**
 * Keeps each session in its own `SessionDurableObject` (`idFromName(key)`): strongly
 * consistent, each operation one request to the session's object, a save a true compare-and-set
 * decided there. Locks live in the session's object; a user's index of sessions in an object
 * named by the user's tag (`users:` + `userTag(user)`), written before the save. No `count()`.
 * Docs (limits, clocks, sessions per user, upgrading): `docs/stores/durable-object.md`.
 *
 * @example
 * ```ts
 * import { DurableObjectStore } from "websession/durable-object";
 * import assert from "node:assert/strict";
 *
 * // In a Worker: new DurableObjectStore({ namespace: env.SESSIONS })
 * const namespace = {
 *   idFromName: (name: string) => name,
 *   get: () => ({ fetch: async () => Response.json({ record: null }) }),
 * };
 * const store = new DurableObjectStore({ namespace });
 * assert.equal(store.capabilities.compareAndSet, true);
 * assert.equal(await store.load("k".repeat(43)), null);
 * ```
 */
export class DurableObjectStore implements SessionStore {
  /** Compare-and-set, native expiry (alarm), locks and sessions per user: all yes. */
  readonly capabilities: StoreCapabilities = { compareAndSet: true, ttl: true, locks: true, users: true };
  #namespace: DurableObjectNamespaceLike;
  #now: () => number;

  /**
   * @param options See {@linkcode DurableObjectStoreOptions}.
   * @throws {TypeError} When `namespace` does not look like a Durable Object namespace binding.
   */
  constructor(options: DurableObjectStoreOptions) {
    const namespace = options?.namespace as Partial<DurableObjectNamespaceLike> | undefined;
    if (typeof namespace?.idFromName !== "function" || typeof namespace.get !== "function") {
      throw new TypeError("Invalid namespace: expected a Durable Object namespace binding");
    }
    this.#namespace = namespace as DurableObjectNamespaceLike;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Reads a record: `null` when missing or expired (by the application's clock).
   *
   * @param key The storage key (a session's object is named by it).
   * @throws {TypeError} When `key` is not a storage key.
   * @throws {StoreUnavailableError} When the object cannot be reached or answers badly.
   */
  async load(key: string): Promise<StoredSession | null> {
    assertStorageKey(key);
    const answer = await this.#send(key, { op: "load" });
    if (answer.record === null) return null;
    const record = toStoredSession(answer.record);
    if (record === null) throw malformed();
    return record;
  }

  /**
   * Compare-and-set, decided inside the session's object. With `index`, the key is first
   * written into the user's index, in the user's object (a second request, before the save).
   *
   * @param key The storage key.
   * @param record The record to store.
   * @param expectedVersion The version the caller loaded, or `null` to create only if absent.
   * @param index The user to index the key under, if any.
   * @returns `true` when written; when refused, a `SaveConflict` with the record the object
   *   decided on (`null` when absent or expired); plain `false` only from an object of an older
   *   version that does not report it.
   * @throws {TypeError} When `key` is not a storage key, the record's version or times are not
   *   finite numbers, or `index.user` is not a string.
   * @throws {SessionDataError} When the data is not a JSON object (a `BigInt`, a cycle).
   * @throws {SessionTooLargeError} When the record (with its user) is over the object storage's
   *   128 KiB value limit, V8-serialized; nothing is sent.
   * @throws {StoreUnavailableError} When an object cannot be reached or answers badly.
   */
  async save(
    key: string,
    record: StoredSession,
    expectedVersion: number | null,
    index?: SaveIndex,
  ): Promise<SaveResult> {
    assertStorageKey(key);
    const user = index?.user;
    if (index !== undefined && typeof user !== "string") {
      throw new TypeError(`Invalid index: user "${String(user)}" is not a string`);
    }
    encode(record, user);
    if (user !== undefined) {
      await this.#sendTo(await userObject(user), { op: "index", key, token: crypto.randomUUID() });
    }
    const operation: Operation = user === undefined
      ? { op: "save", record, expectedVersion }
      : { op: "save", record, expectedVersion, user };
    const answer = await this.#send(key, operation);
    if (answer.ok === true) return true;
    if (!("current" in answer)) return false;
    if (answer.current === null) return { current: null };
    const current = toStoredSession(answer.current);
    if (current === null) throw malformed();
    return { current };
  }

  /**
   * Removes a record; no error if it is absent. The session's lock, if any, is left alone.
   *
   * @param key The storage key.
   * @throws {TypeError} When `key` is not a storage key.
   * @throws {StoreUnavailableError} When the object cannot be reached.
   */
  async destroy(key: string): Promise<void> {
    assertStorageKey(key);
    await this.#send(key, { op: "destroy" });
  }

  /**
   * Extends a live record's expiry (ms since the epoch) and its alarm, data and version
   * unchanged, when it is at `version`, not ended and expires earlier; decided in the object.
   *
   * @param key The storage key.
   * @param expiresAt The new expiry, ms since the epoch.
   * @param version The version the caller read.
   * @returns `true` when extended; `false` otherwise, nothing written (also from an object of an
   *   earlier version, which ignores `version` and may have extended it unchecked).
   * @throws {TypeError} When `key` is not a storage key, `expiresAt` is not finite or `version`
   *   is not a positive integer.
   * @throws {StoreUnavailableError} When the object cannot be reached.
   */
  async touch(key: string, expiresAt: number, version: number): Promise<boolean> {
    assertStorageKey(key);
    assertTouchArguments(expiresAt, version);
    const answer = await this.#send(key, { op: "touch", expiresAt, version });
    return answer.touched === true;
  }

  /**
   * Locks `key` for `owner` for `ttlMs` milliseconds, in the session's object:
   * taken unless another owner's lock is live by the application's clock; its holder takes it
   * again (extending it). Of concurrent takers exactly one wins.
   *
   * @param key The storage key of the session.
   * @param owner Who takes it; only this owner can release it.
   * @param ttlMs How long the lock lasts unless released, in milliseconds.
   * @returns `true` when taken, `false` while another owner holds a live lock.
   * @throws {TypeError} When `key` is not a storage key or `owner` is not a non-empty string.
   * @throws {RangeError} When `ttlMs` is not a positive finite number.
   * @throws {StoreUnavailableError} When the object cannot be reached.
   */
  async lock(key: string, owner: string, ttlMs: number): Promise<boolean> {
    assertStorageKey(key);
    assertLockArguments(owner, ttlMs);
    const answer = await this.#send(key, { op: "lock", owner, ttlMs });
    return answer.ok === true;
  }

  /**
   * Releases the lock named `key` if, and only if, `owner` holds it.
   *
   * @param key The storage key of the session.
   * @param owner The owner that took it.
   * @throws {TypeError} When `key` is not a storage key or `owner` is not a non-empty string.
   * @throws {StoreUnavailableError} When the object cannot be reached.
   */
  async unlock(key: string, owner: string): Promise<void> {
    assertStorageKey(key);
    assertLockArguments(owner);
    await this.#send(key, { op: "unlock", owner });
  }

  /**
   * The storage keys of a user's sessions, each once: those in the user's index (and in its
   * object of the earlier layout, `user:<id>`) whose objects hold a live, not ended record
   * indexed under that user. Entries at least five minutes old that no longer qualify are
   * removed on the way.
   *
   * @param user The user's id.
   * @throws {TypeError} When `user` is not a string.
   * @throws {StoreUnavailableError} When an object cannot be reached or answers badly.
   */
  async keysOfUser(user: string): Promise<string[]> {
    if (typeof user !== "string") throw new TypeError(`Invalid user: "${String(user)}" is not a string`);
    return await userKeys((name, operation) => this.#sendTo(name, operation), user, this.#now);
  }

  /**
   * The clock of the session's object (its `Date.now()`, ms since the epoch), asked only to
   * stamp and judge the grace of an ended session (see `SessionStore.time`).
   *
   * @param key The storage key: the object asked is that session's.
   * @returns Milliseconds since the epoch by the object's clock.
   * @throws {TypeError} When `key` is not a storage key.
   * @throws {StoreUnavailableError} When the object cannot be reached or answers no time (an
   *   object of an earlier version answers `400`; the core then uses the application's clock).
   * @example
   * ```ts
   * import { DurableObjectStore } from "websession/durable-object";
   * import assert from "node:assert/strict";
   *
   * const namespace = {
   *   idFromName: (name: string) => name,
   *   get: () => ({ fetch: async () => Response.json({ time: 1_700_000_000_000 }) }),
   * };
   * assert.equal(await new DurableObjectStore({ namespace }).time("k".repeat(43)), 1_700_000_000_000);
   * ```
   */
  async time(key: string): Promise<number> {
    assertStorageKey(key);
    const answer = await this.#send(key, { op: "time" });
    if (typeof answer.time !== "number" || !Number.isFinite(answer.time)) {
      throw new StoreUnavailableError("Durable Object answered no time");
    }
    return answer.time;
  }

  /** Sends one operation to the session's object. */
  #send(key: string, operation: Operation): Promise<Record<string, unknown>> {
    return this.#sendTo(key, operation);
  }

  /** Sends one operation, with the application's clock reading, to the object named `name`. */
  #sendTo(name: string, operation: Operation): Promise<Record<string, unknown>> {
    return sendOperation(() => this.#namespace.get(this.#namespace.idFromName(name)), operation, this.#now);
  }
}
