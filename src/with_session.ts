/**
 * `withSession` and `getSession`: the request flow.
 *
 * read the cookie → (lazily, on the first `getSession`) verify and load → run the handler →
 * commit (compare-and-set, conflict policy) → `Set-Cookie`.
 *
 * @module
 */
import { parseCookies, readCookie, serializeCookie } from "./cookie.ts";
import { SessionConflictError, SessionError, SessionStateError, StoreUnavailableError } from "./errors.ts";
import { createSessionId, storageKeyOf } from "./id.ts";
import {
  configError,
  type InvalidCookieReason,
  type ResolvedOptions,
  resolveOptions,
  type SessionOptions,
} from "./options.ts";
import { joinData, replay, Session, type SessionState, splitData } from "./session.ts";
import type { SealedSessionStore, SessionData, SessionStore, StoredSession } from "./store.ts";

/** The longest signed cookie value this library writes is 76 characters; allow slack. */
const MAX_SIGNED_VALUE = 256;

interface Context {
  o: ResolvedOptions;
  request: Request;
  waitUntil?: (promise: Promise<unknown>) => void;
  promise?: Promise<Session>;
  state?: SessionState;
  loadFailed: boolean;
  /** The request carried a session cookie (valid or not). */
  cookiePresent: boolean;
  /** Sealed stores: names of the request's session cookies (`name`, `name.N`). */
  presentNames?: string[];
  /** The verified signed value the request presented or this request issued. */
  cookieValue?: string;
  /** The record version the sent cookie names (stores with stale reads carry it). */
  cookieVersion?: number;
  rotated: boolean;
  setCookies: Map<string, string>;
  responded: boolean;
  chain: Promise<void>;
  latePending: boolean;
}

/** Raised inside a commit when the `retry` policy wants the handler run again. */
class RetrySignal extends SessionConflictError {}

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
        "getSession() needs a request that went through withSession(): wrap the handler with withSession",
      ),
    );
  }
  return (ctx.promise ??= load(ctx)) as Promise<Session<T>>;
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
 * assert.match(setCookie, /^session=.+; Path=\/; HttpOnly; Secure; SameSite=Lax; Max-Age=3600/);
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
    return run(handler, o, request, rest);
  };
}

function findWaitUntil(rest: unknown[]): ((promise: Promise<unknown>) => void) | undefined {
  for (const arg of rest) {
    const waitUntil = (arg as { waitUntil?: unknown } | null)?.waitUntil;
    if (typeof waitUntil === "function") return waitUntil.bind(arg) as (promise: Promise<unknown>) => void;
  }
  return undefined;
}

async function run<A extends unknown[]>(
  handler: (request: Request, ...rest: A) => Response | Promise<Response>,
  o: ResolvedOptions,
  original: Request,
  rest: A,
): Promise<Response> {
  const waitUntil = findWaitUntil(rest);
  const pristine = o.conflict === "retry" ? original.clone() : undefined;
  for (let attempt = 1;; attempt++) {
    const request = attempt === 1 ? original : pristine!.clone();
    const ctx: Context = {
      o,
      request,
      waitUntil,
      loadFailed: false,
      cookiePresent: false,
      rotated: false,
      setCookies: new Map(),
      responded: false,
      chain: Promise.resolve(),
      latePending: false,
    };
    attach(request, ctx);
    let response: Response;
    try {
      response = await handler(request, ...rest);
    } catch (error) {
      if (error instanceof RetrySignal && attempt < o.maxAttempts) {
        await backoff(attempt);
        continue;
      }
      if (error instanceof SessionError) return errorResponse(ctx, error);
      throw error;
    }
    if (ctx.promise === undefined) return response;
    try {
      await ctx.promise;
    } catch {
      // The handler was told (getSession rejected) and answered anyway: respect its answer.
      return response;
    }
    try {
      await commit(ctx);
    } catch (error) {
      await response.body?.cancel().catch(() => {});
      if (error instanceof RetrySignal && attempt < o.maxAttempts) {
        await backoff(attempt);
        continue;
      }
      return errorResponse(ctx, error);
    }
    ctx.responded = true;
    const state = ctx.state!;
    state.onChange = () => scheduleLate(ctx);
    if (hasChanges(state)) scheduleLate(ctx);
    return finish(ctx, response);
  }
}

function fallbackResponse(error: SessionError): Response {
  console.error(error);
  return new Response("Internal Server Error", { status: 500 });
}

async function errorResponse(ctx: Context, error: unknown): Promise<Response> {
  const response = await ctx.o.onError(error, ctx.request);
  if (response instanceof Response) return response;
  const status = error instanceof SessionError ? error.status : 500;
  return new Response(null, { status });
}

function backoff(attempt: number): Promise<void> {
  const cap = Math.min(16, 0.5 * 2 ** attempt);
  return new Promise((resolve) => setTimeout(resolve, Math.random() * cap));
}

function invalid(ctx: Context, reason: InvalidCookieReason, detail?: unknown): undefined {
  ctx.o.onInvalidCookie?.({ reason, request: ctx.request, detail });
  return undefined;
}

function unavailable(action: string, cause: unknown): StoreUnavailableError {
  return new StoreUnavailableError(
    `Session store failed to ${action}: ${(cause as Error)?.message ?? cause}`,
    {
      cause,
    },
  );
}

interface Opened {
  id: string;
  key?: string;
  record: StoredSession;
}

async function load(ctx: Context): Promise<Session> {
  const o = ctx.o;
  let opened: Opened | undefined;
  try {
    opened = o.sealed ? await openSealed(ctx) : await openSigned(ctx);
  } catch (error) {
    ctx.loadFailed = true;
    throw error;
  }
  const now = o.now();
  const doomed: SessionState["doomed"] = [];
  let data: { data: Map<string, unknown>; flash: Map<string, unknown> } | undefined;
  if (opened !== undefined) {
    data = splitData(opened.record.data);
    if (o.schema !== undefined) {
      let result;
      try {
        result = await o.schema["~standard"].validate(Object.fromEntries(data.data));
      } catch (error) {
        result = { issues: [{ message: String(error) }] };
      }
      if (result.issues !== undefined || typeof result.value !== "object" || result.value === null) {
        invalid(ctx, "data", result.issues);
        const { record } = opened;
        doomed.push({
          id: opened.id,
          key: opened.key,
          createdAt: record.createdAt,
          expiresAt: record.expiresAt,
        });
        opened = undefined;
        data = undefined;
      } else {
        data.data = new Map(Object.entries(result.value));
      }
    }
  }
  const fresh = opened === undefined || data === undefined;
  // A new session on a server store takes an id signed ahead of time when one is ready.
  const minted = fresh && !o.sealed && !(o.store as SessionStore).capabilities.staleReads
    ? o.signer.take()
    : undefined;
  const state: SessionState = {
    id: fresh ? minted?.id ?? createSessionId() : opened!.id,
    minted,
    key: fresh ? undefined : opened!.key,
    isNew: fresh,
    version: fresh ? 0 : opened!.record.version,
    createdAt: fresh ? now : opened!.record.createdAt,
    expiresAt: fresh ? Math.min(now + o.idleMs, now + o.absoluteMs) : opened!.record.expiresAt,
    data: data?.data ?? new Map(),
    flash: data?.flash ?? new Map(),
    flashOut: new Map(),
    ops: [],
    doomed,
    touchRequested: false,
    save: () => serialCommit(ctx),
    now: o.now,
  };
  if (ctx.responded) state.onChange = () => scheduleLate(ctx);
  ctx.state = state;
  return new Session(state);
}

function isLive(o: ResolvedOptions, record: StoredSession): boolean {
  const now = o.now();
  return record.expiresAt > now && record.createdAt + o.absoluteMs > now;
}

async function openSigned(ctx: Context): Promise<Opened | undefined> {
  const o = ctx.o;
  const found = readCookie(ctx.request.headers.get("cookie"), o.cookie.name);
  if (found.count === 0) return undefined;
  ctx.cookiePresent = true;
  if (found.count > 1) return invalid(ctx, "duplicate");
  const value = found.value!;
  if (value.length > MAX_SIGNED_VALUE) return invalid(ctx, "oversized");
  const verified = o.signer.cached(value) ?? await o.signer.verify(value);
  if (typeof verified === "string") return invalid(ctx, verified);
  let record: StoredSession | null;
  try {
    const store = o.store as SessionStore;
    record = await (store.capabilities.staleReads && verified.version !== undefined
      ? store.load(verified.key, verified.version)
      : store.load(verified.key));
  } catch (error) {
    throw unavailable("load", error);
  }
  if (record === null || !isLive(o, record)) return invalid(ctx, "unknown");
  ctx.cookieValue = value;
  ctx.cookieVersion = record.version;
  ctx.rotated = verified.rotated;
  return { id: verified.id, key: verified.key, record };
}

const CHUNK_NAME = /^\.(?:0|[1-9][0-9]{0,2})$/;

async function openSealed(ctx: Context): Promise<Opened | undefined> {
  const o = ctx.o;
  const name = o.cookie.name;
  const { cookies, duplicates } = parseCookies(ctx.request.headers.get("cookie"));
  const present: string[] = [];
  for (const cookie of cookies.keys()) {
    if (cookie === name || (cookie.startsWith(name) && CHUNK_NAME.test(cookie.slice(name.length)))) {
      present.push(cookie);
    }
  }
  ctx.presentNames = present;
  if (present.length === 0) return undefined;
  ctx.cookiePresent = true;
  if (present.some((cookie) => duplicates.has(cookie))) return invalid(ctx, "duplicate");
  let opened;
  try {
    opened = await (o.store as SealedSessionStore).open((cookie) => cookies.get(cookie), name);
  } catch (error) {
    if (error instanceof StoreUnavailableError) throw error;
    if (error instanceof TypeError || error instanceof SessionError) return invalid(ctx, "malformed", error);
    throw unavailable("open the session", error);
  }
  if (opened === null || !isLive(o, opened.record)) return invalid(ctx, "unknown");
  ctx.rotated = opened.stale;
  return { id: opened.id, record: opened.record };
}

function hasChanges(s: SessionState): boolean {
  return s.ops.length > 0 || s.doomed.length > 0 || s.touchRequested ||
    (s.isNew && (s.data.size > 0 || s.flashOut.size > 0));
}

function isEmpty(s: SessionState): boolean {
  return s.data.size === 0 && s.flash.size === 0 && s.flashOut.size === 0;
}

/** Commits one at a time: an explicit `save()`, the end of the handler and late changes. */
function serialCommit(ctx: Context): Promise<void> {
  const next = ctx.chain.then(() => commit(ctx));
  ctx.chain = next.catch(() => {});
  return next;
}

function commit(ctx: Context): Promise<void> {
  return ctx.o.sealed ? commitSealed(ctx) : commitStored(ctx);
}

function scheduleLate(ctx: Context): void {
  if (ctx.latePending) return;
  ctx.latePending = true;
  const done = Promise.resolve().then(async () => {
    ctx.latePending = false;
    try {
      await serialCommit(ctx);
    } catch (error) {
      try {
        await ctx.o.onError(error, ctx.request);
      } catch {
        // onError failed too; nothing else can be told
      }
    }
  });
  ctx.waitUntil?.(done);
}

function setCookie(ctx: Context, name: string, value: string, expiresAt: number, now: number): void {
  const cookie = ctx.o.cookie;
  const maxAge = cookie.persistent ? Math.max(1, (expiresAt - now) / 1000) : undefined;
  ctx.setCookies.set(name, serializeCookie(name, value, cookie.attributes, maxAge, now));
}

function clearCookie(ctx: Context, name: string, now: number): void {
  ctx.setCookies.set(name, serializeCookie(name, "", ctx.o.cookie.attributes, 0, now));
}

function lateCreation(): SessionStateError {
  return new SessionStateError(
    "Session changed after the response was sent: a new or regenerated session needs a Set-Cookie header; call getSession() and change the session before returning the response",
  );
}

async function commitStored(ctx: Context): Promise<void> {
  const { o } = ctx;
  const s = ctx.state!;
  const store = o.store as SessionStore;
  const now = o.now();
  if (ctx.responded && s.isNew && !isEmpty(s)) throw lateCreation();

  while (s.doomed.length > 0) {
    const gone = s.doomed[0]!;
    const key = gone.key ?? await storageKeyOf(gone.id);
    try {
      await store.destroy(key);
    } catch (error) {
      throw unavailable("destroy", error);
    }
    s.doomed.shift();
    if (ctx.cookieValue !== undefined) o.signer.forget(ctx.cookieValue);
    ctx.cookieValue = undefined;
  }

  if (s.isNew) {
    s.touchRequested = false;
    if (isEmpty(s)) {
      s.ops = [];
      if (ctx.cookiePresent && !ctx.responded) clearCookie(ctx, o.cookie.name, now);
      // An id minted ahead of time that nobody saw goes back for the next visitor.
      if (s.minted?.id === s.id && !s.idRead) o.signer.recycle(s.minted);
      s.minted = undefined;
      return;
    }
    const expiresAt = Math.min(now + o.idleMs, s.createdAt + o.absoluteMs);
    const taken = s.ops.length;
    for (let tries = 1;; tries++) {
      const { value, key } = s.minted?.id === s.id
        ? s.minted
        : await o.signer.issue(s.id, store.capabilities.staleReads ? 1 : undefined);
      s.minted = undefined;
      const record = { data: joinData(s), version: 1, createdAt: s.createdAt, expiresAt };
      if (await save(store, key, record, null)) {
        s.key = key;
        ctx.cookieValue = value;
        ctx.cookieVersion = 1;
        break;
      }
      if (tries >= 3) {
        throw new SessionConflictError("Could not create a session: its id was taken three times");
      }
      s.id = createSessionId();
    }
    s.isNew = false;
    s.version = 1;
    s.expiresAt = expiresAt;
    s.ops = s.ops.slice(taken);
    setCookie(ctx, o.cookie.name, ctx.cookieValue, expiresAt, now);
    return;
  }

  const extended = Math.min(now + o.idleMs, s.createdAt + o.absoluteMs);
  const touchDue = extended > s.expiresAt &&
    (s.touchRequested || now + o.idleMs - s.expiresAt >= o.touchAfterMs);
  s.touchRequested = false;
  if (s.ops.length > 0) {
    const saved = await saveWithPolicy(ctx, s, store, touchDue ? extended : s.expiresAt);
    if (!saved) return;
  } else if (touchDue) {
    try {
      if (store.touch !== undefined) await store.touch(s.key!, extended);
      else if (!(await saveWithPolicy(ctx, s, store, extended))) return;
    } catch (error) {
      throw error instanceof SessionError ? error : unavailable("touch", error);
    }
    s.expiresAt = extended;
  }
  if (ctx.responded) return;
  if (ctx.rotated || (store.capabilities.staleReads && s.version !== ctx.cookieVersion)) {
    // Re-sign: a retired secret, or a store with stale reads that needs the new version.
    ctx.cookieValue =
      (await o.signer.issue(s.id, store.capabilities.staleReads ? s.version : undefined)).value;
    ctx.cookieVersion = s.version;
    ctx.rotated = false;
    setCookie(ctx, o.cookie.name, ctx.cookieValue, s.expiresAt, now);
  } else if (touchDue && o.cookie.persistent) {
    setCookie(ctx, o.cookie.name, ctx.cookieValue!, s.expiresAt, now);
  }
}

/**
 * Compare-and-set with the conflict policy. Returns `false` when the record was found gone
 * (destroyed or expired by another request): the session then stays destroyed.
 */
async function saveWithPolicy(
  ctx: Context,
  s: SessionState,
  store: SessionStore,
  expiresAt: number,
): Promise<boolean> {
  const { o } = ctx;
  for (let attempt = 1;; attempt++) {
    const taken = s.ops.length;
    const record = { data: joinData(s), version: s.version + 1, createdAt: s.createdAt, expiresAt };
    if (await save(store, s.key!, record, s.version)) {
      s.version = record.version;
      s.expiresAt = expiresAt;
      s.ops = s.ops.slice(taken);
      return true;
    }
    if (o.conflict === "reject") {
      throw new SessionConflictError(
        'Session was changed by a concurrent request (conflict policy "reject")',
      );
    }
    if (o.conflict === "retry" && !ctx.responded) {
      throw new RetrySignal("Session was changed by a concurrent request: running the handler again");
    }
    if (attempt >= o.maxAttempts) {
      throw new SessionConflictError(`Session save lost to concurrent requests ${attempt} times: giving up`);
    }
    await backoff(attempt);
    let fresh: StoredSession | null;
    try {
      fresh = await store.load(s.key!);
    } catch (error) {
      throw unavailable("load", error);
    }
    if (fresh === null || !isLive(o, fresh)) {
      // Destroyed (logout) or expired meanwhile: it stays that way; this request's changes go.
      s.id = createSessionId();
      s.key = undefined;
      s.isNew = true;
      s.version = 0;
      s.data = new Map();
      s.flash = new Map();
      s.flashOut = new Map();
      s.ops = [];
      if (ctx.cookieValue !== undefined) o.signer.forget(ctx.cookieValue);
      ctx.cookieValue = undefined;
      if (!ctx.responded) clearCookie(ctx, o.cookie.name, o.now());
      return false;
    }
    if (o.conflict === "merge" || o.conflict === "retry") {
      const merged = replay(s.ops, fresh.data);
      s.data = merged.data;
      s.flash = merged.flash;
      s.flashOut = new Map();
    }
    s.version = fresh.version;
    s.createdAt = fresh.createdAt;
    if (fresh.expiresAt > expiresAt) expiresAt = fresh.expiresAt;
  }
}

async function save(
  store: SessionStore,
  key: string,
  record: StoredSession,
  expectedVersion: number | null,
): Promise<boolean> {
  try {
    return await store.save(key, record, expectedVersion);
  } catch (error) {
    throw unavailable("save", error);
  }
}

async function commitSealed(ctx: Context): Promise<void> {
  const { o } = ctx;
  const s = ctx.state!;
  const store = o.store as SealedSessionStore;
  const name = o.cookie.name;
  const now = o.now();
  if (ctx.responded && hasChanges(s)) {
    throw new SessionStateError("A cookie-sealed session cannot change after the response was sent");
  }
  while (s.doomed.length > 0) {
    const gone = s.doomed[0]!;
    try {
      // A request in flight during logout may still seal a cookie living up to a full idle window.
      const until = Math.max(gone.expiresAt, Math.min(now + o.idleMs, gone.createdAt + o.absoluteMs));
      await store.revoke?.(gone.id, { data: {}, version: 0, createdAt: gone.createdAt, expiresAt: until });
    } catch (error) {
      throw unavailable("revoke", error);
    }
    s.doomed.shift();
  }
  const extended = Math.min(now + o.idleMs, s.createdAt + o.absoluteMs);
  const touchDue = extended > s.expiresAt &&
    (s.touchRequested || now + o.idleMs - s.expiresAt >= o.touchAfterMs);
  s.touchRequested = false;
  if (s.isNew && isEmpty(s)) {
    s.ops = [];
    for (const cookie of ctx.presentNames ?? []) clearCookie(ctx, cookie, now);
    return;
  }
  if (!s.isNew && s.ops.length === 0 && !touchDue && !ctx.rotated) return;
  const expiresAt = s.isNew || touchDue ? extended : s.expiresAt;
  const record = { data: joinData(s), version: s.version + 1, createdAt: s.createdAt, expiresAt };
  const cookies = await store.seal(s.id, record, name);
  const sent = new Set<string>();
  for (const cookie of cookies) {
    setCookie(ctx, cookie.name, cookie.value, expiresAt, now);
    sent.add(cookie.name);
  }
  for (const cookie of ctx.presentNames ?? []) if (!sent.has(cookie)) clearCookie(ctx, cookie, now);
  ctx.presentNames = [...sent];
  s.isNew = false;
  s.version = record.version;
  s.expiresAt = expiresAt;
  s.ops = [];
  ctx.rotated = false;
}

function finish(ctx: Context, response: Response): Response {
  try {
    decorate(ctx, response.headers);
    return response;
  } catch {
    // Immutable headers (Response.redirect(), a fetch() result): copy the response.
    const copy = new Response(response.body, response);
    decorate(ctx, copy.headers);
    return copy;
  }
}

function decorate(ctx: Context, headers: Headers): void {
  const vary = headers.get("vary");
  if (vary === null) headers.set("vary", "Cookie");
  else if (!/(^|,)\s*(cookie|\*)\s*(,|$)/i.test(vary)) headers.set("vary", `${vary}, Cookie`);
  if (ctx.setCookies.size === 0) return;
  for (const cookie of ctx.setCookies.values()) headers.append("set-cookie", cookie);
  const cacheControl = headers.get("cache-control");
  if (cacheControl === null) headers.set("cache-control", "private, no-store");
  else if (!/(^|,)\s*(private|no-store)\s*(,|$)/i.test(cacheControl)) {
    // A response that sets a session cookie belongs to one user: a shared cache must not keep
    // it. The handler's other directives (max-age, ...) stay for the browser's own cache.
    const kept = cacheControl.split(",").map((d) => d.trim()).filter((d) =>
      d !== "" && !/^(public|s-maxage\s*=.*)$/i.test(d)
    );
    headers.set("cache-control", ["private", ...kept].join(", "));
  }
}
