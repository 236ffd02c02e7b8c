/**
 * Turns: requests of one session take turns, as under CherryPy's implicit locking, without a
 * lock where nothing contends.
 *
 * A request that opens a session while no other request of the same session is in flight in
 * this process (or isolate) takes the turn at once, synchronously: the uncontended path costs a
 * `Map` lookup. A request that arrives while another holds the turn waits *before loading*, and
 * is handed the turn when the holder's commit is done, so it loads what the holder wrote: the two
 * run one after the other and nobody is refused or run twice. Across processes the
 * compare-and-set still decides; once a conflict has been seen on a key (another process wrote
 * it), the holder of the turn also takes the store's lock before loading, where the store has
 * locks, so that processes take turns too.
 *
 * Workers rules (each request has its own I/O context; I/O is never shared between requests;
 * a request that waits with nothing of its own pending is cancelled as hung): the state here
 * is plain data, a holder only resolves the next waiter's promise, every waiter does its own
 * I/O once woken and keeps a timer of its own while it waits.
 *
 * Bounds: a waiter waits at most `waitMs`, then goes on without the turn (optimistic: the
 * compare-and-set and the conflict policy decide, as before turns existed); at most
 * `MAX_WAITERS` wait on one key (later arrivals go on at once); a key's entry stays after its
 * turn is given up (the next request of the session takes it without touching the `Map`) while
 * the store has at most `MAX_FREE` entries, and conflict marks are kept for at most `MAX_MARKS`
 * keys.
 *
 * @module
 */
import { storeOf } from "./instrument.ts";
import type { SessionStore, StoredSession } from "./store.ts";

/** How long a key counts as contended across processes after a conflict on it (ms). */
export const CONTENDED_MS = 30_000;
/** How long a request waits for its turn at most (ms); then it goes on without it. */
export const TURN_WAIT_MS = 10_000;
/** At most this many requests wait for one key; later ones go on without waiting. */
export const MAX_WAITERS = 1_000;
/** At most this many keys keep a conflict mark (oldest dropped first). */
const MAX_MARKS = 4_096;
/** A freed key keeps its entry while the store has at most this many (held ones included). */
const MAX_FREE = 1_024;

interface Waiter {
  owner: object;
  wake: () => void;
}

interface KeyState {
  /** The turns of the store it belongs to, and its key. */
  turns: StoreTurns;
  key: string;
  /** Who holds the turn; `undefined`: free (the entry is kept for the key's next request). */
  owner: object | undefined;
  /** When the owner took the turn (ms, `performance.now()`: waits are timed by a clock that never steps). */
  since: number;
  /** Requests waiting, once one has waited. */
  waiters: Waiter[] | undefined;
}

interface StoreTurns {
  keys: Map<string, KeyState>;
  /** Last conflict seen per key (ms): the key is contended across processes. */
  marks: Map<string, number>;
  /** Stores with stale reads: the newest record this process wrote per key (bounded). */
  written: Map<string, { record: StoredSession; at: number }>;
  /** The version this process last wrote per key, and when (bounded; most recent last). */
  versions: Map<string, { version: number; at: number }>;
  /** The key last noted in `versions` (its entry is the last already). */
  lastVersioned: string | undefined;
  /** Last conflict seen on any key (ms): other processes write this store's sessions. */
  contendedAt: number;
}

/**
 * A turn held by a request: its key's state (no object of its own per request), released with
 * {@linkcode releaseTurn} by the owner that took it.
 */
export type Turn = KeyState;

const byStore = new WeakMap<object, StoreTurns>();

/** Turns belong to the store itself, never to a request's instrumented view of it. */
function turnsOf(store: object): StoreTurns {
  store = storeOf(store as SessionStore);
  let turns = byStore.get(store);
  if (turns === undefined) {
    byStore.set(
      store,
      turns = {
        keys: new Map(),
        marks: new Map(),
        written: new Map(),
        versions: new Map(),
        lastVersioned: undefined,
        contendedAt: -Infinity, // never (the clock starts near 0 with the process)
      },
    );
  }
  return turns;
}

/**
 * Takes the turn on `key` for `owner`: `undefined` at once when nobody holds it (or `owner`
 * does), else a promise that settles when the turn is handed over or `waitMs` has passed.
 * The returned turn is `undefined` when the request goes on without it.
 *
 * @param store The store (turns are per store object).
 * @param key The storage key.
 * @param owner Who asks (one object per request, kept across re-runs).
 * @param waitMs How long to wait at most, in milliseconds.
 */
export function takeTurn(
  store: object,
  key: string,
  owner: object,
  waitMs: number,
): Turn | Promise<Turn | undefined> {
  const turns = turnsOf(store);
  const now = performance.now();
  const state = turns.keys.get(key);
  if (state === undefined) {
    const taken: KeyState = { turns, key, owner, since: now, waiters: undefined };
    turns.keys.set(key, taken);
    return taken;
  }
  if (state.owner === owner) return state;
  if (state.owner === undefined || now - state.since > waitMs) {
    // Free, or held past any wait (a holder that never committed): take it. Correctness never
    // rests on this: the compare-and-set still decides.
    state.owner = owner;
    state.since = now;
    return state;
  }
  if ((state.waiters?.length ?? 0) >= MAX_WAITERS || waitMs === 0) return Promise.resolve(undefined);
  return wait(state, owner, waitMs);
}

function wait(
  state: KeyState,
  owner: object,
  waitMs: number,
): Promise<Turn | undefined> {
  return new Promise<Turn | undefined>((resolve) => {
    // The timer is this request's own pending I/O while it waits (workerd cancels a request
    // that waits on nothing of its own), and bounds the wait.
    const timer = setTimeout(function giveUp() {
      const at = state.waiters!.indexOf(waiter);
      if (at >= 0) state.waiters!.splice(at, 1);
      resolve(undefined);
    }, waitMs);
    const waiter: Waiter = {
      owner,
      wake() {
        clearTimeout(timer);
        resolve(state);
      },
    };
    (state.waiters ??= []).push(waiter);
  });
}

/**
 * Hands the turn to the next waiter (which then does its own loading and saving), or frees the
 * key. Does nothing when `owner` no longer holds `turn`.
 */
export function releaseTurn(turn: Turn, owner: object): void {
  const keys = turn.turns.keys;
  const state = keys.get(turn.key);
  if (state !== turn || state.owner !== owner) return;
  const next = state.waiters?.shift();
  if (next === undefined) {
    // Kept free for the session's next request, unless the store holds many entries already.
    if (keys.size > MAX_FREE) keys.delete(turn.key);
    else state.owner = undefined;
    return;
  }
  state.owner = next.owner;
  state.since = performance.now();
  next.wake();
}

/** Notes a conflict on `key` (another process saved first): the key is contended for a while. */
export function markContended(store: object, key: string): void {
  const turns = turnsOf(store);
  const marks = turns.marks;
  const now = performance.now();
  turns.contendedAt = now;
  marks.delete(key);
  marks.set(key, now);
  if (marks.size > MAX_MARKS) marks.delete(marks.keys().next().value!);
}

/** Whether a conflict was seen on `key` within {@linkcode CONTENDED_MS}. */
export function isContended(store: object, key: string): boolean {
  const at = byStore.get(storeOf(store as SessionStore))?.marks.get(key);
  return at !== undefined && performance.now() - at < CONTENDED_MS;
}

/**
 * Whether a conflict was seen on any of the store's keys within {@linkcode CONTENDED_MS}: other
 * processes write its sessions, so a request that cannot be run again (a `POST` under `merge`)
 * locks even a session not yet seen contended, since its first collision could only be refused.
 */
export function isStoreContended(store: object): boolean {
  const at = byStore.get(storeOf(store as SessionStore))?.contendedAt;
  return at !== undefined && performance.now() - at < CONTENDED_MS;
}

/** How many requests wait for `key` (for tests and instrumentation). */
export function waitingFor(store: object, key: string): number {
  return byStore.get(storeOf(store as SessionStore))?.keys.get(key)?.waiters?.length ?? 0;
}

/**
 * Stores whose reads may lag their writes (Workers KV): notes the record this process just
 * wrote, so that its next request of the session never loads an older one (what one isolate
 * serializes stays serialized, whatever a location's cache serves).
 */
export function noteWritten(store: object, key: string, record: StoredSession): void {
  const written = turnsOf(store).written;
  written.delete(key);
  written.set(key, { record, at: performance.now() });
  if (written.size > MAX_MARKS) written.delete(written.keys().next().value!);
}

/**
 * How long a record this process wrote is preferred to an older answer of the store (ms): Workers
 * KV's propagation, about a minute. Past it the store's answer stands, `null` included (a record
 * deleted by `store.destroy(key)` stays gone).
 */
const STALE_READ_MS = 60_000;

/** The newer of a loaded record and the one this process wrote under `key` within STALE_READ_MS. */
export function freshest(store: object, key: string, loaded: StoredSession | null): StoredSession | null {
  const mine = byStore.get(storeOf(store as SessionStore))?.written.get(key);
  if (mine === undefined || (loaded !== null && loaded.version >= mine.record.version)) return loaded;
  return performance.now() - mine.at > STALE_READ_MS ? loaded : mine.record;
}

/** Forgets what this process wrote under `key` (the store deleted it: `destroy`). */
export function forgetWritten(store: object, key: string): void {
  byStore.get(storeOf(store as SessionStore))?.written.delete(key);
}

/** Notes that this process wrote `version` of `key` now. */
export function noteVersion(store: object, key: string, version: number): void {
  const turns = turnsOf(store);
  const versions = turns.versions;
  const last = turns.lastVersioned === key ? versions.get(key) : undefined;
  if (last !== undefined) {
    // Its entry is the last already: updated in place (no churn of the map).
    last.version = version;
    last.at = performance.now();
    return;
  }
  versions.delete(key);
  versions.set(key, { version, at: performance.now() });
  turns.lastVersioned = key;
  if (versions.size > MAX_MARKS) versions.delete(versions.keys().next().value!);
}

/**
 * Notes a version of `key` read from the store: when it is newer than what this process wrote a
 * moment ago, another process writes the session too, and the key counts as contended here as
 * well (so that both sides take turns, not only the one that lost a compare-and-set).
 */
export function noteRead(store: object, key: string, version: number): void {
  const mine = byStore.get(storeOf(store as SessionStore))?.versions.get(key);
  if (mine !== undefined && version > mine.version && performance.now() - mine.at < CONTENDED_MS) {
    markContended(store, key);
  }
}

/** Whether a request holds the turn on `key` (for tests: a turn must never outlive its request). */
export function isHeld(store: object, key: string): boolean {
  return byStore.get(storeOf(store as SessionStore))?.keys.get(key)?.owner !== undefined;
}
