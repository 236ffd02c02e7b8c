/**
 * The server-store backend: the cookie carries the session id, HMAC-signed; the store keeps the
 * record under SHA-256(id), and every save is a compare-and-set through `commitToRecord`.
 *
 * @module
 */
import {
  attachRecord,
  type Backend,
  clearCookie,
  type CommitResult,
  type CookieSource,
  cookieValues,
  dueExpiry,
  endedConflict,
  expiredConflict,
  expiryFrom,
  type Handle,
  handleTimeouts,
  hasData,
  invalid,
  isLive,
  lateCreation,
  leaveTurn,
  persistentCookie,
  policyConflict,
  setCookie,
} from "../backend.ts";
import {
  commitToRecord,
  endedInFlight,
  indexOf,
  type Landed,
  type Outcome,
  storeError,
} from "../conflict.ts";
import { SessionConflictError } from "../errors.ts";
import { emit } from "../events.ts";
import { createSessionId } from "../id.ts";
import {
  freshest,
  isContended,
  isStoreContended,
  noteRead,
  noteVersion,
  noteWritten,
  takeTurn,
  TURN_WAIT_MS,
} from "../turns.ts";
import { takeTurnLock } from "../lock.ts";
import { expiredOnLoad, loggedOut, userOf } from "../audit.ts";
import { noteMeta, signedIn } from "../users/sign_in.ts";
import { splitData, stateData } from "../session.ts";
import { isEnded, type SessionStore, type StoredSession, toStoredSession } from "../store.ts";

/** The longest signed cookie value this library writes is 76 characters; allow slack. */
const MAX_SIGNED_VALUE = 256;
/** At most this many values of a duplicated session cookie are tried. */
const MAX_CANDIDATES = 4;

function adopt(h: Handle, landed: Landed | undefined): void {
  if (landed !== undefined) {
    h.data = landed.data;
    h.flash = landed.flash;
    h.flashOut = landed.flashOut;
  }
  h.ops = [];
}

async function open(h: Handle, source: CookieSource): Promise<void> {
  const o = h.o;
  const values = cookieValues(source, o.cookie.name);
  if (values.length === 0) return fresh(h);
  const store = h.store as SessionStore;
  // A browser sends several values when it holds cookies of this name for other Domains or
  // Paths (an older deploy's, a sibling subdomain's): use the one that names a live session.
  for (let i = 0; i < values.length && i < MAX_CANDIDATES; i++) {
    const value = values[i]!;
    if (value.length > MAX_SIGNED_VALUE) {
      invalid(h, "oversized");
      continue;
    }
    const verified = o.signer.cached(value) ?? await o.signer.verify(value);
    if (typeof verified === "string") {
      invalid(h, verified);
      continue;
    }
    if (o.turns && h.owner !== undefined && h.turn?.key !== verified.key) {
      await waitTurn(h, store, verified.key);
    }
    const record = await liveRecord(h, store, verified);
    if (record === undefined) continue;
    let split;
    try {
      split = splitData(record.data, o.serializer);
    } catch (error) {
      // In another `serializer` format (or written with one, read without): never misread.
      invalid(h, "data", error);
      continue;
    }
    attachRecord(h, verified.id, record, verified.key);
    h.data = split.data;
    h.flash = split.flash;
    h.cookieValue = value;
    h.cookieVersion = record.version;
    h.rotated = verified.rotated;
    h.endedElsewhere = false;
    return;
  }
  fresh(h);
}

/** Waits for this session's other requests in flight here, so that it loads what they wrote. */
async function waitTurn(h: Handle, store: SessionStore, key: string): Promise<void> {
  leaveTurn(h);
  const turn = takeTurn(store, key, h.owner ?? h, TURN_WAIT_MS);
  h.turn = turn instanceof Promise ? await turn : turn;
  // Other processes write this session too: take turns with them through the store's lock.
  // A request that cannot run again takes it once they write any session of the store.
  if (h.turn !== undefined && (isContended(store, key) || (!h.canRerun && isStoreContended(store)))) {
    try {
      await takeTurnLock(h, key, TURN_WAIT_MS);
    } catch (error) {
      leaveTurn(h);
      throw error;
    }
  }
}

/**
 * Loads the record a verified cookie names. `undefined` when there is none this request can use
 * (unreadable, ended, expired or missing); the cookie is then noted invalid.
 */
async function liveRecord(
  h: Handle,
  store: SessionStore,
  verified: { key: string; version?: number },
): Promise<StoredSession | undefined> {
  let record: StoredSession | null;
  try {
    record = await loadRecord(store, verified);
    if (store.capabilities.staleReads === true) record = freshest(store, verified.key, record);
    if (record !== null) noteRead(store, verified.key, record.version);
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
    if (await endedInFlight(store, verified.key, record, h.o.now)) h.endedElsewhere = true;
    invalid(h, "ended");
    return undefined;
  }
  if (record === null || !isLive(h.o, record, now)) {
    if (record !== null && !isEnded(record)) expiredOnLoad(h);
    invalid(h, "unknown");
    return undefined;
  }
  return record;
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

/** What a commit of a loaded record is due to do, decided before it starts. */
interface Due {
  /** The clock when the commit started. */
  now: number;
  /** The new expiry, when a refresh is due. */
  extended: number | undefined;
  /** The request changed the data, or ended the session. */
  writes: boolean;
  /** The cookie is signed again (a retired secret, a version to carry). */
  resign: boolean;
  /** A persistent cookie is sent again with the extended expiry. */
  refreshCookie: boolean;
}

async function commit(h: Handle): Promise<CommitResult> {
  const o = h.o;
  const store = h.store as SessionStore;
  const now = o.now();
  if (h.responded && h.isNew && hasData(h) && (h.base === undefined || h.ending !== undefined)) {
    // A new id needs a Set-Cookie that can no longer be sent: change nothing.
    return lateCreation();
  }
  if (h.base === undefined) return await create(h, store, now);
  const extended = dueExpiry(h, now);
  const due: Due = {
    now,
    extended,
    writes: h.ops.length > 0 || h.ending !== undefined,
    resign: !h.responded && (h.rotated || store.capabilities.staleReads === true),
    refreshCookie: extended !== undefined && persistentCookie(h) && !h.responded,
  };
  if (due.writes || h.rotated || (extended !== undefined && store.touch === undefined)) {
    return await saveRecord(h, store, due);
  }
  if (extended !== undefined) return await touchRecord(h, store, due, extended);
  return "done";
}

/**
 * Everything that writes the record, or sends its cookie again, goes through the
 * compare-and-set: a cookie is never sent for a session another request ended.
 */
async function saveRecord(h: Handle, store: SessionStore, due: Due): Promise<CommitResult> {
  const o = h.o;
  const start = o.onEvent === undefined ? 0 : performance.now();
  const ending = h.ending;
  const userBefore = userOf(o, h.base!.data);
  noteMeta(h, due.now);
  const outcome = await commitToRecord(
    store,
    h.key!,
    {
      s: h,
      policy: o.conflict,
      canRerun: h.canRerun && !h.responded,
      expiresAt: due.extended ?? h.expiresAt,
      held: h.turn !== undefined && h.turn.key === h.key,
      userKey: o.userKey,
      hook: o.onEvent,
      request: h.request,
    },
    o.maxAttempts,
    o.now,
  );
  if (outcome.kind !== "saved") return notSaved(h, outcome, due.writes);
  if (o.onEvent !== undefined) {
    const durationMs = performance.now() - start;
    emit(
      o.onEvent,
      ending !== undefined ? { type: ending, durationMs, request: h.request } : {
        type: "save",
        created: false,
        version: outcome.record!.version,
        attempts: outcome.attempts,
        durationMs,
        request: h.request,
      },
    );
  }
  adopt(h, outcome.landed);
  // What this request wrote is stored: running the handler again would apply it twice.
  // A later conflict refuses only what comes after (see `Session.save()`).
  if (due.writes) h.canRerun = false;
  if (h.ending === undefined) return saved(h, store, outcome.record!, due, userBefore);
  ended(h, outcome.found, ending, userBefore);
  // What the ended record carried over (regenerate) or what was set afterwards (destroy).
  return create(h, store, due.now);
}

/** A commit that did not save: what the request is told. */
function notSaved(h: Handle, outcome: Exclude<Outcome, { kind: "saved" }>, writes: boolean): CommitResult {
  switch (outcome.kind) {
    case "failed":
      return outcome.error;
    case "rerun":
      return "rerun";
  }
  if (!writes) {
    // Only a refresh or a re-sign: the session ended meanwhile, or a write extended it
    // already. Nothing to say, no cookie to send.
    if (outcome.reason !== "dropped") h.base = undefined;
    h.ops = [];
    return "done";
  }
  return outcome.reason === "ended"
    ? endedConflict()
    : outcome.reason === "expired"
    ? expiredConflict()
    : policyConflict(h.o.conflict);
}

/**
 * The record this request loaded is ended (a tombstone now); what it carried over
 * (regenerate) or set afterwards (destroy) becomes a new session.
 */
function ended(
  h: Handle,
  found: "ended" | "missing" | undefined,
  ending: Handle["ending"],
  userBefore: string | undefined,
): void {
  if (h.cookieValue !== undefined) h.o.signer.forget(h.cookieValue);
  h.cookieValue = undefined;
  if (found !== undefined) {
    // Another request ended it first (a log in, say), or its record is gone and with it
    // any proof that none did: the browser may hold a newer cookie already. This logout
    // changes no cookie, and what it set afterwards cannot land.
    h.endedElsewhere = true;
  } else {
    h.clearCookie = true;
  }
  if (ending === "destroy" && found === undefined) loggedOut(h, userBefore);
  h.base = undefined;
  h.key = undefined;
  h.ending = undefined;
}

/** The record is saved: the session goes on from it, its cookie signed again or refreshed. */
async function saved(
  h: Handle,
  store: SessionStore,
  record: StoredSession,
  due: Due,
  userBefore: string | undefined,
): Promise<CommitResult> {
  const o = h.o;
  h.base = record;
  h.version = record.version;
  h.expiresAt = record.expiresAt;
  if (due.resign) {
    const issued = await o.signer.issue(
      h.id,
      store.capabilities.staleReads ? record.version : undefined,
    );
    h.cookieValue = issued.value;
    h.cookieVersion = record.version;
    h.rotated = false;
    setCookie(h, o.cookie.name, issued.value, record.expiresAt, due.now);
  } else if (due.refreshCookie) {
    setCookie(h, o.cookie.name, h.cookieValue!, record.expiresAt, due.now);
  }
  const user = userOf(o, record.data);
  return user === undefined || user === userBefore ? "done" : await signedIn(h, user);
}

/**
 * A refresh that rewrites nothing, checked against the version this request read: it never
 * extends, nor re-sends the cookie of, a session another request changed or ended.
 */
async function touchRecord(
  h: Handle,
  store: SessionStore,
  due: Due,
  extended: number,
): Promise<CommitResult> {
  const o = h.o;
  const start = o.onEvent === undefined ? 0 : performance.now();
  let touched: boolean | void;
  try {
    const key = h.key!;
    const version = h.version;
    touched = await store.touch!(key, extended, version);
  } catch (error) {
    return storeError("touch", error);
  }
  // Lost to a write (which extended the session already) or to an end: nothing to do.
  if (touched === false) return "done";
  h.expiresAt = extended;
  // A store of the earlier contract (no answer) cannot prove the session live: no cookie.
  if (due.refreshCookie && touched === true) setCookie(h, o.cookie.name, h.cookieValue!, extended, due.now);
  if (o.onEvent !== undefined) {
    emit(o.onEvent, { type: "touch", durationMs: performance.now() - start, request: h.request });
  }
  return "done";
}

/** A session with no stored record: created if it holds anything, under a fresh signed id. */
async function create(h: Handle, store: SessionStore, now: number): Promise<CommitResult> {
  const o = h.o;
  h.touchRequested = false;
  if (!hasData(h)) return nothingToCreate(h, now);
  if (h.endedElsewhere) return endedConflict();
  const expiresAt = expiryFrom(handleTimeouts(h), h.createdAt, now);
  const start = o.onEvent === undefined ? 0 : performance.now();
  for (let tries = 1;; tries++) {
    const issued = h.minted !== undefined && h.minted.id === h.id
      ? h.minted
      : await o.signer.issue(h.id, store.capabilities.staleReads ? 1 : undefined);
    h.minted = undefined;
    noteMeta(h, now);
    const record: StoredSession = { data: stateData(h), version: 1, createdAt: h.createdAt, expiresAt };
    let result;
    const index = indexOf(record.data, o.userKey);
    try {
      result = await store.save(issued.key, record, null, index);
    } catch (error) {
      return storeError("save", error);
    }
    if (result === true) {
      if (store.capabilities.staleReads === true) noteWritten(store, issued.key, record);
      noteVersion(store, issued.key, 1);
      h.canRerun = false; // a re-run would create a second session
      if (o.onEvent !== undefined) {
        emit(o.onEvent, {
          type: "save",
          created: true,
          version: 1,
          attempts: tries,
          durationMs: performance.now() - start,
          request: h.request,
        });
      }
      attachRecord(h, h.id, record, issued.key);
      h.ops = [];
      h.cookieValue = issued.value;
      h.cookieVersion = 1;
      h.clearCookie = false;
      setCookie(h, o.cookie.name, issued.value, expiresAt, now);
      return index === undefined ? "done" : await signedIn(h, index.user);
    }
    if (tries >= 3) {
      return new SessionConflictError("Could not create a session: its id was taken three times");
    }
    h.id = createSessionId();
  }
}

/** Nothing to store: the cookie of an ended session is cleared, an unseen minted id goes back. */
function nothingToCreate(h: Handle, now: number): "done" {
  const o = h.o;
  h.ops = [];
  if (h.clearCookie && !h.responded) clearCookie(h, o.cookie.name, now);
  // An id minted ahead of time that nobody saw goes back for the next visitor.
  if (h.minted !== undefined && h.minted.id === h.id && !h.idRead) o.signer.recycle(h.minted);
  h.minted = undefined;
  return "done";
}

/** The server-store backend. */
export const serverBackend: Backend = { open, commit };
