/**
 * What a sign-in's save does for sessions per user: the metadata it writes (last seen, the
 * device) and, with `maxSessionsPerUser`, ending the user's oldest sessions beyond the limit.
 * The core's commit calls these; the public listing and ending are in `users.ts`.
 *
 * @module
 */
import type { CommitResult, Handle } from "../backend.ts";
import { storeError } from "../conflict.ts";
import { nextMetadata, type ResolvedDeviceInfo } from "../metadata.ts";
import type { SessionData, SessionStore, StoredSession } from "../store.ts";
import { belongs, endAll, recordsOf, type Scope } from "../users.ts";
import { userLock } from "./lock.ts";
/**
 * Sets the metadata the save about to be made writes (see `metadata.ts`): for a signed-in
 * session of options with `users`, when it was last seen and, with `deviceInfo`, its device.
 * Called only on a save the request makes anyway.
 */
export function noteMeta(h: Handle, now: number, deviceInfo: ResolvedDeviceInfo | undefined): void {
  const o = h.o;
  h.meta = o.userKey !== undefined && typeof h.data.get(o.userKey) === "string"
    ? nextMetadata(h.base?.data, deviceInfo, h.request, now) as SessionData
    : undefined;
}

/**
 * A save gave a session its user (a sign-in): with `maxSessionsPerUser`, ends that user's oldest
 * sessions beyond the limit (never this one), remotely, each reported as an `end` event with
 * reason `limit`. Sign-ins of one user take turns at this on a store with locks
 * (`capabilities.locks`), so that two of them never end each other: each sees the ones before
 * it, and one that was ended meanwhile ends nothing.
 *
 * @returns `"done"`, or the store's failure (the sign-in is then answered with it: a limit that
 * could not be applied is not silently skipped).
 */
export async function signedIn(h: Handle, user: string): Promise<CommitResult> {
  const o = h.o;
  const limit = o.users?.maxSessionsPerUser;
  const store = h.store as SessionStore;
  if (
    limit === undefined || o.sealed || !store.capabilities.users || typeof store.keysOfUser !== "function"
  ) {
    return "done";
  }
  const scope: Scope = { o, store, user, currentKey: h.key, request: h.request };
  let release: (() => Promise<void>) | undefined;
  try {
    release = await userLock(store, user);
    const live = await recordsOf(scope);
    if (live.length <= limit) return "done";
    // Ended by a sign-in that held the turn before this one: nothing more to end.
    if (!live.some(([key]) => key === h.key) && !(await stillLive(scope, h.key!))) return "done";
    const others = live.filter(([key]) => key !== h.key);
    await endAll(scope, others.slice(0, live.length - limit), "limit");
    return "done";
  } catch (error) {
    return storeError("end sessions over the limit", error);
  } finally {
    await release?.();
  }
}

/** Whether a session is still its user's live one (an index may lag behind, or lose a key). */
async function stillLive(scope: Scope, key: string): Promise<boolean> {
  let record: StoredSession | null;
  try {
    record = await scope.store.load(key);
  } catch (error) {
    throw storeError("load", error);
  }
  return belongs(scope, record, scope.o.now());
}
