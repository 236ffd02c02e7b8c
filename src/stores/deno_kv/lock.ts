/**
 * Locks in `DenoKvStore` (`session.lock()`), each held until its `ttlMs` runs out: an entry
 * of its own per session, `[...prefix, "lease", storageKey]`, holding `{ owner, until }`, taken
 * and released by commits guarded by the versionstamp read.
 *
 * @module
 */
import { ATTEMPTS, kvCall } from "./record.ts";
import type { DenoKvKey, DenoKvLike } from "./types.ts";

/** A lock as stored: its owner and when it lapses by the application's clock (ms). */
interface StoredLock {
  owner: string;
  until: number;
}

/** A stored lock, or `null` when the value is not one. */
export function lockOf(value: unknown): StoredLock | null {
  if (typeof value !== "object" || value === null) return null;
  const { owner, until } = value as Record<string, unknown>;
  return typeof owner === "string" && typeof until === "number" ? { owner, until } : null;
}

/**
 * Locks `lockKey` for `owner` unless another owner's lock is live at `now()`: a read and
 * a commit guarded by the versionstamp read, so of concurrent takers exactly one commits.
 */
export async function takeLock(
  kv: DenoKvLike,
  lockKey: DenoKvKey,
  holder: { owner: string; ttlMs: number; now: () => number },
): Promise<boolean> {
  const { owner, ttlMs } = holder;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const entry = await kvCall("get", () => kv.get(lockKey));
    const held = entry.versionstamp === null ? null : lockOf(entry.value);
    const now = holder.now();
    if (held !== null && held.owner !== owner && held.until > now) return false;
    const lock: StoredLock = { owner, until: now + ttlMs };
    const result = await kvCall(
      "commit",
      () =>
        kv.atomic().check({ key: lockKey, versionstamp: entry.versionstamp })
          .set(lockKey, lock, { expireIn: Math.ceil(ttlMs) }).commit(),
    );
    if (result.ok) return true;
    // Another taker (or a release) committed in between: decide again on what stands now.
  }
  return false;
}

/** Deletes the lock at `lockKey` only while `owner` holds it (guarded by the versionstamp read). */
export async function releaseLock(kv: DenoKvLike, lockKey: DenoKvKey, owner: string): Promise<void> {
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const entry = await kvCall("get", () => kv.get(lockKey));
    if (entry.versionstamp === null || lockOf(entry.value)?.owner !== owner) return;
    const result = await kvCall(
      "commit",
      () => kv.atomic().check({ key: lockKey, versionstamp: entry.versionstamp }).delete(lockKey).commit(),
    );
    if (result.ok) return;
  }
}
