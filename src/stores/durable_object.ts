/**
 * `DurableObjectStore` and `SessionDurableObject`: strongly consistent sessions on Cloudflare
 * Workers. Each session lives in its own Durable Object, whose single-threaded storage makes
 * every save a true compare-and-set.
 *
 * @module
 */
import { SessionTooLargeError, StoreUnavailableError } from "../errors.ts";
import {
  assertStorageKey,
  parseStoredSession,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
  toStoredSession,
} from "../store.ts";

/**
 * The part of a Durable Object's `ctx.storage` that {@linkcode SessionDurableObject} uses.
 *
 * @example
 * ```ts
 * import {
 *   type DurableObjectStorageLike,
 *   DurableObjectStore,
 *   SessionDurableObject,
 * } from "websession/durable-object";
 * import assert from "node:assert/strict";
 *
 * // In a Worker this is the object's `ctx.storage`; a Map stands in for it here.
 * const values = new Map<string, unknown>();
 * let alarm: number | null = null;
 * const storage: DurableObjectStorageLike = {
 *   get: async (key) => values.get(key),
 *   put: async (key, value) => void values.set(key, value),
 *   deleteAll: async () => values.clear(),
 *   setAlarm: async (time) => void (alarm = time),
 *   deleteAlarm: async () => void (alarm = null),
 * };
 * const object = new SessionDurableObject({ storage });
 * const store = new DurableObjectStore({
 *   namespace: {
 *     idFromName: (name) => name,
 *     get: () => ({ fetch: (url, init) => object.fetch(new Request(url, init)) }),
 *   },
 * });
 * const key = "k".repeat(43);
 * const now = Date.now();
 * await store.save(key, { data: { a: 1 }, version: 1, createdAt: now, expiresAt: now + 60_000 }, null);
 * assert.equal(values.size, 1);
 * assert.equal(alarm, now + 60_000); // the alarm removes the record once it has expired
 * await store.destroy(key);
 * assert.equal(values.size, 0);
 * assert.equal(alarm, null);
 * ```
 */
export interface DurableObjectStorageLike {
  /** Reads a value; `undefined` when absent. */
  get(key: string): Promise<unknown>;
  /** Writes a value. */
  put(key: string, value: unknown): Promise<void>;
  /** Removes every key of this object. */
  deleteAll(): Promise<void>;
  /** Schedules `alarm()` at a time in milliseconds since the epoch. */
  setAlarm(scheduledTime: number): Promise<void>;
  /** Cancels the scheduled alarm. */
  deleteAlarm(): Promise<void>;
}

/**
 * The part of a Durable Object's state (`ctx`) that {@linkcode SessionDurableObject} uses.
 *
 * @example
 * ```ts
 * import {
 *   type DurableObjectStateLike,
 *   DurableObjectStore,
 *   SessionDurableObject,
 * } from "websession/durable-object";
 * import assert from "node:assert/strict";
 *
 * // The runtime passes the object's `ctx`; only its storage is used (a Map stands in for it here).
 * const values = new Map<string, unknown>();
 * const state: DurableObjectStateLike = {
 *   storage: {
 *     get: async (key) => values.get(key),
 *     put: async (key, value) => void values.set(key, value),
 *     deleteAll: async () => values.clear(),
 *     setAlarm: async () => {},
 *     deleteAlarm: async () => {},
 *   },
 * };
 * const storeOver = (object: SessionDurableObject) =>
 *   new DurableObjectStore({
 *     namespace: {
 *       idFromName: (name) => name,
 *       get: () => ({ fetch: (url, init) => object.fetch(new Request(url, init)) }),
 *     },
 *   });
 * const key = "k".repeat(43);
 * const now = Date.now();
 * const record = { data: { a: 1 }, version: 1, createdAt: now, expiresAt: now + 60_000 };
 * await storeOver(new SessionDurableObject(state)).save(key, record, null);
 * // The runtime may evict an idle object; a new instance over the same state reads the record back.
 * assert.deepEqual(await storeOver(new SessionDurableObject(state)).load(key), record);
 * ```
 */
export interface DurableObjectStateLike {
  /** The object's transactional storage. */
  storage: DurableObjectStorageLike;
}

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
 *     deleteAll: async () => values.clear(),
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
 * assert.equal(await store.save(key, { ...record, version: 2 }, 5), false); // decided in the object
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
 * import {
 *   type DurableObjectNamespaceLike,
 *   DurableObjectStore,
 *   SessionDurableObject,
 * } from "websession/durable-object";
 * import assert from "node:assert/strict";
 *
 * // In a Worker this is `env.SESSIONS`. Here: one SessionDurableObject per name, in this process.
 * const objects = new Map<string, SessionDurableObject>();
 * function objectNamed(name: string): SessionDurableObject {
 *   let object = objects.get(name);
 *   if (object === undefined) {
 *     const values = new Map<string, unknown>();
 *     object = new SessionDurableObject({
 *       storage: {
 *         get: async (key) => values.get(key),
 *         put: async (key, value) => void values.set(key, value),
 *         deleteAll: async () => values.clear(),
 *         setAlarm: async () => {},
 *         deleteAlarm: async () => {},
 *       },
 *     });
 *     objects.set(name, object);
 *   }
 *   return object;
 * }
 * const namespace: DurableObjectNamespaceLike<string> = {
 *   idFromName: (name) => name,
 *   get: (id) => ({ fetch: (url, init) => objectNamed(id).fetch(new Request(url, init)) }),
 * };
 * const store = new DurableObjectStore({ namespace });
 * const now = Date.now();
 * const record = { data: {}, version: 1, createdAt: now, expiresAt: now + 60_000 };
 * await store.save("a".repeat(43), record, null);
 * await store.save("b".repeat(43), record, null);
 * assert.deepEqual([...objects.keys()], ["a".repeat(43), "b".repeat(43)]); // one object per session
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
  /** The namespace binding of a class that extends or re-exports {@linkcode SessionDurableObject}. */
  namespace: DurableObjectNamespaceLike;
}

/** What the store sends to the object: one operation per request. */
type Operation =
  | { op: "load" }
  | { op: "save"; record: StoredSession; expectedVersion: number | null }
  | { op: "destroy" }
  | { op: "touch"; expiresAt: number };

const RECORD = "record";
const ORIGIN = "https://websession.invalid/";

/**
 * The Durable Object that holds one session. Export it from your Worker and bind it; each
 * session key gets its own object (`idFromName(key)`), so sessions never contend with each other,
 * and requests to one session run one at a time against its storage: a compare-and-set with no
 * window for a lost update.
 *
 * The record is kept in memory while the object lives and in its storage. An alarm at
 * `expiresAt` deletes an expired record (reads never return one past it meanwhile), so an
 * abandoned session leaves nothing behind.
 *
 * It speaks a small JSON protocol over `fetch` (not RPC), so it needs no import from
 * `cloudflare:workers` and runs at any compatibility date.
 *
 * @example
 * ```ts
 * // worker.ts, with wrangler.toml:
 * //   [[durable_objects.bindings]]
 * //   name = "SESSIONS"
 * //   class_name = "SessionDurableObject"
 * //   [[migrations]]
 * //   tag = "v1"
 * //   new_classes = ["SessionDurableObject"]
 * import { SessionDurableObject } from "websession/durable-object";
 * import assert from "node:assert/strict";
 *
 * export { SessionDurableObject };
 * assert.equal(typeof SessionDurableObject.prototype.fetch, "function");
 * assert.equal(typeof SessionDurableObject.prototype.alarm, "function");
 * ```
 */
export class SessionDurableObject {
  #storage: DurableObjectStorageLike;
  /** `undefined` until read from storage; `null` when there is no record. */
  #record: StoredSession | null | undefined;

  /**
   * Called by the Workers runtime.
   *
   * @param state The object's state (`ctx`), whose `storage` holds the record.
   * @param _env The Worker's bindings (unused).
   */
  constructor(state: DurableObjectStateLike, _env?: unknown) {
    this.#storage = state.storage;
  }

  /**
   * Runs one store operation sent by {@linkcode DurableObjectStore}.
   *
   * @param request A `POST` whose JSON body names the operation.
   * @returns A JSON answer; `400` for a malformed request, `413` for a record too large to store.
   */
  async fetch(request: Request): Promise<Response> {
    let operation: Operation;
    try {
      operation = parseOperation(await request.json());
    } catch (error) {
      return Response.json({ error: (error as Error).message }, { status: 400 });
    }
    // From here on, only storage is awaited: the runtime delivers no other request to this
    // object while a storage operation is in flight, so read-decide-write is atomic.
    const current = await this.#current();
    switch (operation.op) {
      case "load":
        return Response.json({ record: current });
      case "save": {
        const { record, expectedVersion } = operation;
        if (expectedVersion === null ? current !== null : current?.version !== expectedVersion) {
          return Response.json({ ok: false });
        }
        try {
          await this.#write(record);
        } catch (error) {
          if (/too (?:large|big)|larger than|exceeds|maximum/i.test((error as Error)?.message ?? "")) {
            return Response.json({ error: (error as Error).message }, { status: 413 });
          }
          throw error;
        }
        return Response.json({ ok: true });
      }
      case "destroy":
        await this.#clear();
        return Response.json({ ok: true });
      case "touch":
        if (current !== null) await this.#write({ ...current, expiresAt: operation.expiresAt });
        return Response.json({ ok: true });
    }
  }

  /** Called by the runtime at the scheduled time: deletes the record if it has expired. */
  async alarm(): Promise<void> {
    const current = await this.#current();
    if (current !== null) await this.#storage.setAlarm(current.expiresAt);
  }

  /** The live record; an expired one is deleted on the way. */
  async #current(): Promise<StoredSession | null> {
    if (this.#record === undefined) {
      const stored = await this.#storage.get(RECORD);
      // Another request may have filled it while this one waited: keep the newer state.
      if (this.#record === undefined) {
        this.#record = typeof stored === "string" ? parseStoredSession(stored) : null;
      }
    }
    if (this.#record !== null && this.#record.expiresAt <= Date.now()) await this.#clear();
    return this.#record;
  }

  async #write(record: StoredSession): Promise<void> {
    if (record.expiresAt <= Date.now()) {
      await this.#clear();
      return;
    }
    const text = JSON.stringify(record);
    // The new state is in memory before the first await, so no request can see the old one.
    this.#record = parseStoredSession(text);
    try {
      await this.#storage.put(RECORD, text);
    } catch (error) {
      this.#record = undefined; // not stored: read storage again next time
      throw error;
    }
    await this.#storage.setAlarm(record.expiresAt);
  }

  async #clear(): Promise<void> {
    this.#record = null;
    await this.#storage.deleteAlarm();
    await this.#storage.deleteAll();
  }
}

/**
 * Keeps each session in its own {@linkcode SessionDurableObject}: strongly consistent and a true
 * compare-and-set on Workers, the store to choose when parallel requests to one session must
 * never lose an update. Each operation is one request to the session's object, routed to
 * wherever that object lives (it is created near the first request that used it).
 *
 * There is no `count()`: sessions live in separate objects, and nothing lists them.
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
  /** Compare-and-set: yes (one single-threaded object per session). Native expiry: yes (alarm). */
  readonly capabilities: StoreCapabilities = { compareAndSet: true, ttl: true };
  #namespace: DurableObjectNamespaceLike;

  /**
   * Creates a store that sends each session's operations to its own object in `namespace`.
   *
   * @param options See {@linkcode DurableObjectStoreOptions}.
   * @throws {TypeError} When `namespace` does not look like a Durable Object namespace binding.
   */
  constructor(options: DurableObjectStoreOptions) {
    const namespace = options?.namespace as Partial<DurableObjectNamespaceLike> | undefined;
    if (typeof namespace?.idFromName !== "function" || typeof namespace.get !== "function") {
      throw new TypeError("Invalid namespace: expected a Durable Object namespace binding");
    }
    this.#namespace = namespace as DurableObjectNamespaceLike;
  }

  /**
   * Reads a record.
   *
   * @param key The storage key.
   * @returns The record, or `null` when missing or expired.
   * @throws {TypeError} When `key` is not a storage key.
   * @throws {StoreUnavailableError} When the object cannot be reached or answers badly.
   */
  async load(key: string): Promise<StoredSession | null> {
    assertStorageKey(key);
    const answer = await this.#send(key, { op: "load" });
    if (answer.record === null) return null;
    const record = toStoredSession(answer.record);
    if (record === null) throw new StoreUnavailableError("Durable Object answered a malformed record");
    return record;
  }

  /**
   * Compare-and-set, decided inside the session's object.
   *
   * @param key The storage key.
   * @param record The record to store.
   * @param expectedVersion The version the caller loaded, or `null` to create.
   * @returns `false` on a version conflict or when the record to update is gone.
   * @throws {TypeError} When `key` is not a storage key.
   * @throws {SessionTooLargeError} When the record is over the object storage's value limit.
   * @throws {StoreUnavailableError} When the object cannot be reached or answers badly.
   */
  async save(key: string, record: StoredSession, expectedVersion: number | null): Promise<boolean> {
    assertStorageKey(key);
    const answer = await this.#send(key, { op: "save", record, expectedVersion });
    return answer.ok === true;
  }

  /**
   * Removes a record (and everything its object stored); no error if it is absent.
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
   * Moves an existing record's expiry (and its alarm) without changing data or version; does
   * nothing for a missing record.
   *
   * @param key The storage key.
   * @param expiresAt The new expiry, in milliseconds since the epoch.
   * @throws {TypeError} When `key` is not a storage key.
   * @throws {StoreUnavailableError} When the object cannot be reached.
   */
  async touch(key: string, expiresAt: number): Promise<void> {
    assertStorageKey(key);
    await this.#send(key, { op: "touch", expiresAt });
  }

  async #send(key: string, operation: Operation): Promise<{ record?: unknown; ok?: unknown }> {
    let response: DurableObjectResponseLike;
    try {
      const stub = this.#namespace.get(this.#namespace.idFromName(key));
      response = await stub.fetch(ORIGIN + operation.op, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(operation),
      });
    } catch (error) {
      throw new StoreUnavailableError(
        `Durable Object ${operation.op} failed: ${(error as Error)?.message ?? String(error)}`,
        { cause: error },
      );
    }
    let body: unknown;
    try {
      body = await response.json();
    } catch (error) {
      throw new StoreUnavailableError(
        `Durable Object ${operation.op} answered ${response.status} without JSON`,
        {
          cause: error,
        },
      );
    }
    const answer = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
    if (response.status === 413) {
      throw new SessionTooLargeError(`Session too large for Durable Object storage: ${String(answer.error)}`);
    }
    if (!response.ok) {
      throw new StoreUnavailableError(
        `Durable Object ${operation.op} answered ${response.status}: ${String(answer.error ?? "")}`,
      );
    }
    return answer;
  }
}

function parseOperation(body: unknown): Operation {
  const value = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  switch (value.op) {
    case "load":
    case "destroy":
      return { op: value.op };
    case "save": {
      const record = toStoredSession(value.record);
      const expected = value.expectedVersion;
      if (record === null) throw new TypeError("Invalid save: malformed record");
      if (expected !== null && (!Number.isSafeInteger(expected) || (expected as number) < 1)) {
        throw new TypeError(`Invalid save: expectedVersion "${String(expected)}"`);
      }
      return { op: "save", record, expectedVersion: expected as number | null };
    }
    case "touch":
      if (!Number.isFinite(value.expiresAt)) throw new TypeError("Invalid touch: expiresAt is not a number");
      return { op: "touch", expiresAt: value.expiresAt as number };
    default:
      throw new TypeError(`Invalid operation: "${String(value.op)}"`);
  }
}
