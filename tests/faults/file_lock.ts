// What one request does to a FileStore session in the stale-lock fault test, the same in the
// test process and in the worker processes (tests/faults/file_lock_worker.ts): an increment, or
// a logout that replaces the session with a tombstone, each a compare-and-set that reloads and
// tries again when it loses, and that never writes over a tombstone.
import { ENDED_KEY, isEnded, type SessionStore } from "../../src/store.ts";

/** What a contender does. */
export type Role = "inc" | "logout";

/** What a contender reports. */
export interface Outcome {
  role: Role;
  /** The write was acknowledged (the save returned `true`). */
  acked: boolean;
  /** The version it wrote, when acknowledged. */
  version?: number;
  /** The counter it wrote (increments), when acknowledged. */
  n?: number;
  /** The session had ended (or was missing) when it looked, so it wrote nothing. */
  ended?: boolean;
  /** An error the store threw (a lock timeout, say): a failed request, not a lost write. */
  error?: string;
}

/** One request: load, change, compare-and-set; on a refusal reload and try again. */
export async function contend(store: SessionStore, key: string, role: Role): Promise<Outcome> {
  try {
    for (let attempt = 0; attempt < 1_000; attempt++) {
      const current = await store.load(key);
      if (current === null || isEnded(current)) return { role, acked: false, ended: true };
      const version = current.version + 1;
      const n = (current.data.n as number) + 1;
      const data = role === "inc" ? { n } : { [ENDED_KEY]: true };
      const result = await store.save(key, { ...current, data, version }, current.version);
      if (result === true) {
        return role === "inc" ? { role, acked: true, version, n } : { role, acked: true, version };
      }
    }
    return { role, acked: false, error: "Gave up after 1,000 refused saves" };
  } catch (error) {
    return { role, acked: false, error: error instanceof Error ? error.message : String(error) };
  }
}

/** A message to a worker: run these contenders on this session, at once. */
export interface Job {
  id: number;
  dir: string;
  key: string;
  roles: Role[];
  staleLockMs: number;
  lockTimeoutMs: number;
}
