/**
 * The moving backend: a server store behind a signed id, for an application that kept its
 * sessions in sealed cookies (`CookieStore`) until now. Its store is a `MigratingStore` whose
 * `from` is the `CookieStore` (`sealedFrom`) and whose `to` is a server store. A request with a
 * signed id is served by the server backend as is. A request that carries a sealed cookie and no
 * signed id of a live session has its seal opened (expiry, revocation and `endUser` honoured by
 * the `CookieStore`), its record created in the server store under an id derived from the
 * session id inside the seal, and is then served by the server backend from that record; its
 * response sends the signed id cookie and clears the sealed cookies.
 *
 * Why derive the id: concurrent requests carrying seals of one session (a page's parallel
 * fetches, a replayed or older seal) all name one server record, created only if absent, so they
 * converge on it and every write lands through its compare-and-set. Once moved, a seal never
 * brings back its own data: the record it names is newer (later writes), or a tombstone (a log
 * out, a regeneration), which the server backend refuses as for any ended session.
 *
 * @module
 */
import {
  type Backend,
  clearCookie,
  type CommitResult,
  type CookieSource,
  cookieValues,
  type Handle,
  invalid,
  isLive,
} from "../backend.ts";
import { indexOf, inGrace, storeError } from "../conflict.ts";
import { openFailed } from "../lock.ts";
import { encodeBase64Url } from "../id.ts";
import type {
  InvalidSeal,
  OpenedSession,
  SealedSessionStore,
  SessionStore,
  StoredSession,
} from "../store.ts";
import { serverBackend } from "./server.ts";

/** A server store that moves sessions out of sealed cookies (`MigratingStore` from a `CookieStore`). */
interface MovingStore extends SessionStore {
  readonly sealedFrom: SealedSessionStore;
  readonly fromCookie: string | undefined;
}

/** `id.signature` or `id.version.signature`: what the server backend signs (see `signing.ts`). */
const SIGNED_VALUE = /^[A-Za-z0-9_-]{32}(?:\.[0-9]{1,16})?\.[A-Za-z0-9_-]{43}$/;
/** Chunks a sealed store may write: `name.0` … `name.63` (as `backends/sealed.ts`). */
const MAX_CHUNKS = 64;
/** Domain separation of moved ids from every other use of SHA-256 here. */
const MOVED_ID_DOMAIN = "websession/moved-from-sealed-cookie/v1\u0000";
const encoder = new TextEncoder();

/**
 * The id a session moved out of a seal gets: the first 24 bytes of
 * `SHA-256(domain ‖ sealed session id)`, as 32 base64url characters (a session id's shape).
 *
 * Every seal of one session (older seals, re-seals after a key rotation, chunked or not) names
 * one server record. It is unguessable as the sealed id is (192 random bits that only the
 * server can read out of a seal), and it is no credential on its own: a cookie needs the id
 * signed with the application's secrets. No secret enters it, so it stays the same across a
 * rotation of either store's secrets during the move.
 *
 * @param sealedId The session id carried inside the seal.
 * @returns The server session id.
 */
export async function movedSessionId(sealedId: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", encoder.encode(MOVED_ID_DOMAIN + sealedId));
  return encodeBase64Url(new Uint8Array(digest).subarray(0, 24));
}

/** The sealed cookies a request carries: a reader for the sealed store, and their names. */
interface Seal {
  get(name: string): string | undefined;
  names: string[];
}

/** The sealed cookies under `fromName` (values under `name` that are signed ids left out). */
function readSeal(source: CookieSource, fromName: string, name: string): Seal | undefined {
  const jar = new Map<string, string>();
  const single = cookieValues(source, fromName).filter((v) => fromName !== name || !SIGNED_VALUE.test(v));
  if (single.length > 0) jar.set(fromName, single[0]!);
  for (let i = 0; i < MAX_CHUNKS; i++) {
    const chunk = cookieValues(source, `${fromName}.${i}`);
    if (chunk.length === 0) break;
    jar.set(`${fromName}.${i}`, chunk[0]!);
  }
  if (jar.size === 0) return undefined;
  return { get: (cookie) => jar.get(cookie), names: [...jar.keys()] };
}

/** Opens the session, then runs `then` on it. A failed open gives up what it took (see `Backend.open`). */
async function open<R>(h: Handle, source: CookieSource, then: (h: Handle) => R | Promise<R>): Promise<R> {
  try {
    await openFrom(h, source);
  } catch (error) {
    return openFailed(h, error);
  }
  return then(h);
}

/** The server backend's open, as a step of this one. */
function openSigned(h: Handle, source: CookieSource): Promise<Handle> {
  return serverBackend.open(h, source, asIs);
}

function asIs(h: Handle): Handle {
  return h;
}

async function openFrom(h: Handle, source: CookieSource): Promise<void> {
  const o = h.o;
  const store = o.store as MovingStore;
  const name = o.cookie.name;
  const seal = readSeal(source, store.fromCookie ?? name, name);
  if (seal === undefined) {
    await openSigned(h, source);
    return;
  }
  h.presented = seal.names;
  const values = cookieValues(source, name);
  const signed = values.filter((v) => SIGNED_VALUE.test(v));
  if (signed.length > 0) {
    // A signed id of a live session wins over any sealed cookie left beside it.
    await openSigned(h, signed.length === values.length ? source : asHeader(name, signed));
    if (h.base !== undefined) return;
  }
  let opened: OpenedSession | InvalidSeal | null;
  try {
    opened = await store.sealedFrom.open(seal.get, store.fromCookie ?? name);
  } catch (error) {
    throw storeError("open the sealed session", error);
  }
  if (opened === null || !usable(h, opened)) {
    if (signed.length === 0) await openSigned(h, null); // a fresh session
    return;
  }
  await move(h, opened);
}

/** Whether an opened seal may move; says why not through `onInvalidCookie` (as the sealed backend). */
function usable(h: Handle, opened: OpenedSession | InvalidSeal): opened is OpenedSession {
  const o = h.o;
  if ("invalid" in opened) {
    // Ended or superseded while in flight: the browser may hold a newer cookie; touch none.
    if (
      opened.invalid !== "malformed" && opened.remote !== true &&
      (opened.at === undefined || inGrace(opened.at, o.now()))
    ) {
      h.endedElsewhere = opened.destroyed === true ? "destroyed" : true;
    }
    invalid(h, opened.invalid, opened.detail);
    return false;
  }
  if (!isLive(o, opened.record, o.now())) {
    invalid(h, "unknown");
    return false;
  }
  return true;
}

/**
 * Creates the moved record in the server store, only if absent, then opens it as a signed id
 * would: a record already there (moved by a concurrent request, changed or ended since) is what
 * the request gets.
 */
async function move(h: Handle, opened: OpenedSession): Promise<void> {
  const o = h.o;
  const store = h.store as SessionStore;
  if (h.minted !== undefined) o.signer.recycle(h.minted); // the fresh id the server backend took
  h.minted = undefined;
  const id = await movedSessionId(opened.id);
  const issued = await o.signer.issue(id, store.capabilities.staleReads ? 1 : undefined);
  const sealed = opened.record;
  const record: StoredSession = {
    data: sealed.data,
    version: 1,
    createdAt: sealed.createdAt,
    expiresAt: sealed.expiresAt,
  };
  const index = indexOf(record.data, o.userKey);
  try {
    // Refused when the record exists: a concurrent move won, or it was changed or ended since.
    await (index === undefined
      ? store.save(issued.key, record, null)
      : store.save(issued.key, record, null, index));
  } catch (error) {
    throw storeError("save", error);
  }
  await openSigned(h, asHeader(o.cookie.name, [issued.value]));
  // The browser has no signed id yet: the commit sends it, through the compare-and-set, so a
  // session ended meanwhile gets no cookie.
  if (h.base !== undefined) h.rotated = true;
}

function asHeader(name: string, values: string[]): string {
  return values.map((value) => `${name}=${value}`).join("; ");
}

async function commit(h: Handle): Promise<CommitResult> {
  const result = await serverBackend.commit(h);
  const name = h.o.cookie.name;
  if (result === "done" && h.presented !== undefined && h.setCookies?.has(name) === true) {
    // The session cookie was set (or cleared): the sealed cookies have served their turn.
    const now = h.o.now();
    for (const cookie of h.presented) if (cookie !== name) clearCookie(h, cookie, now);
    h.presented = undefined;
  }
  return result;
}

/** The moving backend. */
export const movingBackend: Backend = { open, commit };
