/**
 * One request's run under `withSession`: the context it carries (on the `Request`, for
 * `getSession`), the handler's run, the commit of its session and the response's headers, and
 * the runs again a commit asks for.
 *
 * @module
 */
import { type CommitResult, type Handle, type HandleSink, hasWork, leaveTurn } from "./backend.ts";
import { backoff } from "./conflict.ts";
import { SessionConflictError, SessionError } from "./errors.ts";
import type { ResolvedOptions } from "./options.ts";
import { warnInsecure } from "./headers.ts";
import { releaseAll } from "./lock.ts";
import { decorate, scheduleLate, serialCommit } from "./open_session.ts";
import { again, type BodyRecord, replayable, watched } from "./replay.ts";
import type { Session } from "./session.ts";

/** What a request carries while its handler runs: one run of the handler, and its commit. */
export interface Context extends HandleSink {
  o: ResolvedOptions;
  handler: (request: Request, ...rest: unknown[]) => Response | Promise<Response>;
  /** The handler's arguments after the request. */
  rest: unknown[];
  /** Which run of the handler this is (1, then 2 when it runs again, ...). */
  attempt: number;
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

export function attach(request: Request, ctx: Context): void {
  try {
    (request as Carrier)[kContext] = ctx;
    if ((request as Carrier)[kContext] === ctx) return;
  } catch {
    // frozen or exotic Request object
  }
  fallback.set(request, ctx);
}

export function contextOf(request: Request): Context | undefined {
  return (request as Carrier | null)?.[kContext] ?? fallback.get(request);
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
export function run<A extends unknown[]>(
  handler: (request: Request, ...rest: A) => Response | Promise<Response>,
  o: ResolvedOptions,
  original: Request,
  rest: A,
): Promise<Response> {
  let first: Context;
  try {
    const kind = replayKind(o, original);
    const watch = kind === "body" ? watched(original, original.body, o.maxReplayBytes) : undefined;
    const request = watch?.request ?? original;
    const canRerun = kind !== undefined && 1 < o.maxAttempts;
    const waitUntil = findWaitUntil(rest);
    first = contextFor(
      handler as Context["handler"],
      o,
      original,
      rest,
      waitUntil,
      1,
      request,
      watch?.record,
      canRerun,
    );
  } catch (error) {
    // As from an async function: a failure is a rejection.
    return Promise.reject(error);
  }
  return attempt(first);
}

// The steps of the common path are no async functions of their own: each async frame is an
// allocation per request (bench/RESULTS.md, bytes allocated per request). One closure over the
// context carries a run from the handler's answer on; the rare paths are async.
/** One run of the handler, and the commit of its session. */
function attempt(ctx: Context): Promise<Response> {
  let response: Response | Promise<Response>;
  try {
    response = ctx.handler(ctx.request, ...ctx.rest);
  } catch (error) {
    return threw(ctx, error);
  }
  return Promise.resolve(response).then(
    (response) => afterHandler(ctx, response),
    (error) => threw(ctx, error),
  );
}

/** The handler answered: its session is committed and the response given its headers. */
function afterHandler(ctx: Context, response: Response): Response | Promise<Response> {
  if (typeof response?.headers?.get !== "function") return threw(ctx, notAResponse(response));
  const h = ctx.handle;
  if (h !== undefined) return commit(ctx, h, response);
  if (ctx.promise === undefined) {
    // The handler never asked for its session: its response stands (a session opened later
    // saves late).
    ctx.responded = true;
    return response;
  }
  return opened(ctx).then((h) => h === undefined ? response : commit(ctx, h, response));
}

function commit(ctx: Context, h: Handle, response: Response): Response | Promise<Response> {
  // A body read past the bound, or before the session was asked for, cannot be replayed.
  if (h.canRerun && !canReplay(ctx)) h.canRerun = false;
  let result: CommitResult | Promise<CommitResult>;
  try {
    result = h.rerun ? "rerun" : hasWork(h) ? serialCommit(h) : "done";
  } catch (error) {
    leaveTurn(h);
    throw error;
  }
  if (!(result instanceof Promise)) return answer(ctx, h, response, result);
  return result.then(
    (result) => answer(ctx, h, response, result),
    (error) => {
      leaveTurn(h);
      throw error;
    },
  );
}

/** The commit is done: the response, or the next run of the handler when the commit asks for it. */
function answer(
  ctx: Context,
  h: Handle,
  response: Response,
  result: CommitResult,
): Response | Promise<Response> {
  // An end asked for while the commit ran (a streamed body) needs its cookie in this response:
  // committed now, not late.
  if (result === "done" && h.ending !== undefined) return commitEnd(ctx, h, response);
  return respond(ctx, h, response, result);
}

/** The end asked for while the commit ran, committed before the response (a rare path). */
async function commitEnd(ctx: Context, h: Handle, response: Response): Promise<Response> {
  let result: CommitResult;
  try {
    result = await serialCommit(h);
  } catch (error) {
    leaveTurn(h);
    throw error;
  }
  return respond(ctx, h, response, result);
}

/** The response, or the next run of the handler when the commit asks for it. */
function respond(
  ctx: Context,
  h: Handle,
  response: Response,
  result: CommitResult,
): Response | Promise<Response> {
  const answered = answerCommit(ctx, h, response, result);
  if (answered instanceof Promise) return answered.then((next) => next === "rerun" ? runAgain(ctx) : next);
  return answered === "rerun" ? runAgain(ctx) : answered;
}

/** The handler threw (or answered no `Response`): an error response, or the next run. */
async function threw(ctx: Context, error: unknown): Promise<Response> {
  const answer = await afterThrow(ctx, error);
  return answer === "rerun" ? runAgain(ctx) : answer;
}

/** Runs the handler again, after a backoff, on a fresh copy of the request. */
async function runAgain(ctx: Context): Promise<Response> {
  const next = replay(ctx.owner as Request, ctx);
  await backoff(ctx.attempt);
  // Only a run that could run again asks for another: the request can be replayed.
  const n = ctx.attempt + 1;
  return attempt(
    contextFor(
      ctx.handler,
      ctx.o,
      ctx.owner as Request,
      ctx.rest,
      ctx.waitUntil,
      n,
      next.request,
      next.record,
      n < ctx.o.maxAttempts,
    ),
  );
}

/** The handler answered something other than a `Response` (a forgotten `return`, say). */
function notAResponse(value: unknown): TypeError {
  const what = value === null || value === undefined ? String(value) : `a ${typeof value}`;
  return new TypeError(`The handler wrapped by withSession() returned ${what}, not a Response`);
}

/** The per-request context of one run of the handler, attached to its request. */
function contextFor(
  handler: Context["handler"],
  o: ResolvedOptions,
  original: Request,
  rest: unknown[],
  waitUntil: ((promise: Promise<unknown>) => void) | undefined,
  attempt: number,
  request: Request,
  record: BodyRecord | undefined,
  canRerun: boolean,
): Context {
  const ctx: Context = {
    o,
    handler,
    rest,
    attempt,
    owner: original,
    request,
    record,
    waitUntil,
    canRerun,
    promise: undefined,
    handle: undefined,
    responded: false,
  };
  attach(request, ctx);
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

const NONE: readonly string[] = [];
