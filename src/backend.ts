/**
 * What the request flow needs from a backend, and what both backends share. There are two
 * kinds: a server store behind a signed id (`backends/server.ts`) and a sealed cookie store
 * (`backends/sealed.ts`). The flow (`open_session.ts`, `with_session.ts`, `request_run.ts`)
 * never branches on the kind.
 *
 * @module
 */
import { readCookies, serializeCookie } from "./cookie.ts";
import { emit } from "./events.ts";
import { SessionConflictError, type SessionError, SessionStateError } from "./errors.ts";
import type { InvalidCookieReason, ResolvedOptions, Timeouts } from "./options.ts";
import { NO_OPS, REMEMBER_KEY, type SessionHost, type SessionState } from "./session_state.ts";
import { instrument } from "./instrument.ts";
import type { OpenedSession, SealedSessionStore, SessionStore, StoredSession } from "./store.ts";
import { releaseTurn, type Turn } from "./turns.ts";

/** Where a request's cookies are read from: its `Cookie` header, or a framework's cookie jar. */
export type CookieSource =
  | string
  | null
  | { get(name: string): string | { value: string } | undefined | null };

/** Every value the source holds for one cookie name, in order. */
export function cookieValues(source: CookieSource, name: string): string[] {
  if (source === null || typeof source === "string") return readCookies(source, name);
  const found = source.get(name);
  const value = typeof found === "string" ? found : found?.value;
  return typeof value === "string" ? [value] : [];
}

/**
 * One opened session: the `Session`'s state plus what the flow keeps beside it. One object per
 * request, of one shape, built by {@linkcode newHandle}.
 */
export interface Handle extends SessionState {
  o: ResolvedOptions;
  /** The request, when there is one (for hooks). */
  request: Request | undefined;
  /** The store every call of this request goes through: `o.store`, reported when `onEvent` is set. */
  store: SessionStore | SealedSessionStore;
  waitUntil: ((promise: Promise<unknown>) => void) | undefined;
  /** `Set-Cookie` values to send, by cookie name. */
  setCookies: Map<string, string> | undefined;
  /** Server stores: the verified cookie value presented, or the one issued. */
  cookieValue: string | undefined;
  /** Server stores with stale reads: the record version the sent cookie names. */
  cookieVersion: number | undefined;
  /** The cookie verified with a retired secret: re-sign or re-seal it. */
  rotated: boolean;
  /** Sealed stores: the names of the session cookies the request carried. */
  presented: string[] | undefined;
  /** Sealed stores: the seal presented, authentic but superseded by a newer one of its session. */
  superseded: OpenedSession | undefined;
  /**
   * The cookie named a session another request ended while this one was in flight: the browser
   * may hold a newer session's cookie already, so no `Set-Cookie` and no writes. `"destroyed"`:
   * ended by the browser's own log out, so a log in (`renewed`) may still start a new session:
   * nothing of the old one lives on, and its new cookie replaces whatever the browser holds on
   * purpose (a response that arrived late can have put the logged-out cookie back).
   */
  endedElsewhere: boolean | "destroyed";
  /** This request ended the session its cookie named: clear the cookie unless replaced. */
  clearCookie: boolean;
  /** The response has been returned: later changes are saved late, without cookies. */
  responded: boolean;
  /** Commits of this session run one after another. */
  chain: Promise<CommitResult> | undefined;
  latePending: boolean;
  /** The wrapper can run the handler again. */
  canRerun: boolean;
  /** A commit asked for the handler to run again. */
  rerun: boolean;
  /** Who takes turns for this request (kept across re-runs): the request, else the handle. */
  owner: object | undefined;
  /** The turn this request holds on its session's key, if any. */
  turn: Turn | undefined;
  /** The session travels in a header (`transport` option), not in the cookie. */
  onHeader: boolean;
  /** Header transport: the token the request presented. */
  tokenIn: string | undefined;
  /** Header transport: the token to send (`""`: the session ended, drop it). */
  tokenOut: string | undefined;
  /** Who waits for the session to open (withSession's context), told when it has. */
  sink: HandleSink | undefined;
}

/** Where `openHandle` leaves the handle it built, for the wrapper that waits on it. */
export interface HandleSink {
  handle: Handle | undefined;
  /** Who takes turns for the request (the same object across re-runs). */
  owner: object;
  canRerun: boolean;
  responded: boolean;
}

/** How a commit ended: done, run the handler again, or an error to answer with. */
export type CommitResult = "done" | "rerun" | SessionError;

/** A kind of backend. */
export interface Backend {
  /**
   * Reads the request's cookie, verifies and loads; fills `h`, then runs `then` on it as its last
   * step (no step of its own chained after it) and resolves to what that returns. Rejects on an
   * outage, having given up what it took (the turn, the store's lock: see `openFailed`).
   */
  open<R>(h: Handle, source: CookieSource, then: (h: Handle) => R | Promise<R>): Promise<R>;
  /** Saves what changed and sets the cookies to send. */
  commit(h: Handle): Promise<CommitResult>;
}

/**
 * A store that needs a backend of its own (a `MigratingStore` from a `CookieStore` moves sealed
 * cookies) carries it under this key, so the core bundles no backend an application does not use.
 */
export const kBackend: unique symbol = Symbol.for("websession.backend");

/**
 * What the core asks of the `transport` option, carried under this key by `headerTransport()`
 * so that an application on cookies alone bundles none of it.
 */
export const kTransport: unique symbol = Symbol.for("websession.transport");

/** The header transport's part of the request flow (see {@linkcode kTransport}). */
export interface TransportFlow {
  /** Refuses a store the transport cannot serve (a sealed one). */
  check(sealed: boolean): void;
  /** The request header the session travels in, as the application spelt it. */
  header: string;
  /** `SessionTransport.tokenOf`: `undefined` when the request's session is in the cookie. */
  tokenOf(headers: Headers): string | undefined;
  /** Where the request's session comes from; marks `h` as answered on the header when it is. */
  source(h: Handle, input: unknown, cookieSource: (input: unknown) => CookieSource): CookieSource;
  /** Adds the committed session's headers for the transport the request came in on. */
  decorate(h: Handle, response: Response, cookies: readonly string[]): Response;
}

/**
 * What the core asks of the `users` option, carried under this key by `userSessions()` so that an
 * application without sessions per user bundles none of it (the index, the metadata, the limit).
 */
export const kUsers: unique symbol = Symbol.for("websession.users");

/** Sessions per user's part of the commit (see {@linkcode kUsers}). */
export interface UsersFlow {
  /** The session key that holds the user's id. */
  userKey: string;
  /** `maxSessionsPerUser`, checked (needs a store with `capabilities.users`). */
  maxSessionsPerUser: number | undefined;
  /** Sets `h.meta` for the save about to be made: last seen and, with `deviceInfo`, the device. */
  noteMeta(h: Handle, now: number): void;
  /** A save gave the session its user: applies `maxSessionsPerUser`. */
  signedIn(h: Handle, user: string): Promise<CommitResult>;
  /** Takes the lock that orders the changes of one user's sessions; its release, if held. */
  lock(store: SessionStore, user: string): Promise<(() => Promise<void>) | undefined>;
}

/**
 * Builds a handle for a new session; a backend then attaches it to a record.
 *
 * @param o The options.
 * @param host The session host (withSession's or openSession's).
 * @param request The request, when there is one.
 * @param waitUntil Where late saves are handed.
 */
export function newHandle(
  o: ResolvedOptions,
  host: SessionHost,
  id: string,
  request: Request | undefined,
  waitUntil: ((promise: Promise<unknown>) => void) | undefined,
): Handle {
  const now = o.now();
  return {
    host,
    id,
    isNew: true,
    version: 0,
    createdAt: now,
    expiresAt: expiryFrom(o, now, now),
    base: undefined,
    key: undefined,
    // Filled by the backend or, for a new session, by `openHandle`: never allocated twice.
    data: undefined as unknown as Map<string, unknown>,
    flash: undefined as unknown as Map<string, unknown>,
    flashOut: undefined,
    ops: NO_OPS,
    reads: undefined,
    flashReads: undefined,
    readAll: false,
    blind: undefined,
    cleared: false,
    ending: undefined,
    touchRequested: false,
    locks: undefined,
    minted: undefined,
    idRead: false,
    now: o.now,
    meta: undefined,
    serializer: o.serializer,
    o,
    request,
    store: instrument(o.store as SessionStore | SealedSessionStore, o.onEvent, request),
    waitUntil,
    setCookies: undefined,
    cookieValue: undefined,
    cookieVersion: undefined,
    rotated: false,
    presented: undefined,
    superseded: undefined,
    endedElsewhere: false,
    clearCookie: false,
    responded: false,
    chain: undefined,
    latePending: false,
    canRerun: false,
    rerun: false,
    owner: undefined,
    turn: undefined,
    onHeader: false,
    tokenIn: undefined,
    tokenOut: undefined,
    sink: undefined,
  };
}

/** Attaches a handle to a loaded record. */
export function attachRecord(h: Handle, id: string, record: StoredSession, key: string | undefined): void {
  h.id = id;
  h.isNew = false;
  h.version = record.version;
  h.createdAt = record.createdAt;
  h.expiresAt = record.expiresAt;
  h.base = record;
  h.key = key;
}

/**
 * The timeouts of a session: the `remember` ones when its log in chose "remember me" (the value
 * it stores under `REMEMBER_KEY` is `true`), else the top-level ones.
 */
export function timeoutsOf(o: ResolvedOptions, remember: unknown): Timeouts {
  return remember === true ? o.remember : o;
}

/** The timeouts of the session a handle holds (its data as it stands). */
export function handleTimeouts(h: Handle): Timeouts {
  return timeoutsOf(h.o, h.data.get(REMEMBER_KEY));
}

/**
 * Whether the session's cookie carries `Max-Age`: the log in's "remember me" choice when one was
 * made (`true`: persistent, `false`: a browser-session cookie), else `cookie.persistent`.
 */
export function persistentCookie(h: Handle): boolean {
  const remember = h.data?.get(REMEMBER_KEY);
  return typeof remember === "boolean" ? remember : h.o.cookie.persistent;
}

/**
 * The expiry a session gets when it is written or touched now: `idleTimeout + touchAfter` from
 * now, capped by `absoluteTimeout` from creation. Milliseconds since the epoch. The one place
 * this rule is written.
 *
 * An unchanged session is extended only once `touchAfter` has passed since its last extension,
 * so adding `touchAfter` here makes `idleTimeout` the window guaranteed after any request (a
 * session active within it stays), and `idleTimeout + touchAfter` the most a session can be idle
 * and live.
 */
export function expiryFrom(t: Timeouts, createdAt: number, now: number): number {
  return Math.min(now + t.idleMs + t.touchAfterMs, createdAt + t.absoluteMs);
}

/** Whether `touchAfter` has passed since the expiry `expiresAt` was last set. */
function touchDue(t: Timeouts, expiresAt: number, now: number): boolean {
  return now + t.idleMs >= expiresAt;
}

/**
 * A record is live until its `expiresAt` and its absolute timeout (the remembered one for a
 * remembered session), by the application's clock.
 */
export function isLive(o: ResolvedOptions, record: StoredSession, now: number): boolean {
  const t = timeoutsOf(o, record.data[REMEMBER_KEY]);
  return record.expiresAt > now && record.createdAt + t.absoluteMs > now;
}

/**
 * The expiry a commit should extend the session to, or `undefined` when it is not yet due:
 * when asked (`touch()`), or once `touchAfter` has passed since the last extension.
 */
export function dueExpiry(h: Handle, now: number): number | undefined {
  const t = handleTimeouts(h);
  const extended = expiryFrom(t, h.createdAt, now);
  const due = extended > h.expiresAt && (h.touchRequested || touchDue(t, h.expiresAt, now));
  h.touchRequested = false;
  return due ? extended : undefined;
}

/** Whether the session holds anything worth storing. */
export function hasData(h: Handle): boolean {
  return h.data.size > 0 || h.flash.size > 0 || (h.flashOut !== undefined && h.flashOut.size > 0);
}

/** Whether a commit has anything to do. */
export function hasWork(h: Handle): boolean {
  if (h.ops.length > 0 || h.ending !== undefined || h.touchRequested || h.rotated) return true;
  if (h.base === undefined) return false;
  const t = handleTimeouts(h);
  const now = h.o.now();
  return expiryFrom(t, h.createdAt, now) > h.expiresAt && touchDue(t, h.expiresAt, now);
}

/** Tells `onInvalidCookie` why a presented cookie was not used. */
export function invalid(h: Handle, reason: InvalidCookieReason, detail?: unknown): void {
  h.o.onInvalidCookie?.({ reason, request: h.request, detail });
  if (h.o.onEvent !== undefined) emit(h.o.onEvent, { type: "invalid-cookie", reason, request: h.request });
}

/**
 * Queues a `Set-Cookie` for the session cookie (or a chunk of it); on the header transport, the
 * token for the response header instead (unless the client holds it already).
 */
export function setCookie(h: Handle, name: string, value: string, expiresAt: number, now: number): void {
  if (h.onHeader) {
    if (value !== h.tokenIn) h.tokenOut = value;
    return;
  }
  const cookie = h.o.cookie;
  const maxAge = persistentCookie(h) ? Math.max(1, (expiresAt - now) / 1000) : undefined;
  (h.setCookies ??= new Map()).set(name, serializeCookie(name, value, cookie.attributes, maxAge, now));
}

/** Queues a `Set-Cookie` that deletes a cookie; on the header transport, an empty token. */
export function clearCookie(h: Handle, name: string, now: number): void {
  if (h.onHeader) {
    h.tokenOut = "";
    return;
  }
  (h.setCookies ??= new Map()).set(name, serializeCookie(name, "", h.o.cookie.attributes, 0, now));
}

/** The changes of a request whose session another request ended meanwhile. */
/** Whether a request that would start a new session is refused by {@linkcode Handle.endedElsewhere}. */
export function endedRefuses(h: Handle): boolean {
  return h.endedElsewhere !== false && !(h.endedElsewhere === "destroyed" && h.renewed === "regenerate");
}

export function endedConflict(): SessionConflictError {
  return new SessionConflictError(
    "Session was ended by a concurrent request (log out or log in): this request's changes were not saved",
  );
}

/** The session's idle or absolute timeout passed while the request ran. */
export function expiredConflict(): SessionConflictError {
  return new SessionConflictError(
    "Session expired while this request ran (idle or absolute timeout): this request's changes were not saved",
  );
}

/** A policy refused to merge this request's changes. */
export function policyConflict(policy: string): SessionConflictError {
  return new SessionConflictError(
    `Session was changed by a concurrent request and this request's changes cannot be merged (conflict policy "${policy}")`,
  );
}

/** A new session's cookie can no longer be sent. */
export function lateCreation(): SessionStateError {
  return new SessionStateError(
    "Session changed after the response was sent: a new, regenerated or ended session needs a Set-Cookie header; call getSession() and change the session before returning the response",
  );
}

/** Gives up the request's turn on its session: the next request waiting for it goes on. */
export function leaveTurn(h: Handle): void {
  const turn = h.turn;
  if (turn === undefined) return;
  h.turn = undefined;
  releaseTurn(turn, h.owner ?? h);
}
