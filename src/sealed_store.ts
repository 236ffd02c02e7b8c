/**
 * The contract of a sealed store, whose record travels in the cookie (`CookieStore`). Exported
 * from `websession/store-kit` through `store.ts`.
 *
 * @module
 */
import type { SessionStore, StoreCapabilities, StoredSession } from "./store.ts";

/**
 * A cookie the sealed store wants sent: `name=value`.
 *
 * @example
 * ```ts
 * import type { SealedCookie } from "websession/store-kit";
 * import { CookieStore } from "websession/cookie";
 * import assert from "node:assert/strict";
 *
 * const store = new CookieStore({
 *   secrets: ["a secret of at least thirty-two characters"],
 *   chunkSize: 500,
 *   compress: false,
 * });
 * const now = Date.now();
 * const record = { data: { note: "x".repeat(1000) }, version: 1, createdAt: now, expiresAt: now + 60_000 };
 * const cookies: SealedCookie[] = await store.seal("some-session-id", record, "session");
 * // Too long for one cookie of 500 characters: numbered chunks session.0, session.1, ...
 * assert.deepEqual(cookies.map((c) => c.name), cookies.map((_, i) => `session.${i}`));
 * assert.ok(cookies.length > 1 && cookies.every((c) => c.value.length <= 500));
 * ```
 */
export interface SealedCookie {
  /** The cookie name: the session cookie's name, or `name.N` for chunk N. */
  name: string;
  /** The cookie value, already safe for a cookie (base64url and `.`). */
  value: string;
}

/**
 * A session opened from cookies by a {@linkcode SealedSessionStore}.
 *
 * @example
 * ```ts
 * import type { InvalidSeal, OpenedSession } from "websession/store-kit";
 * import { CookieStore } from "websession/cookie";
 * import assert from "node:assert/strict";
 *
 * const oldSecret = "the previous secret, 32 characters or more";
 * const newSecret = "the current secret, 32 characters or more.";
 * const now = Date.now();
 * const record = { data: { user: "ada" }, version: 1, createdAt: now, expiresAt: now + 60_000 };
 * const cookies = await new CookieStore({ secrets: [oldSecret] }).seal(
 *   "some-session-id",
 *   record,
 *   "session",
 * );
 * const jar = new Map(cookies.map((c) => [c.name, c.value]));
 *
 * // After a rotation the old secret still opens the cookie, which is marked stale for re-sealing.
 * const rotated = new CookieStore({ secrets: [newSecret, oldSecret] });
 * const result: OpenedSession | InvalidSeal | null = await rotated.open((name) => jar.get(name), "session");
 * // `null`: no session cookie; `{ invalid }`: a cookie that cannot be used; otherwise the session.
 * assert.ok(result !== null && !("invalid" in result), "the cookie opens");
 * const opened: OpenedSession = result;
 * assert.equal(opened.id, "some-session-id");
 * assert.deepEqual(opened.record, record);
 * assert.equal(opened.stale, true);
 * ```
 */
export interface OpenedSession {
  /** The session id carried inside the seal. */
  id: string;
  /** The record carried inside the seal. */
  record: StoredSession;
  /** The seal used a retired secret: `withSession` re-seals it on the next write. */
  stale: boolean;
}

/**
 * Why a sealed store could not use the session cookies it was shown.
 *
 * - `"malformed"`: tampered, unknown key, expired, truncated, missing a chunk: a fresh session
 *   starts, as for any bad cookie.
 * - `"ended"`: the session was destroyed or regenerated (its revocation tombstone is live).
 * - `"superseded"`: an older seal of a session that has since been saved again (a replay).
 *
 * For `"ended"` and `"superseded"` the request is served as a fresh, empty session that sends no
 * `Set-Cookie` (the browser may already hold the newer cookie), and a change is refused with
 * `SessionConflictError`.
 *
 * @example
 * ```ts
 * import type { InvalidSeal } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * const seal: InvalidSeal = { invalid: "ended" };
 * assert.equal(seal.invalid, "ended");
 * ```
 */
export interface InvalidSeal {
  /** Why the cookies cannot be used. */
  invalid: "malformed" | "ended" | "superseded";
  /**
   * When the session was ended or superseded (ms since the epoch, the app's clock), if known.
   * A cookie presented long after that is treated as unknown rather than in flight, so a
   * browser that missed the newer cookie is not locked out.
   */
  at?: number;
  /**
   * Ended from elsewhere (`CookieStore.endUser`: log out everywhere), not by a request of the
   * browser itself: no newer cookie exists, so a new session may start at once (no grace).
   */
  remote?: boolean;
  /**
   * Ended by the browser's own log out (`destroy()`; a `regenerate()` carries the data on and
   * is no log out): within the grace, that cookie may still log in, since nothing of the session
   * lives on that a new one could hide.
   */
  destroyed?: boolean;
  /**
   * For `"superseded"`: the seal as it opened, authentic but no longer the latest of its
   * session. A log out (`destroy()`) with it still ends that session, as a log out on a server
   * store ends the session its cookie names whatever version it read.
   */
  session?: OpenedSession;
  /** What the store found, for `onInvalidCookie` (an error, say). */
  detail?: unknown;
}

/**
 * A store with no server copy: the record travels sealed in the cookie itself
 * (`CookieStore`). `withSession` asks it for the cookies to send instead of a storage key.
 * It can neither compare-and-set nor revoke on its own; its capabilities say so.
 *
 * @example
 * ```ts
 * import { getSession, type SealedSessionStore, withSession } from "websession";
 * import { isSealedStore } from "websession/store-kit";
 * import { CookieStore } from "websession/cookie";
 * import assert from "node:assert/strict";
 *
 * const store: SealedSessionStore = new CookieStore({
 *   secrets: ["a secret of at least thirty-two characters"],
 * });
 * assert.equal(isSealedStore(store), true);
 * assert.equal(store.capabilities.compareAndSet, false);
 *
 * // The session travels in the cookie: no server copy.
 * const handler = withSession(async (req: Request) => {
 *   const session = await getSession<{ cart?: string[] }>(req);
 *   if (req.method === "POST") session.set("cart", [...(session.get("cart") ?? []), "book"]);
 *   return new Response((session.get("cart") ?? []).join());
 * }, { store, secrets: ["a secret of at least thirty-two characters"] });
 * const added = await handler(new Request("https://example.com/", { method: "POST" }));
 * const cookie = added.headers.get("set-cookie")!.split(";")[0]!;
 * const read = await handler(new Request("https://example.com/", { headers: { cookie } }));
 * assert.equal(await read.text(), "book");
 * ```
 */
export interface SealedSessionStore {
  /** Marks the store as cookie-sealed. */
  readonly sealed: true;
  /** What this store guarantees (`compareAndSet: false`). */
  readonly capabilities: StoreCapabilities & { revocation: boolean };
  /**
   * Opens the session from the request's cookies. `get(name)` returns a cookie's value.
   * Returns `null` when there is no session cookie, an {@linkcode InvalidSeal} saying why a
   * present cookie cannot be used, or the opened session. Throws only on an outage
   * (`StoreUnavailableError`, from a revocation store); any other exception is a bug and is
   * reported as one, never mistaken for a bad cookie.
   */
  open(
    get: (name: string) => string | undefined,
    name: string,
  ): Promise<OpenedSession | InvalidSeal | null>;
  /**
   * Seals a record into the cookies to send. Cookies of the request named `name` or `name.N`
   * that are not in the result are cleared by `withSession`.
   * Throws `SessionTooLargeError` when the record does not fit. `options.replaces`: the id of
   * the session this seal takes over from (a `regenerate()`, revoked just before), whose data it
   * carries on: a store that ends a user's sessions seals it as that session stood when revoked.
   * `options.repeatable` (default `true`): a concurrent seal of the same version with the same
   * data stands for this one (an expiry refresh, a re-seal, a `set` made twice); `false`: this
   * seal carries a change that one does not (two increments from the same value), so a store
   * that compares and sets refuses it then (`SessionConflictError`).
   */
  seal(
    id: string,
    record: StoredSession,
    name: string,
    options?: { replaces?: string; repeatable?: boolean },
  ): Promise<SealedCookie[]>;
  /**
   * Called when a session is destroyed or regenerated, for an optional revocation list. Answers
   * what it found: `"ended"` when another request ended the session first (a log in that
   * regenerated it), `"missing"` when the list held nothing of it (it may have been ended, and its
   * tombstone outlived); either way the request's cookie is left alone, as a server store's logout
   * that finds its record ended or gone leaves it: the browser may hold a newer session's cookie.
   * Nothing (`undefined`): revoked by this call, its cookies are cleared. `options.carried`: the
   * data, as the request loaded it, that goes on under a new id (a `regenerate()`): a store that
   * compares and sets throws `SessionConflictError` when a seal newer than `record.version`, of
   * other data, was made meanwhile (its change would be lost), and revokes nothing.
   */
  revoke?(
    id: string,
    record: StoredSession,
    options?: { carried?: StoredSession["data"] },
  ): Promise<void | "ended" | "missing">;
}

/**
 * Tells whether a value is a {@linkcode SealedSessionStore} rather than a server store.
 *
 * @param store A store.
 * @returns `true` for a cookie-sealed store.
 * @example
 * ```ts
 * import { MemoryStore } from "websession";
 * import { isSealedStore } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * assert.equal(isSealedStore(new MemoryStore()), false);
 * ```
 */
export function isSealedStore(store: SessionStore | SealedSessionStore): store is SealedSessionStore {
  return (store as SealedSessionStore).sealed === true;
}
