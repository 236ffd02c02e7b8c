/**
 * The conflict path, in one place: how a request's changes land on the record it loaded when
 * other requests may have saved it meanwhile. The four policies are `decide()`; the rest makes
 * them cheap.
 *
 * Commits to one storage key are queued in this process (a lane): while one save is in flight,
 * the commits that arrive wait and then go together as one compare-and-set, each replayed on
 * the record its predecessors produced. So concurrent requests of one session in one process do
 * not fight for the record; across processes the compare-and-set still decides, and a refused
 * save that reports the current record (`SaveConflict`) costs no second read.
 *
 * @module
 */
import { SessionError, StoreUnavailableError } from "./errors.ts";
import type { ConflictPolicy } from "./options.ts";
import { joinData, observationsHold, replay, type SessionState } from "./session.ts";
import { emit, type EventHook, timed } from "./events.ts";
import {
  ENDED_AT_KEY,
  ENDED_KEY,
  isEnded,
  type SaveIndex,
  type SaveResult,
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
  /** Set by the lane. */
  outcome?: Outcome;
  /** Wakes a queued commit. */
  wake?: () => void;
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
 * - `refused`: `conflict` (policy says no) or `ended` (another request ended the session).
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
    attempts: number;
  }
  | { kind: "rerun" }
  | { kind: "refused"; reason: "conflict" | "ended" }
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

/** Full-jitter exponential backoff, its ceiling growing with the contention seen on the key. */
export function backoff(attempt: number, contention = 0): Promise<void> {
  const ceiling = Math.min(250, 0.5 * 2 ** Math.min(attempt, 6) * (1 + Math.min(contention, 16)));
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

interface Lane {
  queue: Pending[];
  /** The record this process last wrote or read under the key. */
  latest?: StoredSession | null;
  /** Refused saves seen recently on this key (across processes): widens backoff. */
  contention: number;
}

const lanes = new WeakMap<object, Map<string, Lane>>();

/**
 * Commits one request's changes to the record under `key`, through the key's lane.
 *
 * @param store The store.
 * @param key The storage key.
 * @param p The commit.
 * @param maxAttempts Saves to try before refusing.
 * @param now The clock.
 * @returns How it ended.
 */
export async function commitToRecord(
  store: SessionStore,
  key: string,
  p: Pending,
  maxAttempts: number,
  now: () => number,
): Promise<Outcome> {
  let byKey = lanes.get(store);
  if (byKey === undefined) lanes.set(store, byKey = new Map());
  const lane = byKey.get(key);
  if (lane !== undefined) {
    // A commit on this key is in flight: wait for it, then go in the next batch.
    await new Promise<void>((resolve) => {
      p.wake = resolve;
      lane.queue.push(p);
    });
    return p.outcome!;
  }
  const own: Lane = { queue: [], contention: 0 };
  byKey.set(key, own);
  // The first batch runs here; commits that queued meanwhile are driven on without holding
  // this request's answer back.
  let rest: Pending[] = NONE;
  try {
    // Alone and unaware of any conflict: save this request's own state at the version it read.
    const refused = await saveAlone(store, key, own, p, now);
    if (refused !== SAVED) rest = await runBatch(store, key, own, [p], maxAttempts, now, refused, 2);
  } catch (error) {
    p.outcome ??= { kind: "failed", error: storeError("save", error) };
  }
  const next = own.queue.length === 0 ? rest : [...rest, ...own.queue.splice(0)];
  if (next.length === 0) {
    byKey.delete(key);
  } else {
    if (p.outcome === undefined) {
      const waiting = new Promise<void>((resolve) => (p.wake = resolve));
      void drive(store, key, own, byKey, next, maxAttempts, now);
      await waiting;
    } else {
      void drive(store, key, own, byKey, next, maxAttempts, now);
    }
  }
  return p.outcome!;
}

/** Runs the batches of a lane until its queue is empty, waking each commit once decided. */
async function drive(
  store: SessionStore,
  key: string,
  lane: Lane,
  byKey: Map<string, Lane>,
  first: Pending[],
  maxAttempts: number,
  now: () => number,
): Promise<void> {
  let batch = first;
  try {
    while (batch.length > 0) {
      let rest: Pending[];
      try {
        rest = await runBatch(store, key, lane, batch, maxAttempts, now);
      } catch (error) {
        rest = fail(batch, storeError("save", error));
      }
      for (const done of batch) if (!rest.includes(done)) done.wake?.();
      batch = [...rest, ...lane.queue.splice(0)];
    }
  } finally {
    byKey.delete(key);
  }
}

const NONE: Pending[] = [];
/** `saveAlone` saved. */
const SAVED: unique symbol = Symbol("saved");
/** No record is known yet: the batch starts from the freshest its commits read. */
const UNKNOWN: unique symbol = Symbol("unknown");

/**
 * The common case, with nothing to decide: one commit, no concurrent commit in this process,
 * saved at the version it read. Returns `SAVED`, or what the refusal reported (the current
 * record, `null` when gone, `undefined` when the store did not say) for the batch to go on from.
 */
async function saveAlone(
  store: SessionStore,
  key: string,
  lane: Lane,
  p: Pending,
  now: () => number,
): Promise<typeof SAVED | StoredSession | null | undefined> {
  const s = p.s;
  const base = s.base!;
  const at = now();
  const record: StoredSession = s.ending === undefined
    ? {
      data: joinData(s.data, s.flash, s.flashOut),
      version: base.version + 1,
      createdAt: base.createdAt,
      expiresAt: p.expiresAt > base.expiresAt ? p.expiresAt : base.expiresAt,
    }
    : {
      data: { [ENDED_KEY]: true, [ENDED_AT_KEY]: at },
      version: base.version + 1,
      createdAt: base.createdAt,
      expiresAt: Math.max(base.expiresAt, p.expiresAt, at + TOMBSTONE_MS),
    };
  const index = s.ending === undefined ? indexOf(record.data, p.userKey) : undefined;
  let result: SaveResult;
  try {
    result = await (p.hook === undefined
      ? store.save(key, record, base.version, index)
      : timed(p.hook, p.request, "save", () =>
        store.save(key, record, base.version, index)));
  } catch (error) {
    p.outcome = { kind: "failed", error: storeError("save", error) };
    return SAVED;
  }
  if (result === true) {
    lane.latest = record;
    p.outcome = { kind: "saved", record, landed: undefined, attempts: 1 };
    return SAVED;
  }
  lane.contention++;
  if (result === false) return undefined;
  const reported = result.current;
  return reported !== null && reported.version <= base.version ? undefined : reported;
}

function freshest(lane: Lane, batch: Pending[]): StoredSession | null | undefined {
  let best = lane.latest;
  for (const p of batch) {
    const base = p.s.base!;
    if (best === undefined || (best !== null && base.version > best.version)) best = base;
  }
  return best;
}

/**
 * Runs one batch: every commit decided in order on the record its predecessors produce, then
 * one compare-and-set. Returns the commits left for the next batch (those after one that ends
 * the session).
 */
async function runBatch(
  store: SessionStore,
  key: string,
  lane: Lane,
  batch: Pending[],
  maxAttempts: number,
  now: () => number,
  known: StoredSession | null | undefined | typeof UNKNOWN = UNKNOWN,
  first = 1,
): Promise<Pending[]> {
  let current = known === UNKNOWN ? freshest(lane, batch) : known;
  for (let attempt = first;; attempt++) {
    if (current === undefined) {
      try {
        const hook = batch[0]!.hook;
        current = await (hook === undefined
          ? store.load(key)
          : timed(hook, batch[0]!.request, "load", () =>
            store.load(key)));
      } catch (error) {
        return fail(batch, storeError("load", error));
      }
      lane.latest = current;
    }
    if (current !== null && current.expiresAt <= now()) current = null;
    const open = batch.filter((p) => p.outcome === undefined);
    if (open.length === 0) return [];

    // Decide each commit on the record as its predecessors left it.
    let working: SessionData | undefined = current === null || isEnded(current) ? undefined : current.data;
    let untouched = true;
    let expiresAt = current?.expiresAt ?? 0;
    const applied: Array<{ p: Pending; landed: Landed }> = [];
    let ender: Pending | undefined;
    let rest: Pending[] = [];
    for (let i = 0; i < open.length; i++) {
      const p = open[i]!;
      if (working === undefined) {
        // The record is gone or ended: a logout of it is done already; nothing else can land.
        if (p.s.ending === "destroy") {
          p.outcome = {
            kind: "saved",
            record: null,
            found: current !== null && isEnded(current) ? "ended" : "missing",
            landed: replay(p.s.ops, {}),
            attempts: attempt,
          };
        } else {
          p.outcome = { kind: "refused", reason: "ended" };
        }
        continue;
      }
      const base = p.s.base!;
      const changed = !(untouched && base.version === current!.version);
      const verdict = decide(p, changed, base.data, working);
      if (changed && p.hook !== undefined) {
        emit(p.hook, {
          type: "conflict",
          policy: p.policy,
          attempt,
          outcome: verdict === "apply" ? "merged" : verdict === "rerun" ? "rerun" : "refused",
          request: p.request,
        });
      }
      if (verdict === "rerun") {
        p.outcome = { kind: "rerun" };
        continue;
      }
      if (verdict === "refuse") {
        p.outcome = { kind: "refused", reason: "conflict" };
        continue;
      }
      const landed = changed ? landedOn(p, working) : landedOwn(p);
      applied.push({ p, landed });
      untouched = false;
      if (p.expiresAt > expiresAt) expiresAt = p.expiresAt;
      if (p.s.ending !== undefined) {
        ender = p;
        rest = open.slice(i + 1);
        break;
      }
      working = joinData(landed.data, landed.flash, landed.flashOut);
    }
    if (applied.length === 0) return rest;

    const at = now();
    const record: StoredSession = ender === undefined
      ? { data: working!, version: current!.version + 1, createdAt: current!.createdAt, expiresAt }
      : {
        data: { [ENDED_KEY]: true, [ENDED_AT_KEY]: at },
        version: current!.version + 1,
        createdAt: current!.createdAt,
        expiresAt: Math.max(expiresAt, at + TOMBSTONE_MS),
      };
    let result;
    try {
      const hook = applied[0]!.p.hook;
      const expected = current!.version;
      const index = indexOf(record.data, applied[0]!.p.userKey);
      result = await (hook === undefined
        ? store.save(key, record, expected, index)
        : timed(hook, applied[0]!.p.request, "save", () =>
          store.save(key, record, expected, index)));
    } catch (error) {
      return [...fail(applied.map((a) => a.p), storeError("save", error)), ...rest];
    }
    if (result === true) {
      lane.latest = record;
      if (lane.contention > 0) lane.contention--;
      for (const { p, landed } of applied) p.outcome = { kind: "saved", record, landed, attempts: attempt };
      return rest;
    }
    // Refused: another process saved first. Undo this attempt's decisions and try again on
    // the record that won.
    lane.contention++;
    for (const p of open) p.outcome = undefined;
    if (attempt >= maxAttempts) {
      for (const p of open) p.outcome = { kind: "refused", reason: "conflict" };
      return [];
    }
    const reported = result === false ? undefined : result.current;
    if (reported !== undefined && reported !== null && reported.version <= current!.version) {
      current = undefined; // a report no newer than what we had: read again
    } else {
      current = reported;
    }
    if (current === undefined || attempt > 1) await backoff(attempt, lane.contention);
  }
}

/** What a save indexes: the user id the data holds under `userKey`, if any. */
export function indexOf(data: SessionData, userKey: string | undefined): SaveIndex | undefined {
  if (userKey === undefined || !Object.hasOwn(data, userKey)) return undefined;
  const user = data[userKey];
  return typeof user === "string" && user !== "" ? { user } : undefined;
}

function fail(batch: Pending[], error: SessionError): Pending[] {
  for (const p of batch) if (p.outcome === undefined) p.outcome = { kind: "failed", error };
  return [];
}

/** The commit's own maps: it lands on exactly the record it read. */
function landedOwn(p: Pending): Landed {
  return { data: p.s.data, flash: p.s.flash, flashOut: p.s.flashOut };
}

/** The commit replayed on `data` (or, for `overwrite`, its own maps over it). */
function landedOn(p: Pending, data: SessionData): Landed {
  if (p.policy === "overwrite") return landedOwn(p);
  return replay(p.s.ops, data);
}
