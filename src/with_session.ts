/**
 * `withSession` and `getSession`: the request flow.
 *
 * run the handler; on its first `getSession(req)`, open the session (cookie → verify → load);
 * when it returns, commit (compare-and-set, conflict policy) → `Set-Cookie`. A commit that asks
 * for the handler to run again (a merge whose observations changed, the `retry` policy) runs it
 * on a fresh copy of the request when the request can be replayed; otherwise it is a 409. The
 * run itself, and the context a request carries, are in `request_run.ts`.
 *
 * @module
 */
import { SessionConfigError, type SessionError } from "./errors.ts";
import { configError, type ResolvedOptions, resolveOptions, type SessionOptions } from "./options.ts";
import { openHandle, requestHost } from "./open_session.ts";
import { logError } from "./log.ts";
import { startRecording } from "./replay.ts";
import { attach, type Context, contextOf, run } from "./request_run.ts";
import type { Session } from "./session.ts";
import type { SessionData } from "./store.ts";

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

/** Options that could not be resolved: no logger to hand, so the console, throttled. */
function fallbackResponse(error: SessionError): Response {
  logError(console, error);
  return new Response("Internal Server Error", { status: 500 });
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
