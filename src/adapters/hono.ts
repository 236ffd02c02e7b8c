/**
 * Sessions for Hono: a middleware that puts the request's {@linkcode Session} in `c.var.session`
 * and commits it (compare-and-set, conflict policy) when the handlers are done, setting
 * `Set-Cookie` and `Vary: Cookie` on `c.res`.
 *
 * Two ways to mount it:
 *
 * - `sessionMiddleware(options)` opens and commits the session itself. A middleware cannot run
 *   the handlers after it a second time, so the two conflict outcomes that need a re-run (a
 *   `merge` whose observed keys changed, and every conflict under `retry`) are answered `409`
 *   through `onError`. Merges that replay (writers of other keys, `update()` counters) land as
 *   usual; `reject` and `overwrite` behave as under `withSession`.
 * - `sessionMiddleware()` with no options, in an app whose `fetch` is wrapped by `withSession`:
 *   the middleware hands out the session `withSession` opened, and `withSession` commits it and
 *   runs the whole app again when a conflict asks for it. Every policy is honoured.
 *
 * @example
 * ```ts
 * import { Hono } from "hono";
 * import { MemoryStore } from "websession";
 * import { sessionMiddleware, type SessionEnv } from "websession/hono";
 * import assert from "node:assert/strict";
 *
 * type Data = { visits?: number };
 * const app = new Hono<SessionEnv<Data>>();
 * app.use(sessionMiddleware<Data>({ store: new MemoryStore(), secrets: "a secret of at least thirty-two characters" }));
 * app.get("/", (c) => c.text(`visit ${c.var.session.update("visits", (n = 0) => n + 1)}`));
 *
 * const first = await app.request("/");
 * assert.equal(await first.text(), "visit 1");
 * const cookie = first.headers.get("set-cookie")!.split(";")[0]!;
 * const second = await app.request("/", { headers: { cookie } });
 * assert.equal(await second.text(), "visit 2");
 * assert.equal(second.headers.get("set-cookie"), null); // nothing new to say
 * assert.equal(second.headers.get("vary"), "Cookie");
 * ```
 *
 * @module
 */
import type { Context, MiddlewareHandler, Next } from "hono";
import { configError, type SessionOptions } from "../options.ts";
import {
  closeSession,
  commitSession,
  decorateSession,
  discardChanges,
  openTurnSession,
  optionsOf,
  takeCookies,
} from "../open_session.ts";
import type { Session } from "../session.ts";
import type { SessionError } from "../errors.ts";
import type { SessionData } from "../store.ts";
import { getSession as getRequestSession } from "../with_session.ts";
import { isSessionError, plainErrorResponse, sessionErrorResponse } from "./response.ts";

/**
 * The Hono environment the middleware provides: `c.var.session` (and `c.get("session")`) is the
 * request's session. Intersect it with your own: `Hono<{ Bindings: Env } & SessionEnv<Data>>`.
 *
 * @typeParam T The shape of the session data.
 * @example
 * ```ts
 * import { Hono } from "hono";
 * import { MemoryStore } from "websession";
 * import { sessionMiddleware, type SessionEnv } from "websession/hono";
 * import assert from "node:assert/strict";
 *
 * type Data = { user?: string };
 * const app = new Hono<SessionEnv<Data>>()
 *   .use(sessionMiddleware<Data>({ store: new MemoryStore(), secrets: "a secret of at least thirty-two characters" }))
 *   .get("/", (c) => c.text(c.get("session").get("user") ?? "anonymous"));
 * assert.equal(await (await app.request("/")).text(), "anonymous");
 * ```
 */
export type SessionEnv<T extends object = SessionData> = {
  Variables: {
    /** The request's session. */
    session: Session<T>;
  };
};

/**
 * Options of `sessionMiddleware`: `withSession`'s, or a function of the Hono context returning
 * them (return the same object for the same environment: options are resolved once per object).
 *
 * @example
 * ```ts
 * import { Hono } from "hono";
 * import { MemoryStore, type SessionOptions } from "websession";
 * import { type HonoSessionOptions, sessionMiddleware, type SessionEnv } from "websession/hono";
 * import assert from "node:assert/strict";
 *
 * type Env = { Bindings: { SESSION_SECRET: string } } & SessionEnv;
 * const byEnv = new WeakMap<object, SessionOptions>();
 * const options: HonoSessionOptions = (c) => {
 *   let found = byEnv.get(c.env);
 *   if (found === undefined) byEnv.set(c.env, found = { store: new MemoryStore(), secrets: c.env.SESSION_SECRET });
 *   return found;
 * };
 * const app = new Hono<Env>().use(sessionMiddleware(options)).get("/", (c) => {
 *   c.var.session.set("seen", true);
 *   return c.text("ok");
 * });
 * const env = { SESSION_SECRET: "a secret of at least thirty-two characters" };
 * assert.match((await app.request("/", {}, env)).headers.get("set-cookie")!, /^session=/);
 * ```
 */
export type HonoSessionOptions<T extends object = SessionData> =
  | SessionOptions<T>
  // deno-lint-ignore no-explicit-any
  | ((c: Context<any, any, any>) => SessionOptions<T>);

/**
 * Hono middleware that opens the request's session before the handlers run, makes it
 * `c.var.session`, and commits it after them: `Set-Cookie` (when there is something to say),
 * `Vary: Cookie` and, with a cookie, a private `Cache-Control` go on `c.res`.
 *
 * The session is read from the store when the middleware runs (mount it on the routes that use
 * it). A handler that throws saves nothing. Changes made after the response is returned (a
 * streamed body) are not saved: call `await session.save()` before returning.
 *
 * Errors never become a bare `500`: a store outage is `503` and a refused conflict `409`, both
 * through `onError`; a `SessionError` thrown by a handler (`session.save()`) is answered the same
 * way, in place of the app's `onError`.
 *
 * @typeParam T The shape of the session data.
 * @param options `withSession`'s options (resolved once per object), or a function of the Hono
 * context returning them (for secrets and bindings from `c.env`; return the same object for the
 * same environment). Without options, the session comes from `withSession` wrapping the app's
 * `fetch` (`withSession(app.fetch, options)`), which then commits it and re-runs the app when a
 * conflict asks for it: every conflict policy is honoured that way.
 * With options, a conflict that needs the handlers run again (`merge` when a key the request read
 * changed meanwhile, any conflict under `retry`) is answered `409`.
 * @returns The middleware.
 * @throws {TypeError} On invalid options given as an object (missing or short secrets, ...).
 * @throws {RangeError} On invalid timeouts or attempts.
 * @example
 * ```ts
 * import { Hono } from "hono";
 * import { MemoryStore, withSession } from "websession";
 * import { sessionMiddleware, type SessionEnv } from "websession/hono";
 * import assert from "node:assert/strict";
 *
 * type Data = { user?: string; notice?: string };
 * const app = new Hono<SessionEnv<Data>>();
 * app.use(sessionMiddleware<Data>()); // the session of withSession below: every conflict policy holds
 * app.post("/login", (c) => {
 *   c.var.session.regenerate(); // a new id on log in
 *   c.var.session.set("user", "ada");
 *   c.var.session.flash("notice", "Welcome!");
 *   return c.redirect("/", 303);
 * });
 * app.get("/", (c) => c.text(`${c.var.session.get("notice") ?? ""} ${c.var.session.get("user") ?? "anonymous"}`));
 *
 * const fetch = withSession(app.fetch, {
 *   store: new MemoryStore(),
 *   secrets: "a secret of at least thirty-two characters",
 *   conflict: "retry",
 * });
 * const login = await fetch(new Request("https://example.com/login", { method: "POST" }));
 * assert.equal(login.status, 303);
 * const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
 * const home = (cookie: string) => fetch(new Request("https://example.com/", { headers: { cookie } }));
 * assert.equal(await (await home(cookie)).text(), "Welcome! ada");
 * assert.equal(await (await home(cookie)).text(), " ada"); // a flash shows once
 * ```
 */
export function sessionMiddleware<T extends object = SessionData>(
  options?: HonoSessionOptions<T>,
): MiddlewareHandler<SessionEnv<T>> {
  if (options === undefined) return fromWithSession as MiddlewareHandler<SessionEnv<T>>;
  if (typeof options !== "function") optionsOf(options as SessionOptions<SessionData>); // validate now
  const optionsFor = typeof options === "function"
    ? options as (c: Context) => SessionOptions
    : () => options as SessionOptions;

  return async function sessionHandler(c: Context, next: Next): Promise<Response | void> {
    if (c.get("session") !== undefined) return next(); // mounted twice: the first one owns it
    let raw: SessionOptions;
    let o;
    try {
      raw = optionsFor(c);
      o = optionsOf(raw);
    } catch (error) {
      throw configError(error);
    }
    const request = c.req.raw;
    let session: Session;
    try {
      session = await openTurnSession(request, raw);
    } catch (error) {
      if (isSessionError(error)) return sessionErrorResponse(o, error, request);
      throw error;
    }
    try {
      c.set("session", session);
      await runAndCommit(c, next, session, (error) => sessionErrorResponse(o, error, request));
    } finally {
      await closeSession(session); // the session's next request goes on
    }
  };
}

/**
 * Runs the rest of the app and commits the session into its response. An error answered here
 * keeps the cookie of what an earlier `save()` of the request stored.
 */
async function runAndCommit(
  c: Context,
  next: Next,
  session: Session,
  errorResponse: (error: SessionError) => Promise<Response>,
): Promise<void> {
  const answer = async (error: SessionError) =>
    replace(c, decorateSession(session, await errorResponse(error), takeCookies(session)));
  try {
    await next();
  } catch (error) {
    if (isSessionError(error)) return answer(error);
    throw error;
  }
  if (c.error !== undefined) {
    // The app's onError answered a handler's error: nothing more is saved. A session error
    // (session.save() in a handler) is answered as the session's onError says.
    if (isSessionError(c.error)) return answer(c.error);
    return decorate(c, session, takeCookies(session));
  }
  let cookies: string[];
  try {
    cookies = await commitSession(session);
  } catch (error) {
    if (!isSessionError(error)) throw error;
    await c.res.body?.cancel().catch(ignore);
    return answer(error);
  }
  decorate(c, session, cookies);
}

/** Adds the session's cookies (and `Vary: Cookie`) to `c.res`. */
function decorate(c: Context, session: Session, cookies: string[]): void {
  const decorated = decorateSession(session, c.res, cookies);
  if (decorated !== c.res) replace(c, decorated);
}

/** The middleware without options: the session is the one `withSession` opened for the request. */
async function fromWithSession(c: Context, next: Next): Promise<Response | void> {
  if (c.get("session") !== undefined) return next();
  let session: Session;
  try {
    session = await getRequestSession(c.req.raw);
  } catch (error) {
    if (isSessionError(error)) return plainErrorResponse(error);
    if (error instanceof TypeError) {
      throw new TypeError(
        "sessionMiddleware() without options needs the app's fetch wrapped by withSession(): export withSession(app.fetch, options), or pass the options to sessionMiddleware",
        { cause: error },
      );
    }
    throw error;
  }
  c.set("session", session);
  await next();
  // The app's onError answered a handler's error: nothing is saved (withSession, which commits
  // after this, sees only the error page).
  if (c.error !== undefined) discardChanges(session);
}

function ignore(): void {}

/** Sets `c.res` to a response of its own (Hono's setter would merge the old headers into it). */
function replace(c: Context, response: Response): void {
  c.res = undefined as unknown as Response;
  c.res = response;
}

/**
 * Returns the session that {@linkcode sessionMiddleware} opened for this request: the same
 * object as `c.var.session`, typed by the caller.
 *
 * @typeParam T The shape of the session data.
 * @param c The Hono context.
 * @returns The request's session.
 * @throws {TypeError} (as a rejection) When `sessionMiddleware` did not run for this request.
 * @example
 * ```ts
 * import { Hono } from "hono";
 * import { MemoryStore } from "websession";
 * import { getSession, sessionMiddleware } from "websession/hono";
 * import assert from "node:assert/strict";
 *
 * const app = new Hono();
 * app.use("/app/*", sessionMiddleware({ store: new MemoryStore(), secrets: "a secret of at least thirty-two characters" }));
 * app.get("/app/cart", async (c) => {
 *   const session = await getSession<{ cart?: string[] }>(c);
 *   return c.json(session.update("cart", (cart = []) => [...cart, "book"]));
 * });
 * app.get("/health", async (c) => c.text(await getSession(c).then(() => "session", () => "no session")));
 *
 * assert.deepEqual(await (await app.request("/app/cart")).json(), ["book"]);
 * assert.equal(await (await app.request("/health")).text(), "no session");
 * ```
 */
export function getSession<T extends object = SessionData>(
  // deno-lint-ignore no-explicit-any
  c: Context<any, any, any>,
): Promise<Session<T>> {
  const session = c.get("session") as Session<T> | undefined;
  if (session === undefined) {
    return Promise.reject(
      new TypeError(
        "getSession(c) needs sessionMiddleware() on this route: app.use(sessionMiddleware(options))",
      ),
    );
  }
  return Promise.resolve(session);
}
