/**
 * The conflict path: how a request's changes land on the record it loaded when another request
 * may have saved it meanwhile. The four policies are `decide()`; the compare-and-set that asks
 * them is `commitToRecord` (`compare_and_set.ts`).
 *
 * Within a process, requests of one session take turns (`turns.ts`), so a compare-and-set here
 * is refused only when another process saved first (or a request that gave up waiting for its
 * turn). Then the refusal's report of the current record (`SaveConflict`) saves a second read,
 * the policy decides on it, and the key is marked contended so that later requests take turns
 * across processes too.
 *
 * @module
 */
import { SessionError, StoreUnavailableError } from "./errors.ts";
import type { ConflictPolicy } from "./options.ts";
import type { SessionState } from "./session_state.ts";
import { observationsHold } from "./session_data.ts";
import type { EventHook } from "./events.ts";
import {
  ENDED_BY_KEY,
  endedAt,
  endedRemotely,
  type SaveIndex,
  type SessionData,
  type SessionStore,
  type StoredSession,
} from "./store.ts";

/** How long at least the tombstone of an ended session outlives the end, in milliseconds. */
export const TOMBSTONE_MS = 60_000;

/**
 * For how long after a session ended, in milliseconds, a request that still carries its cookie
 * is taken for one that was in flight at the time: served a fresh, empty session that may not
 * change anything or send a cookie (the browser may already hold the new one). Later, the
 * browser evidently never got a newer cookie (a lost response, a second browser holding a
 * stolen copy): the old cookie then counts as unknown, and a new session may start, so nobody
 * is locked out.
 */
export const ENDED_GRACE_MS = 60_000;

/** What one commit asks of the record it is attached to. */
export interface Pending {
  /** The request's session (its `base` is the record it read). */
  s: SessionState;
  policy: ConflictPolicy;
  /** The wrapper can run the handler again on a fresh session. */
  canRerun: boolean;
  /** The expiry this commit wants for the record (ms since the epoch). */
  expiresAt: number;
  /** The request holds the turn on this key already (taken before it loaded). */
  held: boolean;
  /** Saves to try before refusing (the `maxAttempts` option). */
  maxAttempts: number;
  /** The session key holding the user's id, for stores that index sessions per user. */
  userKey?: string;
  /** The instrumentation hook, and the request it reports. */
  hook?: EventHook;
  request?: Request;
}

/** The maps a commit's data became, after its operations were replayed on what it landed on. */
export interface Landed {
  data: Map<string, unknown>;
  flash: Map<string, unknown>;
  flashOut: Map<string, unknown> | undefined;
}

/**
 * How a commit ended, as a value.
 *
 * - `saved`: the record now stored (a tombstone when the commit ended the session; `null` when
 *   it found the session already gone), and the maps the session holds after the merge.
 * - `rerun`: the handler must run again on a fresh session (merge with a changed observation,
 *   retry).
 * - `refused`: `conflict` (policy says no), `ended` (another request ended the session) or
 *   `dropped` (an expiry refresh that lost to a write, which extended the session already) or
 *   `expired` (the session's idle or absolute timeout passed while the request ran).
 * - `failed`: the store failed.
 */
export type Outcome =
  | {
    kind: "saved";
    record: StoredSession | null;
    /** A logout that found the session already ended by another request, or gone. */
    found?: "ended" | "missing";
    /** The maps the session holds now; `undefined`: its own, unchanged (no merge was needed). */
    landed: Landed | undefined;
    /**
     * How many of the operation log's entries the saved record holds: those recorded while the
     * commit waited on the store (a streamed body, code after an unawaited `save()`) are not in
     * it and stay for the next commit.
     */
    included: number;
    attempts: number;
  }
  | { kind: "rerun" }
  | { kind: "refused"; reason: "conflict" | "ended" | "dropped" | "expired" }
  | { kind: "failed"; error: SessionError };

type Verdict = "apply" | "rerun" | "refuse";

/**
 * The four policies. Called when the record a commit would replace is not the one it read
 * (`changed`), or with `changed: false` when it is.
 *
 * - `merge`: replay when nothing the handler looked at changed; else run the handler again if
 *   the request can be, else refuse.
 * - `retry`: run the handler again on any change.
 * - `reject`: refuse on any change (a `destroy()` still lands).
 * - `overwrite`: write this request's data over whatever is there.
 */
export function decide(p: Pending, changed: boolean, loaded: SessionData, now: SessionData): Verdict {
  if (!changed || p.policy === "overwrite") return "apply";
  // A logout loses nothing by landing after a concurrent write: what it keeps does not depend
  // on the record. `reject` refuses only changes that would be merged.
  if (p.policy === "reject" && p.s.ending === "destroy") return "apply";
  switch (p.policy) {
    case "merge":
      if (observationsHold(p.s, loaded, now)) return "apply";
      return p.canRerun ? "rerun" : "refuse";
    case "retry":
      return p.canRerun ? "rerun" : "refuse";
    default:
      return "refuse";
  }
}

/** Whether a session ended at `at` (ms) ended recently enough for a request to be in flight. */
export function inGrace(at: number | undefined, now: number): boolean {
  return at !== undefined && now - at < ENDED_GRACE_MS;
}

/**
 * The time by which the grace of an ended session is stamped and judged, in milliseconds since
 * the epoch: the store's clock (`store.time(key)`) where the store has one, so that application
 * servers whose clocks disagree judge the grace alike; else, or when the store cannot tell it
 * (an outage, an older Durable Object, no answer within {@linkcode GRACE_CLOCK_WAIT_MS}), the
 * application's clock `now()`. Asked only when a commit ends a session and when a load finds a
 * tombstone to judge: never on an ordinary request.
 *
 * @param store The store (an instrumented one reports the call as a `time` store event).
 * @param key The storage key of the session.
 * @param now The application's clock.
 * @returns Milliseconds since the epoch.
 */
export async function graceClock(store: SessionStore, key: string, now: () => number): Promise<number> {
  if (typeof store.time !== "function") return now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    // A log out never waits long for the time: an answer later than GRACE_CLOCK_WAIT_MS counts
    // as none, as does a bad one.
    const late = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), GRACE_CLOCK_WAIT_MS);
    });
    const at = await Promise.race([store.time(key), late]);
    if (typeof at === "number" && Number.isFinite(at)) return at;
  } catch {
    // An outage of the clock alone: the application's clock judges, as without one.
  } finally {
    clearTimeout(timer);
  }
  return now();
}

/**
 * How long, in milliseconds, {@linkcode graceClock} waits for the store's clock before the
 * application's judges: a clock that hangs (a stalled connection, a server that never answers
 * `TIME`) must not hold a log out.
 */
export const GRACE_CLOCK_WAIT_MS = 2_000;

/**
 * Whether a tombstone found by a load marks a session ended by a request so recently (within
 * {@linkcode ENDED_GRACE_MS}, by {@linkcode graceClock}) that a request carrying its cookie is
 * taken for one in flight. A session ended from elsewhere (`endUserSessions`) has no grace: no
 * newer cookie exists to protect. Asks the store's clock only for a tombstone that has a grace
 * to judge.
 *
 * @param store The store.
 * @param key The storage key.
 * @param record The tombstone found.
 * @param now The application's clock.
 * @returns `true` within the grace.
 */
export async function endedInFlight(
  store: SessionStore,
  key: string,
  record: StoredSession,
  now: () => number,
): Promise<boolean> {
  if (endedRemotely(record)) return false;
  const at = endedAt(record);
  if (at === undefined) return false;
  return inGrace(at, await graceClock(store, key, now));
}

/**
 * What a request whose cookie names the tombstone `record`, ended in flight, may still do:
 * `"destroyed"` when the browser's own log out ended it (a log in may go on: no data of the
 * session lives on), else `true` (see `Handle.endedElsewhere`).
 */
export function endedKind(record: StoredSession): true | "destroyed" {
  return (record.data as Record<string, unknown>)[ENDED_BY_KEY] === "destroy" ? "destroyed" : true;
}

/** Full-jitter exponential backoff (ms ceiling 0.5 · 2^attempt, at most 250). */
export function backoff(attempt: number): Promise<void> {
  const ceiling = Math.min(250, 0.5 * 2 ** Math.min(attempt, 9));
  return new Promise((resolve) => setTimeout(resolve, Math.random() * ceiling));
}

/** Wraps a store failure once, at the store boundary; a `SessionError` passes unchanged. */
export function storeError(action: string, cause: unknown): SessionError {
  if (cause instanceof SessionError) return cause;
  return new StoreUnavailableError(
    `Session store failed to ${action}: ${(cause as Error)?.message ?? String(cause)}`,
    { cause },
  );
}

/** What a save indexes: the user id the data holds under `userKey`, if any. */
export function indexOf(data: SessionData, userKey: string | undefined): SaveIndex | undefined {
  if (userKey === undefined || !Object.hasOwn(data, userKey)) return undefined;
  const user = data[userKey];
  return typeof user === "string" && user !== "" ? { user } : undefined;
}
