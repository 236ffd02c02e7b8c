/**
 * websession: HTTP sessions for fetch handlers, on Web standards only, with optimistic
 * versioning: every save is a compare-and-set, and a conflict with a concurrent request is
 * merged by replaying this request's changes, so no update is lost.
 *
 * Runs unchanged on Cloudflare Workers, Deno, Bun and Node 20+.
 *
 * @example
 * ```ts
 * import { getSession, withSession, MemoryStore } from "websession";
 * import assert from "node:assert/strict";
 *
 * type Data = { visits?: number };
 * const handler = withSession(async (req: Request) => {
 *   const session = await getSession<Data>(req);
 *   session.update("visits", (n = 0) => n + 1); // replayed on conflict: no lost increments
 *   return new Response(`visit ${session.get("visits")}`);
 * }, { store: new MemoryStore(), secrets: ["at least 32 characters of secret...."] });
 *
 * const response = await handler(new Request("https://example.com/"));
 * assert.equal(await response.text(), "visit 1");
 * // Deno.serve(handler); Bun.serve({ fetch: handler }); export default { fetch: handler };
 * ```
 *
 * @module
 */
export { getSession, withSession } from "./src/with_session.ts";
export { commitSession, type CookieInput, openSession } from "./src/open_session.ts";
export type { EndReason, EventHook, SessionEvent } from "./src/events.ts";
export type { LockOptions, SessionLock } from "./src/lock.ts";
export { endUserSessions, listUserSessions, type UserSession } from "./src/users.ts";
export { type UserSessions, userSessions, type UserSessionsOptions } from "./src/users/options.ts";
export { cleanupSessions } from "./src/audit.ts";
export { type DeviceInfo, type DeviceInfoOptions, trustedProxies } from "./src/metadata.ts";
export { Session } from "./src/session.ts";
export { type RecentAuthOptions, requireRecentAuth } from "./src/sign_in.ts";
export type {
  ConflictPolicy,
  InvalidCookieEvent,
  InvalidCookieReason,
  RememberOptions,
  SessionLogger,
  SessionOptions,
  StandardSchemaResult,
  StandardSchemaV1,
} from "./src/options.ts";
export type { CookieOptions } from "./src/cookie.ts";
export {
  RecentAuthRequiredError,
  SessionConfigError,
  SessionConflictError,
  SessionDataError,
  SessionError,
  SessionStateError,
  SessionTooLargeError,
  StoreUnavailableError,
} from "./src/errors.ts";
export type { SessionErrorCode } from "./src/errors.ts";
// Stores are configured by applications, so their types are here; what store authors need
// (validators, the save contract) is in `websession/store-kit`.
export type {
  SealedSessionStore,
  SessionData,
  SessionStore,
  StoreCapabilities,
  StoredSession,
} from "./src/store.ts";
export { MemoryStore, type MemoryStoreOptions } from "./src/stores/memory.ts";
