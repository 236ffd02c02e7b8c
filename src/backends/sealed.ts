/**
 * The sealed-cookie backend: the whole record travels encrypted in the cookie (`CookieStore`),
 * split over numbered chunk cookies when long. There is no server copy to compare and set: the
 * last response the browser keeps wins. An optional revocation store ends sessions and refuses
 * superseded seals.
 *
 * @module
 */
import {
  attachRecord,
  type Backend,
  clearCookie,
  type CommitResult,
  type CookieSource,
  cookieValues,
  dueExpiry,
  endedConflict,
  endedRefuses,
  expiryFrom,
  type Handle,
  handleTimeouts,
  hasData,
  invalid,
  isLive,
  kBackend,
  setCookie,
  timeoutsOf,
} from "../backend.ts";
import { inGrace, storeError } from "../conflict.ts";
import { SessionConflictError, SessionError, SessionStateError } from "../errors.ts";
import { emit } from "../events.ts";
import { NO_OPS, REMEMBER_KEY } from "../session_state.ts";
import { joinData, laterOps, observationsHold, replay, splitData, stateData } from "../session_data.ts";
import {
  type InvalidSeal,
  isSealedStore,
  type OpenedSession,
  type SealedSessionStore,
  type SessionData,
} from "../store.ts";

/** Chunks a sealed store may write: `name.0` … `name.63`. */
const MAX_CHUNKS = 64;

/** The names of the session cookies present, and a jar of their values (the first of each). */
function present(source: CookieSource, name: string): { names: string[]; jars: Array<Map<string, string>> } {
  const names: string[] = [];
  const first = new Map<string, string>();
  const last = new Map<string, string>();
  const take = (cookie: string): boolean => {
    const values = cookieValues(source, cookie);
    if (values.length === 0) return false;
    names.push(cookie);
    first.set(cookie, values[0]!);
    last.set(cookie, values[values.length - 1]!);
    return true;
  };
  take(name);
  for (let i = 0; i < MAX_CHUNKS && take(`${name}.${i}`); i++);
  // Duplicates (another Domain's or Path's cookies): try the first values, then the last.
  const differ = names.some((cookie) => first.get(cookie) !== last.get(cookie));
  return { names, jars: differ ? [first, last] : [first] };
}

/** Opens the sealed cookies, then runs `then` on `h`. Takes no turn: a failed open has nothing to give up. */
async function open<R>(h: Handle, source: CookieSource, then: (h: Handle) => R | Promise<R>): Promise<R> {
  const o = h.o;
  const store = h.store as SealedSessionStore;
  const name = o.cookie.name;
  const { names, jars } = present(source, name);
  h.presented = names;
  if (names.length === 0) return then(h);
  for (const jar of jars) {
    let opened: OpenedSession | InvalidSeal | null;
    try {
      opened = await store.open((cookie) => jar.get(cookie), name);
    } catch (error) {
      throw storeError("open the session", error);
    }
    if (opened === null) continue;
    if ("invalid" in opened) {
      if (opened.invalid === "malformed") {
        invalid(h, "malformed", opened.detail);
      } else {
        // Ended or superseded while this request was in flight: the browser may hold a newer
        // cookie already; never touch it. Long after, it evidently missed the newer cookie.
        // Ended from elsewhere (log out everywhere): nothing newer to protect, no grace.
        // `at` is the application's clock where the seal was superseded (a sealed store has no
        // clock of its own to ask), so the grace is off by the application servers' skew.
        if (opened.remote !== true && (opened.at === undefined || inGrace(opened.at, o.now()))) {
          h.endedElsewhere = opened.destroyed === true ? "destroyed" : true;
        }
        if (opened.invalid === "superseded") h.superseded = opened.session;
        invalid(h, opened.invalid, opened.detail);
      }
      continue;
    }
    if (!isLive(o, opened.record, o.now())) {
      invalid(h, "unknown");
      continue;
    }
    // A sealed session's "key" is its id: what revoke() names after regenerate() renamed it.
    let split;
    try {
      split = splitData(opened.record.data, o.serializer);
    } catch (error) {
      // In another `serializer` format (or written with one, read without): never misread.
      invalid(h, "data", error);
      continue;
    }
    attachRecord(h, opened.id, opened.record, opened.id);
    h.data = split.data;
    h.flash = split.flash;
    h.rotated = opened.stale;
    h.endedElsewhere = false;
    return then(h);
  }
  return then(h);
}

async function commit(h: Handle): Promise<CommitResult> {
  const o = h.o;
  const store = h.store as SealedSessionStore;
  const now = o.now();
  if (h.superseded !== undefined && h.base === undefined && h.renewed === "destroy" && !h.responded) {
    endSuperseded(h);
  }
  const extended = h.base === undefined ? undefined : dueExpiry(h, now);
  const writes = h.ops.length > 0 || h.ending !== undefined;
  if (h.responded) {
    if (!writes && extended === undefined) return "done";
    return new SessionStateError("A cookie-sealed session cannot change after the response was sent");
  }
  // A regenerate's new seal carries the data of the session it ends on.
  let replaces: string | undefined;
  if (h.ending !== undefined && h.base !== undefined) {
    if (h.ending === "regenerate") replaces = h.key;
    const failed = await revoke(h, store, now);
    if (failed !== undefined) return failed;
  }
  h.touchRequested = false;
  if (h.base === undefined && !hasData(h)) {
    h.ops = NO_OPS;
    if (h.clearCookie) { for (const cookie of h.presented ?? []) clearCookie(h, cookie, now); }
    return "done";
  }
  if (h.base === undefined && endedRefuses(h)) return endedConflict();
  if (h.base !== undefined && !writes && extended === undefined && !h.rotated) return "done";
  const expiresAt = h.base === undefined
    ? expiryFrom(handleTimeouts(h), h.createdAt, now)
    : extended ?? h.expiresAt;
  const result = await seal(h, store, expiresAt, now, replaces);
  if (!writes && result instanceof SessionConflictError && h.ops.length === 0) {
    // Only a refresh or a re-seal, lost to a request that wrote or ended the session meanwhile
    // (the revocation store refused it): dropped, no cookie, as a server store's refresh that
    // loses. A read is served as it ran, before that request.
    return "done";
  }
  return result;
}

/**
 * A log out whose seal another request of the same session superseded meanwhile (a write in
 * another tab whose response has not reached the browser yet) ends that session all the same:
 * the seal is authentic, only not the latest, and a log out needs none of its data. Without
 * this, the log out answered as done while the newer seal, arriving later, kept the browser
 * signed in.
 */
function endSuperseded(h: Handle): void {
  const { id, record } = h.superseded!;
  h.superseded = undefined;
  // The record to end, as `revoke` reads it; the request keeps the new identity `destroy()` gave
  // it, under which anything set after the log out starts a session of its own.
  h.base = record;
  h.key = id;
  h.ending = "destroy";
  h.endedElsewhere = false;
}

/**
 * Ends the sealed session the request loaded: the revocation store (if any) keeps a tombstone
 * for as long as a cookie of it may live, and the cookies are cleared unless another request
 * ended it first. Returns the store's failure, if it failed.
 */
async function revoke(h: Handle, store: SealedSessionStore, now: number): Promise<SessionError | undefined> {
  const o = h.o;
  const base = h.base!;
  let found: "ended" | "missing" | undefined;
  try {
    // A request in flight during the end may still seal a cookie living a full idle window.
    const t = timeoutsOf(o, base.data[REMEMBER_KEY]);
    const until = Math.max(base.expiresAt, expiryFrom(t, base.createdAt, now));
    const tombstone = { data: {}, version: base.version, createdAt: base.createdAt, expiresAt: until };
    const id = h.key!;
    if (store.revoke !== undefined) {
      // A regenerate carries the data on: a change sealed since it was loaded would be lost.
      found = await (h.ending === "regenerate"
        ? store.revoke(id, tombstone, { carried: base.data })
        : store.revoke(id, tombstone)) ?? undefined;
    }
    if (o.onEvent !== undefined) emit(o.onEvent, { type: h.ending!, durationMs: 0, request: h.request });
  } catch (error) {
    return storeError("revoke", error);
  }
  h.base = undefined;
  h.key = undefined;
  h.ending = undefined;
  if (found === undefined) {
    h.clearCookie = true;
  } else {
    // Ended first by another request (a log in), or its tombstone outlived: the browser may
    // hold a newer session's cookie. This end changes no cookie, and what was set after it
    // cannot land (as on a server store, `ended()` in server.ts).
    h.endedElsewhere = true;
  }
  return undefined;
}

/** Seals the record into the cookies to send, and clears the chunk cookies it no longer needs. */
async function seal(
  h: Handle,
  store: SealedSessionStore,
  expiresAt: number,
  now: number,
  replaces: string | undefined,
): Promise<CommitResult> {
  const o = h.o;
  const included = h.ops.length;
  const record = { data: stateData(h), version: h.version + 1, createdAt: h.createdAt, expiresAt };
  // Changes the revocation store must not take for a concurrent seal of the same data.
  const repeatable = h.base === undefined || included === 0 || !store.capabilities.revocation ||
    repeats(h, record.data);
  let cookies;
  const start = o.onEvent === undefined ? 0 : performance.now();
  try {
    const id = h.id;
    cookies = await (replaces === undefined && repeatable
      ? store.seal(id, record, o.cookie.name)
      : store.seal(id, record, o.cookie.name, { replaces, repeatable }));
  } catch (error) {
    if (error instanceof SessionError) return error;
    throw error;
  }
  const sent = new Set<string>();
  for (const cookie of cookies) {
    setCookie(h, cookie.name, cookie.value, expiresAt, now);
    sent.add(cookie.name);
  }
  for (const cookie of h.presented ?? []) if (!sent.has(cookie)) clearCookie(h, cookie, now);
  h.presented = [...sent];
  if (o.onEvent !== undefined) {
    emit(o.onEvent, {
      type: "save",
      created: h.base === undefined,
      version: record.version,
      attempts: 1,
      durationMs: performance.now() - start,
      request: h.request,
    });
  }
  attachRecord(h, h.id, record, h.id);
  // Changes made while the cookie was sealed are not in it: the next commit's (refused then,
  // after the response).
  h.ops = laterOps(h, included);
  h.rotated = false;
  h.clearCookie = false;
  return "done";
}

/**
 * Whether the request's changes, made again after a concurrent request that sealed this very
 * data, leave it as it is: what the handler looked at is the same there as in what it loaded,
 * and its operations replayed on it change nothing (a `set` made twice, not an `update` that adds
 * one). Only then does a concurrent seal of the same version and data stand for this one: the
 * two requests end as if run one after the other. Two increments from the same value do not.
 */
function repeats(h: Handle, data: SessionData): boolean {
  const o = h.o;
  if (!observationsHold(h, h.base!.data, data)) return false;
  try {
    const again = replay(h.ops, data, o.serializer);
    return JSON.stringify(joinData(again.data, again.flash, again.flashOut, o.serializer)) ===
      JSON.stringify(data);
  } catch {
    return false; // an update function that throws on the other's data: not the same
  }
}

/** The sealed-cookie backend. */
export const sealedBackend: Backend = { open, commit };

/**
 * Gives a sealed store (`sealed: true`, `open`, `seal`) the flow that drives it: `withSession`
 * and `openSession` find it on the store, so an application without a sealed store bundles none
 * of it. `CookieStore` is built with it; a sealed store of your own is passed through it once.
 *
 * @param store A {@linkcode SealedSessionStore}.
 * @returns The same object, marked.
 * @throws {TypeError} When `store` is not a sealed store (`sealed: true`, `open()`, `seal()`).
 *
 * @example
 * ```ts
 * import { type SealedSessionStore, sealedStore } from "websession/store-kit";
 * const store: SealedSessionStore = sealedStore({
 *   sealed: true,
 *   capabilities: { compareAndSet: false, ttl: true, revocation: false },
 *   open: () => Promise.resolve(null),
 *   seal: (_id, _record, name) => Promise.resolve([{ name, value: "sealed" }]),
 * });
 * ```
 */
export function sealedStore<S extends SealedSessionStore>(store: S): S {
  if (
    !isSealedStore(store) || typeof (store as SealedSessionStore).open !== "function" ||
    typeof (store as SealedSessionStore).seal !== "function"
  ) {
    throw new TypeError("Invalid store: a sealed store has sealed: true, open() and seal()");
  }
  (store as { [kBackend]?: Backend })[kBackend] = sealedBackend;
  return store;
}
