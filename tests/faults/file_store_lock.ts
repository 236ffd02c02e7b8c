// What one process does in the cross-process lock fault test (tests/faults/file_store_lock_test.ts),
// the same in every worker (tests/faults/file_store_lock_worker.ts): contenders take one lock
// over and over, and each holder proves it is alone by creating a marker file exclusively for
// as long as it holds the lock.
import { open, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { SessionStore } from "../../src/store.ts";

/** A message to a worker: run `contenders` loops on the lock `key` in `dir`, at once. */
export interface LockJob {
  id: number;
  dir: string;
  key: string;
  /** Contending loops in the worker, each with its own owners. */
  contenders: number;
  /** Locks each loop takes before it stops; `Infinity` until killed. */
  rounds: number;
  /** The ttl of a held lock, in ms. */
  ttlMs: number;
  /** Of the locks taken, how many are left to expire (after 20 ms) instead of released. */
  abandonRate: number;
  staleLockMs: number;
  lockTimeoutMs: number;
  /** Tell the test once this many locks were taken in the worker (for a kill at a random point). */
  announceAfter?: number;
}

/** What a worker reports. */
export interface LockOutcome {
  /** Locks taken. */
  taken: number;
  /** Times a holder found another holder inside (the marker existed): two holders at once. */
  overlaps: number;
  /** Locks left to expire. */
  abandoned: number;
  /** When the first lock was taken (ms since the epoch, measured right after `lock` returned). */
  firstAt: number | null;
  /** Errors thrown by the store, and owners refused their own lock. */
  errors: string[];
}

/** The marker a holder creates exclusively while it holds the lock. */
export function insidePath(dir: string): string {
  return join(dir, "inside");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs a job's contenders on one store; `onTaken` is told after each lock taken. */
export async function contendForLock(
  store: SessionStore,
  job: LockJob,
  onTaken: (taken: number) => void = () => {},
): Promise<LockOutcome> {
  const outcome: LockOutcome = { taken: 0, overlaps: 0, abandoned: 0, firstAt: null, errors: [] };
  const inside = insidePath(job.dir);
  const prefix = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  async function contender(c: number): Promise<void> {
    let serial = 0;
    for (let round = 0; round < job.rounds;) {
      const owner = `${prefix}-${c}-${serial}`;
      try {
        if (!(await store.lock!(job.key, owner, job.ttlMs))) {
          await sleep(Math.random() * 3);
          continue;
        }
        outcome.firstAt ??= Date.now();
        round++;
        serial++;
        outcome.taken++;
        onTaken(outcome.taken);
        let marker;
        try {
          marker = await open(inside, "wx");
        } catch (error) {
          if ((error as { code?: string }).code !== "EEXIST") throw error;
          outcome.overlaps++;
        }
        // Its owner takes it again: an extension, never refused.
        if (!(await store.lock!(job.key, owner, job.ttlMs))) {
          outcome.errors.push(`${owner}: re-taking refused`);
        }
        await sleep(Math.random() * 3);
        if (marker !== undefined) {
          await marker.close();
          await unlink(inside);
        }
        if (Math.random() < job.abandonRate) {
          outcome.abandoned++;
          // Walks away, as a crashed holder would: the lock expires 20 ms from now.
          if (!(await store.lock!(job.key, owner, 20))) outcome.errors.push(`${owner}: shortening refused`);
        } else {
          await store.unlock!(job.key, owner);
        }
      } catch (error) {
        outcome.errors.push(error instanceof Error ? error.message : String(error));
        serial++;
        await sleep(5);
      }
    }
  }
  await Promise.all(Array.from({ length: job.contenders }, (_, c) => contender(c)));
  return outcome;
}
