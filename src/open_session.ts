/**
 * The request-free API, on which `withSession` is built: `openSession` gives the `Session` for a
 * request's cookies, `commitSession` saves it and returns the `Set-Cookie` values to send. For
 * code that never sees the `Request` (Next.js Server Components and Server Actions, a framework
 * middleware that owns the response).
 *
 * @module
 */
import {
  type Backend,
  type CommitResult,
  type CookieSource,
  type Handle,
  type HandleSink,
  hasWork,
  kBackend,
  leaveTurn,
  newHandle,
} from "./backend.ts";
import { serverBackend } from "./backends/server.ts";
import { SessionConflictError, SessionError } from "./errors.ts";
import { emit } from "./events.ts";
import { warnInsecure, withSessionHeaders } from "./headers.ts";
import { type LockOptions, releaseAll, type SessionLock, takeLock } from "./lock.ts";
import { createSessionId } from "./id.ts";
import { optionsOf, type ResolvedOptions, type SessionOptions } from "./options.ts";
import { Session } from "./session.ts";
import { isSignInKey, kState, NO_OPS, type SessionHost, type SessionState } from "./session_state.ts";
import { NO_FLASH } from "./session_data.ts";
import type { SessionData } from "./store.ts";

/**
 * Where `openSession` reads the session cookie from: a `Request`, a `Headers`, a raw `Cookie`
 * header string, or a cookie jar with `get(name)` (Next.js `cookies()`, Astro `cookies`,
 * SvelteKit `cookies`). `null` or `undefined`: no cookie.
 *
 * @example
 * ```ts
 * import { commitSession, type CookieInput, MemoryStore, openSession } from "websession";
 * import assert from "node:assert/strict";
 *
 * const options = { store: new MemoryStore(), secrets: ["a secret of at least thirty-two characters"] };
 * const first = await openSession<{ n?: number }>(null, options);
 * first.set("n", 1);
 * const cookie = (await commitSession(first))[0]!.split(";")[0]!;
 * const jar = new Map([["session", { value: cookie.slice("session=".length) }]]);
 * const inputs: CookieInput[] = [
 *   new Request("https://example.com/", { headers: { cookie } }),
 *   new Headers({ cookie }),
 *   cookie,
 *   { get: (name) => jar.get(name) }, // a framework's cookie jar
 * ];
 * for (const input of inputs) assert.equal((await openSession<{ n?: number }>(input, options)).get("n"), 1);
 * ```
 */
export type CookieInput =
  | Request
  | Headers
  | string
  | { get(name: string): string | { value: string } | undefined | null }
  | null
  | undefined;

/**
 * The backend for a store: the server backend, unless the store brings its own (a sealed store
 * its sealed-cookie flow, a `MigratingStore` from a `CookieStore` the one that moves its cookies).
 */
export function backendOf(o: ResolvedOptions): Backend {
  return (o.store as { [kBackend]?: Backend })[kBackend] ?? serverBackend;
}

function sourceOf(input: CookieInput): CookieSource {
  if (input === null || input === undefined) return null;
  if (typeof input === "string") return input;
  if (input instanceof Request) return input.headers.get("cookie");
  if (input instanceof Headers) return input.get("cookie");
  if (typeof input.get === "function") return input;
  throw new TypeError(
    "Invalid cookie input: expected a Request, Headers, a Cookie header string or a cookie jar",
  );
}

/** Where the session comes from: the cookie, or the `transport` option's header. */
function sourceFor(h: Handle, input: CookieInput): CookieSource {
  const flow = h.o.transport;
  return flow === undefined
    ? sourceOf(input)
    : flow.source(h, input, sourceOf as (input: unknown) => CookieSource);
}

/**
 * Adds a committed session's response headers for the transport its request came in on:
 * `Set-Cookie` and `Vary: Cookie`, or the `transport` option's response header.
 */
export function decorate(h: Handle, response: Response, cookies: readonly string[]): Response {
  const flow = h.o.transport;
  return flow === undefined ? withSessionHeaders(response, cookies) : flow.decorate(h, response, cookies);
}

/** `decorate` for an adapter holding the `Session`. Internal. */
export function decorateSession(session: Session, response: Response, cookies: readonly string[]): Response {
  return decorate(session[kState] as Handle, response, cookies);
}

function commitNow(h: Handle): Promise<CommitResult> {
  return backendOf(h.o).commit(h);
}

/** Commits of one session run one after another: an explicit `save()`, the end, late changes. */
export function serialCommit(h: Handle): Promise<CommitResult> {
  let next: Promise<CommitResult>;
  if (h.chain === undefined) {
    next = commitNow(h);
  } else {
    const again = commitNow.bind(undefined, h);
    next = h.chain.then(again, again);
  }
  h.chain = next;
  return next;
}

/** Saves changes made after the response, handed to `waitUntil` where the runtime has one. */
export function scheduleLate(h: Handle): void {
  if (h.latePending) return;
  h.latePending = true;
  const done = Promise.resolve().then(lateCommit.bind(undefined, h));
  h.waitUntil?.(done);
}

async function lateCommit(h: Handle): Promise<void> {
  h.latePending = false;
  let result: CommitResult | unknown;
  try {
    result = await serialCommit(h);
  } catch (error) {
    result = error;
  }
  if (result === "done") return;
  const error = result === "rerun"
    ? new SessionConflictError("Session changed after the response conflicts with a concurrent request")
    : result;
  try {
    await h.o.onError(error, h.request!);
  } catch {
    // onError failed too; nothing else can be told
  }
}

/** The host of sessions opened by `withSession`: late changes are saved after the response. */
export const requestHost: SessionHost = {
  changed(s: SessionState): void {
    const h = s as Handle;
    if (h.responded) scheduleLate(h);
  },
  save(s: SessionState): Promise<void> {
    return serialCommit(s as Handle).then((result) => settle(s as Handle, result));
  },
  lock(s: SessionState, options?: LockOptions): Promise<SessionLock> {
    return takeLock(s as Handle, options);
  },
};

function settle(h: Handle, result: CommitResult): void {
  if (result === "done") return;
  if (result === "rerun") {
    // The wrapper runs the handler again when it returns, whatever the handler does with this.
    h.rerun = true;
    throw new SessionConflictError("Session was changed by a concurrent request: the handler will run again");
  }
  throw result;
}

/** The host of sessions opened by `openSession`: nothing runs behind the caller's back. */
const plainHost: SessionHost = {
  changed(): void {},
  save(s: SessionState): Promise<void> {
    return serialCommit(s as Handle).then((result) => settle(s as Handle, result));
  },
  lock(s: SessionState, options?: LockOptions): Promise<SessionLock> {
    return takeLock(s as Handle, options);
  },
};

/**
 * Opens a session: reads the cookie, verifies, loads, checks the schema. The backend runs
 * `opened` as its last step (no `async` frame of its own, no step chained, no closure: each is
 * an allocation per request).
 *
 * @throws {StoreUnavailableError} When the store cannot be read.
 */
export function openHandle(
  o: ResolvedOptions,
  host: SessionHost,
  input: CookieInput,
  request: Request | undefined,
  waitUntil: ((promise: Promise<unknown>) => void) | undefined,
  sink?: HandleSink,
  owner?: object,
): Promise<Session> {
  try {
    const h = newHandle(o, host, "", request, waitUntil);
    // Turns need someone to give them up at the end of the request: withSession, an adapter. A
    // session first opened after the response (from a streamed body) takes none: nothing would.
    h.owner = sink === undefined ? owner : sink.responded ? undefined : sink.owner;
    // Known before loading: a request that cannot run again takes turns more readily.
    if (sink !== undefined) h.canRerun = sink.canRerun;
    h.sink = sink;
    const start = o.onEvent === undefined ? 0 : performance.now();
    // A failed open has given up what it took (see `Backend.open`); `opened` is its last step.
    const then = o.onEvent === undefined ? opened : (h: Handle) => opened(loaded(h, start));
    return backendOf(o).open(h, sourceFor(h, input), then);
  } catch (error) {
    // As from an async function: a failure before the open (an invalid input, a clock that
    // throws) is a rejection; nothing was taken yet.
    return Promise.reject(error);
  }
}

function loaded(h: Handle, start: number): Handle {
  const found = h.base !== undefined;
  emit(h.o.onEvent!, { type: "load", found, durationMs: performance.now() - start, request: h.request });
  return h;
}

/** The session opened: a new one gets its maps and id, a loaded one its schema check. */
function opened(h: Handle): Session | Promise<Session> {
  if (h.data === undefined) {
    h.data = new Map();
    h.flash = NO_FLASH;
  }
  if (h.id === "") h.id = createSessionId();
  if (h.o.schema !== undefined && h.base !== undefined) return checkSchema(h).then(handOver);
  return handOver(h);
}

/** The opened session goes to whoever waits on it (withSession's context). */
function handOver(h: Handle): Session {
  const sink = h.sink;
  if (sink !== undefined) {
    h.canRerun = sink.canRerun;
    h.responded = sink.responded;
    sink.handle = h;
  }
  return new Session(h);
}

async function checkSchema(h: Handle): Promise<Handle> {
  const o = h.o;
  let result;
  try {
    const values: SessionData = {};
    const serializer = o.serializer;
    for (const [key, held] of h.data) {
      if (isSignInKey(key)) continue; // the sign-in flow's, not the application's data
      // Under a `serializer`, the schema sees the values as the handler does (a `Date`, a `Map`).
      const value = serializer === undefined ? held : serializer.deserialize(held);
      Object.defineProperty(values, key, { value, enumerable: true, writable: true, configurable: true });
    }
    result = await o.schema!["~standard"].validate(values);
  } catch (error) {
    result = { issues: [{ message: String(error) }] };
  }
  if (result.issues !== undefined || typeof result.value !== "object" || result.value === null) {
    o.onInvalidCookie?.({ reason: "data", request: h.request, detail: result.issues });
    // The stored data is unusable: this request ends that session and starts a fresh one.
    new Session(h).destroy();
    h.ops = NO_OPS;
  } else {
    const serializer = o.serializer;
    const data = new Map(
      serializer === undefined ? Object.entries(result.value) : Object.entries(result.value).map((
        [key, value],
      ): [string, unknown] => [key, serializer.serialize(value)]),
    );
    for (const [key, value] of h.data) if (isSignInKey(key)) data.set(key, value);
    h.data = data;
  }
  return h;
}

export { optionsOf };

/**
 * Opens the session named by a request's cookies, without `withSession`. Save it with
 * {@linkcode commitSession} and send the `Set-Cookie` values it returns.
 *
 * Concurrent requests keep the same guarantee as under `withSession`, except that a handler
 * cannot be run again here: a conflict that would need it is a `SessionConflictError`.
 *
 * @typeParam T The shape of the session data.
 * @param input The cookies: a `Request`, `Headers`, a `Cookie` header string, or a cookie jar.
 * @param options The same options as `withSession` (resolved once per options object).
 * @returns The session.
 * @throws {TypeError} On invalid options or input.
 * @throws {StoreUnavailableError} When the store cannot be read.
 * @example
 * ```ts
 * import { commitSession, MemoryStore, openSession } from "websession";
 * import assert from "node:assert/strict";
 *
 * const options = { store: new MemoryStore(), secrets: ["a secret of at least thirty-two characters"] };
 * const first = await openSession<{ cart?: string[] }>(null, options);
 * first.update("cart", (cart = []) => [...cart, "book"]);
 * const [setCookie] = await commitSession(first);
 * const cookie = setCookie!.split(";")[0]!;
 *
 * // Next.js: `await openSession(await cookies(), options)`; here a Cookie header string.
 * const again = await openSession<{ cart?: string[] }>(cookie, options);
 * assert.deepEqual(again.get("cart"), ["book"]);
 * assert.deepEqual(await commitSession(again), []); // read-only: nothing to send
 * ```
 */
export async function openSession<T extends object = SessionData>(
  input: CookieInput,
  options: SessionOptions<T>,
): Promise<Session<T>> {
  const o = optionsOf(options as SessionOptions<SessionData>);
  return await openHandle(
    o,
    plainHost,
    input,
    input instanceof Request ? input : undefined,
    undefined,
  ) as Session<T>;
}

/**
 * `openSession` for a framework adapter that calls {@linkcode closeSession} when its request
 * ends, whatever happens: the session takes turns with its other requests in flight here.
 * Internal.
 */
export async function openTurnSession(
  request: Request,
  options: SessionOptions<SessionData>,
): Promise<Session> {
  return await openHandle(optionsOf(options), plainHost, request, request, undefined, undefined, request);
}

/**
 * Ends a request's hold on its session: releases its locks and hands its turn to the next
 * request of the session. Idempotent. Internal (adapters).
 */
export async function closeSession(session: Session<SessionData>): Promise<void> {
  const h = session[kState] as Handle;
  if (h.locks !== undefined) await releaseAll(h);
  leaveTurn(h);
}

/**
 * Drops what the handler asked of the session and has not been saved (an adapter whose framework
 * answered a handler's error itself): the commit that follows then writes nothing, as when the
 * handler throws through `withSession`. What an earlier `save()` stored stays stored.
 */
export function discardChanges(session: Session<SessionData>): void {
  const h = session[kState] as Handle;
  h.ops = NO_OPS;
  h.ending = undefined;
  h.renewed = undefined;
  h.rotated = false;
  h.touchRequested = false;
}

/**
 * The `Set-Cookie` values the session's saves queued that no commit handed out yet, taken: an
 * adapter answering a failed commit adds them to its error response, so that what an earlier
 * `save()` stored (a log in, a log out) reaches the browser.
 */
export function takeCookies(session: Session<SessionData>): string[] {
  const h = session[kState] as Handle;
  const cookies = h.setCookies === undefined ? [] : [...h.setCookies.values()];
  h.setCookies = undefined;
  return cookies;
}

/**
 * Saves a session opened with {@linkcode openSession} (compare-and-set and the conflict policy)
 * and returns the `Set-Cookie` header values to send, possibly none. Call it once the session's
 * changes are made; calling it again sends what changed since.
 *
 * @typeParam T The shape of the session data.
 * @param session A session from `openSession`.
 * @returns The `Set-Cookie` values.
 * @throws {SessionConflictError} When the changes cannot be merged with a concurrent request's,
 * or the session was ended by one (answer `409`).
 * @throws {StoreUnavailableError} When the store fails (answer `503`).
 * @throws {TypeError} When `session` did not come from `openSession`.
 * @example
 * ```ts
 * import { commitSession, MemoryStore, openSession } from "websession";
 * import assert from "node:assert/strict";
 *
 * const options = { store: new MemoryStore(), secrets: ["a secret of at least thirty-two characters"] };
 * const session = await openSession<{ theme?: string }>(null, options);
 * assert.deepEqual(await commitSession(session), []); // nothing stored: no cookie
 * session.set("theme", "dark");
 * const [setCookie] = await commitSession(session);
 * assert.match(setCookie!, /^session=[^;]+; Path=\/; HttpOnly; Secure; SameSite=Lax/);
 * ```
 */
export async function commitSession<T extends object>(session: Session<T>): Promise<string[]> {
  const h = (session as unknown as Session<SessionData>)?.[kState] as Handle | undefined;
  if (h === undefined || h.host !== plainHost) {
    throw new TypeError("commitSession() needs a session from openSession()");
  }
  try {
    if (hasWork(h)) {
      const result = await serialCommit(h);
      if (result === "rerun") {
        throw new SessionConflictError(
          "Session was changed by a concurrent request in a way that cannot be merged",
        );
      }
      if (result instanceof SessionError) throw result;
    }
  } finally {
    if (h.locks !== undefined) await releaseAll(h);
    leaveTurn(h);
  }
  const cookies = h.setCookies === undefined ? [] : [...h.setCookies.values()];
  h.setCookies = undefined;
  if (cookies.length > 0 && h.o.cookie.secure && !h.o.warned && h.request !== undefined) {
    warnInsecure(h.o, h.request);
  }
  return cookies;
}
