/**
 * How `CloudflareKvStore` writes a record into a KV value and reads it back: the JSON text, the
 * fields it notes beside the record (destroyed, index), the metadata a listing shows, and what a
 * read found.
 *
 * @module
 */
import { SessionDataError, SessionTooLargeError } from "../../errors.ts";
import {
  assertRecordShape,
  ENDED_KEY,
  isEnded,
  parseStoredSession,
  type StoredSession,
} from "../../store.ts";

/** Workers KV refuses an `expirationTtl` under 60 seconds. */
export const MIN_TTL_SECONDS = 60;

/** Workers KV's limit on a value: 25 MiB. */
const MAX_VALUE_BYTES = 25 * 1024 * 1024;

/** Metadata written beside each record, so a listing needs no value reads. */
export interface KvRecordMetadata {
  version: number;
  expiresAt: number;
  /** Present on a tombstone, which `count()` does not count. */
  ended?: true;
}

/**
 * Where a record is indexed: the user, and until when (ms, by the store's clock) its index key is
 * kept (`until` 0: not written in the current layout yet).
 */
export interface Indexed {
  user: string;
  until: number;
}

/**
 * What a read found at this location: the record's key, unless the session's end key is there,
 * which wins over whatever the record's key holds (its tombstone is then the record found).
 */
export type Found =
  | { kind: "absent" }
  | { kind: "unreadable" }
  | { kind: "record"; record: StoredSession; destroyed: boolean; index: Indexed | undefined };

/**
 * A top-level field of the stored JSON marking a tombstone left by `destroy()`: it refuses writes
 * like any tombstone, and reads as no session (a tombstone written by `withSession` reads as
 * itself).
 */
const DESTROYED_FIELD = "destroyed";

/** A top-level field of the stored JSON: the user the record is indexed under, and until when. */
const INDEX_FIELD = "index";

/** A stored index of the current layout says so; one without it names an old-layout key. */
const HASHED_FIELD = "hashed";

/**
 * The record's JSON text (with its index, or marked destroyed), checked before anything is
 * written: well-formed numbers, JSON data, and a UTF-8 size within KV's value limit.
 */
export function encode(record: StoredSession, index?: Indexed, destroyed = false): string {
  assertRecordShape(record);
  let text: string;
  try {
    const stored = index === undefined
      ? record
      : { ...record, [INDEX_FIELD]: { ...index, [HASHED_FIELD]: true } };
    text = JSON.stringify(destroyed ? { ...stored, [DESTROYED_FIELD]: true } : stored);
  } catch (error) {
    throw new SessionDataError(
      `Session data cannot be stored: not JSON-serializable: ${(error as Error).message}`,
      { cause: error },
    );
  }
  checkSize(text);
  return text;
}

/** Refuses a text over KV's value limit. UTF-8 takes 1 to 3 bytes per UTF-16 code unit: measure only when the bound is unclear. */
function checkSize(text: string): void {
  if (text.length * 3 <= MAX_VALUE_BYTES) return;
  const size = new TextEncoder().encode(text).length;
  if (size > MAX_VALUE_BYTES) {
    throw new SessionTooLargeError(
      `Session too large for Workers KV: "${size}" bytes of JSON, at most "${MAX_VALUE_BYTES}" fit in one value`,
    );
  }
}

/** The metadata written beside a record. */
export function metadataOf(record: StoredSession): KvRecordMetadata {
  return isEnded(record)
    ? { version: record.version, expiresAt: record.expiresAt, ended: true }
    : { version: record.version, expiresAt: record.expiresAt };
}

/** A stored value as found: absent, unreadable, or a record with what the store notes beside it. */
export function parseFound(text: string | null): Found {
  if (text === null) return { kind: "absent" };
  const parsed = parseStoredSession(text);
  if (parsed === null) return { kind: "unreadable" };
  const { [DESTROYED_FIELD]: destroyed, [INDEX_FIELD]: index, ...record } = parsed as StoredSession & {
    [DESTROYED_FIELD]?: unknown;
    [INDEX_FIELD]?: unknown;
  };
  return { kind: "record", record, destroyed: destroyed === true, index: indexedOf(index) };
}

/**
 * What a read of the record's key and the end key found. An end key, when there is one, decides:
 * the session has ended whatever the record's key holds (a data write may have landed there after
 * the end), and an end key that cannot be read still says so.
 */
export function withEnd(found: Found, end: string | null, now: number, tombstoneMs: number): Found {
  if (end === null) return found;
  const ended = parseFound(end);
  if (ended.kind === "record" && isEnded(ended.record)) return ended;
  const stored = found.kind === "record" ? found.record : undefined;
  const record = {
    data: { [ENDED_KEY]: true },
    version: (stored?.version ?? 0) + 1,
    createdAt: stored?.createdAt ?? now,
    expiresAt: Math.max(stored?.expiresAt ?? now, now + tombstoneMs),
  };
  return { kind: "record", record, destroyed: false, index: undefined };
}

/**
 * The index a stored record carries, if well-formed. One written in the earlier layout (not
 * marked `hashed`) reads as not written yet (`until` 0), so the next save or touch writes the
 * record's index key in the current layout.
 */
function indexedOf(value: unknown): Indexed | undefined {
  const index = value as (Partial<Indexed> & { [HASHED_FIELD]?: unknown }) | null | undefined;
  if (typeof index?.user !== "string" || typeof index.until !== "number") return undefined;
  return { user: index.user, until: index[HASHED_FIELD] === true ? index.until : 0 };
}

/** Why `found` is a stale read for a client that has seen `minVersion`, or `undefined`. */
export function staleness(found: Found, minVersion: number | undefined): string | undefined {
  if (minVersion === undefined || !(minVersion >= 1)) return undefined;
  if (found.kind === "absent") {
    return `no record of a session the client has seen at version "${minVersion}"`;
  }
  if (found.kind === "record" && !isEnded(found.record) && found.record.version < minVersion) {
    return `version "${found.record.version}" is older than "${minVersion}" the client has seen`;
  }
  return undefined;
}
