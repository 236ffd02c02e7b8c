/**
 * The leases of `DenoKvStore` (`session.lock()`): an entry of its own per session,
 * `[...prefix, "lease", storageKey]`, holding `{ owner, until }`, taken and released by commits
 * guarded by the versionstamp read.
 *
 * @module
 */
import { ATTEMPTS, kvCall } from "./record.ts";
import type { DenoKvKey, DenoKvLike } from "./types.ts";

/** A lease as stored: its owner and when it lapses by the application's clock (ms). */
interface Lease {
  owner: string;
  until: number;
}

/** A stored lease, or `null` when the value is not one. */
export function leaseOf(value: unknown): Lease | null {
  if (typeof value !== "object" || value === null) return null;
  const { owner, until } = value as Record<string, unknown>;
  return typeof owner === "string" && typeof until === "number" ? { owner, until } : null;
}

/**
 * Takes the lease at `leaseKey` for `owner` unless another owner's is live at `now()`: a read and
 * a commit guarded by the versionstamp read, so of concurrent takers exactly one commits.
 */
export async function takeLease(
  kv: DenoKvLike,
  leaseKey: DenoKvKey,
  holder: { owner: string; ttlMs: number; now: () => number },
): Promise<boolean> {
  const { owner, ttlMs } = holder;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const entry = await kvCall("get", () => kv.get(leaseKey));
    const held = entry.versionstamp === null ? null : leaseOf(entry.value);
    const now = holder.now();
    if (held !== null && held.owner !== owner && held.until > now) return false;
    const lease: Lease = { owner, until: now + ttlMs };
    const result = await kvCall(
      "commit",
      () =>
        kv.atomic().check({ key: leaseKey, versionstamp: entry.versionstamp })
          .set(leaseKey, lease, { expireIn: Math.ceil(ttlMs) }).commit(),
    );
    if (result.ok) return true;
    // Another taker (or a release) committed in between: decide again on what stands now.
  }
  return false;
}

/** Deletes the lease at `leaseKey` only while `owner` holds it (guarded by the versionstamp read). */
export async function releaseLease(kv: DenoKvLike, leaseKey: DenoKvKey, owner: string): Promise<void> {
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const entry = await kvCall("get", () => kv.get(leaseKey));
    if (entry.versionstamp === null || leaseOf(entry.value)?.owner !== owner) return;
    const result = await kvCall(
      "commit",
      () => kv.atomic().check({ key: leaseKey, versionstamp: entry.versionstamp }).delete(leaseKey).commit(),
    );
    if (result.ok) return;
  }
}
