/**
 * The server-store backend's `open`: the cookie's signed id verified, this session's turn taken
 * (and the store's lock when other processes write it), its record loaded and checked.
 *
 * @module
 */
import {
  attachRecord,
  type CookieSource,
  cookieValues,
  type Handle,
  invalid,
  isLive,
  leaveTurn,
} from "../backend.ts";
import { endedInFlight, endedKind, storeError } from "../conflict.ts";
import {
  freshest,
  isContended,
  isStoreContended,
  noteRead,
  takeTurn,
  type Turn,
  TURN_WAIT_MS,
} from "../turns.ts";
import { openFailed, takeTurnLock } from "../lock.ts";
import { expiredOnLoad } from "../audit.ts";
import { splitData } from "../session_data.ts";
import { META_KEY } from "../session_state.ts";
import type { SignatureFailure, VerifiedCookie } from "../signing.ts";
import { isEnded, type SessionStore, type StoredSession, toStoredSession } from "../store.ts";

/** The longest signed cookie value this library writes is 76 characters; allow slack. */
const MAX_SIGNED_VALUE = 256;
/** At most this many values of a duplicated session cookie are tried. */
const MAX_CANDIDATES = 4;

/**
 * Reads the request's cookie, verifies it, takes the session's turn and loads its record, then
 * runs `then` on `h`; a failed open gives up what it took (see `Backend.open`).
 *
 * No `async` frame on the common path (the verification cached, the turn free): each step hands
 * the next one on, the load gets one step chained, and `then` runs in it. Each step catches its
 * own errors into `openFailed`, so that whatever fails gives up the turn and locks.
 */
export function open<R>(h: Handle, source: CookieSource, then: Then<R>): Promise<R> {
  let values: string[];
  try {
    values = cookieValues(source, h.o.cookie.name);
  } catch (error) {
    return openFailed(h, error);
  }
  return tryFrom(h, values, 0, then);
}

/** What runs on the opened handle (see `Backend.open`). */
type Then<R> = (h: Handle) => R | Promise<R>;

/**
 * Tries the cookie values from the `i`-th on. A browser sends several values when it holds
 * cookies of this name for other Domains or Paths (an older deploy's, a sibling subdomain's):
 * the first that names a live session is used; none does: a fresh session.
 */
function tryFrom<R>(h: Handle, values: string[], i: number, then: Then<R>): Promise<R> {
  try {
    for (; i < values.length && i < MAX_CANDIDATES; i++) {
      const value = values[i]!;
      if (value.length > MAX_SIGNED_VALUE) {
        invalid(h, "oversized");
        continue;
      }
      const verified = h.o.signer.cached(value);
      return verified === undefined ? verify(h, values, i, then) : tryVerified(h, values, i, verified, then);
    }
    fresh(h);
  } catch (error) {
    return openFailed(h, error);
  }
  return Promise.resolve(then(h));
}

/** A value not verified before: its signature checked (WebCrypto), then tried. */
async function verify<R>(h: Handle, values: string[], i: number, then: Then<R>): Promise<R> {
  let verified: VerifiedCookie | SignatureFailure;
  try {
    verified = await h.o.signer.verify(values[i]!);
    if (typeof verified === "string") invalid(h, verified);
  } catch (error) {
    return openFailed(h, error);
  }
  return typeof verified === "string"
    ? tryFrom(h, values, i + 1, then)
    : tryVerified(h, values, i, verified, then);
}

/** A verified value: the session's turn taken (waited for when another request holds it), then the load. */
function tryVerified<R>(
  h: Handle,
  values: string[],
  i: number,
  verified: VerifiedCookie,
  then: Then<R>,
): Promise<R> {
  let waited: Promise<void> | undefined;
  try {
    if (h.o.turns && h.owner !== undefined && h.turn?.key !== verified.key) {
      waited = waitTurn(h, verified.key);
    }
  } catch (error) {
    return openFailed(h, error);
  }
  if (waited === undefined) return load(h, values, i, verified, then);
  return waited.then(() => load(h, values, i, verified, then), (error) => openFailed(h, error));
}

function load<R>(
  h: Handle,
  values: string[],
  i: number,
  verified: VerifiedCookie,
  then: Then<R>,
): Promise<R> {
  let loading: Promise<StoredSession | null>;
  try {
    loading = loadRecord(h.store as SessionStore, verified);
  } catch (error) {
    return openFailed(h, storeError("load", error));
  }
  return loading.then(
    (loaded) => loadedRecord(h, values, i, verified, loaded, then),
    (error) => openFailed(h, storeError("load", error)),
  );
}

/** The record is loaded: used when it is live and readable, else the next value is tried. */
function loadedRecord<R>(
  h: Handle,
  values: string[],
  i: number,
  verified: VerifiedCookie,
  loaded: StoredSession | null,
  then: Then<R>,
): R | Promise<R> {
  let used: boolean;
  try {
    const record = liveRecord(h, verified.key, loaded);
    if (record instanceof Promise) {
      return record.then(() => tryFrom(h, values, i + 1, then), (error) => openFailed(h, error));
    }
    used = record !== undefined && use(h, values[i]!, verified, record);
  } catch (error) {
    return openFailed(h, error);
  }
  return used ? then(h) : tryFrom(h, values, i + 1, then);
}

/**
 * Takes a live record for the session, unless its data cannot be read (another `serializer`
 * format, or written with one and read without: never misread), which notes the cookie invalid.
 */
function use(h: Handle, value: string, verified: VerifiedCookie, record: StoredSession): boolean {
  let split;
  try {
    split = splitData(record.data, h.o.serializer);
  } catch (error) {
    invalid(h, "data", error);
    return false;
  }
  attachRecord(h, verified.id, record, verified.key);
  h.data = split.data;
  h.flash = split.flash;
  h.cookieValue = value;
  h.cookieVersion = record.version;
  // A record written before `userKey` was set is in no user's index: saved again (once, with
  // its cookie signed anew), so that `endUserSessions` finds it.
  h.rotated = verified.rotated || unindexed(h.o.userKey, record.data);
  h.endedElsewhere = false;
  return true;
}

/** Whether `data` holds a user under `userKey` but was not written with it (no metadata). */
function unindexed(userKey: string | undefined, data: StoredSession["data"]): boolean {
  return userKey !== undefined && typeof data[userKey] === "string" && !Object.hasOwn(data, META_KEY);
}

/**
 * Waits for this session's other requests in flight here, so that it loads what they wrote;
 * `undefined` when the turn is this request's at once (the common case: nothing to await).
 */
function waitTurn(h: Handle, key: string): Promise<void> | undefined {
  const store = h.store as SessionStore;
  leaveTurn(h);
  const turn = takeTurn(store, key, h.owner ?? h, TURN_WAIT_MS);
  if (turn instanceof Promise) return turn.then((taken) => tookTurn(h, store, key, taken));
  return tookTurn(h, store, key, turn);
}

function tookTurn(
  h: Handle,
  store: SessionStore,
  key: string,
  turn: Turn | undefined,
): Promise<void> | undefined {
  h.turn = turn;
  // Other processes write this session too: take turns with them through the store's lock.
  // A request that cannot run again takes it once they write any session of the store.
  if (turn !== undefined && (isContended(store, key) || (!h.canRerun && isStoreContended(store)))) {
    return takeTurnLock(h, key, TURN_WAIT_MS).catch((error) => {
      leaveTurn(h);
      throw error;
    });
  }
  return undefined;
}

/**
 * The record a verified cookie names, as loaded, if this request can use it; `undefined` when
 * it is unreadable, ended, expired or missing (the cookie is then noted invalid).
 */
function liveRecord(
  h: Handle,
  key: string,
  loaded: StoredSession | null,
): StoredSession | undefined | Promise<undefined> {
  const store = h.store as SessionStore;
  let record = loaded;
  try {
    if (store.capabilities.staleReads === true) record = freshest(store, key, record);
    if (record !== null) noteRead(store, key, record.version);
  } catch (error) {
    throw storeError("load", error);
  }
  const now = h.o.now();
  if (record !== null && toStoredSession(record) === null) {
    // Not a record this library wrote (a version that is no positive integer, say): unusable.
    invalid(h, "unknown");
    return undefined;
  }
  if (record !== null && isEnded(record) && record.expiresAt > now) {
    // Ended by another request: a request in flight at the time may change nothing and
    // send no cookie; long after, the browser evidently missed the new cookie. "Long" is
    // judged by the store's clock where it has one (the end was stamped by it too).
    return endedRecord(h, store, key, record);
  }
  if (record === null || !isLive(h.o, record, now)) {
    if (record !== null && !isEnded(record)) expiredOnLoad(h);
    invalid(h, "unknown");
    return undefined;
  }
  return record;
}

/** A record ended by another request: the cookie is noted invalid (see `liveRecord`). */
async function endedRecord(
  h: Handle,
  store: SessionStore,
  key: string,
  record: StoredSession,
): Promise<undefined> {
  if (await endedInFlight(store, key, record, h.o.now)) h.endedElsewhere = endedKind(record);
  invalid(h, "ended");
  return undefined;
}

/** Stores with stale reads are told the version the client has already seen. */
function loadRecord(
  store: SessionStore,
  verified: { key: string; version?: number },
): Promise<StoredSession | null> {
  return store.capabilities.staleReads && verified.version !== undefined
    ? store.load(verified.key, verified.version)
    : store.load(verified.key);
}

function fresh(h: Handle): void {
  // A new session takes an id signed ahead of time when one is ready.
  const o = h.o;
  if (!(o.store as SessionStore).capabilities.staleReads) {
    const minted = o.signer.take();
    if (minted !== undefined) {
      h.minted = minted;
      h.id = minted.id;
    }
  }
}
