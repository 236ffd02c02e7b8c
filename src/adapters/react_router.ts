/**
 * Sessions for React Router: a server middleware (React Router 7.9+ with the `v8_middleware`
 * future flag, and React Router 8) whose session loaders and actions reach through their
 * `context` with `await getSession(context)`, and `createSessionStorage`, React Router's
 * `SessionStorage` interface over any websession store, for apps that call
 * `getSession(cookieHeader)` / `commitSession(session)` themselves.
 *
 * React Router hands loaders a `Request` it built again, so the session cannot be found from the
 * request there; the middleware keeps it in the router context instead.
 *
 * The middleware cannot run the loaders and actions after it a second time (React Router allows
 * `next()` once), so the two conflict outcomes that need a re-run (a `merge` whose observed keys
 * changed meanwhile, every conflict under `retry`) are answered `409` through `onError`. Merges
 * that replay (writers of other keys, `update()` counters) land as usual; `reject` and
 * `overwrite` behave as under `withSession`.
 *
 * Nothing here imports `react-router`: the types below are the shapes React Router 7 and 8
 * define, and its own values fit them.
 *
 * @example
 * ```ts
 * import { createRequestHandler, type ServerBuild } from "react-router";
 * import { MemoryStore } from "websession";
 * import { getSession, type RouterContextLike, sessionMiddleware } from "websession/react-router";
 * import assert from "node:assert/strict";
 *
 * type Data = { visits?: number };
 * // app/root.tsx of a React Router app: `export const middleware = [sessionMiddleware(options)]`
 * // and loaders that `await getSession(context)`; here the route tree is built in code.
 * const root = {
 *   middleware: [sessionMiddleware<Data>({ store: new MemoryStore(), secrets: "a secret of at least thirty-two characters" })],
 *   async loader({ context }: { context: RouterContextLike }) {
 *     const session = await getSession<Data>(context);
 *     return Response.json({ visits: session.update("visits", (n = 0) => n + 1) });
 *   },
 * };
 * const build = {
 *   entry: { module: { default: () => new Response(null, { status: 500 }) } },
 *   routes: { root: { id: "root", path: "", module: root } },
 *   assets: { entry: { imports: [], module: "" }, routes: {}, url: "", version: "1" },
 *   publicPath: "/", assetsBuildDirectory: "build/client", future: { v8_middleware: true },
 *   ssr: true, isSpaMode: false, prerender: [], routeDiscovery: { mode: "initial", manifestPath: "/__manifest" },
 * } as unknown as ServerBuild;
 * const handler = createRequestHandler(build);
 *
 * const first = await handler(new Request("https://example.com/"));
 * assert.deepEqual(await first.json(), { visits: 1 });
 * const cookie = first.headers.get("set-cookie")!.split(";")[0]!;
 * const second = await handler(new Request("https://example.com/", { headers: { cookie } }));
 * assert.deepEqual(await second.json(), { visits: 2 });
 * ```
 *
 * @module
 */
import { configError, type ResolvedOptions, type SessionOptions } from "../options.ts";
import {
  closeSession,
  commitSession as commit,
  decorateSession,
  openTurnSession,
  optionsOf,
  takeCookies,
} from "../open_session.ts";
import type { Session } from "../session.ts";
import type { SessionData } from "../store.ts";
import { isSessionError, sessionErrorResponse } from "./response.ts";

/**
 * React Router's `RouterContextProvider` (the `context` of middleware, loaders and actions when
 * middleware is on), as this adapter uses it: values under keys made by `createContext()`.
 *
 * @example
 * ```ts
 * import { createContext, RouterContextProvider } from "react-router";
 * import type { RouterContextLike } from "websession/react-router";
 * import assert from "node:assert/strict";
 *
 * const user = createContext<string>();
 * const context: RouterContextLike = new RouterContextProvider(); // React Router's own fits
 * context.set(user, "ada");
 * assert.equal(context.get(user), "ada");
 * ```
 */
export interface RouterContextLike {
  /** Reads the value under a key. */
  get<T>(context: { defaultValue?: T }): T;
  /** Sets the value under a key. */
  set<T>(context: { defaultValue?: T }, value: T): void;
}

/**
 * A server middleware of React Router (`Route.MiddlewareFunction`): it gets the request and the
 * context, and calls `next()` once for the response.
 *
 * @example
 * ```ts
 * import { RouterContextProvider } from "react-router";
 * import { MemoryStore } from "websession";
 * import { getSession, type SessionMiddlewareFunction, sessionMiddleware } from "websession/react-router";
 * import assert from "node:assert/strict";
 *
 * // app/root.tsx: export const middleware = [session];
 * const session: SessionMiddlewareFunction = sessionMiddleware({
 *   store: new MemoryStore(),
 *   secrets: "a secret of at least thirty-two characters",
 * });
 * // What React Router does for a request: the middleware, then (inside next) the loaders.
 * const context = new RouterContextProvider();
 * const response = await session({ request: new Request("https://example.com/"), context }, async () => {
 *   (await getSession<{ theme?: string }>(context)).set("theme", "dark");
 *   return new Response("ok");
 * });
 * assert.match(response.headers.get("set-cookie")!, /^session=/);
 * ```
 */
export type SessionMiddlewareFunction = (
  args: { request: Request; context: RouterContextLike },
  next: () => Promise<unknown>,
) => Promise<Response>;

/**
 * Options of the React Router `sessionMiddleware`: `withSession`'s, or a function of the
 * middleware arguments returning them (return the same object each time: options are resolved
 * once per object).
 *
 * @example
 * ```ts
 * import { createContext } from "react-router";
 * import { MemoryStore, type SessionOptions } from "websession";
 * import type { RouterSessionOptions } from "websession/react-router";
 * import assert from "node:assert/strict";
 *
 * // Secrets from the platform, put in the context by getLoadContext (Workers: env).
 * const secretContext = createContext<string>();
 * const byKey = new Map<string, SessionOptions>();
 * const options: RouterSessionOptions = ({ context }) => {
 *   const secret = context.get(secretContext);
 *   let found = byKey.get(secret);
 *   if (found === undefined) byKey.set(secret, found = { store: new MemoryStore(), secrets: secret });
 *   return found;
 * };
 * assert.equal(typeof options, "function");
 * ```
 */
export type RouterSessionOptions<T extends object = SessionData> =
  | SessionOptions<T>
  | ((args: { request: Request; context: RouterContextLike }) => SessionOptions<T>);

/** What the middleware keeps in the router context for one request. */
interface Holder {
  options: SessionOptions;
  request: Request;
  /** The session, once a loader or action asked for it. */
  promise: Promise<Session> | undefined;
}

/** The context key. `null` by default, so a missing middleware is told apart without a throw. */
const sessionKey: { defaultValue: Holder | null } = { defaultValue: null };

/**
 * React Router server middleware that gives loaders and actions the request's session through
 * {@linkcode getSession}, and commits it when they are done (compare-and-set, conflict policy):
 * `Set-Cookie` (when there is something to say), `Vary: Cookie` and, with a cookie, a private
 * `Cache-Control` go on the response, for document, data (`.data`) and resource requests alike.
 *
 * Add it to the root route's `middleware` (React Router 8; 7.9+ with `future.v8_middleware`).
 * The store is read on the first `getSession(context)` only: a request no loader asks costs no
 * store call and gets no session header. Loaders of one request share one session.
 *
 * Errors never become a bare `500`: a store outage is `503` and a refused conflict `409`, through
 * `onError`. Changes made after `next()` returned (a promise a loader left streaming) are not
 * saved.
 *
 * @typeParam T The shape of the session data.
 * @param options `withSession`'s options (resolved once per object), or a function of the
 * middleware arguments returning them (for secrets from the context; return the same object
 * each time). A conflict that needs the loaders run again (`merge` when a key the request read
 * changed meanwhile, any conflict under `retry`) is answered `409`.
 * @returns The middleware.
 * @throws {TypeError} On invalid options given as an object (missing or short secrets, ...).
 * @throws {RangeError} On invalid timeouts or attempts.
 * @example
 * ```ts
 * import { createRequestHandler, type ServerBuild } from "react-router";
 * import { MemoryStore } from "websession";
 * import { getSession, type RouterContextLike, sessionMiddleware } from "websession/react-router";
 * import assert from "node:assert/strict";
 *
 * type Data = { user?: string; notice?: string };
 * type Args = { request: Request; context: RouterContextLike };
 * const routes = {
 *   root: {
 *     id: "root", path: "",
 *     module: { middleware: [sessionMiddleware<Data>({ store: new MemoryStore(), secrets: "a secret of at least thirty-two characters" })] },
 *   },
 *   login: {
 *     id: "login", parentId: "root", path: "login",
 *     module: {
 *       async action({ context }: Args) {
 *         const session = await getSession<Data>(context);
 *         session.regenerate(); // a new id on log in
 *         session.set("user", "ada");
 *         session.flash("notice", "Welcome!");
 *         return new Response(null, { status: 303, headers: { location: "/me" } });
 *       },
 *     },
 *   },
 *   me: {
 *     id: "me", parentId: "root", path: "me",
 *     module: {
 *       async loader({ context }: Args) {
 *         const session = await getSession<Data>(context);
 *         return Response.json({ user: session.get("user") ?? null, notice: session.get("notice") ?? null });
 *       },
 *     },
 *   },
 * };
 * const handler = createRequestHandler({
 *   entry: { module: { default: () => new Response(null, { status: 500 }) } },
 *   routes,
 *   assets: { entry: { imports: [], module: "" }, routes: {}, url: "", version: "1" },
 *   publicPath: "/", assetsBuildDirectory: "build/client", future: { v8_middleware: true },
 *   ssr: true, isSpaMode: false, prerender: [], routeDiscovery: { mode: "initial", manifestPath: "/__manifest" },
 * } as unknown as ServerBuild);
 *
 * const login = await handler(new Request("https://example.com/login", { method: "POST" }));
 * assert.equal(login.status, 303);
 * const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
 * const me = () => handler(new Request("https://example.com/me", { headers: { cookie } }));
 * assert.deepEqual(await (await me()).json(), { user: "ada", notice: "Welcome!" });
 * assert.deepEqual(await (await me()).json(), { user: "ada", notice: null }); // a flash shows once
 * ```
 */
export function sessionMiddleware<T extends object = SessionData>(
  options: RouterSessionOptions<T>,
): SessionMiddlewareFunction {
  if (typeof options !== "function") optionsOf(options as SessionOptions<SessionData>); // validate now
  const optionsFor = typeof options === "function"
    ? options as (args: { request: Request; context: RouterContextLike }) => SessionOptions
    : () => options as SessionOptions;

  return async function sessionMiddlewareFunction(args, next): Promise<Response> {
    const { request, context } = args;
    if (typeof context?.get !== "function" || typeof context.set !== "function") {
      throw new TypeError(
        "sessionMiddleware() needs React Router's middleware context: React Router 8, or 7.9+ with future.v8_middleware",
      );
    }
    if (context.get(sessionKey) !== null) {
      return expectResponse(await next()); // mounted twice: the first one owns the session
    }
    let raw: SessionOptions;
    let o: ResolvedOptions;
    try {
      raw = optionsFor(args);
      o = optionsOf(raw);
    } catch (error) {
      throw configError(error);
    }
    const holder: Holder = { options: raw, request, promise: undefined };
    context.set(sessionKey, holder);
    try {
      return await respond(holder, o, next);
    } finally {
      // The session's next request goes on, whatever happened here.
      const session = await holder.promise?.catch(ignore);
      if (session !== undefined) await closeSession(session);
    }
  };
}

/** Runs the rest of the chain, then commits the session if a loader or action opened it. */
async function respond(holder: Holder, o: ResolvedOptions, next: () => Promise<unknown>): Promise<Response> {
  const request = holder.request;
  let response: Response;
  try {
    response = expectResponse(await next());
  } catch (error) {
    if (isSessionError(error)) return sessionErrorResponse(o, error, request);
    throw error;
  }
  if (holder.promise === undefined) return response;
  let session: Session;
  try {
    session = await holder.promise;
  } catch (error) {
    // The store could not be read: whatever the loaders made of it, answer as onError says.
    if (!isSessionError(error)) return response;
    await response.body?.cancel().catch(ignore);
    return sessionErrorResponse(o, error, request);
  }
  let cookies: string[];
  try {
    cookies = await commit(session);
  } catch (error) {
    if (!isSessionError(error)) throw error;
    await response.body?.cancel().catch(ignore);
    // What an earlier save() of the request stored keeps its cookie.
    return decorateSession(session, await sessionErrorResponse(o, error, request), takeCookies(session));
  }
  return decorateSession(session, response, cookies);
}

function expectResponse(result: unknown): Response {
  if (result instanceof Response) return result;
  throw new TypeError(
    "sessionMiddleware() is a server middleware: export it in `middleware`, not `clientMiddleware`",
  );
}

function ignore(): void {}

/**
 * Returns the request's session inside a loader or action under {@linkcode sessionMiddleware}.
 * The store is read on the first call of the request; later calls, from any loader of the same
 * request, return the same `Session`.
 *
 * @typeParam T The shape of the session data.
 * @param context The `context` argument of the loader or action.
 * @returns The request's session.
 * @throws {TypeError} (as a rejection) When `sessionMiddleware` is not in the matched routes'
 * middleware.
 * @throws {StoreUnavailableError} (as a rejection) When the store cannot be read; the middleware
 * answers `503` through `onError`.
 * @example
 * ```ts
 * import { RouterContextProvider } from "react-router";
 * import { getSession } from "websession/react-router";
 * import assert from "node:assert/strict";
 *
 * // Without the middleware there is no session to give.
 * await assert.rejects(getSession(new RouterContextProvider()), /sessionMiddleware/);
 * ```
 */
export function getSession<T extends object = SessionData>(context: RouterContextLike): Promise<Session<T>> {
  const holder = typeof context?.get === "function" ? context.get(sessionKey) : null;
  if (holder === null || holder === undefined) {
    return Promise.reject(
      new TypeError(
        "getSession(context) needs sessionMiddleware() in the root route's middleware (React Router 8, or 7.9+ with future.v8_middleware)",
      ),
    );
  }
  holder.promise ??= openTurnSession(holder.request, holder.options);
  return holder.promise as Promise<Session<T>>;
}

export {
  createSessionStorage,
  type FlashSessionData,
  type RouterSession,
  type RouterSessionStorage,
  type StorageSession,
} from "./react_router/session_storage.ts";
