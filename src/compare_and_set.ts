/**
 * The compare-and-set of a commit on the record it loaded: `commitToRecord` saves on the version
 * the request's data derives from and, when another request saved first, lets the policy
 * (`decide()`, `conflict.ts`) decide on the record that won.
 *
 * @module
 */
import { SessionError } from "./errors.ts";
import {
  backoff,
  decide,
  graceClock,
  indexOf,
  type Landed,
  type Outcome,
  type Pending,
  storeError,
  TOMBSTONE_MS,
} from "./conflict.ts";
import { joinData, replay, withMeta } from "./session_data.ts";
import type { SessionState } from "./session_state.ts";
import { emit } from "./events.ts";
import {
  freshest,
  markContended,
  noteRead,
  noteVersion,
  noteWritten,
  releaseTurn,
  takeTurn,
  TURN_WAIT_MS,
} from "./turns.ts";
import {
  checkedSaveResult,
  ENDED_AT_KEY,
  ENDED_BY_KEY,
  ENDED_KEY,
  isEnded,
  type SaveConflict,
  type SaveResult,
  type SessionStore,
  type StoredSession,
} from "./store.ts";

/**
 * Commits one request's changes to the record under `key` by compare-and-set on the version its
 * data was derived from (`p.s.base`), and on a refusal decides by policy on the record that won.
 * Every compare-and-set is based on exactly the record the request's data derives from: a
 * request that commits again (an early `save()`, a late save) commits on what it saved.
 *
 * @param store The store.
 * @param key The storage key.
 * @param p The commit (its `maxAttempts`; the session's clock, `p.s.now`).
 * @param then The commit's next step, on how it ended: run as the compare-and-set's last step
 *   when the request holds its turn (no step of its own chained on the common path), else once
 *   the commit's turn is given up.
 * @returns What `then` returns.
 */
export function commitToRecord<R>(
  store: SessionStore,
  key: string,
  p: Pending,
  then: (outcome: Outcome, p: Pending) => R | Promise<R>,
): Promise<R> {
  if (p.held) return compareAndSet(store, key, p, then);
  return commitInTurn(store, key, p).then((outcome) => then(outcome, p));
}

function asIs(outcome: Outcome): Outcome {
  return outcome;
}

/**
 * A commit not in a turn of its own (openSession, locking "explicit", a late save): commits of
 * one key in this process still go one at a time, each with its own I/O, so that they never
 * fight for the record here.
 */
async function commitInTurn(store: SessionStore, key: string, p: Pending): Promise<Outcome> {
  const taken = takeTurn(store, key, p.s, TURN_WAIT_MS);
  const turn = taken instanceof Promise ? await taken : taken;
  try {
    return await compareAndSet(store, key, p, asIs);
  } finally {
    if (turn !== undefined) releaseTurn(turn, p.s);
  }
}

/** One compare-and-set across its attempts: what stays the same from one to the next. */
interface Cas<R> {
  store: SessionStore;
  key: string;
  p: Pending;
  /** The clock (the session's). */
  now: () => number;
  /** The record the request's data derives from. */
  base: StoredSession;
  /** The request changed the data, or ended the session (else only a refresh or a re-sign). */
  writes: boolean;
  /** When a commit that ends the session ended it, by the grace's clock (see `graceClock`). */
  endedAt: number | undefined;
  /** The commit's next step, on how it ended. */
  then: (outcome: Outcome, p: Pending) => R | Promise<R>;
}

/** The compare-and-set ended: its last step is the commit's next one. */
function ended<R>(cas: Cas<R>, outcome: Outcome): R | Promise<R> {
  return cas.then(outcome, cas.p);
}

/**
 * The compare-and-set loop: read the record when it is not known, stop when it is gone, let the
 * policy decide when it changed, save on its version, and on a refusal go on from the record that
 * won, up to `maxAttempts` saves.
 *
 * No `async` frame on the common path (the first save lands): each attempt hands the next step
 * on, the save gets one step chained, and the commit's next step (`then`) runs in it.
 */
function compareAndSet<R>(
  store: SessionStore,
  key: string,
  p: Pending,
  then: (outcome: Outcome, p: Pending) => R | Promise<R>,
): Promise<R> {
  const s = p.s;
  const writes = s.ops.length > 0 || s.ending !== undefined;
  const cas: Cas<R> = { store, key, p, now: s.now, base: s.base!, writes, endedAt: undefined, then };
  try {
    // The record the first save replaces: the one the data was derived from.
    return attemptOn(cas, cas.base, 1);
  } catch (error) {
    return Promise.reject(error);
  }
}

/** One attempt, on `current`: the record the save replaces (`undefined`: read it first). */
function attemptOn<R>(cas: Cas<R>, current: StoredSession | null | undefined, attempt: number): Promise<R> {
  if (current === undefined) {
    return loadCurrent(cas.store, cas.key).then(
      (loaded) => attemptOn(cas, loaded, attempt),
      (error) => ended(cas, { kind: "failed", error: storeError("load", error) }),
    );
  }
  const s = cas.p.s;
  const expired = current !== null && current.expiresAt <= cas.now();
  if (expired || current === null || isEnded(current)) {
    return Promise.resolve(ended(cas, onGone(s, cas.base, current, expired, attempt)));
  }
  // The end of a session is stamped by the clock its grace is judged by (asked once a commit).
  if (s.ending !== undefined && cas.endedAt === undefined) {
    return graceClock(cas.store, cas.key, cas.now).then((at) => {
      cas.endedAt = at;
      return attemptOn(cas, current, attempt);
    });
  }
  return save(cas, current, attempt);
}

/** Saves on `current`'s version, the policy's merge applied first when the record changed. */
function save<R>(cas: Cas<R>, current: StoredSession, attempt: number): Promise<R> {
  const { p, store, key } = cas;
  const s = p.s;
  // From here to the save, one synchronous step: the record holds exactly the first
  // `included` operations, whatever the handler does while the store answers.
  const included = s.ops.length;
  let landed: Landed | undefined;
  if (current.version !== cas.base.version) {
    const merged = mergeOnto(p, cas.base, cas.writes, current, attempt);
    if (merged.kind !== "merged") return Promise.resolve(ended(cas, merged));
    landed = merged.landed;
  }
  const record = recordFor(p, current, landed, cas.now(), cas.endedAt);
  const index = s.ending === undefined ? indexOf(record.data, p.userKey) : undefined;
  let saving: Promise<SaveResult>;
  try {
    saving = store.save(key, record, current.version, index);
  } catch (error) {
    return Promise.resolve(ended(cas, saveFailed(error)));
  }
  return saving.then(
    (answer) =>
      answered(cas, current, attempt, { kind: "saved", record, landed, included, attempts: attempt }, answer),
    (error) => ended(cas, saveFailed(error)),
  );
}

function saveFailed(error: unknown): Outcome {
  return { kind: "failed", error: storeError("save", error) };
}

/**
 * The store answered the save of `saved.record` on `current`: saved, or refused, when another
 * request (another process, or one that did not wait its turn) saved first: the next attempt
 * goes on from the record that won.
 */
function answered<R>(
  cas: Cas<R>,
  current: StoredSession,
  attempt: number,
  saved: Outcome & { kind: "saved" },
  answer: SaveResult,
): R | Promise<R> {
  const { store, key } = cas;
  let result: SaveResult;
  try {
    result = checkedSaveResult(answer);
  } catch (error) {
    return ended(cas, saveFailed(error));
  }
  if (result === true) {
    if (store.capabilities.staleReads === true) noteWritten(store, key, saved.record!);
    noteVersion(store, key, saved.record!.version);
    return ended(cas, saved);
  }
  markContended(store, key);
  if (attempt >= cas.p.maxAttempts) return ended(cas, { kind: "refused", reason: "conflict" });
  const next = wonBy(store, key, result, current.version);
  if (next !== undefined && attempt === 1) return attemptOn(cas, next, attempt + 1);
  return backoff(attempt).then(() => attemptOn(cas, next, attempt + 1));
}

/** Reads the record under `key`: the freshest this process knows of, on a store with stale reads. */
async function loadCurrent(store: SessionStore, key: string): Promise<StoredSession | null> {
  let current = await store.load(key);
  if (store.capabilities.staleReads === true) current = freshest(store, key, current);
  if (current !== null) noteRead(store, key, current.version);
  return current;
}

/**
 * The record is gone, ended, or expired while the request ran: nothing can land on it, and a
 * logout of it is done already.
 */
function onGone(
  s: SessionState,
  base: StoredSession,
  current: StoredSession | null,
  expired: boolean,
  attempt: number,
): Outcome {
  if (expired && s.ending !== "destroy") {
    return { kind: "refused", reason: current === base ? "expired" : "ended" };
  }
  if (s.ending !== "destroy") return { kind: "refused", reason: "ended" };
  return {
    kind: "saved",
    record: null,
    found: current !== null && !expired ? "ended" : "missing",
    landed: replay(s.ops, {}),
    included: s.ops.length,
    attempts: attempt,
  };
}

/**
 * The record changed since the request read `base`: the policy decides on the one that won, and
 * when it applies, the operation log is replayed on it; `landed` is then the maps to write
 * (`undefined`: the request's own, for `overwrite`).
 */
function mergeOnto(
  p: Pending,
  base: StoredSession,
  writes: boolean,
  current: StoredSession,
  attempt: number,
): Outcome | { kind: "merged"; landed: Landed | undefined } {
  const s = p.s;
  // Only an expiry refresh: the request that won extended the session already.
  if (!writes) return { kind: "refused", reason: "dropped" };
  const verdict = decide(p, true, base.data, current.data);
  if (p.hook !== undefined) {
    emit(p.hook, {
      type: "conflict",
      policy: p.policy,
      attempt,
      outcome: verdict === "apply" ? "merged" : verdict === "rerun" ? "rerun" : "refused",
      request: p.request,
    });
  }
  if (verdict === "rerun") return { kind: "rerun" };
  if (verdict === "refuse") return { kind: "refused", reason: "conflict" };
  try {
    return {
      kind: "merged",
      landed: p.policy === "overwrite" ? undefined : replay(s.ops, current.data, s.serializer),
    };
  } catch (error) {
    // The record is in another `serializer` format (a process configured otherwise wrote it):
    // nothing to merge on; a `SessionDataError` that says so.
    if (error instanceof SessionError) return { kind: "failed", error };
    // An `update` function that throws on the value the other request stored (of another
    // shape, say): the changes cannot be merged. A conflict, not a store outage: the handler
    // runs again on the fresh value where it can (and meets its own error there), else 409.
    return p.canRerun ? { kind: "rerun" } : { kind: "refused", reason: "conflict" };
  }
}

/**
 * The record a refused save lost to, as the refusal reported it; `undefined` when it must be read
 * (not reported, or reported no newer than the version the save expected).
 */
function wonBy(
  store: SessionStore,
  key: string,
  result: false | SaveConflict,
  expected: number,
): StoredSession | null | undefined {
  const reported: StoredSession | null | undefined = result === false ? undefined : result.current;
  if (reported !== undefined && reported !== null) noteRead(store, key, reported.version);
  return reported !== undefined && reported !== null && reported.version <= expected ? undefined : reported;
}

/**
 * The record a commit writes over `current`: its data, or a tombstone when it ends the session,
 * stamped `endedAt` (the grace's clock) and living at least `TOMBSTONE_MS` past `at` (the
 * application's clock, which alone decides expiry: a store's clock that is far off never sets a
 * tombstone's lifetime).
 */
function recordFor(
  p: Pending,
  current: StoredSession,
  landed: Landed | undefined,
  at: number,
  endedAt: number = at,
): StoredSession {
  const s = p.s;
  const expiresAt = p.expiresAt > current.expiresAt ? p.expiresAt : current.expiresAt;
  if (s.ending !== undefined) {
    return {
      data: s.ending === "destroy"
        ? { [ENDED_KEY]: true, [ENDED_AT_KEY]: endedAt, [ENDED_BY_KEY]: "destroy" }
        : { [ENDED_KEY]: true, [ENDED_AT_KEY]: endedAt },
      version: current.version + 1,
      createdAt: current.createdAt,
      expiresAt: Math.max(expiresAt, at + TOMBSTONE_MS),
    };
  }
  const data = withMeta(
    landed === undefined
      ? joinData(s.data, s.flash, s.flashOut, s.serializer)
      : joinData(landed.data, landed.flash, landed.flashOut, s.serializer),
    s.meta,
  );
  return { data, version: current.version + 1, createdAt: current.createdAt, expiresAt };
}
