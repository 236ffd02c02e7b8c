/**
 * `DurableObjectStore` and `SessionDurableObject`: strongly consistent sessions on Cloudflare
 * Workers. Each session lives in its own Durable Object, whose single-threaded storage makes
 * every save a true compare-and-set.
 *
 * @module
 */
import { SessionDataError, SessionTooLargeError, StoreUnavailableError } from "../errors.ts";
import {
  assertStorageKey,
  assertTouchArguments,
  isEnded,
  parseStoredSession,
  type SaveIndex,
  type SaveResult,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
  toStoredSession,
  touchExtends,
} from "../store.ts";
import { userTag } from "../user_tag.ts";
import { v8SerializedStringSize } from "../v8_size.ts";

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
 *   delete: async (key) => values.delete(key),
 *   list: async ({ prefix }) => new Map([...values].filter(([key]) => key.startsWith(prefix))),
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
 * // The alarm removes the record a minute (alarmDelay) after it has expired.
 * assert.equal(alarm, now + 60_000 + SessionDurableObject.alarmDelay);
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
  /** Removes one key. */
  delete(key: string): Promise<unknown>;
  /** Reads every key that starts with `prefix`, with its value, in key order. */
  list(options: { prefix: string }): Promise<Map<string, unknown>>;
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
 *     delete: async (key) => values.delete(key),
 *     list: async ({ prefix }) => new Map([...values].filter(([key]) => key.startsWith(prefix))),
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
 *         delete: async (key) => values.delete(key),
 *         list: async ({ prefix }) => new Map([...values].filter(([key]) => key.startsWith(prefix))),
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

/** One entry of a user's index, as the user's object keeps it. */
interface IndexEntry {
  /** The session's storage key. */
  key: string;
  /** When the entry was last written, by the application's clock (ms). */
  at: number;
  /** Names that write: a clean-up removes the entry only if it is still the one it examined. */
  token: string;
}

/**
 * What the store sends to the object: one operation per request, with the application's clock
 * reading (`now`, milliseconds since the epoch) by which the object decides expiry. `lock`,
 * `unlock` and `owner` go to a session's object; `index`, `keys` and `unindex` to a user's.
 */
type Operation =
  & { now?: number }
  & (
    | { op: "load" }
    | { op: "save"; record: StoredSession; expectedVersion: number | null; user?: string }
    | { op: "destroy" }
    | { op: "touch"; expiresAt: number; version: number }
    | { op: "lock"; owner: string; ttlMs: number }
    | { op: "unlock"; owner: string }
    | { op: "owner" }
    | { op: "index"; key: string; token: string }
    | { op: "keys" }
    | { op: "unindex"; entries: { key: string; token: string }[] }
    | { op: "time" }
  );

const RECORD = "record";
const LEASE = "lease";
/** A user's object keeps one entry per session key, under this prefix. */
const INDEX_PREFIX = "index:";
/** The field of the stored JSON, beside the record's own, that names the user it is indexed under. */
const INDEXED_USER = "indexedUser";
const ORIGIN = "https://websession.invalid/";

/**
 * How long, in milliseconds, an index entry is kept at the least even when its session's
 * object holds no record of that user: the save it was written for may still be on its way.
 */
const INDEX_GRACE_MS = 300_000;

/**
 * Durable Object storage takes a value of at most 128 KiB, as V8 serializes it (the limit of
 * the key-value storage backend; SQLite-backed objects take more, and the store keeps to the
 * lower limit so that a session fits alike on both).
 */
const MAX_VALUE_BYTES = 131_072;

/** A lease as the object keeps it: its owner and when it lapses by the application's clock (ms). */
interface Lease {
  owner: string;
  until: number;
}

/**
 * The Durable Object that holds one session. Export it from your Worker and bind it; each
 * session key gets its own object (`idFromName(key)`), so sessions never contend with each other,
 * and requests to one session run one at a time against its storage: a compare-and-set with no
 * window for a lost update.
 *
 * The record is kept in memory while the object lives and in its storage, as its JSON text
 * (V8-serialized by the runtime: at most 128 KiB, that is 131,066 Latin-1 characters, or 65,533
 * characters when any is not Latin-1, the id of the user it is indexed under included; a larger
 * record is refused with `413` before anything is written).
 *
 * Expiry is decided by one clock, the application's: every operation carries the caller's
 * clock reading, and a record at or past its `expiresAt` by that reading is treated as absent.
 * The alarm only collects garbage: it fires {@linkcode SessionDurableObject.alarmDelay} after
 * `expiresAt` by the object's own clock and deletes the record only if it is still that far past
 * `expiresAt` then (a save or touch since has moved it), so a record the application still counts
 * as live is never deleted unless the two clocks disagree by more than the delay. An abandoned
 * session leaves nothing behind.
 *
 * The same object holds the session's lease (`session.lock()`), in storage of its own beside the
 * record: taking and releasing it are decided in the object like a save, by the caller's clock,
 * and its alarm also removes a lease left behind, `alarmDelay` after it lapsed. An object named
 * `users:<the user's tag>` holds that user's index of sessions instead (see
 * {@linkcode DurableObjectStore}).
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
  /**
   * How long after a record's `expiresAt` (or a lease's end), by the object's own clock, its
   * alarm deletes it, in milliseconds. Reads and saves never return or keep an expired record
   * meanwhile (they decide by the application's clock); the delay only keeps the object's clock,
   * which may run ahead of the application's, from deleting a record the application still
   * counts as live. A subclass may set its own: `static override alarmDelay = 5 * 60_000;`.
   * @default 60_000
   */
  static alarmDelay = 60_000;

  #storage: DurableObjectStorageLike;
  /** `undefined` until read from storage; `null` when there is no record. */
  #record: StoredSession | null | undefined;
  /** The user the record is indexed under, carried to every later write of it. */
  #user: string | undefined;
  /** `undefined` until read from storage; `null` when there is no lease. */
  #lease: Lease | null | undefined;

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
   * @returns A JSON answer: `{ record }` for a load; `{ ok: true }` when a save was written, else
   *   `{ ok: false, current }` with the record as it stands (`null` when absent or expired);
   *   `{ ok }` for a lock; `{ user }` for an owner query; `{ entries }` for a user's keys;
   *   `{ time }` (the object's `Date.now()`) for a time query;
   *   `400` for a malformed request, `413` for a record too large to store.
   */
  async fetch(request: Request): Promise<Response> {
    let operation: Operation;
    try {
      operation = parseOperation(await request.json());
    } catch (error) {
      return Response.json({ error: (error as Error).message }, { status: 400 });
    }
    // The caller's clock decides expiry; an older store that sends none leaves it to this one.
    const now = operation.now ?? Date.now();
    // From here on, only storage is awaited: the runtime delivers no other request to this
    // object while a storage operation is in flight, so read-decide-write is atomic.
    switch (operation.op) {
      case "load":
        return Response.json({ record: await this.#current(now) });
      case "save": {
        const current = await this.#current(now);
        const { record, expectedVersion } = operation;
        if (expectedVersion === null ? current !== null : current?.version !== expectedVersion) {
          // Refused on the record just read, with no await in between: report it.
          return Response.json({ ok: false, current });
        }
        // A record stays indexed under its user until a save names another.
        const user = operation.user ?? (current === null ? undefined : this.#user);
        const text = storedText(record, user);
        const size = v8SerializedStringSize(text);
        if (size > MAX_VALUE_BYTES) {
          return Response.json({ error: tooLargeMessage(size) }, { status: 413 });
        }
        try {
          await this.#write(record, user, text, now);
        } catch (error) {
          if (/too (?:large|big)|larger than|exceeds|maximum/i.test((error as Error)?.message ?? "")) {
            return Response.json({ error: (error as Error).message }, { status: 413 });
          }
          throw error;
        }
        return Response.json({ ok: true });
      }
      case "destroy":
        await this.#dropRecord();
        await this.#schedule();
        return Response.json({ ok: true });
      case "touch": {
        // Decided on the record just read and written with no other request in between: a
        // compare-and-set on the expiry.
        const current = await this.#current(now);
        if (!touchExtends(current, operation.expiresAt, operation.version)) {
          return Response.json({ ok: true, touched: false });
        }
        const record = { ...current!, expiresAt: operation.expiresAt };
        await this.#write(record, this.#user, storedText(record, this.#user), now);
        return Response.json({ ok: true, touched: true });
      }
      case "lock": {
        const held = await this.#heldLease();
        if (held !== null && held.owner !== operation.owner && held.until > now) {
          return Response.json({ ok: false });
        }
        const lease: Lease = { owner: operation.owner, until: now + operation.ttlMs };
        this.#lease = lease;
        await this.#storage.put(LEASE, lease);
        await this.#schedule();
        return Response.json({ ok: true });
      }
      case "unlock":
        if ((await this.#heldLease())?.owner === operation.owner) {
          this.#lease = null;
          await this.#storage.delete(LEASE);
          await this.#schedule();
        }
        return Response.json({ ok: true });
      case "owner": {
        const current = await this.#current(now);
        const owned = current !== null && !isEnded(current) ? this.#user ?? null : null;
        return Response.json({ user: owned });
      }
      case "index": {
        const entry: Omit<IndexEntry, "key"> = { at: now, token: operation.token };
        await this.#storage.put(INDEX_PREFIX + operation.key, entry);
        return Response.json({ ok: true });
      }
      case "keys": {
        const entries: IndexEntry[] = [];
        for (const [name, value] of await this.#storage.list({ prefix: INDEX_PREFIX })) {
          const { at, token } = (value ?? {}) as Partial<IndexEntry>;
          if (typeof at === "number" && typeof token === "string") {
            entries.push({ key: name.slice(INDEX_PREFIX.length), at, token });
          }
        }
        return Response.json({ entries });
      }
      case "time":
        // The object's own clock, for the grace of an ended session (see DurableObjectStore.time).
        return Response.json({ time: Date.now() });
      case "unindex": {
        for (const { key, token } of operation.entries) {
          const stored = (await this.#storage.get(INDEX_PREFIX + key)) as Partial<IndexEntry> | undefined;
          // Only the entry examined: one written since names a save that may be on its way.
          if (stored?.token === token) await this.#storage.delete(INDEX_PREFIX + key);
        }
        return Response.json({ ok: true });
      }
    }
  }

  /**
   * Called by the runtime at the scheduled time, by the object's clock: deletes the record if it
   * is still {@linkcode SessionDurableObject.alarmDelay} past its `expiresAt`, and the lease if it
   * is that far past its end, then schedules itself again for what remains.
   */
  async alarm(): Promise<void> {
    const delay = this.#alarmDelay();
    const now = Date.now();
    const stored = await this.#stored();
    if (stored !== null && stored.expiresAt + delay <= now) {
      const user = this.#user;
      await this.#dropRecord();
      // A tombstone lapsing is the end of an ended session's record, not a session expiring.
      if (!isEnded(stored)) await this.#report(stored, user);
    }
    const lease = await this.#heldLease();
    if (lease !== null && lease.until + delay <= now) {
      this.#lease = null;
      await this.#storage.delete(LEASE);
    }
    await this.#schedule();
  }

  /**
   * Called by {@linkcode SessionDurableObject.alarm} after it deleted a session that expired
   * (idle or absolute timeout) with nobody reading it again: the one place such an expiry can
   * be seen, since this object runs apart from the application and its `onEvent`. Does nothing
   * here; a subclass overrides it to count or audit expiries (write to a queue, Analytics
   * Engine, a log). A tombstone of an ended session lapsing is not reported. What it throws is
   * caught and logged with `console.error`; the deletion stands.
   *
   * @param session When the session was created and when it expired (ms since the epoch), and
   *   the user it was indexed under, if any (the raw id, as the application gave it).
   *
   * @example
   * ```ts
   * import { SessionDurableObject } from "websession/durable-object";
   * import assert from "node:assert/strict";
   *
   * export class Sessions extends SessionDurableObject {
   *   override expired(session: { createdAt: number; expiresAt: number; user?: string }): void {
   *     console.log(`a session of ${session.user ?? "a visitor"} expired`);
   *   }
   * }
   * assert.equal(typeof Sessions.prototype.expired, "function");
   * ```
   */
  expired(_session: { createdAt: number; expiresAt: number; user?: string }): void | Promise<void> {}

  async #report(record: StoredSession, user: string | undefined): Promise<void> {
    try {
      await this.expired({
        createdAt: record.createdAt,
        expiresAt: record.expiresAt,
        ...(user === undefined ? {} : { user }),
      });
    } catch (error) {
      console.error("SessionDurableObject.expired threw:", error);
    }
  }

  /** The record held, expired or not (`null` when none). */
  async #stored(): Promise<StoredSession | null> {
    if (this.#record === undefined) {
      const stored = await this.#storage.get(RECORD);
      // Another request may have filled it while this one waited: keep the newer state.
      if (this.#record === undefined) this.#load(typeof stored === "string" ? stored : null);
    }
    return this.#record ?? null;
  }

  /** Takes the stored text as the state in memory: the record and the user it is indexed under. */
  #load(text: string | null): void {
    const parsed = text === null
      ? null
      : parseStoredSession(text) as (StoredSession & { [INDEXED_USER]?: unknown }) | null;
    if (parsed === null || !(INDEXED_USER in parsed)) {
      this.#record = parsed;
      this.#user = undefined;
      return;
    }
    const { [INDEXED_USER]: user, ...record } = parsed;
    this.#record = record;
    this.#user = typeof user === "string" ? user : undefined;
  }

  /** The lease held, lapsed or not (`null` when none). */
  async #heldLease(): Promise<Lease | null> {
    if (this.#lease === undefined) {
      const stored = (await this.#storage.get(LEASE)) as Partial<Lease> | undefined;
      if (this.#lease === undefined) {
        this.#lease = typeof stored?.owner === "string" && typeof stored.until === "number"
          ? { owner: stored.owner, until: stored.until }
          : null;
      }
    }
    return this.#lease;
  }

  /** The live record by the caller's clock: one at or past its `expiresAt` counts as absent. */
  async #current(now: number): Promise<StoredSession | null> {
    const stored = await this.#stored();
    return stored !== null && stored.expiresAt > now ? stored : null;
  }

  async #write(record: StoredSession, user: string | undefined, text: string, now: number): Promise<void> {
    if (record.expiresAt <= now) {
      await this.#dropRecord();
      await this.#schedule();
      return;
    }
    // The new state is in memory before the first await, so no request can see the old one.
    this.#load(text);
    this.#user = user;
    try {
      await this.#storage.put(RECORD, text);
    } catch (error) {
      this.#record = undefined; // not stored: read storage again next time
      throw error;
    }
    await this.#schedule();
  }

  async #dropRecord(): Promise<void> {
    this.#record = null;
    this.#user = undefined;
    await this.#storage.delete(RECORD);
  }

  /** Sets the alarm for the first of the record and the lease to be collected, or none. */
  async #schedule(): Promise<void> {
    const delay = this.#alarmDelay();
    const record = await this.#stored();
    const lease = await this.#heldLease();
    const due = Math.min(
      record === null ? Infinity : record.expiresAt + delay,
      lease === null ? Infinity : lease.until + delay,
    );
    if (due === Infinity) await this.#storage.deleteAlarm();
    else await this.#storage.setAlarm(due);
  }

  #alarmDelay(): number {
    const delay = (this.constructor as typeof SessionDurableObject).alarmDelay;
    return Number.isFinite(delay) && delay >= 0 ? delay : SessionDurableObject.alarmDelay;
  }
}

/**
 * Keeps each session in its own {@linkcode SessionDurableObject}: strongly consistent and a true
 * compare-and-set on Workers, the store to choose when parallel requests to one session must
 * never lose an update. Each operation is one request to the session's object, routed to
 * wherever that object lives (it is created near the first request that used it).
 *
 * A refused save reports the record it lost to (a `SaveConflict`): the object decides the
 * compare-and-set and answers with the record it decided on, in the same request.
 *
 * Leases (`session.lock()`) live in the session's own object, beside the record: one request to
 * take one, one to release it, each decided in the object by the application's clock.
 *
 * Sessions per user: one object cannot write another atomically, so a save given an `index`
 * first writes the key into the user's object (`idFromName("users:" + userTag(user))`: the
 * user's tag, see the store kit's `userTag`, never the id), then saves: two
 * requests, the index entry first, so the index never misses a saved key. `keysOfUser` reads
 * the user's object, then asks each listed session's object whether its live record is still
 * indexed under that user (one request each, in parallel), and lists only those: a save that
 * was refused, or has not landed yet, is not listed. An entry whose session has ended, expired
 * or changed hands is removed by that listing once it is five minutes old (younger ones may
 * belong to a save still on its way). The record remembers its user, so later saves and touches
 * need no index.
 *
 * Limits: a record is kept as its JSON text, and Durable Object storage takes at most 128 KiB a
 * value as V8 serializes it (one byte a character when all are Latin-1, else two): a larger
 * record is refused with `SessionTooLargeError` before it is sent. Lone surrogates and NUL
 * characters round-trip (JSON escapes them on the way to the object and in its storage).
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
  /**
   * Compare-and-set: yes (one single-threaded object per session). Native expiry: yes (alarm).
   * Leases: yes (in the session's object). Sessions per user: yes (an object per user, written
   * before the save).
   */
  readonly capabilities: StoreCapabilities = { compareAndSet: true, ttl: true, locks: true, users: true };
  #namespace: DurableObjectNamespaceLike;
  #now: () => number;

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
    this.#now = options.now ?? Date.now;
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
   * Compare-and-set, decided inside the session's object. With `index`, the key is first
   * written into the user's index, in the user's object (a second request, before the save).
   *
   * @param key The storage key.
   * @param record The record to store.
   * @param expectedVersion The version the caller loaded, or `null` to create.
   * @param index The user to index the key under, if any.
   * @returns `true` when written. When refused (a version conflict, or the record to update is
   *   gone or expired), a `SaveConflict` with the record the object decided on (`null` when
   *   absent or expired); plain `false` only from an object of an older version that does not
   *   report it.
   * @throws {TypeError} When `key` is not a storage key, the record's version or times are not
   *   finite numbers, or `index.user` is not a string.
   * @throws {SessionDataError} When the data is not a JSON object (a `BigInt`, a cycle).
   * @throws {SessionTooLargeError} When the record is over the object storage's 128 KiB value
   *   limit; nothing is sent.
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
    const answer = await this.#send(
      key,
      user === undefined
        ? { op: "save", record, expectedVersion }
        : { op: "save", record, expectedVersion, user },
    );
    if (answer.ok === true) return true;
    if (!("current" in answer)) return false;
    if (answer.current === null) return { current: null };
    const current = toStoredSession(answer.current);
    if (current === null) throw new StoreUnavailableError("Durable Object answered a malformed record");
    return { current };
  }

  /**
   * Removes a record; no error if it is absent. The session's lease, if any, is left alone.
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
   * Extends a live record's expiry (and its alarm) without changing data or version, when the
   * record is at `version`, is not a tombstone and expires before `expiresAt`: decided and
   * written inside the session's object, which runs one request at a time, so nothing can come
   * between the check and the write.
   *
   * @param key The storage key.
   * @param expiresAt The new expiry, in milliseconds since the epoch.
   * @param version The version the caller read.
   * @returns `true` when extended; `false` when the record is missing, expired, at another
   *   version, ended, or already expires at or after `expiresAt` (nothing is written).
   * @throws {TypeError} When `key` is not a storage key, `expiresAt` is not finite or `version`
   *   is not a positive integer.
   *   An object of an earlier version of this class ignores `version` and answers without
   *   saying: that is `false` too (the record may have been extended, unchecked).
   * @throws {StoreUnavailableError} When the object cannot be reached.
   */
  async touch(key: string, expiresAt: number, version: number): Promise<boolean> {
    assertStorageKey(key);
    assertTouchArguments(expiresAt, version);
    const answer = await this.#send(key, { op: "touch", expiresAt, version });
    return answer.touched === true;
  }

  /**
   * Takes the lease named `key` for `owner`, in the session's object: taken unless another
   * owner's lease is live by the application's clock; the owner that holds it takes it again
   * (extending it). The object runs one request at a time, so of concurrent takers exactly one
   * wins.
   *
   * @param key The storage key of the session.
   * @param owner Who takes it; only this owner can release it.
   * @param ttlMs How long the lease lasts unless released, in milliseconds.
   * @returns `true` when taken, `false` while another owner holds a live lease.
   * @throws {TypeError} When `key` is not a storage key or `owner` is not a string.
   * @throws {RangeError} When `ttlMs` is not a positive finite number.
   * @throws {StoreUnavailableError} When the object cannot be reached.
   * @example
   * ```ts
   * import { DurableObjectStore, SessionDurableObject } from "websession/durable-object";
   * import assert from "node:assert/strict";
   *
   * // One object over a Map (in a Worker: new DurableObjectStore({ namespace: env.SESSIONS })).
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
   * let clock = Date.now();
   * const store = new DurableObjectStore({
   *   namespace: { idFromName: (name) => name, get: () => ({ fetch: (url, init) => object.fetch(new Request(url, init)) }) },
   *   now: () => clock,
   * });
   * const key = "k".repeat(43);
   * assert.equal(await store.lock(key, "request-1", 30_000), true);
   * assert.equal(await store.lock(key, "request-2", 30_000), false);
   * clock += 30_000; // lapsed by the application's clock
   * assert.equal(await store.lock(key, "request-2", 30_000), true);
   * await store.unlock(key, "request-2");
   * assert.equal(values.has("lease"), false);
   * ```
   */
  async lock(key: string, owner: string, ttlMs: number): Promise<boolean> {
    assertStorageKey(key);
    if (typeof owner !== "string") throw new TypeError(`Invalid owner: "${String(owner)}" is not a string`);
    if (typeof ttlMs !== "number" || !(ttlMs > 0) || !Number.isFinite(ttlMs)) {
      throw new RangeError(`Invalid ttlMs: "${String(ttlMs)}" must be a positive number of milliseconds`);
    }
    const answer = await this.#send(key, { op: "lock", owner, ttlMs });
    return answer.ok === true;
  }

  /**
   * Releases the lease named `key` if, and only if, `owner` holds it.
   *
   * @param key The storage key of the session.
   * @param owner The owner that took it.
   * @throws {TypeError} When `key` is not a storage key or `owner` is not a string.
   * @throws {StoreUnavailableError} When the object cannot be reached.
   */
  async unlock(key: string, owner: string): Promise<void> {
    assertStorageKey(key);
    if (typeof owner !== "string") throw new TypeError(`Invalid owner: "${String(owner)}" is not a string`);
    await this.#send(key, { op: "unlock", owner });
  }

  /**
   * The storage keys of a user's sessions: those in the user's index whose objects hold a live
   * record, not ended, indexed under that user. One request to the user's object, and one to its
   * object of the earlier layout (`user:<id>`, which sessions indexed before the upgrade still
   * list; see `OLD_USER_OBJECT` for when that read goes), then one to each listed session's
   * object, in parallel; entries at least five minutes old whose session no longer qualifies are
   * removed from their index on the way (one more request).
   *
   * @param user The user's id.
   * @returns The storage keys, each once.
   * @throws {TypeError} When `user` is not a string.
   * @throws {StoreUnavailableError} When an object cannot be reached or answers badly.
   * @example
   * ```ts
   * import { DurableObjectStore, SessionDurableObject } from "websession/durable-object";
   * import { userTag } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * // One object per name, each over a Map (in a Worker: env.SESSIONS).
   * const objects = new Map<string, SessionDurableObject>();
   * const objectNamed = (name: string) => {
   *   if (!objects.has(name)) {
   *     const values = new Map<string, unknown>();
   *     objects.set(name, new SessionDurableObject({
   *       storage: {
   *         get: async (key) => values.get(key),
   *         put: async (key, value) => void values.set(key, value),
   *         delete: async (key) => values.delete(key),
   *         list: async ({ prefix }) => new Map([...values].filter(([key]) => key.startsWith(prefix))),
   *         setAlarm: async () => {},
   *         deleteAlarm: async () => {},
   *       },
   *     }));
   *   }
   *   return objects.get(name)!;
   * };
   * const store = new DurableObjectStore({
   *   namespace: {
   *     idFromName: (name) => name,
   *     get: (name) => ({ fetch: (url, init) => objectNamed(name as string).fetch(new Request(url, init)) }),
   *   },
   * });
   * const now = Date.now();
   * const record = { data: { user: "ada@example.com" }, version: 1, createdAt: now, expiresAt: now + 60_000 };
   * await store.save("a".repeat(43), record, null, { user: "ada@example.com" });
   * assert.deepEqual(await store.keysOfUser("ada@example.com"), ["a".repeat(43)]);
   * // The user's index lives in an object of its own, named by the user's tag, never the id.
   * assert.ok(objects.has(`users:${await userTag("ada@example.com")}`));
   * ```
   */
  async keysOfUser(user: string): Promise<string[]> {
    if (typeof user !== "string") throw new TypeError(`Invalid user: "${String(user)}" is not a string`);
    const [keys, old] = await Promise.all([
      this.#keysIn(await userObject(user), user),
      this.#keysIn(OLD_USER_OBJECT + user, user),
    ]);
    return [...new Set([...keys, ...old])];
  }

  /** The keys listed in the index object `name` whose session objects hold a live record of `user`. */
  async #keysIn(name: string, user: string): Promise<string[]> {
    const answer = await this.#sendTo(name, { op: "keys" });
    const entries = (Array.isArray(answer.entries) ? answer.entries : []).filter(isIndexEntry);
    const owners = await Promise.all(entries.map((entry) => this.#send(entry.key, { op: "owner" })));
    const now = this.#now();
    const keys: string[] = [];
    const stale: { key: string; token: string }[] = [];
    entries.forEach((entry, i) => {
      if (owners[i]!.user === user) keys.push(entry.key);
      else if (entry.at + INDEX_GRACE_MS <= now) stale.push({ key: entry.key, token: entry.token });
    });
    if (stale.length > 0) {
      // Housekeeping only: an entry left behind is listed no more than its session qualifies.
      await this.#sendTo(name, { op: "unindex", entries: stale }).catch(() => {});
    }
    return keys;
  }

  /**
   * The clock of the session's object: its `Date.now()`, asked with one request to it (the
   * object that holds the record and its tombstone). Asked only to stamp and judge the grace of a
   * session ended by a request (see `SessionStore.time`), never on an ordinary request; expiry
   * stays with the application's clock. An object of an earlier version of this class answers
   * `400`: this throws, and the core falls back to the application's clock.
   *
   * @param key The storage key: the object asked is that session's.
   * @returns Milliseconds since the epoch by the object's clock.
   * @throws {TypeError} When `key` is not a storage key.
   * @throws {StoreUnavailableError} When the object cannot be reached or answers no time.
   * @example
   * ```ts
   * import { DurableObjectStore } from "websession/durable-object";
   * import assert from "node:assert/strict";
   *
   * // In a Worker: new DurableObjectStore({ namespace: env.SESSIONS })
   * const namespace = {
   *   idFromName: (name: string) => name,
   *   get: () => ({ fetch: async () => Response.json({ time: 1_700_000_000_000 }) }),
   * };
   * const store = new DurableObjectStore({ namespace });
   * assert.equal(await store.time("k".repeat(43)), 1_700_000_000_000);
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
  async #sendTo(name: string, operation: Operation): Promise<Record<string, unknown>> {
    let response: DurableObjectResponseLike;
    try {
      const stub = this.#namespace.get(this.#namespace.idFromName(name));
      response = await stub.fetch(ORIGIN + operation.op, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ ...operation, now: this.#now() }),
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

/**
 * The name of the object that holds a user's index: `users:` and the user's tag (the store
 * kit's rule), never the id, so that no object name carries personal data or grows with the id.
 */
async function userObject(user: string): Promise<string> {
  return `users:${await userTag(user)}`;
}

/**
 * The earlier layout named a user's index object `user:` and the raw id; `keysOfUser` still
 * reads it (never writes it) so that sessions indexed before the upgrade are found. The names
 * never collide: "user:" is not a prefix of "users:". Remove that read once the longest session
 * lifetime (the larger of `absoluteTimeout` and `remember.absoluteTimeout`) has passed since the
 * upgrade: every session indexed the old way has then ended, or has been saved again, which
 * indexes it in the user's new object (`withSession` names the user on every save of data
 * holding it).
 */
const OLD_USER_OBJECT = "user:";

function isIndexEntry(value: unknown): value is IndexEntry {
  const entry = value as Partial<IndexEntry> | null;
  return typeof entry === "object" && entry !== null && typeof entry.key === "string" &&
    typeof entry.at === "number" && typeof entry.token === "string";
}

function parseOperation(body: unknown): Operation {
  const value = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  if (value.now !== undefined && !Number.isFinite(value.now)) {
    throw new TypeError(`Invalid operation: now "${String(value.now)}" is not a number`);
  }
  const clock = value.now === undefined ? {} : { now: value.now as number };
  switch (value.op) {
    case "load":
    case "destroy":
    case "owner":
    case "keys":
    case "time":
      return { ...clock, op: value.op };
    case "save": {
      const record = toStoredSession(value.record);
      const expected = value.expectedVersion;
      if (record === null) throw new TypeError("Invalid save: malformed record");
      if (expected !== null && (!Number.isSafeInteger(expected) || (expected as number) < 1)) {
        throw new TypeError(`Invalid save: expectedVersion "${String(expected)}"`);
      }
      if (value.user !== undefined && typeof value.user !== "string") {
        throw new TypeError(`Invalid save: user "${String(value.user)}" is not a string`);
      }
      const save = { ...clock, op: "save" as const, record, expectedVersion: expected as number | null };
      return value.user === undefined ? save : { ...save, user: value.user as string };
    }
    case "touch":
      if (!Number.isFinite(value.expiresAt)) throw new TypeError("Invalid touch: expiresAt is not a number");
      if (!Number.isSafeInteger(value.version) || (value.version as number) < 1) {
        throw new TypeError(`Invalid touch: version "${String(value.version)}"`);
      }
      return {
        ...clock,
        op: "touch",
        expiresAt: value.expiresAt as number,
        version: value.version as number,
      };
    case "lock":
      if (typeof value.owner !== "string") throw new TypeError("Invalid lock: owner is not a string");
      if (typeof value.ttlMs !== "number" || !(value.ttlMs > 0) || !Number.isFinite(value.ttlMs)) {
        throw new TypeError(`Invalid lock: ttlMs "${String(value.ttlMs)}" is not a positive number`);
      }
      return { ...clock, op: "lock", owner: value.owner, ttlMs: value.ttlMs };
    case "unlock":
      if (typeof value.owner !== "string") throw new TypeError("Invalid unlock: owner is not a string");
      return { ...clock, op: "unlock", owner: value.owner };
    case "index":
      if (typeof value.key !== "string" || typeof value.token !== "string") {
        throw new TypeError("Invalid index: key and token must be strings");
      }
      return { ...clock, op: "index", key: value.key, token: value.token };
    case "unindex": {
      const entries = value.entries;
      if (
        !Array.isArray(entries) ||
        !entries.every((e) => typeof e?.key === "string" && typeof e?.token === "string")
      ) {
        throw new TypeError("Invalid unindex: entries must be keys with tokens");
      }
      return {
        ...clock,
        op: "unindex",
        entries: entries.map((e: { key: string; token: string }) => ({ key: e.key, token: e.token })),
      };
    }
    default:
      throw new TypeError(`Invalid operation: "${String(value.op)}"`);
  }
}

function tooLargeMessage(size: number): string {
  return `"${size}" bytes serialized, at most "${MAX_VALUE_BYTES}" fit in one value`;
}

/** The text the object stores: the record's JSON, with the user it is indexed under, if any. */
function storedText(record: StoredSession, user: string | undefined): string {
  const text = JSON.stringify(record);
  return user === undefined ? text : `${text.slice(0, -1)},"${INDEXED_USER}":${JSON.stringify(user)}}`;
}

/**
 * Checks a record before anything is sent: well-formed numbers, JSON data, and a V8-serialized
 * size (with the user it is indexed under) within Durable Object storage's value limit. Returns
 * its JSON text.
 */
function encode(record: StoredSession, user?: string): string {
  const { version, createdAt, expiresAt, data } = record;
  if (!Number.isSafeInteger(version) || !Number.isFinite(createdAt) || !Number.isFinite(expiresAt)) {
    throw new TypeError(
      `Invalid record: version "${version}", createdAt "${createdAt}" and expiresAt "${expiresAt}" must be finite`,
    );
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new SessionDataError("Session data cannot be stored: not a JSON object");
  }
  let text: string;
  try {
    text = storedText(record, user);
  } catch (error) {
    throw new SessionDataError(
      `Session data cannot be stored: not JSON-serializable: ${(error as Error).message}`,
      { cause: error },
    );
  }
  const size = v8SerializedStringSize(text);
  if (size > MAX_VALUE_BYTES) {
    throw new SessionTooLargeError(`Session too large for Durable Object storage: ${tooLargeMessage(size)}`);
  }
  return text;
}
