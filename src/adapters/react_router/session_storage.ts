/**
 * React Router's `SessionStorage` interface over any websession store (`createSessionStorage`),
 * for apps that call `getSession(cookieHeader)` / `commitSession(session)` themselves. Exported
 * from `websession/react-router`; see docs/frameworks/react-router.md.
 *
 * @module
 */
import type { SessionOptions } from "../../options.ts";
import { commitSession as commit, openSession, optionsOf } from "../../open_session.ts";
import type { Session } from "../../session.ts";
import { kState } from "../../session_state.ts";
import type { SessionData } from "../../store.ts";
import { isSessionError, plainErrorResponse } from "../response.ts";

/**
 * React Router's `FlashSessionData`: the data, and flash values under `__flash_<name>__`.
 *
 * @example
 * ```ts
 * import type { FlashSessionData } from "websession/react-router";
 * import assert from "node:assert/strict";
 *
 * const data: FlashSessionData<{ user: string }, { error: string }> = { user: "ada", __flash_error__: "try again" };
 * assert.equal(data.__flash_error__, "try again");
 * ```
 */
export type FlashSessionData<Data, FlashData> = Partial<
  Data & { [Key in keyof FlashData as `__flash_${Key & string}__`]: FlashData[Key] }
>;

/**
 * React Router's `Session` interface, as `createSessionStorage` returns it. Values must be plain
 * JSON (a `Date` is refused with a `TypeError`; store its `toISOString()`).
 *
 * @typeParam Data The session data.
 * @typeParam FlashData The flash values.
 * @example
 * ```ts
 * import { MemoryStore } from "websession";
 * import { createSessionStorage, type RouterSession } from "websession/react-router";
 * import assert from "node:assert/strict";
 *
 * const storage = createSessionStorage<{ user: string }, { notice: string }>({
 *   store: new MemoryStore(),
 *   secrets: "a secret of at least thirty-two characters",
 * });
 * const session: RouterSession<{ user: string }, { notice: string }> = await storage.getSession(null);
 * session.set("user", "ada");
 * session.flash("notice", "saved");
 * assert.deepEqual(session.data, { user: "ada", __flash_notice__: "saved" });
 * assert.equal(session.id, ""); // until stored
 * ```
 */
export interface RouterSession<Data = SessionData, FlashData = Data> {
  /** The session id; the empty string until the session is stored, as React Router has it. */
  readonly id: string;
  /** Every value, flash values under `__flash_<name>__` (reading it makes every key observed). */
  readonly data: FlashSessionData<Data, FlashData>;
  /** Whether `name` holds a value or an unread flash value. */
  has(name: (keyof Data | keyof FlashData) & string): boolean;
  /** Reads a value; a flash value is returned once. */
  get<Key extends (keyof Data | keyof FlashData) & string>(
    name: Key,
  ):
    | (Key extends keyof Data ? Data[Key] : undefined)
    | (Key extends keyof FlashData ? FlashData[Key] : undefined)
    | undefined;
  /** Sets a value. */
  set<Key extends keyof Data & string>(name: Key, value: Data[Key]): void;
  /** Sets a value readable once, from the next request on. */
  flash<Key extends keyof FlashData & string>(name: Key, value: FlashData[Key]): void;
  /** Removes a value (and an unread flash value of that name). */
  unset(name: (keyof Data | keyof FlashData) & string): void;
}

/**
 * The session `createSessionStorage` gives: React Router's `Session`, plus two methods of
 * websession's own that React Router's interface lacks.
 *
 * @typeParam Data The session data.
 * @typeParam FlashData The flash values.
 * @example
 * ```ts
 * import { MemoryStore } from "websession";
 * import { createSessionStorage } from "websession/react-router";
 * import assert from "node:assert/strict";
 *
 * const { getSession, commitSession } = createSessionStorage<{ cart: string[]; user: string }>({
 *   store: new MemoryStore(),
 *   secrets: "a secret of at least thirty-two characters",
 * });
 * const session = await getSession(null);
 * session.update("cart", (cart = []) => [...cart, "book"]); // replayed if a concurrent request adds too
 * const cookie = (await commitSession(session)).split(";")[0]!;
 *
 * const login = await getSession(cookie);
 * login.regenerate(); // log in: a new id, the old cookie ends
 * login.set("user", "ada");
 * const renewed = (await commitSession(login)).split(";")[0]!;
 * assert.notEqual(renewed, cookie);
 * assert.deepEqual((await getSession(renewed)).get("cart"), ["book"]);
 * assert.equal((await getSession(cookie)).get("cart"), undefined);
 * ```
 */
export interface StorageSession<Data = SessionData, FlashData = Data> extends RouterSession<Data, FlashData> {
  /**
   * Replaces a value with `fn(current)`. On a conflict with a concurrent request `fn` runs again
   * on the fresh value, so counters and lists lose nothing (`get` then `set` would be refused
   * with `409` instead).
   */
  update<Key extends keyof Data & string>(
    name: Key,
    fn: (value: Data[Key] | undefined) => Data[Key],
  ): Data[Key];
  /**
   * Gives the session a new id at the next commit, keeping its data, and ends the old one: call it
   * on log in (session fixation).
   */
  regenerate(): void;
}

/**
 * React Router's `SessionStorage` interface.
 *
 * @typeParam Data The session data.
 * @typeParam FlashData The flash values.
 * @example
 * ```ts
 * import type { SessionStorage } from "react-router";
 * import { MemoryStore } from "websession";
 * import { createSessionStorage, type RouterSessionStorage } from "websession/react-router";
 * import assert from "node:assert/strict";
 *
 * type Data = { user: string };
 * const storage: RouterSessionStorage<Data> = createSessionStorage<Data>({
 *   store: new MemoryStore(),
 *   secrets: "a secret of at least thirty-two characters",
 * });
 * const asReactRouters: SessionStorage<Data> = storage; // fits where React Router's storage went
 * assert.equal(await asReactRouters.commitSession(await asReactRouters.getSession()), ""); // empty: no cookie
 * ```
 */
export interface RouterSessionStorage<Data = SessionData, FlashData = Data> {
  /** Opens the session a `Cookie` header names (a new, empty one when none). */
  getSession(cookieHeader?: string | null, options?: unknown): Promise<StorageSession<Data, FlashData>>;
  /** Saves the session; resolves to the `Set-Cookie` value to send (`""`: nothing to send). */
  commitSession(session: RouterSession<Data, FlashData>, options?: unknown): Promise<string>;
  /** Ends the session; resolves to the `Set-Cookie` value that clears its cookie. */
  destroySession(session: RouterSession<Data, FlashData>, options?: unknown): Promise<string>;
}

const kInner: unique symbol = Symbol("websession.reactRouterSession");

class StorageSessionImpl {
  readonly [kInner]: Session<SessionData>;

  constructor(session: Session<SessionData>) {
    this[kInner] = session;
  }

  get id(): string {
    const session = this[kInner];
    return session.isNew ? "" : session.id;
  }

  get data(): SessionData {
    const session = this[kInner];
    const data = session.toJSON() as SessionData;
    const state = session[kState];
    addFlash(data, state.flash);
    if (state.flashOut !== undefined) addFlash(data, state.flashOut);
    return data;
  }

  has(name: string): boolean {
    return this[kInner].has(name);
  }

  get(name: string): unknown {
    return this[kInner].get(name);
  }

  set(name: string, value: unknown): void {
    this[kInner].set(name, value);
  }

  flash(name: string, value: unknown): void {
    this[kInner].flash(name, value);
  }

  update(name: string, fn: (value: unknown) => unknown): unknown {
    return this[kInner].update(name, fn);
  }

  regenerate(): void {
    this[kInner].regenerate();
  }

  unset(name: string): void {
    const session = this[kInner];
    if (session[kState].flash.has(name)) session.get(name); // consumes the unread flash value
    session.delete(name);
  }
}

function addFlash(data: SessionData, flash: Map<string, unknown>): void {
  for (const [key, value] of flash) {
    Object.defineProperty(data, `__flash_${key}__`, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
}

function innerOf(session: unknown, method: string): Session<SessionData> {
  const inner = (session as StorageSessionImpl | null)?.[kInner];
  if (inner === undefined) {
    throw new TypeError(`${method}() needs a session from this storage's getSession()`);
  }
  return inner;
}

/**
 * React Router's `SessionStorage` over any websession server store: the same
 * `getSession(cookieHeader)` / `commitSession(session)` / `destroySession(session)` calls as
 * `createCookieSessionStorage` or `createMemorySessionStorage`, with websession's signed ids,
 * expiry, and compare-and-set: concurrent requests of one session merge their changes instead of
 * the last commit overwriting the others'.
 *
 * Differences from React Router's storages, each on purpose:
 * - `commitSession` resolves to `""` when there is nothing to send (a session that is empty, or
 *   unchanged since its cookie was set): a read-only request does not send the cookie again,
 *   which is what lets a slow read never bring back a cookie a concurrent log in replaced.
 *   Browsers ignore an empty `Set-Cookie` (RFC 6265bis: no name and no value), and React Router
 *   leaves it out when it merges loader headers; or skip the header when it is `""`.
 * - Cookie attributes and lifetime come from the `cookie`, `idleTimeout` and `absoluteTimeout`
 *   options; the per-call cookie options (`maxAge`, `expires`) are not used.
 * - Values must be plain JSON.
 * - A conflict that cannot be merged (the request read a key another request changed; any
 *   conflict under `reject` or `retry`) rejects with a `409` `Response`, a store outage with a
 *   `503` `Response`: throwing them from a loader or action answers with that status. `onError` is
 *   not called (there is no request here to give it).
 *
 * @typeParam Data The session data.
 * @typeParam FlashData The flash values.
 * @param options `withSession`'s options, with a server store (Memory, File, Redis, Postgres, ...).
 * @returns The storage.
 * @throws {TypeError} On invalid options, or a cookie store (`CookieStore` may need several
 * cookies where this interface returns one: use `sessionMiddleware`, or React Router's
 * `createCookieSessionStorage`).
 * @example
 * ```ts
 * import { MemoryStore } from "websession";
 * import { createSessionStorage } from "websession/react-router";
 * import assert from "node:assert/strict";
 *
 * // app/sessions.server.ts: only the import and the options change.
 * const { getSession, commitSession, destroySession } = createSessionStorage<
 *   { userId: string },
 *   { error: string }
 * >({ store: new MemoryStore(), secrets: "a secret of at least thirty-two characters" });
 *
 * // action: log in
 * const session = await getSession(null);
 * session.set("userId", "42");
 * session.flash("error", "Remember to verify your e-mail");
 * const setCookie = await commitSession(session);
 * const cookie = setCookie.split(";")[0]!;
 *
 * // loader: read, with the flash shown once
 * const again = await getSession(cookie);
 * assert.equal(again.get("userId"), "42");
 * assert.equal(again.get("error"), "Remember to verify your e-mail");
 * assert.match(await commitSession(again), /^$/); // the flash read is saved; no cookie to resend
 * assert.equal((await getSession(cookie)).get("error"), undefined);
 *
 * // action: log out
 * assert.match(await destroySession(await getSession(cookie)), /Max-Age=0/);
 * assert.equal((await getSession(cookie)).get("userId"), undefined);
 * ```
 */
export function createSessionStorage<Data = SessionData, FlashData = Data>(
  options: SessionOptions<SessionData>,
): RouterSessionStorage<Data, FlashData> {
  const o = optionsOf(options);
  if (o.sealed) {
    throw new TypeError(
      "Invalid store: createSessionStorage() returns one Set-Cookie value and a cookie store may need several; use sessionMiddleware(), or React Router's createCookieSessionStorage()",
    );
  }

  async function sessionCookie(session: Session<SessionData>): Promise<string> {
    let cookies: string[];
    try {
      cookies = await commit(session);
    } catch (error) {
      if (isSessionError(error)) throw plainErrorResponse(error, o.logger);
      throw error;
    }
    return cookies.length === 0 ? "" : cookies[cookies.length - 1]!;
  }

  return {
    async getSession(cookieHeader?: string | null): Promise<StorageSession<Data, FlashData>> {
      try {
        const session = await openSession(cookieHeader ?? null, options);
        return new StorageSessionImpl(session) as unknown as StorageSession<Data, FlashData>;
      } catch (error) {
        if (isSessionError(error)) throw plainErrorResponse(error, o.logger);
        throw error;
      }
    },
    async commitSession(session: RouterSession<Data, FlashData>): Promise<string> {
      return await sessionCookie(innerOf(session, "commitSession"));
    },
    async destroySession(session: RouterSession<Data, FlashData>): Promise<string> {
      const inner = innerOf(session, "destroySession");
      inner.destroy();
      return await sessionCookie(inner);
    },
  };
}
