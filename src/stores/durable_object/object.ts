/**
 * `SessionDurableObject`, the object side of the Durable Object store: it runs in the object,
 * answers the operations `DurableObjectStore` sends, and collects expired records by alarm.
 *
 * @module
 */
import { isEnded, parseStoredSession, type StoredSession, touchExtends } from "../../store.ts";
import { v8SerializedStringSize } from "../../v8_size.ts";
import {
  INDEX_PREFIX,
  INDEXED_USER,
  type IndexEntry,
  LOCK,
  MAX_VALUE_BYTES,
  type Operation,
  parseOperation,
  RECORD,
  type StoredLock,
  storedText,
  tooLargeMessage,
} from "./protocol.ts";

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

/** A JSON answer. */
function answer(body: unknown, status = 200): Response {
  return Response.json(body, { status });
}

/**
 * The Durable Object that holds one session (`idFromName(key)`), or, when named
 * `users:<the user's tag>`, one user's index of sessions. Requests to one object run one at a
 * time against its storage, so a save is a compare-and-set with no window for a lost update.
 * The record is stored as its JSON text (at most 128 KiB V8-serialized, the indexed user
 * included; larger is refused with `413` before anything is written); the session's lock
 * (`session.lock()`, held until its `ttlMs` runs out) is stored beside it. Expiry is decided by the caller's clock reading, sent
 * with every operation; the alarm only collects garbage,
 * {@linkcode SessionDurableObject.alarmDelay} late. It speaks a small JSON protocol over `fetch`
 * (not RPC), so it needs no import from `cloudflare:workers` and runs at any compatibility date.
 * Docs: `docs/stores/durable-object.md`.
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
   * How long after a record's `expiresAt` (or a lock's end), by the object's own clock, its
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
  /** `undefined` until read from storage; `null` when there is no lock. */
  #storedLock: StoredLock | null | undefined;

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
   * Runs one store operation sent by `DurableObjectStore`.
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
      return answer({ error: (error as Error).message }, 400);
    }
    // The caller's clock decides expiry; an older store that sends none leaves it to this one.
    const now = operation.now ?? Date.now();
    // From here on, only storage is awaited: the runtime delivers no other request to this
    // object while a storage operation is in flight, so read-decide-write is atomic.
    switch (operation.op) {
      case "load":
        return answer({ record: await this.#current(now) });
      case "save":
        return await this.#save(operation, now);
      case "destroy":
        await this.#dropRecord();
        await this.#schedule();
        return answer({ ok: true });
      case "touch":
        return await this.#touch(operation, now);
      case "lock":
        return await this.#lock(operation, now);
      case "unlock":
        return await this.#unlock(operation);
      case "owner":
        return await this.#owner(now);
      case "index":
        await this.#storage.put(INDEX_PREFIX + operation.key, { at: now, token: operation.token });
        return answer({ ok: true });
      case "keys":
        return await this.#keys();
      case "time":
        // The object's own clock, for the grace of an ended session (see DurableObjectStore.time).
        return answer({ time: Date.now() });
      case "unindex":
        return await this.#unindex(operation);
    }
  }

  async #save(operation: Extract<Operation, { op: "save" }>, now: number): Promise<Response> {
    const current = await this.#current(now);
    const { record, expectedVersion } = operation;
    if (expectedVersion === null ? current !== null : current?.version !== expectedVersion) {
      // Refused on the record just read, with no await in between: report it.
      return answer({ ok: false, current });
    }
    // A record stays indexed under its user until a save names another.
    const user = operation.user ?? (current === null ? undefined : this.#user);
    const text = storedText(record, user);
    const size = v8SerializedStringSize(text);
    if (size > MAX_VALUE_BYTES) return answer({ error: tooLargeMessage(size) }, 413);
    try {
      await this.#write(record, user, text, now);
    } catch (error) {
      if (/too (?:large|big)|larger than|exceeds|maximum/i.test((error as Error)?.message ?? "")) {
        return answer({ error: (error as Error).message }, 413);
      }
      throw error;
    }
    return answer({ ok: true });
  }

  /** A compare-and-set on the expiry: decided on the record just read, with no request between. */
  async #touch(operation: Extract<Operation, { op: "touch" }>, now: number): Promise<Response> {
    const current = await this.#current(now);
    if (!touchExtends(current, operation.expiresAt, operation.version)) {
      return answer({ ok: true, touched: false });
    }
    const record = { ...current!, expiresAt: operation.expiresAt };
    await this.#write(record, this.#user, storedText(record, this.#user), now);
    return answer({ ok: true, touched: true });
  }

  async #lock(operation: Extract<Operation, { op: "lock" }>, now: number): Promise<Response> {
    const held = await this.#heldLock();
    if (held !== null && held.owner !== operation.owner && held.until > now) return answer({ ok: false });
    const lock: StoredLock = { owner: operation.owner, until: now + operation.ttlMs };
    this.#storedLock = lock;
    await this.#storage.put(LOCK, lock);
    await this.#schedule();
    return answer({ ok: true });
  }

  async #unlock(operation: Extract<Operation, { op: "unlock" }>): Promise<Response> {
    if ((await this.#heldLock())?.owner === operation.owner) {
      this.#storedLock = null;
      await this.#storage.delete(LOCK);
      await this.#schedule();
    }
    return answer({ ok: true });
  }

  /** The user a live, not ended record is indexed under (`null` when none). */
  async #owner(now: number): Promise<Response> {
    const current = await this.#current(now);
    return answer({ user: current !== null && !isEnded(current) ? this.#user ?? null : null });
  }

  async #keys(): Promise<Response> {
    const entries: IndexEntry[] = [];
    for (const [name, value] of await this.#storage.list({ prefix: INDEX_PREFIX })) {
      const { at, token } = (value ?? {}) as Partial<IndexEntry>;
      if (typeof at === "number" && typeof token === "string") {
        entries.push({ key: name.slice(INDEX_PREFIX.length), at, token });
      }
    }
    return answer({ entries });
  }

  async #unindex(operation: Extract<Operation, { op: "unindex" }>): Promise<Response> {
    for (const { key, token } of operation.entries) {
      const stored = (await this.#storage.get(INDEX_PREFIX + key)) as Partial<IndexEntry> | undefined;
      // Only the entry examined: one written since names a save that may be on its way.
      if (stored?.token === token) await this.#storage.delete(INDEX_PREFIX + key);
    }
    return answer({ ok: true });
  }

  /**
   * Called by the runtime at the scheduled time, by the object's clock: deletes the record if it
   * is still {@linkcode SessionDurableObject.alarmDelay} past its `expiresAt`, and the lock if it
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
    const lock = await this.#heldLock();
    if (lock !== null && lock.until + delay <= now) {
      this.#storedLock = null;
      await this.#storage.delete(LOCK);
    }
    await this.#schedule();
  }

  /**
   * Called by {@linkcode SessionDurableObject.alarm} after it deleted a session that expired
   * with nobody reading it again (the object has no `onEvent`). Does nothing here; a subclass
   * overrides it to count or audit expiries. Not called for a tombstone lapsing. What it throws
   * is caught and logged with `console.error`; the deletion stands.
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

  /** The lock held, lapsed or not (`null` when none). */
  async #heldLock(): Promise<StoredLock | null> {
    if (this.#storedLock === undefined) {
      const stored = (await this.#storage.get(LOCK)) as Partial<StoredLock> | undefined;
      if (this.#storedLock === undefined) {
        this.#storedLock = typeof stored?.owner === "string" && typeof stored.until === "number"
          ? { owner: stored.owner, until: stored.until }
          : null;
      }
    }
    return this.#storedLock;
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

  /** Sets the alarm for the first of the record and the lock to be collected, or none. */
  async #schedule(): Promise<void> {
    const delay = this.#alarmDelay();
    const record = await this.#stored();
    const lock = await this.#heldLock();
    const due = Math.min(
      record === null ? Infinity : record.expiresAt + delay,
      lock === null ? Infinity : lock.until + delay,
    );
    if (due === Infinity) await this.#storage.deleteAlarm();
    else await this.#storage.setAlarm(due);
  }

  #alarmDelay(): number {
    const delay = (this.constructor as typeof SessionDurableObject).alarmDelay;
    return Number.isFinite(delay) && delay >= 0 ? delay : SessionDurableObject.alarmDelay;
  }
}
