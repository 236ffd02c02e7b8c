/**
 * Sessions per user: list a user's live sessions and end them — all of them ("log out
 * everywhere" after a password change) or all but the current one ("sign out other devices").
 * Needs the `users` option (`userSessions()`) and a store that indexes sessions per user (`capabilities.users`).
 *
 * An ended session is ended like a logout: its record becomes a tombstone by compare-and-set, so
 * a request still in flight with its cookie can change nothing and sends no cookie.
 *
 * Every store call made here (the index read, each load, each tombstone) is reported to the
 * `onEvent` hook as a `store` event, with the request when a session was given.
 *
 * @module
 */
import { ended as reportEnd } from "./audit.ts";
import { type Handle, isLive, timeoutsOf } from "./backend.ts";
import { storeError, TOMBSTONE_MS } from "./conflict.ts";
import { SessionConfigError, SessionConflictError } from "./errors.ts";
import type { EndReason } from "./events.ts";
import { handleOf, META_KEY, metadataOf } from "./metadata.ts";
import { instrument } from "./instrument.ts";
import { pause, userLock } from "./users/lock.ts";
import { optionsOf, type ResolvedOptions, type SessionOptions } from "./options.ts";
import type { Session } from "./session.ts";
import { FLASH_KEY, isSignInKey, kState, REMEMBER_KEY, SERIALIZER_KEY } from "./session_state.ts";
import {
  checkedSaveResult,
  ENDED_AT_KEY,
  ENDED_BY_KEY,
  ENDED_KEY,
  isEnded,
  type SaveResult,
  type SessionData,
  type SessionStore,
  type StoredSession,
} from "./store.ts";

/**
 * One of a user's live sessions, as `listUserSessions` describes it. Times are milliseconds
 * since the epoch.
 *
 * @example
 * ```ts
 * import type { UserSession } from "websession";
 * import assert from "node:assert/strict";
 *
 * const now = Date.now();
 * const device: UserSession = {
 *   key: "k".repeat(43),
 *   handle: "h".repeat(22),
 *   current: true,
 *   createdAt: now - 60_000,
 *   lastSeenAt: now,
 *   expiresAt: now + 3_600_000,
 *   data: { user: "ada", agent: "Firefox" },
 * };
 * assert.equal(device.data.agent, "Firefox");
 * ```
 */
export interface UserSession {
  /** The session's storage key (SHA-256 of its id): names it for `endUserSessions`, works as no cookie. */
  key: string;
  /**
   * The session's public handle (22 base64url characters, an HMAC of its storage key with the
   * first secret): what to show a browser or an admin tool, and give back to
   * `endUserSessions({ handles })`. Neither the cookie nor the storage key can be derived from it.
   */
  handle: string;
  /** The user agent it was last written from (with the `deviceInfo` option's `userAgent`). */
  userAgent?: string;
  /** The client address it was last written from (with `deviceInfo.clientAddress`). */
  clientAddress?: string;
  /** It is the session of the request that asked. */
  current: boolean;
  /** When it was created (or last regenerated). */
  createdAt: number;
  /**
   * When it was last saved or had its expiry extended: exact for a save; for a touch, read from the
   * expiry, so to within `touchAfter` (read-only requests between touches write nothing).
   */
  lastSeenAt: number;
  /** When it expires unless used. */
  expiresAt: number;
  /** Its values, as `toJSON()` gives them (flash values, metadata and the sign-in keys left out). */
  data: SessionData;
}

export interface Scope {
  o: ResolvedOptions;
  store: SessionStore;
  user: string;
  currentKey: string | undefined;
  request: Request | undefined;
}

function scopeOf(from: Session<object> | SessionOptions<object>, user: string | undefined): Scope {
  const h = (from as Session<SessionData>)[kState] as Handle | undefined;
  const o = h?.o ?? optionsOf(from as SessionOptions<SessionData>);
  if (o.userKey === undefined) {
    throw new SessionConfigError(
      "Sessions per user need the users option: users: userSessions({ userKey })",
    );
  }
  const store = o.store as SessionStore;
  if (o.sealed || !store.capabilities.users || typeof store.keysOfUser !== "function") {
    throw new SessionConfigError(
      "Session store keeps no index of sessions per user: its capabilities say users: false",
    );
  }
  const who = user ?? (h === undefined ? undefined : h.data.get(o.userKey));
  if (typeof who !== "string" || who === "") {
    throw new TypeError("Invalid user: give the user's id, or a session that holds one under userKey");
  }
  return {
    o,
    store: instrument(store, o.onEvent, h?.request),
    user: who,
    currentKey: h?.base === undefined ? undefined : h.key,
    request: h?.request,
  };
}

export function belongs(scope: Scope, record: StoredSession | null, now: number): record is StoredSession {
  return record !== null && !isEnded(record) && isLive(scope.o, record, now) &&
    record.data[scope.o.userKey!] === scope.user;
}

export async function recordsOf(
  scope: Scope,
  loaded?: Map<string, StoredSession | null>,
): Promise<Array<[string, StoredSession]>> {
  let keys: string[];
  try {
    keys = await scope.store.keysOfUser!(scope.user);
  } catch (error) {
    throw storeError("list a user's sessions", error);
  }
  const now = scope.o.now();
  const found: Array<[string, StoredSession]> = [];
  await Promise.all([...new Set(keys)].map(async (key) => {
    let record: StoredSession | null;
    try {
      record = await scope.store.load(key);
    } catch (error) {
      throw storeError("load", error);
    }
    loaded?.set(key, record);
    if (belongs(scope, record, now)) found.push([key, record]);
  }));
  return found.sort((a, b) => a[1].createdAt - b[1].createdAt);
}

/**
 * Lists a user's live sessions, oldest first.
 *
 * @param from A session (its user, unless `user` is given) or the options `withSession` uses
 * (for an admin page or a password reset, outside any request).
 * @param user The user's id; defaults to the session's own user.
 * @returns The sessions.
 * @throws {SessionConfigError} Without the `users` option, or when the store keeps no index per user.
 * @throws {TypeError} When no user is given and the session holds none.
 * @throws {StoreUnavailableError} When the store fails.
 * @example
 * ```ts
 * import { getSession, listUserSessions, MemoryStore, userSessions, withSession } from "websession";
 * import assert from "node:assert/strict";
 *
 * const options = {
 *   store: new MemoryStore(),
 *   secrets: ["a secret of at least thirty-two characters"],
 *   users: userSessions({ userKey: "user" }),
 * };
 * const login = withSession(async (req: Request) => {
 *   const session = await getSession<{ user?: string; agent?: string }>(req);
 *   session.regenerate();
 *   session.set("user", "ada");
 *   session.set("agent", req.headers.get("user-agent") ?? "unknown");
 *   return new Response("in");
 * }, options);
 * await login(new Request("https://example.com/", { headers: { "user-agent": "phone" } }));
 * await login(new Request("https://example.com/", { headers: { "user-agent": "laptop" } }));
 * const devices = await listUserSessions(options, "ada");
 * assert.deepEqual(devices.map((d) => d.data.agent), ["phone", "laptop"]);
 * ```
 */
export async function listUserSessions(
  from: Session<object> | SessionOptions<object>,
  user?: string,
): Promise<UserSession[]> {
  const scope = scopeOf(from, user);
  return await Promise.all((await recordsOf(scope)).map(([key, record]) => describe(scope, key, record)));
}

/** What `listUserSessions` says of one record. */
async function describe(scope: Scope, key: string, record: StoredSession): Promise<UserSession> {
  const o = scope.o;
  const data: SessionData = {};
  // Values in the `serializer` format set are read as the handler reads them (a `Date`, a `Map`).
  const serializer = o.serializer !== undefined &&
      record.data[SERIALIZER_KEY] === (o.serializer.format ?? "custom")
    ? o.serializer
    : undefined;
  for (const name in record.data) {
    if (
      name !== FLASH_KEY && name !== META_KEY && name !== SERIALIZER_KEY && !isSignInKey(name) &&
      Object.hasOwn(record.data, name)
    ) {
      Object.defineProperty(data, name, {
        value: serializer === undefined ? record.data[name] : serializer.deserialize(record.data[name]),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
  }
  const meta = metadataOf(record.data);
  // A touch set the expiry idleTimeout + touchAfter ahead (the remember-me ones when chosen).
  const t = timeoutsOf(o, record.data[REMEMBER_KEY]);
  const touched = Math.min(o.now(), record.expiresAt - t.idleMs - t.touchAfterMs);
  const found: UserSession = {
    key,
    handle: await handleOf(o.secrets[0]!, key),
    current: key === scope.currentKey,
    createdAt: record.createdAt,
    lastSeenAt: Math.max(record.createdAt, meta.seen ?? record.createdAt, touched),
    expiresAt: record.expiresAt,
    data,
  };
  if (meta.userAgent !== undefined) found.userAgent = meta.userAgent;
  if (meta.clientAddress !== undefined) found.clientAddress = meta.clientAddress;
  return found;
}

/**
 * Ends a user's sessions, like a logout each: every one, or all but the current request's
 * (`exceptCurrent`), or only those named in `keys` or `handles`. Requests in flight with an
 * ended session's cookie can no longer change it; each session ended is reported as an `end`
 * event (`reason`: `user` when called with a session, `admin` with options, unless given).
 *
 * @param from A session (its user, unless `user` is given) or the options `withSession` uses.
 * @param options `user`; `exceptCurrent` (with a session): keep this request's own session;
 * `keys`: end only these storage keys, `handles`: only these public handles (both from
 * `listUserSessions`; given both, a session named by either); `reason`: for the `end` events.
 * A session that other requests keep writing meanwhile is still ended: the tombstone needs no
 * merge, so each attempt names the version that won the last one, with backoff, until it lands.
 * It never returns while a session it was asked to end is still live.
 *
 * @returns How many sessions were ended (by this call; those already ended or expired meanwhile
 * are not counted).
 * @throws {SessionConfigError} Without the `users` option, or when the store keeps no index per user.
 * @throws {SessionConflictError} When other requests won every compare-and-set on a session for
 * 10 seconds: that session is still live (the others were ended; the message says how many). With
 * `exceptCurrent`, when the current session was ended meanwhile (a log out, a `regenerate()` of it
 * in another process): nothing is ended.
 * @throws {StoreUnavailableError} When the store fails.
 * @example
 * ```ts
 * import { endUserSessions, getSession, listUserSessions, MemoryStore, userSessions, withSession } from "websession";
 * import assert from "node:assert/strict";
 *
 * const options = {
 *   store: new MemoryStore(),
 *   secrets: ["a secret of at least thirty-two characters"],
 *   users: userSessions({ userKey: "user" }),
 * };
 * const app = withSession(async (req: Request) => {
 *   const session = await getSession<{ user?: string }>(req);
 *   if (new URL(req.url).pathname === "/login") session.set("user", "ada");
 *   else await endUserSessions(session, { exceptCurrent: true }); // "sign out other devices"
 *   return new Response("ok");
 * }, options);
 * const phone = await app(new Request("https://example.com/login"));
 * await app(new Request("https://example.com/login")); // a laptop
 * const cookie = phone.headers.get("set-cookie")!.split(";")[0]!;
 * await app(new Request("https://example.com/others", { headers: { cookie } }));
 * assert.equal((await listUserSessions(options, "ada")).length, 1);
 * ```
 */
export async function endUserSessions(
  from: Session<object> | SessionOptions<object>,
  options: {
    user?: string;
    exceptCurrent?: boolean;
    keys?: readonly string[];
    handles?: readonly string[];
    reason?: "user" | "admin";
  } = {},
): Promise<number> {
  const scope = scopeOf(from, options.user);
  const reason = options.reason ?? (scope.currentKey === undefined && !isSession(from) ? "admin" : "user");
  if (reason !== "user" && reason !== "admin") {
    throw new TypeError(`Invalid reason: "${String(reason)}" is not "user" or "admin"`);
  }
  const named = namedIn(scope, options.keys, options.handles);
  // A `regenerate()` of one of the user's sessions holds this lock across its two writes (the
  // old record's end, the new record): read between them, the index would hold neither, and the
  // new session would outlive this call.
  const release = await userLock(scope.store, scope.user);
  try {
    const loaded = new Map<string, StoredSession | null>();
    const live = await recordsOf(scope, loaded);
    if (options.exceptCurrent && scope.currentKey !== undefined) await refuseEndedCurrent(scope, loaded);
    const targets: Array<[string, StoredSession]> = [];
    for (const [key, record] of live) {
      if (options.exceptCurrent && key === scope.currentKey) continue;
      if (named === undefined || await named(key)) targets.push([key, record]);
    }
    return await endAll(scope, targets, reason);
  } finally {
    await release?.();
  }
}

/**
 * "All but the current one" needs the current session live: ended meanwhile (a `regenerate()` of
 * it in another process, which holds the user's lock across its two writes, or a log out), its
 * successor would be taken for another device and ended. As with any change of a session ended
 * meanwhile, the request is refused. `loaded`: the records the listing read, by key.
 */
async function refuseEndedCurrent(scope: Scope, loaded: Map<string, StoredSession | null>): Promise<void> {
  const key = scope.currentKey!;
  let record = loaded.get(key);
  if (record === undefined) {
    // Not in the user's index (written before `users` was set): read it.
    try {
      record = await scope.store.load(key);
    } catch (error) {
      throw storeError("load", error);
    }
  }
  if (record === null || isEnded(record) || !isLive(scope.o, record, scope.o.now())) {
    throw new SessionConflictError(
      "Session was ended by a concurrent request (log out or log in): the other sessions were not ended",
    );
  }
}

function isSession(from: unknown): boolean {
  return (from as Session<SessionData>)[kState] !== undefined;
}

/** The filter `keys` and `handles` make, or `undefined` for every session. */
function namedIn(
  scope: Scope,
  keys: readonly string[] | undefined,
  handles: readonly string[] | undefined,
): ((key: string) => Promise<boolean> | boolean) | undefined {
  if (keys === undefined && handles === undefined) return undefined;
  const byKey = new Set(keys ?? []);
  const byHandle = new Set(handles ?? []);
  const secret = scope.o.secrets[0]!;
  return (key) => byKey.has(key) || (byHandle.size > 0 && handleOf(secret, key).then((h) => byHandle.has(h)));
}

/** Ends the given records of the scope's user; each one ended is reported with `reason`. */
export async function endAll(
  scope: Scope,
  targets: Array<[string, StoredSession]>,
  reason: EndReason,
): Promise<number> {
  // Every session gets its chance to end, even when another one's store call fails.
  const settled = await Promise.allSettled(targets.map(async ([key, record]) => {
    const result = await end(scope, key, record);
    if (result === "ended") reportEnd(scope.o, reason, scope.user, scope.request);
    return result;
  }));
  let ended = 0;
  let stuck = 0;
  for (const result of settled) {
    if (result.status === "rejected") throw result.reason;
    if (result.value === "ended") ended++;
    else if (result.value === "stuck") stuck++;
  }
  if (stuck > 0) {
    throw new SessionConflictError(
      `Could not end ${stuck} of the user's sessions: each was written by other requests on every attempt for ${
        END_DEADLINE_MS / 1000
      } s, and is still live (${ended} other sessions were ended)`,
    );
  }
  return ended;
}

/**
 * For how long, in milliseconds, ending one session keeps trying while other requests keep
 * writing it, before `endUserSessions` gives up with `SessionConflictError`.
 */
const END_DEADLINE_MS = 10_000;

/**
 * Replaces a record with a tombstone by compare-and-set, following it while other requests
 * write it: a tombstone needs no merge, so each attempt simply names the version that won the
 * last one (the store's report of it, else a fresh read). Returns `"ended"` once the tombstone
 * is written, `"gone"` when the session stopped being the user's live session on its own
 * (ended, expired, destroyed, changed hands), and `"stuck"` only when other writes won every
 * attempt for {@linkcode END_DEADLINE_MS} (by the app's clock or by wall time, whichever says
 * so first).
 */
async function end(scope: Scope, key: string, first: StoredSession): Promise<"ended" | "gone" | "stuck"> {
  const { store, o } = scope;
  const deadline = o.now() + END_DEADLINE_MS;
  const wallDeadline = performance.now() + END_DEADLINE_MS;
  let record: StoredSession | null = first;
  for (let attempt = 1;; attempt++) {
    const now = o.now();
    if (!belongs(scope, record, now)) return "gone";
    const tombstone: StoredSession = {
      // Ended from elsewhere: the signed-out browser may sign in again at once (no grace).
      data: { [ENDED_KEY]: true, [ENDED_AT_KEY]: now, [ENDED_BY_KEY]: "remote" },
      version: record.version + 1,
      createdAt: record.createdAt,
      expiresAt: Math.max(record.expiresAt, now + TOMBSTONE_MS),
    };
    let result: SaveResult;
    try {
      result = checkedSaveResult(await store.save(key, tombstone, record.version));
    } catch (error) {
      throw storeError("save", error);
    }
    if (result === true) return "ended";
    if (o.now() >= deadline || performance.now() >= wallDeadline) return "stuck";
    const reported: StoredSession | null | undefined = result === false ? undefined : result.current;
    if (reported === null) return "gone"; // the store says no live record is left
    if (reported !== undefined && reported.version > record.version) {
      record = reported; // what won: try again on it at once
      continue;
    }
    await pause(attempt);
    try {
      record = await store.load(key);
    } catch (error) {
      throw storeError("load", error);
    }
  }
}
