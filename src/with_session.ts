/**
 * `withSession` and `getSession`: the request flow.
 *
 * run the handler; on its first `getSession(req)`, open the session (cookie → verify → load);
 * when it returns, commit (compare-and-set, conflict policy) → `Set-Cookie`. A commit that asks
 * for the handler to run again (a merge whose observations changed, the `retry` policy) runs it
 * on a fresh copy of the request when the request can be replayed; otherwise it is a 409.
 *
 * @module
 */
import { type CommitResult, type Handle, type HandleSink, hasWork, leaveTurn } from "./backend.ts";
import { backoff } from "./conflict.ts";
import { SessionConfigError, SessionConflictError, SessionError } from "./errors.ts";
import { configError, type ResolvedOptions, resolveOptions, type SessionOptions } from "./options.ts";
import { warnInsecure } from "./headers.ts";
import { releaseAll } from "./lock.ts";
import { decorate, openHandle, requestHost, scheduleLate, serialCommit } from "./open_session.ts";
import { logError } from "./log.ts";
import { again, type BodyRecord, replayable, startRecording, watched } from "./replay.ts";
import type { Session } from "./session.ts";
import type { SessionData } from "./store.ts";

/** What a request carries while its handler runs. */
interface Context extends HandleSink {
  o: ResolvedOptions;
  request: Request;
  /** What became of the request's body, when the handler may run again on it. */
  record: BodyRecord | undefined;
  waitUntil: ((promise: Promise<unknown>) => void) | undefined;
  canRerun: boolean;
  /** The session, once asked for. */
  promise: Promise<Session> | undefined;
  handle: Handle | undefined;
  /** The response has been returned: a session opened now saves late, without cookies. */
  responded: boolean;
}

// A request's context rides on the Request itself under a private symbol: cheaper for the
// garbage collector than a WeakMap entry per request. A Request that refuses new properties
// falls back to the WeakMap.
const kContext: unique symbol = Symbol("websession.context");
type Carrier = Request & { [kContext]?: Context };
const fallback = new WeakMap<Request, Context>();

function attach(request: Request, ctx: Context): void {
  try {
    (request as Carrier)[kContext] = ctx;
    if ((request as Carrier)[kContext] === ctx) return;
  } catch {
    // frozen or exotic Request object
  }
  fallback.set(request, ctx);
}

function contextOf(request: Request): Context | undefined {
  return (request as Carrier | null)?.[kContext] ?? fallback.get(request);
}

/**
 * Returns the session of a request handled by {@linkcode withSession}. The store is read on the
 * first call only; later calls return the same `Session`.
 *
 * @typeParam T The shape of the session data.
 * @param request The request the wrapped handler received.
 * @returns The request's session.
 * @throws {TypeError} When the request did not come through `withSession`.
 * @throws {StoreUnavailableError} When the store cannot be read (answered with `503`).
 * @example
 * ```ts
 * import { getSession } from "websession";
 * import assert from "node:assert/strict";
 *
 * await assert.rejects(getSession(new Request("https://example.com/")), /withSession/);
 * ```
 */
export function getSession<T extends object = SessionData>(request: Request): Promise<Session<T>> {
  const ctx = contextOf(request);
  if (ctx === undefined) {
    return Promise.reject(
      new TypeError(
        "getSession() needs the very Request withSession() handed to the handler (not a copy or a clone): wrap the handler with withSession and pass its request",
      ),
    );
  }
  if (ctx.promise === undefined) startRecording(ctx.record);
  return (ctx.promise ??= openHandle(ctx.o, requestHost, request, request, ctx.waitUntil, ctx)) as Promise<
    Session<T>
  >;
}

/**
 * Wraps a fetch handler so that `getSession(req)` works inside it, and commits the session
 * when the handler returns. The wrapper has the handler's own signature: Workers'
 * `(req, env, ctx)`, Deno's `(req, info)` and Bun's `(req, server)` pass through untouched.
 *
 * @typeParam A The handler's arguments after the request.
 * @param handler The fetch handler.
 * @param options Session options, or a function of the handler's arguments returning them
 * (for secrets and bindings from Workers' `env`).
 * @returns The wrapped handler.
 * @throws {TypeError} On invalid options given as an object (missing or short secrets, cookie
 * attributes a browser would reject).
 * @throws {RangeError} On invalid timeouts or attempts.
 * @example
 * ```ts
 * import { getSession, withSession, MemoryStore } from "websession";
 * import assert from "node:assert/strict";
 *
 * const handler = withSession(async (req: Request) => {
 *   const session = await getSession<{ user?: string }>(req);
 *   if (new URL(req.url).pathname === "/login") {
 *     session.regenerate();
 *     session.set("user", "ada");
 *   }
 *   return new Response(session.get("user") ?? "anonymous");
 * }, { store: new MemoryStore(), secrets: ["a secret of at least thirty-two characters"] });
 *
 * const login = await handler(new Request("https://example.com/login"));
 * const setCookie = login.headers.get("set-cookie")!;
 * assert.match(setCookie, /^session=.+; Path=\/; HttpOnly; Secure; SameSite=Lax; Max-Age=5400/);
 * const cookie = setCookie.split(";")[0]!;
 * const home = await handler(new Request("https://example.com/", { headers: { cookie } }));
 * assert.equal(await home.text(), "ada");
 * assert.equal(home.headers.get("set-cookie"), null);
 * ```
 */
export function withSession<A extends unknown[], T extends object = SessionData>(
  handler: (request: Request, ...rest: A) => Response | Promise<Response>,
  options: SessionOptions<T> | ((request: Request, ...rest: A) => SessionOptions<T>),
): (request: Request, ...rest: A) => Promise<Response> {
  if (typeof handler !== "function") throw new TypeError("withSession() needs a handler function");
  const fixed = typeof options === "function" ? undefined : resolveOptions(options as SessionOptions);
  const resolved = new WeakMap<object, ResolvedOptions>();

  return function sessionHandler(request: Request, ...rest: A): Promise<Response> {
    let o = fixed;
    if (o === undefined) {
      try {
        const raw = (options as (request: Request, ...rest: A) => SessionOptions)(request, ...rest);
        o = resolved.get(raw);
        if (o === undefined) {
          o = resolveOptions(raw);
          resolved.set(raw, o);
        }
      } catch (error) {
        return Promise.resolve(fallbackResponse(configError(error)));
      }
    }
    const outer = contextOf(request);
    if (outer === undefined) return run(handler, o, request, rest);
    return nested(handler, o, outer, request, rest);
  };
}

/**
 * `withSession` inside `withSession` (app-wide and on a route): one request has one session. A
 * layer with the outer's cookie name joins the outer session (the outer layer commits it); with
 * the same name but another store or secrets it is a misconfiguration, answered as
 * `SessionConfigError` through `onError`. A layer with another cookie name keeps a session of
 * its own while it runs.
 */
function nested<A extends unknown[]>(
  handler: (request: Request, ...rest: A) => Response | Promise<Response>,
  o: ResolvedOptions,
  outer: Context,
  request: Request,
  rest: A,
): Promise<Response> {
  if (outer.o.cookie.name !== o.cookie.name) {
    return run(handler, o, request, rest).finally(() => attach(request, outer));
  }
  if (outer.o === o || (outer.o.store === o.store && outer.o.signer === o.signer)) {
    return Promise.resolve(handler(request, ...rest));
  }
  const error = new SessionConfigError(
    `Nested withSession() layers share the cookie name "${o.cookie.name}" but not the store or the secrets: give the inner layer the outer layer's options, or another cookie name`,
  );
  return Promise.resolve(o.onError(error, request)).then((answer) =>
    answer instanceof Response ? answer : new Response(null, { status: error.status })
  );
}

function findWaitUntil(rest: unknown[]): ((promise: Promise<unknown>) => void) | undefined {
  for (const arg of rest) {
    const waitUntil = (arg as { waitUntil?: unknown } | null)?.waitUntil;
    if (typeof waitUntil === "function") return waitUntil.bind(arg) as (promise: Promise<unknown>) => void;
  }
  return undefined;
}

/** Methods a request may be repeated with (RFC 9110 §9.2.2, idempotent methods). */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);

/**
 * Whether the handler can be run again on this request, and with what: `"copy"` (no body),
 * `"body"` (a body, recorded as the handler reads it once it asked for its session; see
 * `replay.ts`), or not at all. `merge` runs idempotent requests again (RFC 9110 §9.2.2); `retry`
 * runs any request again.
 */
function replayKind(o: ResolvedOptions, request: Request): "copy" | "body" | undefined {
  if (o.conflict === "retry" || (o.conflict === "merge" && IDEMPOTENT.has(request.method))) {
    return request.body === null ? "copy" : "body";
  }
  return undefined;
}

/**
 * Runs the handler and commits its session, and runs it again (with backoff) for as long as the
 * commit asks for that and the request allows.
 */
async function run<A extends unknown[]>(
  handler: (request: Request, ...rest: A) => Response | Promise<Response>,
  o: ResolvedOptions,
  original: Request,
  rest: A,
): Promise<Response> {
  const waitUntil = findWaitUntil(rest);
  const kind = replayKind(o, original);
  let next: { request: Request; record: BodyRecord | undefined } = kind === "body"
    ? watched(original, original.body, o.maxReplayBytes)
    : { request: original, record: undefined };
  // The steps of the common path are no async functions of their own: each async frame is an
  // allocation per request (bench/RESULTS.md, bytes allocated per request).
  for (let attempt = 1;; attempt++) {
    const ctx = contextFor(o, original, next, waitUntil, kind !== undefined && attempt < o.maxAttempts);
    let answer: Response | "rerun";
    let response: Response;
    try {
      response = await handler(ctx.request, ...rest);
      if (typeof response?.headers?.get !== "function") throw notAResponse(response);
    } catch (error) {
      answer = await afterThrow(ctx, error);
      if (answer !== "rerun") return answer;
      next = replay(original, ctx);
      await backoff(attempt);
      continue;
    }
    const h = ctx.handle ?? (ctx.promise === undefined ? neverAsked(ctx) : await opened(ctx));
    if (h === undefined) return response;
    // A body read past the bound, or before the session was asked for, cannot be replayed.
    if (h.canRerun && !canReplay(ctx)) h.canRerun = false;
    let result: CommitResult;
    try {
      result = h.rerun ? "rerun" : hasWork(h) ? await serialCommit(h) : "done";
      // An end asked for while the commit ran (a streamed body) needs its cookie in this
      // response: committed now, not late.
      if (result === "done" && h.ending !== undefined) result = await serialCommit(h);
    } catch (error) {
      leaveTurn(h);
      throw error;
    }
    const answered = answerCommit(ctx, h, response, result);
    answer = answered instanceof Promise ? await answered : answered;
    if (answer !== "rerun") return answer;
    next = replay(original, ctx);
    await backoff(attempt);
  }
}

/** The handler answered something other than a `Response` (a forgotten `return`, say). */
function notAResponse(value: unknown): TypeError {
  const what = value === null || value === undefined ? String(value) : `a ${typeof value}`;
  return new TypeError(`The handler wrapped by withSession() returned ${what}, not a Response`);
}

/** The per-request context of one run of the handler, attached to its request. */
function contextFor(
  o: ResolvedOptions,
  original: Request,
  next: { request: Request; record: BodyRecord | undefined },
  waitUntil: ((promise: Promise<unknown>) => void) | undefined,
  canRerun: boolean,
): Context {
  const ctx: Context = {
    o,
    owner: original,
    request: next.request,
    record: next.record,
    waitUntil,
    canRerun,
    promise: undefined,
    handle: undefined,
    responded: false,
  };
  attach(next.request, ctx);
  return ctx;
}

/**
 * The handler threw. Runs it again when its session asks for that and the request allows;
 * otherwise answers a `SessionError` through `onError` and throws anything else on.
 */
async function afterThrow(ctx: Context, error: unknown): Promise<Response | "rerun"> {
  // A session still opening (the handler threw while getSession() was pending) takes its
  // turn when it opens: wait for it, so that the turn is given up below.
  if (ctx.handle === undefined && ctx.promise !== undefined) await ctx.promise.catch(ignore);
  if (ctx.handle?.locks !== undefined) await releaseAll(ctx.handle);
  if (ctx.handle?.rerun === true && ctx.canRerun && canReplay(ctx)) {
    // The turn stays with this request: it goes next.
    return "rerun";
  }
  ctx.responded = true;
  if (ctx.handle !== undefined) {
    ctx.handle.responded = true;
    leaveTurn(ctx.handle);
  }
  if (error instanceof SessionError) {
    const answer = await errorResponse(ctx, error);
    return ctx.handle === undefined ? answer : finish(ctx.handle, answer);
  }
  throw error;
}

/** The handler never asked for its session: its response stands (a session opened later saves late). */
function neverAsked(ctx: Context): undefined {
  ctx.responded = true;
  return undefined;
}

/**
 * The handle of the session still opening when the handler returned, once it has opened;
 * `undefined` when it failed and the handler's response stands as it is.
 */
async function opened(ctx: Context): Promise<Handle | undefined> {
  try {
    await ctx.promise;
  } catch {
    // The handler was told (getSession rejected) and answered anyway: respect its answer.
    ctx.responded = true;
    if (ctx.handle !== undefined) leaveTurn(ctx.handle);
    return undefined;
  }
  return ctx.handle!;
}

/**
 * Answers after the commit: the handler's response with the session's cookies; on the paths
 * that release locks, cancel a body or answer an error, {@linkcode answerLater}'s promise.
 */
function answerCommit(
  ctx: Context,
  h: Handle,
  response: Response,
  result: CommitResult,
): Response | "rerun" | Promise<Response | "rerun"> {
  if (h.locks !== undefined || result !== "done") return answerLater(ctx, h, response, result);
  ctx.responded = true;
  h.responded = true;
  leaveTurn(h);
  // Changes made while the commit ran are saved late.
  if (hasWork(h)) scheduleLate(h);
  return finish(h, response);
}

/**
 * {@linkcode answerCommit} with locks to release, or a result that is not `"done"`: an error
 * through `onError`, or `"rerun"` when the commit asks for the handler to run again and it can.
 */
async function answerLater(
  ctx: Context,
  h: Handle,
  response: Response,
  result: CommitResult,
): Promise<Response | "rerun"> {
  if (h.locks !== undefined) await releaseAll(h);
  if (result === "rerun") {
    if (ctx.canRerun && canReplay(ctx)) {
      await response.body?.cancel().catch(ignore);
      return "rerun";
    }
    result = new SessionConflictError(
      "Session was changed by a concurrent request and this request cannot be run again: not saved",
    );
  }
  ctx.responded = true;
  h.responded = true;
  leaveTurn(h);
  if (result !== "done") {
    await response.body?.cancel().catch(ignore);
    // What an earlier `save()` of this request stored keeps its cookie (a log in, a log out):
    // the browser must hold what the store holds, whatever failed after.
    return finish(h, await errorResponse(ctx, result));
  }
  // Changes made while the commit ran are saved late.
  if (hasWork(h)) scheduleLate(h);
  return finish(h, response);
}

function ignore(): void {}

function canReplay(ctx: Context): boolean {
  return ctx.record === undefined || replayable(ctx.request, ctx.record);
}

/** The request for the next run: rebuilt (no body), or its body handed on or replayed. */
function replay(original: Request, ctx: Context): { request: Request; record: BodyRecord | undefined } {
  if (ctx.record === undefined) return watched(original, null, 0);
  return again(original, ctx.request, ctx.record);
}

/** Options that could not be resolved: no logger to hand, so the console, throttled. */
function fallbackResponse(error: SessionError): Response {
  logError(console, error);
  return new Response("Internal Server Error", { status: 500 });
}

async function errorResponse(ctx: Context, error: SessionError): Promise<Response> {
  const response = await ctx.o.onError(error, ctx.request);
  if (response instanceof Response) return response;
  return new Response(null, { status: error.status });
}

function finish(h: Handle, response: Response): Response {
  const cookies = h.setCookies;
  h.setCookies = undefined;
  if (
    cookies !== undefined && cookies.size > 0 && h.o.cookie.secure && !h.o.warned && h.request !== undefined
  ) {
    warnInsecure(h.o, h.request);
  }
  return decorate(h, response, cookies === undefined ? NONE : [...cookies.values()]);
}

/**
 * Whether a request handled by {@linkcode withSession} is on the header transport (the
 * `transport` option): its session never comes from a cookie. Internal (CSRF).
 */
export function onHeaderTransport(request: Request): boolean {
  const ctx = contextOf(request);
  if (ctx?.handle !== undefined) return ctx.handle.onHeader;
  return ctx?.o.transport?.tokenOf(request.headers) !== undefined;
}

const NONE: readonly string[] = [];
