/**
 * Sessions per user: list a user's live sessions and end them — all of them ("log out
 * everywhere" after a password change) or all but the current one ("sign out other devices").
 * Needs the `userKey` option and a store that indexes sessions per user (`capabilities.users`).
 *
 * An ended session is ended like a logout: its record becomes a tombstone by compare-and-set, so
 * a request still in flight with its cookie can change nothing and sends no cookie.
 *
 * Every store call made here (the index read, each load, each tombstone) is reported to the
 * `onEvent` hook as a `store` event, with the request when a session was given.
 *
 * @module
 */
import type { Handle } from "./backend.ts";
import { storeError, TOMBSTONE_MS } from "./conflict.ts";
import { SessionConfigError, SessionConflictError } from "./errors.ts";
import { instrument } from "./instrument.ts";
import { optionsOf } from "./open_session.ts";
import type { ResolvedOptions, SessionOptions } from "./options.ts";
import { FLASH_KEY, kState, type Session } from "./session.ts";
import {
  ENDED_AT_KEY,
  ENDED_BY_KEY,
  ENDED_KEY,
  isEnded,
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
  /** It is the session of the request that asked. */
  current: boolean;
  /** When it was created (or last regenerated). */
  createdAt: number;
  /** When it was last saved or had its expiry extended (to within `touchAfter`). */
  lastSeenAt: number;
  /** When it expires unless used. */
  expiresAt: number;
  /** Its values (flash values left out): the small metadata the app keeps, such as a user agent. */
  data: SessionData;
}

interface Scope {
  o: ResolvedOptions;
  store: SessionStore;
  user: string;
  currentKey: string | undefined;
}

function scopeOf(from: Session<object> | SessionOptions<object>, user: string | undefined): Scope {
  const h = (from as Session<SessionData>)[kState] as Handle | undefined;
  const o = h?.o ?? optionsOf(from as SessionOptions<SessionData>);
  if (o.userKey === undefined) {
    throw new SessionConfigError(
      "Sessions per user need the userKey option: the session key that holds the user's id",
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
  };
}

function belongs(scope: Scope, record: StoredSession | null, now: number): record is StoredSession {
  return record !== null && !isEnded(record) && record.expiresAt > now &&
    record.createdAt + scope.o.absoluteMs > now && record.data[scope.o.userKey!] === scope.user;
}

async function recordsOf(scope: Scope): Promise<Array<[string, StoredSession]>> {
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
 * @throws {SessionConfigError} Without `userKey`, or when the store keeps no index per user.
 * @throws {TypeError} When no user is given and the session holds none.
 * @throws {StoreUnavailableError} When the store fails.
 * @example
 * ```ts
 * import { getSession, listUserSessions, MemoryStore, withSession } from "websession";
 * import assert from "node:assert/strict";
 *
 * const options = {
 *   store: new MemoryStore(),
 *   secrets: ["a secret of at least thirty-two characters"],
 *   userKey: "user" as const,
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
  const o = scope.o;
  return (await recordsOf(scope)).map(([key, record]) => {
    const data: SessionData = {};
    for (const name in record.data) {
      if (name !== FLASH_KEY && Object.hasOwn(record.data, name)) {
        Object.defineProperty(data, name, {
          value: record.data[name],
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
    }
    return {
      key,
      current: key === scope.currentKey,
      createdAt: record.createdAt,
      lastSeenAt: Math.max(record.createdAt, Math.min(o.now(), record.expiresAt - o.idleMs - o.touchAfterMs)),
      expiresAt: record.expiresAt,
      data,
    };
  });
}

/**
 * Ends a user's sessions, like a logout each: every one, or all but the current request's
 * (`exceptCurrent`), or only those named in `keys`. Requests in flight with an ended session's
 * cookie can no longer change it.
 *
 * @param from A session (its user, unless `user` is given) or the options `withSession` uses.
 * @param options `user`; `exceptCurrent` (with a session): keep this request's own session;
 * `keys`: end only these (from `listUserSessions`).
 * A session that other requests keep writing meanwhile is still ended: the tombstone needs no
 * merge, so each attempt names the version that won the last one, with backoff, until it lands.
 * It never returns while a session it was asked to end is still live.
 *
 * @returns How many sessions were ended (by this call; those already ended or expired meanwhile
 * are not counted).
 * @throws {SessionConfigError} Without `userKey`, or when the store keeps no index per user.
 * @throws {SessionConflictError} When other requests won every compare-and-set on a session for
 * 10 seconds: that session is still live (the others were ended; the message says how many).
 * @throws {StoreUnavailableError} When the store fails.
 * @example
 * ```ts
 * import { endUserSessions, getSession, listUserSessions, MemoryStore, withSession } from "websession";
 * import assert from "node:assert/strict";
 *
 * const options = {
 *   store: new MemoryStore(),
 *   secrets: ["a secret of at least thirty-two characters"],
 *   userKey: "user" as const,
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
  options: { user?: string; exceptCurrent?: boolean; keys?: readonly string[] } = {},
): Promise<number> {
  const scope = scopeOf(from, options.user);
  const only = options.keys === undefined ? undefined : new Set(options.keys);
  const targets = (await recordsOf(scope)).filter(([key]) =>
    !(options.exceptCurrent && key === scope.currentKey) && (only === undefined || only.has(key))
  );
  // Every session gets its chance to end, even when another one's store call fails.
  const settled = await Promise.allSettled(targets.map(([key, record]) => end(scope, key, record)));
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

/** Full-jitter exponential backoff before reading a record again: at most 100 ms. */
function pause(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(100, 2 ** attempt)));
}

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
    let result;
    try {
      result = await store.save(key, tombstone, record.version);
    } catch (error) {
      throw storeError("save", error);
    }
    if (result === true) return "ended";
    if (o.now() >= deadline || performance.now() >= wallDeadline) return "stuck";
    const reported = result === false ? undefined : result.current;
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
