/**
 * Audit events of a session's end of life: `end` (a signed-in session was ended, and why) and
 * `expire` (expired sessions were found or removed), told to the `onEvent` hook. Which stores can
 * report an expiry: docs/guides/observability.md#events.
 *
 * @module
 */
import type { Handle } from "./backend.ts";
import { storeError } from "./conflict.ts";
import { emit, type EndReason } from "./events.ts";
import { instrument } from "./instrument.ts";
import { optionsOf, type ResolvedOptions, type SessionOptions } from "./options.ts";
import type { SessionData, SessionStore } from "./store.ts";

/** The user a record's data holds under `userKey`, if any. */
export function userOf(o: ResolvedOptions, data: SessionData | undefined): string | undefined {
  if (o.userKey === undefined || data === undefined || !Object.hasOwn(data, o.userKey)) return undefined;
  const user = data[o.userKey];
  return typeof user === "string" && user !== "" ? user : undefined;
}

/** A load found a record past its idle or absolute timeout. */
export function expiredOnLoad(h: Handle): void {
  if (h.o.onEvent !== undefined) {
    emit(h.o.onEvent, { type: "expire", source: "load", count: 1, request: h.request });
  }
}

/** A session was ended; told only for a signed-in one (it held a user). */
export function ended(
  o: ResolvedOptions,
  reason: EndReason,
  user: string | undefined,
  request?: Request,
): void {
  if (o.onEvent !== undefined && user !== undefined) emit(o.onEvent, { type: "end", reason, user, request });
}

/** The browser's own `destroy()` ended its session. */
export function loggedOut(h: Handle, user: string | undefined): void {
  ended(h.o, "logout", user, h.request);
}

/**
 * Removes expired records from a store that has `cleanup()` (`MemoryStore`, `FileStore`,
 * `PostgresStore`, `DenoKvStore`): `store.cleanup()`, reported to `onEvent` as an `expire` event with
 * `source: "cleanup"` and the count removed (and the call as a `store` event). Run it from a cron
 * trigger (`scheduled` on Workers, `Deno.cron`, a timer on Node and Bun). Stores that expire
 * records by themselves have no `cleanup()`: it then returns 0 and reports nothing.
 *
 * @param options The options `withSession` uses.
 * @returns How many expired records were removed.
 * @throws {StoreUnavailableError} When the store fails.
 * @example
 * ```ts
 * import { cleanupSessions, MemoryStore, type SessionEvent } from "websession";
 * import assert from "node:assert/strict";
 *
 * let clock = Date.now();
 * const store = new MemoryStore({ now: () => clock });
 * await store.save("k".repeat(43), { data: { n: 1 }, version: 1, createdAt: clock, expiresAt: clock + 1_000 }, null);
 * clock += 2_000; // expired, still held until a cleanup
 * const events: SessionEvent[] = [];
 * const options = {
 *   store,
 *   secrets: ["a secret of at least thirty-two characters"],
 *   onEvent: (event: SessionEvent) => void events.push(event),
 * };
 * assert.equal(await cleanupSessions(options), 1);
 * assert.deepEqual(events.filter((e) => e.type === "expire").map((e) => e.type === "expire" && e.count), [1]);
 * ```
 */
export async function cleanupSessions(options: SessionOptions<object>): Promise<number> {
  const o = optionsOf(options as SessionOptions<SessionData>);
  if (o.sealed || typeof (o.store as SessionStore).cleanup !== "function") return 0;
  const store = instrument(o.store as SessionStore, o.onEvent, undefined) as SessionStore;
  let count: number;
  try {
    count = await store.cleanup!();
  } catch (error) {
    throw storeError("clean up", error);
  }
  if (o.onEvent !== undefined && typeof count === "number" && count > 0) {
    emit(o.onEvent, { type: "expire", source: "cleanup", count });
  }
  return typeof count === "number" ? count : 0;
}
