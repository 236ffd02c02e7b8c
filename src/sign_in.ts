/**
 * Step-up ("sudo mode"): sensitive actions ask for a recent authentication. The session records
 * when its user last authenticated (`session.markAuthenticated()`, kept across `regenerate()`);
 * {@linkcode requireRecentAuth} refuses an action when that is longer ago than the action allows.
 * "Remember me" lives on the `Session` itself (`regenerate({ remember })`) and in the
 * `remember` option.
 *
 * Guide: docs/guides/sign-in.md.
 *
 * @module
 */
import type { Handle } from "./backend.ts";
import { RecentAuthRequiredError } from "./errors.ts";
import type { Session } from "./session.ts";
import { kState } from "./session_state.ts";

/**
 * Options of {@linkcode requireRecentAuth}.
 *
 * @example
 * ```ts
 * import { MemoryStore, openSession, RecentAuthRequiredError, type RecentAuthOptions, requireRecentAuth } from "websession";
 * import assert from "node:assert/strict";
 *
 * let now = Date.UTC(2030, 0, 1);
 * const options = { store: new MemoryStore(), secrets: "a secret of at least thirty-two characters", now: () => now };
 * const session = await openSession(null, options);
 * session.markAuthenticated();
 * const fiveMinutes: RecentAuthOptions = { maxAge: 300 };
 * assert.equal(requireRecentAuth(session, fiveMinutes), now);
 * now += 301_000;
 * assert.throws(() => requireRecentAuth(session, fiveMinutes), RecentAuthRequiredError);
 * ```
 */
export interface RecentAuthOptions {
  /**
   * The most seconds since the user last authenticated that the action allows (RFC 9470's
   * `max_age`; OpenID Connect's `max_age` and `auth_time` measure the same thing).
   */
  maxAge: number;
}

/**
 * Refuses a sensitive action unless the session's user authenticated (`markAuthenticated()`)
 * at most `maxAge` seconds ago, by the session's clock (the `now` option). Call it before the
 * action; when it throws inside `withSession`, the default `onError` answers `401` with
 * `WWW-Authenticate: Cookie error="insufficient_user_authentication", ..., max_age="<maxAge>"`
 * (RFC 9470 §3), so the client can ask for the password again and retry.
 *
 * An authentication time ahead of the clock (a clock set back, or a server whose clock is ahead
 * recorded it) counts as long ago as it is ahead: the step-up lasts at most `maxAge` either way.
 *
 * The check looks at the session's authentication time: a concurrent request that changes it
 * (a re-authentication, a `clear()`) counts as a conflict for this request, as a `get` would.
 *
 * @param session The request's session.
 * @param options `maxAge`, in seconds.
 * @returns When the user last authenticated, in milliseconds since the epoch.
 * @throws {RecentAuthRequiredError} When the session never authenticated, or longer ago than `maxAge`.
 * @throws {RangeError} When `maxAge` is not a number of seconds ≥ 0.
 *
 * @example
 * ```ts
 * import { getSession, MemoryStore, requireRecentAuth, withSession } from "websession";
 * import { TestClock } from "websession/testing";
 * import assert from "node:assert/strict";
 *
 * const clock = new TestClock();
 * const handler = withSession(async (req: Request) => {
 *   const session = await getSession<{ user: string }>(req);
 *   if (new URL(req.url).pathname === "/login") {
 *     session.regenerate();
 *     session.set("user", "ada");
 *     session.markAuthenticated();
 *     return new Response("signed in");
 *   }
 *   requireRecentAuth(session, { maxAge: 300 }); // five minutes
 *   return new Response("password changed");
 * }, { store: new MemoryStore({ now: clock.now }), secrets: ["a secret of at least thirty-two characters"], now: clock.now });
 *
 * const login = await handler(new Request("https://example.com/login", { method: "POST" }));
 * const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
 * const change = () => handler(new Request("https://example.com/password", { method: "POST", headers: { cookie } }));
 * assert.equal((await change()).status, 200);
 * clock.advance(301);
 * const refused = await change();
 * assert.equal(refused.status, 401);
 * assert.match(refused.headers.get("www-authenticate")!, /error="insufficient_user_authentication".*max_age="300"/);
 * ```
 */
export function requireRecentAuth<T extends object>(session: Session<T>, options: RecentAuthOptions): number {
  const maxAge = options?.maxAge;
  if (typeof maxAge !== "number" || !(maxAge >= 0) || maxAge === Infinity) {
    throw new RangeError(`Invalid maxAge: "${String(maxAge)}" must be a number of seconds from 0`);
  }
  const at = session.authenticatedAt;
  // RFC 9470 §3: max_age is the allowable elapsed time; exactly maxAge seconds still passes. A
  // time ahead of the clock (a clock set back, another server's clock ahead) says nothing of how
  // long ago it was: it counts as far off as it is, so a clock set back a day does not make a
  // step-up last a day.
  if (at === undefined || Math.abs(session[kState].now() - at) > maxAge * 1000) {
    throw new RecentAuthRequiredError(maxAge, at, schemeOf(session[kState] as unknown as Handle));
  }
  return at;
}

/**
 * The challenge's scheme: `Bearer` when the session came as `Authorization: Bearer <token>` (the
 * header transport; RFC 6750 §3 and RFC 9470 §3 challenge that scheme), else `Cookie`.
 */
function schemeOf(h: Handle): "Cookie" | "Bearer" {
  return h.onHeader === true && h.o?.transport?.header.toLowerCase() === "authorization"
    ? "Bearer"
    : "Cookie";
}
