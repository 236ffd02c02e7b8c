/**
 * Locks in the file store (`session.lock()`), each held until its `ttlMs` runs out: slot
 * directories `<dir>/leases/<storage key>/` (`leases`: the on-disk name of earlier versions; kept
 * so that old and new processes share locks), where taking, extending, releasing or taking over
 * an expired lock each claims the next slot, so of concurrent takers exactly one wins however
 * long any of them stalls. Each holder gets a fencing token above every earlier holder's. Docs:
 * docs/stores/file.md#locks.
 *
 * @module
 */
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { ignore } from "./fs.ts";
import type { Slots, Value } from "./slots.ts";

/**
 * A lock as {@linkcode FileStore.heldLock} reads it: who holds it, until when, and its fencing
 * token. Docs: docs/stores/file.md#locks.
 *
 * @example
 * ```ts
 * import { FileStore, type FileLock } from "websession/file";
 * import { mkdtemp, rm } from "node:fs/promises";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import assert from "node:assert/strict";
 *
 * const dir = await mkdtemp(join(tmpdir(), "websession-lock-"));
 * const store = new FileStore({ dir });
 * const key = "k".repeat(43);
 * assert.equal(await store.lock(key, "owner-1", 30_000), true);
 * const lock: FileLock | null = await store.heldLock(key);
 * assert.equal(lock?.owner, "owner-1");
 * assert.ok(lock!.token >= 1);
 * await store.unlock(key, "owner-1");
 * await rm(dir, { recursive: true });
 * ```
 */
export interface FileLock {
  /** Who holds it, as given to `lock()`. */
  owner: string;
  /** When it expires, in milliseconds since the epoch, by the store's clock. */
  until: number;
  /**
   * The fencing token of this holder: larger than the token of every earlier holder of the
   * lock (an extension keeps it). A write guarded by the lock passes it along; whatever
   * receives the write refuses a token lower than the highest it has seen.
   */
  token: number;
}

/**
 * The earlier name of {@linkcode FileLock}, kept for one release.
 *
 * @deprecated Use {@linkcode FileLock}.
 * @example
 * ```ts
 * import type { FileLease, FileLock } from "websession/file";
 * import assert from "node:assert/strict";
 *
 * const lock: FileLock = { owner: "owner-1", until: Date.now() + 30_000, token: 1 };
 * const same: FileLease = lock; // the same type
 * assert.equal(same.token, 1);
 * ```
 */
export type FileLease = FileLock;

/** What taking a lock needs besides its directory. */
export interface Take {
  slots: Slots;
  owner: string;
  ttlMs: number;
  now: () => number;
  /** Throws once the taker has kept losing its claims for too long. */
  check: () => void;
}

/**
 * The token a taker claims with: its own when it holds the lock (an extension), one above the
 * last holder's, or, in a new directory, above the clock's microseconds and the closed
 * directory's last token (`floor`), so tokens keep rising across directories.
 */
function tokenFor(seen: Value | null, n: number, owner: string, floor: number): number {
  const token = typeof seen?.token === "number" ? seen.token : 0;
  if (seen?.owner === owner) return token;
  return n > 0 && token > 0 ? token + 1 : Math.max(Date.now() * 1000, floor);
}

/** Takes or extends the lock in `dir` for `owner`; `false` while another owner holds it. */
export async function take(dir: string, { slots, owner, ttlMs, now, check }: Take): Promise<boolean> {
  let floor = 0;
  for (;; check()) {
    const newest = await slots.newest(dir);
    const seen = newest?.value ?? null;
    if (seen?.closed === true) {
      floor = Math.max(floor, (typeof seen.token === "number" ? seen.token : 0) + 1);
      await slots.remove(dir);
      continue;
    }
    const held = typeof seen?.owner === "string" && typeof seen.until === "number" && seen.until > now();
    if (held && seen.owner !== owner) return false;
    if (newest === null) await ignore(mkdir(dirname(dir), { mode: 0o700 }), "EEXIST");
    if (newest === null) await ignore(mkdir(dir, { mode: 0o700 }), "EEXIST");
    const n = newest?.n ?? 0;
    const mine = tokenFor(seen, n, owner, floor);
    const members = `"owner":${JSON.stringify(owner)},"until":${now() + ttlMs},"token":${mine}`;
    if (await slots.claim(dir, n + 1, members) === "ok") {
      if (n > 0) await slots.husk(dir, n);
      return true;
    }
  }
}

/** Releases the lock in `dir` if, and only if, `owner` holds it (an expired one included). */
export async function release(dir: string, slots: Slots, owner: string, check: () => void): Promise<void> {
  for (;; check()) {
    const newest = await slots.newest(dir);
    if (newest === null || newest.value?.owner !== owner) return;
    const outcome = await slots.claim(dir, newest.n + 1, `"released":true,"token":${newest.value.token}`);
    if (outcome === "ok") return await slots.husk(dir, newest.n);
  }
}

/** The live lock in `dir`; `null` when none is held. */
export async function read(dir: string, slots: Slots, now: number): Promise<FileLock | null> {
  const value = (await slots.newest(dir))?.value;
  const { owner, until, token } = value ?? {};
  if (typeof owner !== "string" || typeof until !== "number" || typeof token !== "number") return null;
  return until > now ? { owner, until, token } : null;
}
