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
  dueExpiry,
  endedConflict,
  endedRefuses,
  expiredConflict,
  expiryFrom,
  type Handle,
  handleTimeouts,
  hasData,
  lateCreation,
  persistentCookie,
  policyConflict,
  setCookie,
} from "../backend.ts";
import { indexOf, type Landed, type Outcome, type Pending, storeError } from "../conflict.ts";
import { commitToRecord } from "../compare_and_set.ts";
import { SessionConflictError } from "../errors.ts";
import { emit } from "../events.ts";
import { createSessionId } from "../id.ts";
import { noteVersion, noteWritten } from "../turns.ts";
import { loggedOut, userOf } from "../audit.ts";
import { applyOps, laterOps, stateData } from "../session_data.ts";
import { open } from "./server_open.ts";
import { NO_OPS } from "../session_state.ts";
import { checkedSaveResult, type SessionStore, type StoredSession } from "../store.ts";

/**
 * The session goes on from what was saved: the merged maps when the save merged, and the
 * operations recorded while the store answered (not in the record) kept for the next commit,
 * applied again on the merged maps.
 */
function adopt(h: Handle, landed: Landed | undefined, included: number): void {
  const later = laterOps(h, included);
  if (landed !== undefined) {
    h.data = landed.data;
    h.flash = landed.flash;
    h.flashOut = landed.flashOut;
    if (later.length > 0) applyOps(later, h);
  }
  h.ops = later;
}

/**
 * What a commit of a loaded record is due to do, decided before it starts; a save asks it of the
 * record (`Pending`) as it is. One object per commit.
 */
interface Due extends Pending {
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
  /** What this commit set out to do, not what the handler asks for meanwhile. */
  ending: Handle["ending"];
  /** The user the session had before the save (`userKey`). */
  userBefore: string | undefined;
  /** When the save started (`performance.now()`, with `onEvent`). */
  start: number;
  /** Gives up the user's lock a regenerate holds across its two writes (see `saveRecord`). */
  release: (() => Promise<void>) | undefined;
}

// No `async` on the steps of the common path that only hand a promise on: each async frame is
// an allocation per request (see bench/RESULTS.md, bytes allocated per request).
function commit(h: Handle): Promise<CommitResult> {
  try {
    return Promise.resolve(startCommit(h));
  } catch (error) {
    return Promise.reject(error);
  }
}

/** Decides what the commit does, and starts it. */
function startCommit(h: Handle): CommitResult | Promise<CommitResult> {
  const o = h.o;
  const store = h.store as SessionStore;
  const now = o.now();
  if (
    h.responded &&
    ((h.isNew && hasData(h) && (h.base === undefined || h.ending !== undefined)) ||
      (h.ending !== undefined && h.base !== undefined))
  ) {
    // A new id needs a Set-Cookie that can no longer be sent, and so does an end (the cookie
    // to clear; left in the browser, the ended record's grace would refuse its next log in as
    // a request in flight during the end): change nothing.
    return lateCreation();
  }
  if (h.base === undefined) return create(h, store, now);
  const extended = dueExpiry(h, now);
  const due: Due = {
    s: h,
    policy: o.conflict,
    canRerun: h.canRerun && !h.responded,
    expiresAt: extended ?? h.expiresAt,
    held: h.turn !== undefined && h.turn.key === h.key,
    maxAttempts: o.maxAttempts,
    userKey: o.userKey,
    hook: o.onEvent,
    request: h.request,
    now,
    extended,
    writes: h.ops.length > 0 || h.ending !== undefined,
    resign: !h.responded && (h.rotated || store.capabilities.staleReads === true),
    refreshCookie: extended !== undefined && persistentCookie(h) && !h.responded,
    ending: h.ending,
    userBefore: undefined,
    start: 0,
    release: undefined,
  };
  if (due.writes || h.rotated || (extended !== undefined && store.touch === undefined)) {
    return saveRecord(h, store, due);
  }
  if (extended !== undefined) return touchRecord(h, store, due, extended);
  return "done";
}

/**
 * Everything that writes the record, or sends its cookie again, goes through the
 * compare-and-set: a cookie is never sent for a session another request ended.
 */
function saveRecord(h: Handle, store: SessionStore, due: Due): Promise<CommitResult> {
  due.userBefore = userOf(h.o, h.base!.data);
  if (due.ending === "regenerate" && due.userBefore !== undefined) return lockedRegenerate(h, store, due);
  return writeRecord(h, store, due);
}

/**
 * A regenerate of a signed-in session ends one record and creates another: `endUserSessions`
 * takes the same lock, so it finds the one or the other, never neither (read between the two
 * writes, the user's index would hold no session, and the new one would outlive it).
 */
async function lockedRegenerate(h: Handle, store: SessionStore, due: Due): Promise<CommitResult> {
  const release = await h.o.users!.lock(store, due.userBefore!);
  try {
    // What the save asks of the record is read once the lock is held, as the save then starts.
    due.canRerun = h.canRerun && !h.responded;
    due.expiresAt = due.extended ?? h.expiresAt;
    due.held = h.turn !== undefined && h.turn.key === h.key;
    due.request = h.request;
    due.ending = h.ending;
    due.release = release;
    return await writeRecord(h, store, due);
  } finally {
    await release?.();
  }
}

/** {@linkcode saveRecord}'s writes; `due.release` gives up the user's lock once the new record is in. */
function writeRecord(h: Handle, store: SessionStore, due: Due): Promise<CommitResult> {
  const o = h.o;
  if (o.onEvent !== undefined) due.start = performance.now();
  o.users?.noteMeta(h, due.now);
  // No `async` frame, no step of its own: the compare-and-set runs afterSave as its last step.
  return commitToRecord(store, h.key!, due, afterSave);
}

/** The compare-and-set ended: the session goes on from what it saved. */
function afterSave(outcome: Outcome, p: Pending): CommitResult | Promise<CommitResult> {
  const due = p as Due;
  const h = due.s as Handle;
  const store = h.store as SessionStore;
  const o = h.o;
  const ending = due.ending;
  if (outcome.kind !== "saved") return notSaved(h, outcome, due.writes);
  if (o.onEvent !== undefined) {
    const durationMs = performance.now() - due.start;
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
  adopt(h, outcome.landed, outcome.included);
  // What this request wrote is stored: running the handler again would apply it twice.
  // A later conflict refuses only what comes after (see `Session.save()`).
  if (due.writes) h.canRerun = false;
  // What this commit set out to do, not what the handler asked for meanwhile (a `destroy()`
  // while the store answered is the next commit's).
  if (ending === undefined) return saved(h, store, outcome.record!, due, due.userBefore);
  ended(h, outcome.found, ending, due.userBefore);
  // What the ended record carried over (regenerate) or what was set afterwards (destroy).
  return create(h, store, due.now, due.release);
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
    // already. Nothing to say, no cookie to send; changes made while the store answered are
    // the next commit's (refused there if the session ended).
    if (outcome.reason !== "dropped") h.base = undefined;
    return h.ops.length > 0 && outcome.reason !== "dropped" ? endedConflict() : "done";
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
  // An end asked for while this one was written is the next commit's.
  if (h.ending === ending) h.ending = undefined;
}

/** The record is saved: the session goes on from it, its cookie signed again or refreshed. */
function saved(
  h: Handle,
  store: SessionStore,
  record: StoredSession,
  due: Due,
  userBefore: string | undefined,
): CommitResult | Promise<CommitResult> {
  const o = h.o;
  h.base = record;
  h.version = record.version;
  h.expiresAt = record.expiresAt;
  if (due.resign) return resigned(h, store, record, due, userBefore);
  if (due.refreshCookie) setCookie(h, o.cookie.name, h.cookieValue!, record.expiresAt, due.now);
  const user = userOf(o, record.data);
  return user === undefined || user === userBefore ? "done" : o.users!.signedIn(h, user);
}

/** `saved`, with the cookie signed again (a retired secret, a version to carry). */
async function resigned(
  h: Handle,
  store: SessionStore,
  record: StoredSession,
  due: Due,
  userBefore: string | undefined,
): Promise<CommitResult> {
  const o = h.o;
  const issued = await o.signer.issue(h.id, store.capabilities.staleReads ? record.version : undefined);
  h.cookieValue = issued.value;
  h.cookieVersion = record.version;
  h.rotated = false;
  setCookie(h, o.cookie.name, issued.value, record.expiresAt, due.now);
  const user = userOf(o, record.data);
  return user === undefined || user === userBefore ? "done" : await o.users!.signedIn(h, user);
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
async function create(
  h: Handle,
  store: SessionStore,
  now: number,
  release?: () => Promise<void>,
): Promise<CommitResult> {
  const o = h.o;
  h.touchRequested = false;
  if (!hasData(h)) return nothingToCreate(h, now);
  if (endedRefuses(h)) return endedConflict();
  const expiresAt = expiryFrom(handleTimeouts(h), h.createdAt, now);
  const start = o.onEvent === undefined ? 0 : performance.now();
  for (let tries = 1;; tries++) {
    const id = h.id;
    const issued = h.minted !== undefined && h.minted.id === id
      ? h.minted
      : await o.signer.issue(id, store.capabilities.staleReads ? 1 : undefined);
    h.minted = undefined;
    if (h.id !== id) continue; // renewed while its id was signed: nothing written, sign the new one
    o.users?.noteMeta(h, now);
    const included = h.ops.length;
    const record: StoredSession = { data: stateData(h), version: 1, createdAt: h.createdAt, expiresAt };
    let result;
    const index = indexOf(record.data, o.userKey);
    try {
      result = checkedSaveResult(await store.save(issued.key, record, null, index));
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
      const renewed = h.id === id ? undefined : { id: h.id, createdAt: h.createdAt, cleared: h.cleared };
      attachRecord(h, id, record, issued.key);
      h.ops = laterOps(h, included);
      h.cookieValue = issued.value;
      h.cookieVersion = 1;
      h.clearCookie = false;
      setCookie(h, o.cookie.name, issued.value, expiresAt, now);
      if (renewed !== undefined) endAfterCreate(h, renewed);
      await release?.(); // the limit's sign-in takes the user's lock anew
      return index === undefined ? "done" : await o.users!.signedIn(h, index.user);
    }
    if (tries >= 3) {
      return new SessionConflictError("Could not create a session: its id was taken three times");
    }
    h.id = createSessionId();
  }
}

/**
 * The handler ended the session (`destroy()`, `regenerate()`) while its first record was being
 * written: the record stands, so the next commit ends it, as it would have ended a loaded one.
 */
function endAfterCreate(h: Handle, renewed: { id: string; createdAt: number; cleared: boolean }): void {
  h.ending = renewed.cleared ? "destroy" : "regenerate";
  h.id = renewed.id;
  h.isNew = true;
  h.createdAt = renewed.createdAt;
}

/** Nothing to store: the cookie of an ended session is cleared, an unseen minted id goes back. */
function nothingToCreate(h: Handle, now: number): "done" {
  const o = h.o;
  h.ops = NO_OPS;
  if (h.clearCookie && !h.responded) clearCookie(h, o.cookie.name, now);
  // An id minted ahead of time that nobody saw goes back for the next visitor.
  if (h.minted !== undefined && h.minted.id === h.id && !h.idRead) o.signer.recycle(h.minted);
  h.minted = undefined;
  return "done";
}

/** The server-store backend. */
export const serverBackend: Backend = { open, commit };
