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
import type { SessionData } from "./store.ts";
import { joinData } from "./session_data.ts";
import {
  appended,
  AUTH_AT_KEY,
  codecOf,
  type Ending,
  isSignInKey,
  kState,
  observe,
  observeFlash,
  record,
  REMEMBER_KEY,
  type SessionState,
} from "./session_state.ts";
import { checkKey, holdValue, readValue, signInKeys, visible } from "./session_values.ts";

// A session's state and operation log (session_state.ts) and its stored data and replay
// (session_data.ts) live beside it; the core imports them from here.

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
   * Deletes a key. Looks at the key, as `has` does: its answer tells whether the value was
   * there, so two concurrent requests can never both take a one-time value (a nonce, an OAuth
   * `state`) by `if (session.delete(key))`; one of them runs again or is refused. To remove a
   * key without looking, `set(key, undefined)`.
   *
   * @param key The key.
   * @returns `true` when a value was removed.
   */
  delete(key: keyof T & string): boolean {
    checkKey(key);
    const s = this.#s;
    observe(s, key);
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
      fn: serializer === undefined ? replayed : codecOf(serializer).onHeld(replayed),
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
    s.renewed = ending;
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
   * Takes a time-limited lock on this session (CherryPy's explicit locking), for a critical section whose
   * side effects lie outside the session: a second request's `lock()` waits (at most `wait`
   * seconds) until this one releases it, at the end of the request at the latest, or until
   * `ttl` seconds pass if this process dies. The session's own data needs no lock: concurrent
   * requests already end as if serial.
   *
   * @param options `ttl` and `wait`, in seconds.
   * @returns The lock.
   * @throws {SessionConfigError} When the store cannot hold a lock (`capabilities.locks`).
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
