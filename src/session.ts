/**
 * The `Session`: a typed, Map-like view of one session's data that records every change in an
 * operation log, so that a save which loses a compare-and-set can be replayed on the fresh
 * record instead of overwriting it.
 *
 * @module
 */
import { createSessionId } from "./id.ts";
import type { SessionData } from "./store.ts";

/** The record key under which flash values are stored. `set` refuses it. */
export const FLASH_KEY = "__flash";

/** One recorded change. `update` keeps the function so that it can run again on fresh data. */
export type Operation =
  | { type: "set"; key: string; value: unknown }
  | { type: "delete"; key: string }
  | { type: "clear" }
  | { type: "update"; key: string; fn: (value: unknown) => unknown }
  | { type: "flash"; key: string; value: unknown }
  | { type: "consume"; key: string };

/** The state `withSession` keeps behind a `Session`. Not part of the public API. */
export interface SessionState {
  id: string;
  isNew: boolean;
  version: number;
  createdAt: number;
  expiresAt: number;
  data: Map<string, unknown>;
  /** Flash values stored by earlier requests, not yet read. */
  flash: Map<string, unknown>;
  /** Flash values set by this request (readable from the next one). */
  flashOut: Map<string, unknown>;
  ops: Operation[];
  /** Storage key (server stores) of the current id, once known. */
  key?: string;
  /** The id was signed ahead of time: its cookie value and storage key. */
  minted?: { id: string; value: string; key: string };
  /** The handler read `session.id` (a minted id that was read is never handed out again). */
  idRead?: boolean;
  /** Storage keys (or sealed ids) of sessions this request destroyed or regenerated away from. */
  doomed: Array<{ id: string; key?: string; createdAt: number; expiresAt: number }>;
  touchRequested: boolean;
  /** Called on every change; `withSession` uses it to save changes made after the response. */
  onChange?: () => void;
  /** Saves now; provided by `withSession`. */
  save: () => Promise<void>;
  /** The clock. */
  now: () => number;
}

/** Symbol under which a `Session` exposes its state to `withSession`. */
export const kState: unique symbol = Symbol("websession.state");

/**
 * Builds a session's data and flash maps from a stored `data` object.
 *
 * @param data The stored data, possibly holding flash values under {@linkcode FLASH_KEY}.
 * @returns The user data and the flash values.
 */
export function splitData(data: SessionData): { data: Map<string, unknown>; flash: Map<string, unknown> } {
  const map = new Map<string, unknown>();
  let flash: Map<string, unknown> | undefined;
  for (const key in data) {
    if (!Object.hasOwn(data, key)) continue;
    const value = data[key];
    if (key === FLASH_KEY) {
      if (typeof value === "object" && value !== null && !Array.isArray(value)) {
        flash = new Map(Object.entries(value));
      }
    } else {
      map.set(key, value);
    }
  }
  return { data: map, flash: flash ?? new Map() };
}

/**
 * Serializes a session's maps into a stored `data` object (own properties only, so keys such as
 * `__proto__` stay plain data).
 *
 * @param state The session state.
 * @returns The object to store.
 */
export function joinData(state: SessionState): SessionData {
  const out = Object.fromEntries(state.data) as SessionData;
  if (state.flash.size > 0 || state.flashOut.size > 0) {
    const flash = Object.fromEntries(state.flash);
    for (const [key, value] of state.flashOut) {
      Object.defineProperty(flash, key, { value, enumerable: true, writable: true, configurable: true });
    }
    Object.defineProperty(out, FLASH_KEY, {
      value: flash,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

/**
 * Replays an operation log on fresh data: what `merge` does after losing a compare-and-set.
 * `update` functions run again on the fresh values.
 *
 * @param ops The log.
 * @param fresh The stored data to replay on.
 * @returns The merged data and flash values.
 */
export function replay(
  ops: readonly Operation[],
  fresh: SessionData,
): { data: Map<string, unknown>; flash: Map<string, unknown> } {
  const { data, flash } = splitData(fresh);
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
        break;
      case "update":
        setValue(data, op.key, op.fn(data.get(op.key)));
        break;
      case "flash":
        flash.set(op.key, op.value);
        break;
      case "consume":
        flash.delete(op.key);
        break;
    }
  }
  return { data, flash };
}

function setValue(map: Map<string, unknown>, key: string, value: unknown): void {
  if (value === undefined) map.delete(key);
  else map.set(key, value);
}

function checkKey(key: unknown): asserts key is string {
  if (typeof key !== "string") {
    throw new TypeError(`Invalid session key: expected a string, got ${typeof key}`);
  }
  if (key === FLASH_KEY) {
    throw new TypeError(`Invalid session key: "${FLASH_KEY}" is reserved for flash values`);
  }
}

/**
 * One request's session. Obtain it with `await getSession(req)` inside a handler wrapped by
 * `withSession`. It behaves like a typed `Map`; every change is logged so that a concurrent
 * save by another request is merged rather than overwritten.
 *
 * Values must be JSON-serializable. Values you `get` are copies read from the store: change
 * them with `set` or `update`, not in place.
 *
 * @typeParam T The shape of the session data.
 * @example
 * ```ts
 * import { getSession, withSession, MemoryStore } from "websession";
 * import assert from "node:assert/strict";
 *
 * const handler = withSession(async (req: Request) => {
 *   const session = await getSession<{ visits: number }>(req);
 *   const visits = session.update("visits", (n = 0) => n + 1);
 *   return new Response(`visit ${visits}`);
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
   * Creates the view of one request's session. `withSession` does this; use `getSession`.
   *
   * @param state Built by `withSession`.
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

  /** How many values the session holds (flash values not counted). */
  get size(): number {
    return this.#s.data.size;
  }

  #changed(op: Operation): void {
    this.#s.ops.push(op);
    this.#s.onChange?.();
  }

  /**
   * Reads a value. A flash value set by an earlier request is returned once and then removed.
   *
   * @param key The key.
   * @returns The value, or `undefined`.
   */
  get<K extends keyof T & string>(key: K): T[K] | undefined {
    const s = this.#s;
    if (s.flash.size > 0 && s.flash.has(key)) {
      const value = s.flash.get(key);
      s.flash.delete(key);
      this.#changed({ type: "consume", key });
      return value as T[K];
    }
    return s.data.get(key) as T[K] | undefined;
  }

  /**
   * Sets a value; `undefined` deletes the key.
   *
   * @param key The key; `"__flash"` is reserved.
   * @param value A JSON-serializable value.
   * @returns This session.
   * @throws {TypeError} When the key is not a string or is reserved.
   */
  set<K extends keyof T & string>(key: K, value: T[K]): this {
    checkKey(key);
    setValue(this.#s.data, key, value);
    this.#changed(value === undefined ? { type: "delete", key } : { type: "set", key, value });
    return this;
  }

  /**
   * Tells whether a key holds a value (or an unread flash value).
   *
   * @param key The key.
   * @returns `true` when present.
   */
  has(key: keyof T & string): boolean {
    return this.#s.data.has(key) || this.#s.flash.has(key);
  }

  /**
   * Deletes a key.
   *
   * @param key The key.
   * @returns `true` when a value was removed.
   */
  delete(key: keyof T & string): boolean {
    checkKey(key);
    const had = this.#s.data.delete(key);
    this.#changed({ type: "delete", key });
    return had;
  }

  /** Removes every value, flash values too. The session itself (and its id) stays. */
  clear(): void {
    this.#s.data.clear();
    this.#s.flash.clear();
    this.#s.flashOut.clear();
    this.#changed({ type: "clear" });
  }

  /**
   * Replaces a value with `fn(current)`. On a conflict with a concurrent request, `fn` runs again
   * on the fresh value, so counters and lists lose nothing. `fn` should be pure.
   *
   * @param key The key.
   * @param fn Computes the new value from the current one (`undefined` when absent).
   * @returns The new value.
   */
  update<K extends keyof T & string, V extends T[K]>(key: K, fn: (value: T[K] | undefined) => V): V {
    checkKey(key);
    if (typeof fn !== "function") throw new TypeError("Invalid update: fn must be a function");
    const value = fn(this.#s.data.get(key) as T[K] | undefined);
    setValue(this.#s.data, key, value);
    this.#changed({ type: "update", key, fn: fn as (value: unknown) => unknown });
    return value;
  }

  /**
   * Sets a flash value: readable once with `get`, from the next request on.
   *
   * @param key The key.
   * @param value A JSON-serializable value.
   */
  flash<K extends keyof T & string>(key: K, value: T[K]): void {
    checkKey(key);
    this.#s.flashOut.set(key, value);
    this.#changed({ type: "flash", key, value });
  }

  /** Iterates the keys. */
  keys(): IterableIterator<keyof T & string> {
    return this.#s.data.keys() as IterableIterator<keyof T & string>;
  }

  /** Iterates the values. */
  values(): IterableIterator<T[keyof T]> {
    return this.#s.data.values() as IterableIterator<T[keyof T]>;
  }

  /** Iterates `[key, value]` pairs. */
  entries(): IterableIterator<[keyof T & string, T[keyof T]]> {
    return this.#s.data.entries() as IterableIterator<[keyof T & string, T[keyof T]]>;
  }

  /** Iterates `[key, value]` pairs. */
  [Symbol.iterator](): IterableIterator<[keyof T & string, T[keyof T]]> {
    return this.entries();
  }

  /** A plain object of the values (flash values not included). */
  toJSON(): Partial<T> {
    return Object.fromEntries(this.#s.data) as Partial<T>;
  }

  /**
   * Gives the session a new id, keeping its data, and deletes the old record when the response
   * is committed. Call it when privileges change (log in) to defeat session fixation.
   */
  regenerate(): void {
    this.#renew();
  }

  /** Moves this request to a fresh id; the old record (if stored) is deleted at commit. */
  #renew(): void {
    const s = this.#s;
    if (!s.isNew) s.doomed.push({ id: s.id, key: s.key, createdAt: s.createdAt, expiresAt: s.expiresAt });
    s.id = createSessionId();
    s.key = undefined;
    s.isNew = true;
    s.version = 0;
    s.createdAt = s.now();
    s.ops = [];
    s.onChange?.();
  }

  /**
   * Ends the session: its record is deleted and its cookie expired when the response is
   * committed. Values set afterwards start a new session with a new id.
   */
  destroy(): void {
    const s = this.#s;
    s.data.clear();
    s.flash.clear();
    s.flashOut.clear();
    this.#renew();
  }

  /** Extends the session's expiry on this request even if `touchAfter` has not passed. */
  touch(): void {
    this.#s.touchRequested = true;
    this.#s.onChange?.();
  }

  /**
   * Saves now instead of when the response is committed (for example before a long stream).
   * Later changes are saved at commit as usual.
   *
   * @throws {SessionConflictError} When the conflict policy gives up.
   * @throws {StoreUnavailableError} When the store fails.
   */
  save(): Promise<void> {
    return this.#s.save();
  }
}
