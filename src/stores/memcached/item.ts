/**
 * A Memcached item of the store: the record as JSON with its index mark, its exptime, and the
 * limits of keys and items. Docs: docs/stores/memcached.md.
 *
 * @module
 */
import { SessionTooLargeError } from "../../errors.ts";
import { assertRecordShape, type StoredSession, stringifyData, toStoredSession } from "../../store.ts";

// Memcached reads an exptime over 30 days as an absolute Unix time, on the server's clock.
const THIRTY_DAYS_S = 60 * 60 * 24 * 30;
// An absolute exptime is set this much past expiresAt, so that a server clock running ahead of
// this process's does not drop a session early. Reads check expiresAt with this process's clock.
const ABSOLUTE_SLACK_S = 60 * 60;
// Memcached's exptime is a signed 32-bit number of seconds.
const MAX_EXPTIME = 2 ** 31 - 1;
// Room for Memcached's item header, flags, CAS and line endings within an item.
export const ITEM_OVERHEAD = 256;
export const MAX_KEY_BYTES = 250;
export const KEY_LENGTH = 43;
// A lock lives in an item of its own: the storage key and this suffix, which no storage key has
// (`:lease`: the stored name of earlier versions; kept so that old and new processes share locks).
export const LOCK_SUFFIX = ":lease";
export const MAX_PREFIX_BYTES = MAX_KEY_BYTES - KEY_LENGTH - LOCK_SUFFIX.length;
// A user's index lives in an item of its own: this infix and SHA-256 of the user id (43
// characters), no longer than a lock's key and never the shape of a storage key (no `:`).
export const USER_INFIX = "user:";
// Room kept in a record's item for its index mark: `,"index":{"user":"<43>","until":<ms>}`.
const MARK_RESERVE = 96;
export const STORAGE_KEY = /^[A-Za-z0-9_-]{43}$/;
// Printable ASCII, no space: what every client sends unchanged and Memcached accepts in a key.
export const PREFIX = /^[\x21-\x7e]*$/;

/**
 * Memcached's exptime for a record expiring at `expiresAt`: seconds from now (rounded up, plus
 * one because Memcached's clock ticks once a second), an absolute time past 30 days, or `-1`
 * (stored already expired: nothing is kept) when `expiresAt` is not in the future.
 */
export function exptimeOf(expiresAt: number, now: number): number {
  const ms = expiresAt - now;
  if (!(ms > 0)) return -1;
  const seconds = Math.ceil(ms / 1000) + 1;
  if (seconds <= THIRTY_DAYS_S) return seconds;
  return Math.min(Math.ceil(expiresAt / 1000) + ABSOLUTE_SLACK_S, MAX_EXPTIME);
}

/**
 * How long a record's entry in its user's index lasts, in milliseconds since the epoch: its
 * `expiresAt` and half its remaining life again, so that the sliding expiry of later saves and
 * touches rewrites the index at most once per half window instead of on every save.
 */
export function entryUntil(expiresAt: number, now: number): number {
  return expiresAt + Math.ceil((expiresAt - now) / 2);
}

/**
 * Where a record is indexed, kept in its item beside the record: the user's index item (by the
 * hash of the user id) and until when its entry there lasts (ms since the epoch). A save or touch
 * that moves `expiresAt` past `until` extends the entry first.
 */
export interface IndexMark {
  user: string;
  until: number;
}

/** A record as held in its item, with its index mark. */
export interface Held {
  record: StoredSession;
  mark: IndexMark | undefined;
}

function markOf(value: unknown): IndexMark | undefined | null {
  if (value === undefined) return undefined;
  if (typeof value !== "object" || value === null) return null;
  const { user, until } = value as { user?: unknown; until?: unknown };
  if (
    typeof user !== "string" || !STORAGE_KEY.test(user) || typeof until !== "number" ||
    !Number.isFinite(until)
  ) {
    return null;
  }
  return { user, until };
}

/** Parses an item's value: JSON text, bytes, or what a client already parsed. `null` when corrupt. */
export function heldOf(value: unknown): Held | null {
  let raw = value;
  try {
    if (typeof raw === "string") raw = JSON.parse(raw);
    else if (raw instanceof Uint8Array) raw = JSON.parse(new TextDecoder().decode(raw));
  } catch {
    return null;
  }
  const checked = toStoredSession(raw);
  if (checked === null) return null;
  const { data, version, createdAt, expiresAt } = checked;
  const mark = markOf((raw as { index?: unknown }).index);
  if (mark === null) return null;
  return { record: { data, version, createdAt, expiresAt }, mark };
}

/** The item's value: the record as JSON, with its index mark when it has one. */
export function itemValue(record: StoredSession, data: string, mark: IndexMark | undefined): string {
  const { version, createdAt, expiresAt } = record;
  const index = mark === undefined ? "" : `,"index":${JSON.stringify(mark)}`;
  return `{"version":${JSON.stringify(version)},"createdAt":${JSON.stringify(createdAt)},"expiresAt":${
    JSON.stringify(expiresAt)
  }${index},"data":${data}}`;
}

function utf8Length(text: string): number {
  return new TextEncoder().encode(text).length;
}

/**
 * Checks a record and writes its data as JSON text; refuses it, before anything is sent, when
 * its item (with room for an index mark) would not fit in `maxValueBytes`.
 */
export function encodeData(record: StoredSession, maxValueBytes: number): string {
  assertRecordShape(record);
  const value = stringifyData(record.data);
  // UTF-8 takes 1 to 3 bytes per UTF-16 code unit: measure only when the bound is unclear.
  const limit = maxValueBytes - itemValue(record, "", undefined).length - MARK_RESERVE;
  if (value.length > limit || (value.length * 3 > limit && utf8Length(value) > limit)) {
    throw new SessionTooLargeError(
      `Session too large for Memcached: "${
        utf8Length(value)
      }" bytes of JSON data, at most "${limit}" fit in one item`,
    );
  }
  return value;
}
