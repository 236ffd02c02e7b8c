/**
 * The instrumentation hook: every meaningful thing the core does, with its timing, as plain
 * event objects handed to `onEvent`. Nothing is built or timed when no hook is set.
 *
 * @module
 */
import type { ConflictPolicy, InvalidCookieReason } from "./options.ts";

/**
 * What `onEvent` is told. Durations are milliseconds (`performance.now()` differences).
 *
 * - `load`: the session was opened (`found`: a stored session was used).
 * - `save`: a record was written (`created` for a new session), after `attempts` tries.
 * - `touch`: an unchanged session's expiry was extended without rewriting it.
 * - `destroy` / `regenerate`: a session was ended (its record replaced by a tombstone).
 * - `conflict`: a compare-and-set found another request's write; what the policy did.
 * - `store`: one call into the store, with its latency and, on failure, the error. Every call the
 *   library makes is reported, whatever made it (a request, `listUserSessions`,
 *   `endUserSessions`, `session.lock()`); `operation` is the store method's name
 *   ({@linkcode StoreOperation}).
 * - `invalid-cookie`: a presented cookie was not used, and why.
 * - `end`: a signed-in session (one holding a user under `userKey`) was ended, and why
 *   ({@linkcode EndReason}); `user` is its user. For an audit log.
 * - `expire`: expired sessions were found: on a load (`source: "load"`: past its absolute
 *   timeout, or a record its store still returned), or removed by `cleanupSessions()`
 *   (`source: "cleanup"`, `count` of them). Stores that expire records by themselves (a TTL:
 *   Redis, Memcached, Deno KV, Workers KV) drop them silently: no event.
 *
 * @example
 * ```ts
 * import { getSession, MemoryStore, type SessionEvent, withSession } from "websession";
 * import assert from "node:assert/strict";
 *
 * const events: SessionEvent[] = [];
 * const handler = withSession(async (req: Request) => {
 *   (await getSession<{ n?: number }>(req)).update("n", (n = 0) => n + 1);
 *   return new Response("ok");
 * }, {
 *   store: new MemoryStore(),
 *   secrets: ["a secret of at least thirty-two characters"],
 *   onEvent: (event) => void events.push(event),
 * });
 * await handler(new Request("https://example.com/"));
 * assert.deepEqual(events.map((e) => e.type === "store" ? `store ${e.operation}` : e.type), [
 *   "load",
 *   "store save",
 *   "save",
 * ]);
 * ```
 */
export type SessionEvent =
  | { type: "load"; found: boolean; durationMs: number; request?: Request }
  | {
    type: "save";
    created: boolean;
    version: number;
    attempts: number;
    durationMs: number;
    request?: Request;
  }
  | { type: "touch"; durationMs: number; request?: Request }
  | { type: "destroy" | "regenerate"; durationMs: number; request?: Request }
  | {
    type: "conflict";
    policy: ConflictPolicy;
    attempt: number;
    outcome: "merged" | "rerun" | "refused";
    request?: Request;
  }
  | {
    type: "store";
    operation: StoreOperation;
    durationMs: number;
    error?: unknown;
    request?: Request;
  }
  | { type: "invalid-cookie"; reason: InvalidCookieReason; request?: Request }
  | { type: "end"; reason: EndReason; user?: string; request?: Request }
  | { type: "expire"; source: "load" | "cleanup"; count: number; request?: Request };

/**
 * Why a session was ended (the `reason` of an `end` event):
 *
 * - `logout`: the browser's own `session.destroy()`.
 * - `user`: the user ended it from another session (`endUserSessions(session, ...)`: "sign out
 *   other devices").
 * - `admin`: ended from outside any of the user's sessions (`endUserSessions(options, ...)`: an
 *   administrator, a password reset; the admin handler).
 * - `limit`: a sign-in went past `maxSessionsPerUser` and this was the user's oldest session.
 *
 * @example
 * ```ts
 * import type { EndReason, SessionEvent } from "websession";
 * import assert from "node:assert/strict";
 *
 * const audit: string[] = [];
 * const onEvent = (event: SessionEvent) => {
 *   if (event.type === "end") audit.push(`${event.user} ${event.reason}`);
 * };
 * const reason: EndReason = "limit";
 * onEvent({ type: "end", reason, user: "ada" });
 * assert.deepEqual(audit, ["ada limit"]);
 * ```
 */
export type EndReason = "logout" | "user" | "admin" | "limit";

/**
 * The store call a `store` event reports: the name of the store method called.
 *
 * - Server stores: `load`, `save` (also a tombstone that ends a session), `destroy`, `touch`,
 *   `lock` and `unlock` (the lock of `session.lock()`), `keysOfUser` (the index read of
 *   `listUserSessions` and `endUserSessions`), `cleanup`, `count`.
 * - Sealed stores (`CookieStore`): `open`, `seal`, `revoke`.
 *
 * @example
 * ```ts
 * import type { SessionEvent } from "websession";
 * import type { StoreOperation } from "./events.ts";
 * import assert from "node:assert/strict";
 *
 * const byOperation = new Map<StoreOperation, number>();
 * const onEvent = (event: SessionEvent) => {
 *   if (event.type === "store") byOperation.set(event.operation, (byOperation.get(event.operation) ?? 0) + 1);
 * };
 * onEvent({ type: "store", operation: "keysOfUser", durationMs: 0.4 });
 * assert.equal(byOperation.get("keysOfUser"), 1);
 * ```
 */
export type StoreOperation =
  | "load"
  | "save"
  | "destroy"
  | "touch"
  | "lock"
  | "unlock"
  | "keysOfUser"
  | "time"
  | "cleanup"
  | "count"
  | "open"
  | "seal"
  | "revoke";

/**
 * The `onEvent` hook: called synchronously with each event; what it throws is ignored.
 *
 * @example
 * ```ts
 * import { type EventHook, MemoryStore, withSession } from "websession";
 * import assert from "node:assert/strict";
 *
 * const slow: string[] = [];
 * const onEvent: EventHook = (event) => {
 *   if (event.type === "store" && event.durationMs > 250) slow.push(event.operation);
 * };
 * const handler = withSession(() => new Response("ok"), {
 *   store: new MemoryStore(),
 *   secrets: ["a secret of at least thirty-two characters"],
 *   onEvent,
 * });
 * await handler(new Request("https://example.com/"));
 * assert.deepEqual(slow, []);
 * ```
 */
export type EventHook = (event: SessionEvent) => void;

/** Tells the hook, never letting its failure reach the request. */
export function emit(hook: EventHook, event: SessionEvent): void {
  try {
    hook(event);
  } catch {
    // An instrumentation failure must not change what the user gets.
  }
}

/** Times one store call for the hook; the call's own result or error passes through. */
export async function timed<T>(
  hook: EventHook,
  request: Request | undefined,
  operation: StoreOperation,
  call: () => Promise<T>,
): Promise<T> {
  const start = performance.now();
  try {
    const result = await call();
    emit(hook, { type: "store", operation, durationMs: performance.now() - start, request });
    return result;
  } catch (error) {
    emit(hook, { type: "store", operation, durationMs: performance.now() - start, error, request });
    throw error;
  }
}
