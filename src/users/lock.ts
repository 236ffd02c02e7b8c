/**
 * The lock that orders the changes of one user's sessions (sign-ins under `maxSessionsPerUser`,
 * a `regenerate()` of a signed-in session, `endUserSessions`), and the backoff their retries use.
 *
 * @module
 */
import type { SessionStore } from "../store.ts";
import { userTag } from "../user_tag.ts";

/** Full-jitter exponential backoff before reading a record again: at most 100 ms. */
export function pause(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(100, 2 ** attempt)));
}

/**
 * How long the lock that orders what changes one user's set of sessions (sign-ins under
 * `maxSessionsPerUser`, a `regenerate()` of a signed-in session, `endUserSessions`) lives at
 * most, and is waited for (ms).
 */
const USER_LOCK_MS = 5_000;

/**
 * Takes the store's lock that orders the changes of one user's sessions (named by a SHA-256 tag of a
 * label and the id, the shape of a storage key), waiting for it at most {@linkcode USER_LOCK_MS};
 * goes on without it on a store without locks, or when the wait runs out (a holder that
 * crashed). Returns its release, which never throws.
 */
export async function userLock(
  store: SessionStore,
  user: string,
): Promise<(() => Promise<void>) | undefined> {
  if (!store.capabilities.locks || typeof store.lock !== "function" || typeof store.unlock !== "function") {
    return undefined;
  }
  const key = await userTag(`maxSessionsPerUser\0${user}`);
  const owner = crypto.randomUUID();
  const start = performance.now();
  for (let attempt = 1; performance.now() - start < USER_LOCK_MS; attempt++) {
    if (await store.lock(key, owner, USER_LOCK_MS)) {
      return () => store.unlock!(key, owner).catch(() => {}); // it expires by itself anyway
    }
    await pause(attempt);
  }
  return undefined;
}
