/**
 * The `Session`: a typed, Map-like view of one session's data. It records what the handler did
 * (an operation log) and what it looked at (its observations), so that a save that loses a
 * compare-and-set to a concurrent request can be replayed on the fresh record when, and only
 * when, that replay is the same as running the two requests one after the other.
 *
 * @module
 */
import { createSessionId } from "./id.ts";
import type { LockOptions, SessionLock } from "./lock.ts";
import type { SessionData, StoredSession } from "./store.ts";
import type { SessionSerializer } from "./serializer.ts";
import { SessionDataError } from "./errors.ts";
import { META_KEY } from "./metadata.ts";

/** The record key under which flash values are stored. `set` refuses it. */
export const FLASH_KEY = "__flash";

/**
 * The record key naming the `serializer` format its values are in (absent: plain JSON). `set`
 * refuses it.
 */
export const SERIALIZER_KEY = "__serializer";

/**
 * The record key holding the log in's "remember me" choice (`true` or `false`; absent: none made),
 * set by `regenerate({ remember })`. `set` refuses it; `keys()`, `size` and `toJSON()` leave it out.
 */
export const REMEMBER_KEY = "__remember";

/**
 * The record key holding when the user last authenticated (milliseconds since the epoch), set by
 * `markAuthenticated()`. `set` refuses it; `keys()`, `size` and `toJSON()` leave it out.
 */
export const AUTH_AT_KEY = "__authAt";

/** Whether a data key is one the session keeps for the sign-in flow, not the handler's data. */
export function isSignInKey(key: string): boolean {
  return key === REMEMBER_KEY || key === AUTH_AT_KEY;
}

/** How many of a data map's keys are sign-in keys. */
function signInKeys(data: Map<string, unknown>): number {
  return (data.has(REMEMBER_KEY) ? 1 : 0) + (data.has(AUTH_AT_KEY) ? 1 : 0);
}

function* visible<V>(data: Map<string, unknown>, of: (entry: [string, unknown]) => V): IterableIterator<V> {
  for (const entry of data) if (!isSignInKey(entry[0])) yield of(entry);
}

/** One recorded change. `update` keeps the function so that it can run again on fresh data. */
export type Operation =
  | { type: "set"; key: string; value: unknown }
  | { type: "delete"; key: string }
  | { type: "clear" }
  | { type: "update"; key: string; fn: (value: unknown) => unknown }
  | { type: "flash"; key: string; value: unknown }
  | { type: "consume"; key: string };

/**
 * What the request did to the record it loaded: kept going (`undefined`), or ended it with
 * `destroy()` or `regenerate()`.
 */
export type Ending = "destroy" | "regenerate";

/**
 * What a `Session` needs from whoever opened it (withSession, openSession): told of every change
 * and asked to save. One object per backend kind, shared by every request: no closures per
 * request.
 */
export interface SessionHost {
  /** A change was made (the host saves late changes after the response). */
  changed(state: SessionState): void;
  /** `session.save()`. */
  save(state: SessionState): Promise<void>;
  /** `session.lock()`. */
  lock(state: SessionState, options?: LockOptions): Promise<SessionLock>;
}

/** The state behind a `Session`. Internal; not part of the public API. */
export interface SessionState {
  host: SessionHost;
  id: string;
  isNew: boolean;
  version: number;
  createdAt: number;
  expiresAt: number;
  /** The record as loaded (or as last saved by this request); `undefined` for a new session. */
  base?: StoredSession;
  /** Storage key (server stores) of the record in `base`, once known. */
  key?: string;
  data: Map<string, unknown>;
  /** Flash values stored by earlier requests, not yet read. */
  flash: Map<string, unknown>;
  /** Flash values set by this request (readable from the next one), once there is one. */
  flashOut: Map<string, unknown> | undefined;
  /** Everything done to the data since `base`. */
  ops: Operation[];
  /** Data keys whose value the handler looked at, as loaded. */
  reads?: string[];
  /** Flash keys the handler looked at or consumed. */
  flashReads?: string[];
  /** The handler looked at every key (`keys()`, `size`, `toJSON()`, iteration). */
  readAll: boolean;
  /** Keys whose current value no longer depends on `base` (written blindly by `set`/`delete`). */
  blind?: Set<string>;
  /** `clear()` or `destroy()` ran: no current value depends on `base`. */
  cleared: boolean;
  /** The request destroyed or regenerated the record in `base`. */
  ending?: Ending;
  touchRequested: boolean;
  /** Leases held (`lock()`), released at the end of the request. */
  leases?: SessionLock[];
  /** The id was signed ahead of time: its cookie value and storage key. */
  minted?: { id: string; value: string; key: string };
  /** The handler read `session.id` (a minted id that was read is never handed out again). */
  idRead: boolean;
  /** The clock, in milliseconds since the epoch. */
  now: () => number;
  /** Metadata the next write stores under `META_KEY` (server stores with `userKey`), not data. */
  meta?: SessionData;
  /** The `serializer` option: `data` and `flash` then hold values as it serialized them. */
  serializer?: SessionSerializer;
}

/** Symbol under which a `Session` exposes its state to the core. */
export const kState: unique symbol = Symbol("websession.state");

/**
 * The incoming flash values of a session that has none, shared: a session only ever reads,
 * deletes or clears its incoming flash values, so one empty map serves every request.
 */
class NoFlash extends Map<string, unknown> {
  override set(): this {
    throw new TypeError("The shared empty flash map cannot hold values");
  }
}
const NO_FLASH: Map<string, unknown> = new NoFlash();

/**
 * Builds a session's data and flash maps from a stored `data` object.
 *
 * @param data The stored data, possibly holding flash values under {@linkcode FLASH_KEY}.
 * @param serializer The `serializer` option: the maps then hold serialized values. Data
 *   written without it (plain JSON, before it was set) is serialized here.
 * @returns The user data and the flash values.
 * @throws {SessionDataError} When the data names a serializer format other than `serializer`'s
 *   (or any, when there is none): it cannot be read as it was meant.
 */
export function splitData(
  data: SessionData,
  serializer?: SessionSerializer,
): { data: Map<string, unknown>; flash: Map<string, unknown> } {
  const convert = serializer === undefined ? undefined : converterOf(data, serializer);
  const map = new Map<string, unknown>();
  let flash: Map<string, unknown> | undefined;
  for (const key in data) {
    if (!Object.hasOwn(data, key)) continue;
    const value = data[key];
    if (key === META_KEY) {
      continue; // metadata, not data: the core writes it anew with each save
    } else if (key === FLASH_KEY) {
      if (typeof value === "object" && value !== null && !Array.isArray(value)) {
        flash = new Map(Object.entries(value));
        if (convert !== undefined) { for (const [k, v] of flash) flash.set(k, convert(v)); }
      }
    } else if (key === SERIALIZER_KEY) {
      if (serializer === undefined) throw formatMismatch(value, undefined);
    } else {
      map.set(key, convert === undefined ? value : convert(value));
    }
  }
  return { data: map, flash: flash ?? NO_FLASH };
}

/** The format name a serializer writes under {@linkcode SERIALIZER_KEY}. */
function formatOf(serializer: SessionSerializer): string {
  return serializer.format ?? "custom";
}

/**
 * How stored values become what a session with `serializer` holds: as they are when the data
 * is in its format; serialized when the data is plain JSON written before it was set.
 */
function converterOf(
  data: SessionData,
  serializer: SessionSerializer,
): ((value: unknown) => unknown) | undefined {
  if (!Object.hasOwn(data, SERIALIZER_KEY)) return (value) => serializer.serialize(value);
  const format = data[SERIALIZER_KEY];
  if (format !== formatOf(serializer)) throw formatMismatch(format, serializer);
  return undefined;
}

function formatMismatch(format: unknown, serializer: SessionSerializer | undefined): SessionDataError {
  return new SessionDataError(
    `Session data is in the serializer format ${JSON.stringify(format)}, but ${
      serializer === undefined ? "no serializer" : `the serializer "${formatOf(serializer)}"`
    } is set: set the \`serializer\` option that wrote it`,
  );
}

function define(target: SessionData, key: string, value: unknown): void {
  // defineProperty keeps keys such as `__proto__` plain data.
  if (key === "__proto__") {
    Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    target[key] = value;
  }
}

/**
 * Serializes data and flash maps into a stored `data` object (own properties only, so keys
 * such as `__proto__` stay plain data).
 *
 * @param data The values.
 * @param flash Unread flash values of earlier requests.
 * @param flashOut Flash values set by this request.
 * @param serializer The `serializer` option: the values are serialized already; the object
 *   names its format under {@linkcode SERIALIZER_KEY}.
 * @returns The object to store.
 */
export function joinData(
  data: Map<string, unknown>,
  flash?: Map<string, unknown>,
  flashOut?: Map<string, unknown>,
  serializer?: SessionSerializer,
): SessionData {
  const out: SessionData = {};
  if (serializer !== undefined) out[SERIALIZER_KEY] = formatOf(serializer);
  for (const [key, value] of data) define(out, key, value);
  if ((flash !== undefined && flash.size > 0) || (flashOut !== undefined && flashOut.size > 0)) {
    const all: SessionData = {};
    if (flash !== undefined) { for (const [key, value] of flash) define(all, key, value); }
    if (flashOut !== undefined) { for (const [key, value] of flashOut) define(all, key, value); }
    define(out, FLASH_KEY, all);
  }
  return out;
}

/** The stored data this state would write now. */
export function stateData(s: SessionState): SessionData {
  return withMeta(joinData(s.data, s.flash, s.flashOut, s.serializer), s.meta);
}

/** Adds the metadata a save writes (see `metadata.ts`) to the data it stores. */
export function withMeta(data: SessionData, meta: SessionData | undefined): SessionData {
  if (meta !== undefined) data[META_KEY] = meta;
  return data;
}

/**
 * Replays an operation log on fresh data: what a merge does after losing a compare-and-set.
 * `update` functions run again on the fresh values.
 *
 * @param ops The log.
 * @param fresh The stored data to replay on.
 * @param serializer The `serializer` option (the log holds values it serialized).
 * @returns The merged data and flash values (incoming and set by the log).
 * @throws {SessionDataError} When `fresh` is in another serializer format (see `splitData`).
 */
export function replay(
  ops: readonly Operation[],
  fresh: SessionData,
  serializer?: SessionSerializer,
): { data: Map<string, unknown>; flash: Map<string, unknown>; flashOut: Map<string, unknown> } {
  const { data, flash } = splitData(fresh, serializer);
  const flashOut = new Map<string, unknown>();
  for (const op of ops) {
    switch (op.type) {
      case "set":
        data.set(op.key, op.value);
        break;
      case "delete":
        data.delete(op.key);
        break;
      case "clear":
        data.clear();
        flash.clear();
        flashOut.clear();
        break;
      case "update":
        setValue(data, op.key, op.fn(data.get(op.key)));
        break;
      case "flash":
        flashOut.set(op.key, op.value);
        break;
      case "consume":
        flash.delete(op.key);
        break;
    }
  }
  return { data, flash, flashOut };
}

function same(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  return JSON.stringify(a) === JSON.stringify(b);
}

function flashOf(data: SessionData): Record<string, unknown> | undefined {
  const flash = Object.hasOwn(data, FLASH_KEY) ? data[FLASH_KEY] : undefined;
  return typeof flash === "object" && flash !== null ? flash as Record<string, unknown> : undefined;
}

function valueOf(data: SessionData | undefined, key: string): unknown {
  return data !== undefined && Object.hasOwn(data, key) ? data[key] : undefined;
}

/**
 * `data` as a session under `serializer` holds it, for comparing: as it is when written in that
 * format; plain JSON written before the serializer was set, with its values serialized and its
 * format named. A record that a concurrent request only rewrote in the serializer's format (the
 * switch to it) then compares equal to the plain one this request loaded. A record in another
 * format is returned as it is (the merge refuses it).
 */
function heldForm(data: SessionData, serializer: SessionSerializer): SessionData {
  if (Object.hasOwn(data, SERIALIZER_KEY)) return data;
  try {
    const held = splitData(data, serializer);
    return joinData(held.data, held.flash, undefined, serializer);
  } catch {
    return data;
  }
}

/**
 * Tells whether everything the handler looked at has the same value in `fresh` as in the
 * record it loaded: then replaying its operation log on `fresh` is the same as running it after
 * whatever wrote `fresh`, a serial order.
 *
 * @param s The request's session state.
 * @param loaded The data the handler saw (`base.data`, or `{}` for a new session).
 * @param fresh The data now stored.
 */
export function observationsHold(s: SessionState, loaded: SessionData, fresh: SessionData): boolean {
  if (s.serializer !== undefined) {
    loaded = heldForm(loaded, s.serializer);
    fresh = heldForm(fresh, s.serializer);
  }
  if (s.readAll) {
    for (const key in loaded) {
      if (
        key !== FLASH_KEY && key !== META_KEY && !isSignInKey(key) && Object.hasOwn(loaded, key) &&
        !same(loaded[key], valueOf(fresh, key))
      ) {
        return false;
      }
    }
    for (const key in fresh) {
      if (
        key !== FLASH_KEY && key !== META_KEY && !isSignInKey(key) && Object.hasOwn(fresh, key) &&
        !Object.hasOwn(loaded, key)
      ) {
        return false;
      }
    }
  } else if (s.reads !== undefined) {
    for (const key of s.reads) if (!same(valueOf(loaded, key), valueOf(fresh, key))) return false;
  }
  if (s.flashReads !== undefined) {
    const before = flashOf(loaded);
    const after = flashOf(fresh);
    for (const key of s.flashReads) if (!same(valueOf(before, key), valueOf(after, key))) return false;
  }
  return true;
}

/** Whether the request changed the session's data (as opposed to only reading or touching it). */
export function hasWrites(s: SessionState): boolean {
  return s.ops.length > 0 || s.ending !== undefined;
}

function setValue(map: Map<string, unknown>, key: string, value: unknown): void {
  if (value === undefined) map.delete(key);
  else map.set(key, value);
}

function checkKey(key: unknown): asserts key is string {
  if (typeof key !== "string") {
    throw new TypeError(`Invalid session key: expected a string, got ${typeof key}`);
  }
  if (
    key === FLASH_KEY || key === "__ended" || key === META_KEY || isSignInKey(key) || key === SERIALIZER_KEY
  ) {
    throw new TypeError(`Invalid session key: "${key}" is reserved`);
  }
}

/**
 * Checks that a value is plain JSON that every store keeps as it is: no `undefined` inside
 * arrays, no `NaN` or `Infinity`, no `BigInt`, functions, symbols, class instances (`Date`,
 * `Map`, ...) or cycles.
 */
function checkValue(value: unknown, key: string, depth = 0, seen?: Set<object>): void {
  switch (typeof value) {
    case "string":
    case "boolean":
      return;
    case "number":
      if (Number.isFinite(value)) return;
      throw new TypeError(`Invalid session value for "${key}": ${value} is not a JSON number`);
    case "object": {
      if (value === null) return;
      if (depth > 64) throw new TypeError(`Invalid session value for "${key}": nested deeper than 64 levels`);
      seen ??= new Set();
      if (seen.has(value)) throw new TypeError(`Invalid session value for "${key}": it contains a cycle`);
      seen.add(value);
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const item = value[i];
          if (item === undefined) {
            throw new TypeError(`Invalid session value for "${key}": an array holds undefined`);
          }
          checkValue(item, key, depth + 1, seen);
        }
      } else {
        const proto = Object.getPrototypeOf(value);
        if (proto !== Object.prototype && proto !== null) {
          throw new TypeError(
            `Invalid session value for "${key}": a ${
              proto?.constructor?.name ?? "class"
            } instance is not plain JSON`,
          );
        }
        for (const field in value) {
          const item = (value as Record<string, unknown>)[field];
          if (item !== undefined) checkValue(item, key, depth + 1, seen);
        }
      }
      seen.delete(value);
      return;
    }
    default:
      throw new TypeError(`Invalid session value for "${key}": a ${typeof value} is not JSON`);
  }
}

/**
 * `list` with `item` added. A list that is empty becomes `[item]`: an empty array's first
 * `push` reserves room for 17 items, and a request's logs mostly hold one or two.
 */
function appended<T>(list: T[] | undefined, item: T): T[] {
  if (list === undefined || list.length === 0) return [item];
  list.push(item);
  return list;
}

function observe(s: SessionState, key: string): void {
  if (s.cleared || s.readAll || s.blind?.has(key)) return;
  s.reads = appended(s.reads, key);
}

function observeFlash(s: SessionState, key: string): void {
  if (s.cleared) return;
  s.flashReads = appended(s.flashReads, key);
}

function record(s: SessionState, op: Operation): void {
  s.ops = appended(s.ops, op);
  s.host.changed(s);
}

/** A held value as the handler sees it: under a `serializer`, deserialized (a fresh copy). */
function readValue(s: SessionState, value: unknown): unknown {
  const serializer = s.serializer;
  return serializer === undefined || value === undefined ? value : serializer.deserialize(value);
}

/** A value as the session holds it: checked to be plain JSON, or serialized by the `serializer`. */
function holdValue(s: SessionState, key: string, value: unknown): unknown {
  if (s.serializer === undefined) {
    checkValue(value, key);
    return value;
  }
  return s.serializer.serialize(value);
}

/** An `update` function on held (serialized) values, for the replay on a fresh record. */
function onHeld(serializer: SessionSerializer, fn: (value: unknown) => unknown): (held: unknown) => unknown {
  return function updateHeld(held: unknown): unknown {
    const next = fn(held === undefined ? undefined : serializer.deserialize(held));
    return next === undefined ? undefined : serializer.serialize(next);
  };
}

/**
 * One request's session. Obtain it with `await getSession(req)` inside a handler wrapped by
 * `withSession`, or with `openSession(...)`. It behaves like a typed `Map`.
 *
 * Concurrent requests of one session end as if they had run one after another, or one of them
 * is refused with `SessionConflictError` (409). To make that cheap, the session notes what the
 * handler looked at: `get` and `has` look at one key; `keys`, `values`, `entries`, `size`,
 * iteration and `toJSON` look at all of them. `update(key, fn)` is not a look: on a conflict
 * `fn` runs again on the fresh value. `peek` reads without looking, for a value the response
 * shows but nothing written depends on.
 *
 * Values must be plain JSON, or what the `serializer` option takes (`richValues`: `Date`, `Map`,
 * `Set`, `URL`, `BigInt`, ...). Values you `get` are the session's own: change them with `set`
 * or `update`, not in place. Under a `serializer`, every read returns a fresh copy, so a change
 * in place is never stored.
 *
 * @typeParam T The shape of the session data.
 * @example
 * ```ts
 * import { getSession, withSession, MemoryStore } from "websession";
 * import assert from "node:assert/strict";
 *
 * const handler = withSession(async (req: Request) => {
 *   const session = await getSession<{ visits: number }>(req);
 *   session.update("visits", (n = 0) => n + 1);
 *   return new Response(`visit ${session.get("visits")}`);
 * }, { store: new MemoryStore(), secrets: "a secret of at least thirty-two characters" });
 *
 * const first = await handler(new Request("https://example.com/"));
 * assert.equal(await first.text(), "visit 1");
 * const cookie = first.headers.get("set-cookie")!.split(";")[0]!;
 * const second = await handler(new Request("https://example.com/", { headers: { cookie } }));
 * assert.equal(await second.text(), "visit 2");
 * ```
 */
export class Session<T extends object = SessionData> {
  #s: SessionState;

  /**
   * Creates the view of one request's session. The core does this; use `getSession`.
   *
   * @param state Built by the core.
   */
  constructor(state: SessionState) {
    this.#s = state;
  }

  /** @internal */
  get [kState](): SessionState {
    return this.#s;
  }

  /** The session id (32 base64url characters). Changes on `regenerate()` and `destroy()`. */
  get id(): string {
    this.#s.idRead = true;
    return this.#s.id;
  }

  /** `true` until the session has been stored: a first visit, or after regenerate/destroy. */
  get isNew(): boolean {
    return this.#s.isNew;
  }

  /** The stored version this session was read at (0 for a new session). */
  get version(): number {
    return this.#s.version;
  }

  /** When the session expires unless used again, in milliseconds since the epoch. */
  get expiresAt(): number {
    return this.#s.expiresAt;
  }

  /** How many values the session holds (flash values not counted). Looks at every key. */
  get size(): number {
    this.#s.readAll = true;
    return this.#s.data.size - signInKeys(this.#s.data);
  }

  /**
   * Reads a value; the merge treats it as something this request depends on. A flash value set
   * by an earlier request is returned once and then removed: of concurrent requests, only one
   * gets it.
   *
   * @param key The key.
   * @returns The value, or `undefined`.
   */
  get<K extends keyof T & string>(key: K): T[K] | undefined {
    const s = this.#s;
    if (isSignInKey(key)) return undefined; // read with `remembered` and `authenticatedAt`
    if (s.flash.size > 0 && s.flash.has(key)) {
      const value = s.flash.get(key);
      s.flash.delete(key);
      observeFlash(s, key);
      record(s, { type: "consume", key });
      return readValue(s, value) as T[K];
    }
    observe(s, key);
    return readValue(s, s.data.get(key)) as T[K] | undefined;
  }

  /**
   * Reads a value without making it part of what this request depends on: if a concurrent
   * request changes it, this request's own changes still merge. For values a page shows but
   * does not base a write on. Does not consume flash values.
   *
   * @param key The key.
   * @returns The value, or `undefined`.
   */
  peek<K extends keyof T & string>(key: K): T[K] | undefined {
    if (isSignInKey(key)) return undefined;
    return readValue(this.#s, this.#s.data.get(key)) as T[K] | undefined;
  }

  /**
   * Sets a value; `undefined` deletes the key.
   *
   * @param key The key; `"__flash"` and `"__ended"` are reserved.
   * @param value A plain JSON value (or one the `serializer` option takes).
   * @returns This session.
   * @throws {TypeError} When the key is not a string or is reserved, or the value is not plain
   *   JSON (or the `serializer` refuses it).
   */
  set<K extends keyof T & string>(key: K, value: T[K]): this {
    checkKey(key);
    const s = this.#s;
    let held: unknown;
    if (value === undefined) {
      s.data.delete(key);
    } else {
      held = holdValue(s, key, value);
      s.data.set(key, held);
    }
    (s.blind ??= new Set()).add(key);
    record(s, value === undefined ? { type: "delete", key } : { type: "set", key, value: held });
    return this;
  }

  /**
   * Tells whether a key holds a value (or an unread flash value). Looks at the key.
   *
   * @param key The key.
   * @returns `true` when present.
   */
  has(key: keyof T & string): boolean {
    if (isSignInKey(key)) return false;
    const s = this.#s;
    observe(s, key);
    if (s.flash.size > 0) observeFlash(s, key);
    return s.data.has(key) || s.flash.has(key);
  }

  /**
   * Deletes a key.
   *
   * @param key The key.
   * @returns `true` when a value was removed.
   */
  delete(key: keyof T & string): boolean {
    checkKey(key);
    const s = this.#s;
    const had = s.data.delete(key);
    (s.blind ??= new Set()).add(key);
    record(s, { type: "delete", key });
    return had;
  }

  /** Removes every value, flash values too. The session itself (and its id) stays. */
  clear(): void {
    const s = this.#s;
    s.data.clear();
    s.flash.clear();
    s.flashOut?.clear();
    s.cleared = true;
    record(s, { type: "clear" });
  }

  /**
   * Replaces a value with `fn(current)`. This is an operation, not a look: if a concurrent
   * request changed the value, `fn` runs again on the fresh value when this request is saved,
   * so counters and lists lose nothing. `fn` must be pure and return plain JSON. Its return
   * value here is computed on the value as loaded; read the key with `get` after the save (or in
   * the response) to depend on the stored result.
   *
   * @param key The key.
   * @param fn Computes the new value from the current one (`undefined` when absent).
   * @returns The new value.
   * @throws {TypeError} When `fn` is not a function or returns a value that is not plain JSON.
   */
  update<K extends keyof T & string, V extends T[K]>(key: K, fn: (value: T[K] | undefined) => V): V {
    checkKey(key);
    if (typeof fn !== "function") throw new TypeError("Invalid update: fn must be a function");
    const s = this.#s;
    const value = fn(readValue(s, s.data.get(key)) as T[K] | undefined);
    if (value === undefined) {
      s.data.delete(key);
    } else {
      s.data.set(key, holdValue(s, key, value));
    }
    const serializer = s.serializer;
    const replayed = fn as (value: unknown) => unknown;
    record(s, {
      type: "update",
      key,
      fn: serializer === undefined ? replayed : onHeld(serializer, replayed),
    });
    return value;
  }

  /**
   * Sets a flash value: readable once with `get`, from the next request on.
   *
   * @param key The key.
   * @param value A plain JSON value.
   * @throws {TypeError} When the key is reserved or the value is not plain JSON.
   */
  flash<K extends keyof T & string>(key: K, value: T[K]): void {
    checkKey(key);
    const held = holdValue(this.#s, key, value);
    (this.#s.flashOut ??= new Map()).set(key, held);
    record(this.#s, { type: "flash", key, value: held });
  }

  /** Iterates the keys. Looks at every key. */
  keys(): IterableIterator<keyof T & string> {
    this.#s.readAll = true;
    const data = this.#s.data;
    const keys = signInKeys(data) === 0 ? data.keys() : visible(data, (entry) => entry[0]);
    return keys as IterableIterator<keyof T & string>;
  }

  /** Iterates the values. Looks at every key. */
  values(): IterableIterator<T[keyof T]> {
    this.#s.readAll = true;
    const s = this.#s;
    const data = s.data;
    const values = s.serializer !== undefined
      ? visible(data, (entry) => readValue(s, entry[1]))
      : signInKeys(data) === 0
      ? data.values()
      : visible(data, (entry) => entry[1]);
    return values as IterableIterator<T[keyof T]>;
  }

  /** Iterates `[key, value]` pairs. Looks at every key. */
  entries(): IterableIterator<[keyof T & string, T[keyof T]]> {
    this.#s.readAll = true;
    const s = this.#s;
    const data = s.data;
    const entries = s.serializer !== undefined
      ? visible(data, (entry): [string, unknown] => [entry[0], readValue(s, entry[1])])
      : signInKeys(data) === 0
      ? data.entries()
      : visible(data, (entry) => entry);
    return entries as IterableIterator<[keyof T & string, T[keyof T]]>;
  }

  /** Iterates `[key, value]` pairs. Looks at every key. */
  [Symbol.iterator](): IterableIterator<[keyof T & string, T[keyof T]]> {
    return this.entries();
  }

  /** A plain object of the values (flash values not included). Looks at every key. */
  toJSON(): Partial<T> {
    const s = this.#s;
    s.readAll = true;
    const out = joinData(s.serializer === undefined ? s.data : new Map(this.entries()));
    if (signInKeys(this.#s.data) > 0) {
      delete out[REMEMBER_KEY];
      delete out[AUTH_AT_KEY];
    }
    return out as Partial<T>;
  }

  /**
   * Gives the session a new id, keeping its data; the old record ends when the response is
   * committed (a request still in flight with the old cookie can no longer change it). Call it
   * when privileges change (log in) to defeat session fixation. The absolute timeout counts
   * from here.
   *
   * @param options `remember`: the log in's "remember me" choice, kept by every later write,
   * refresh and `regenerate()` until `clear()`, `destroy()` or another choice. `true`: a
   * persistent cookie (`Max-Age`) and the `remember` timeouts (30 days idle, 90 days absolute by
   * default). `false`: a browser-session cookie (no `Max-Age` or `Expires`, RFC 6265bis §5.6)
   * and the top-level timeouts. Left out: the choice made before stays (none: `cookie.persistent`
   * and the top-level timeouts). Guide: docs/guides/sign-in.md.
   * @throws {TypeError} When `remember` is given and is not a boolean.
   */
  regenerate(options?: { remember?: boolean }): void {
    const remember = options?.remember;
    if (remember !== undefined) {
      if (typeof remember !== "boolean") {
        throw new TypeError(`Invalid remember: expected true or false, got ${typeof remember}`);
      }
      this.#setSignIn(REMEMBER_KEY, remember);
    }
    this.#renew("regenerate");
  }

  /**
   * The log in's "remember me" choice (see `regenerate()`): `true`, `false`, or `undefined` when
   * none was made. Looks at it (a concurrent change counts as a conflict for this request).
   */
  get remembered(): boolean | undefined {
    const s = this.#s;
    observe(s, REMEMBER_KEY);
    const value = s.data.get(REMEMBER_KEY);
    return typeof value === "boolean" ? value : undefined;
  }

  /**
   * Records that the user authenticated now (a log in, or a password entered again for a
   * sensitive action): `requireRecentAuth` measures from here. Kept across `regenerate()`;
   * `clear()` and `destroy()` forget it. A write like `set`: concurrent requests merge it.
   */
  markAuthenticated(): void {
    this.#setSignIn(AUTH_AT_KEY, this.#s.now());
  }

  /**
   * When the user last authenticated (`markAuthenticated()`), in milliseconds since the epoch;
   * `undefined` when never. Looks at it.
   */
  get authenticatedAt(): number | undefined {
    const s = this.#s;
    observe(s, AUTH_AT_KEY);
    const value = s.data.get(AUTH_AT_KEY);
    return typeof value === "number" ? value : undefined;
  }

  /** A blind write of a sign-in key: replayed as it is on a merge, like `set`. */
  #setSignIn(key: string, value: boolean | number): void {
    const s = this.#s;
    s.data.set(key, value);
    (s.blind ??= new Set()).add(key);
    record(s, { type: "set", key, value });
  }

  #renew(ending: Ending): void {
    const s = this.#s;
    if (s.base !== undefined && s.ending === undefined) s.ending = ending;
    else if (ending === "destroy" && s.ending !== undefined) s.ending = "destroy";
    s.id = createSessionId();
    s.isNew = true;
    s.version = 0;
    s.createdAt = s.now();
    s.minted = undefined;
    s.idRead = false;
    s.host.changed(s);
  }

  /**
   * Ends the session: its record ends and its cookie is expired when the response is
   * committed. Values set afterwards start a new session with a new id.
   */
  destroy(): void {
    const s = this.#s;
    s.data.clear();
    s.flash.clear();
    s.flashOut?.clear();
    s.cleared = true;
    s.ops = appended(s.ops, { type: "clear" });
    this.#renew("destroy");
  }

  /** Extends the session's expiry on this request even if `touchAfter` has not passed. */
  touch(): void {
    this.#s.touchRequested = true;
    this.#s.host.changed(this.#s);
  }

  /**
   * Takes a lease on this session (CherryPy's explicit locking), for a critical section whose
   * side effects lie outside the session: a second request's `lock()` waits (at most `wait`
   * seconds) until this one releases it, at the end of the request at the latest, or until
   * `ttl` seconds pass if this process dies. The session's own data needs no lock: concurrent
   * requests already end as if serial.
   *
   * @param options `ttl` and `wait`, in seconds.
   * @returns The lease.
   * @throws {SessionConfigError} When the store cannot hold a lease (`capabilities.locks`).
   * @throws {SessionConflictError} When another request held it past `wait`.
   * @throws {StoreUnavailableError} When the store fails.
   */
  lock(options?: LockOptions): Promise<SessionLock> {
    return this.#s.host.lock(this.#s, options);
  }

  /**
   * Saves now instead of when the response is committed (for example before a long stream).
   * Later changes are saved at commit as usual. What this saves stays saved: the request is
   * then no longer run again on a conflict, and if its later changes conflict with a concurrent
   * request they alone are refused (`SessionConflictError`, 409).
   *
   * @throws {SessionConflictError} When the change cannot be merged with a concurrent one.
   * @throws {StoreUnavailableError} When the store fails.
   */
  save(): Promise<void> {
    return this.#s.host.save(this.#s);
  }
}
