/**
 * What `DurableObjectStore` and `SessionDurableObject` share: the JSON operations the store sends
 * over `fetch`, their parser (the object's side), the names the object stores under, and the
 * record's stored text with its size check.
 *
 * @module
 */
import { SessionDataError, SessionTooLargeError, StoreUnavailableError } from "../../errors.ts";
import { assertRecordShape, type StoredSession, toStoredSession } from "../../store.ts";
import { v8SerializedStringSize } from "../../v8_size.ts";
import type { DurableObjectResponseLike, DurableObjectStubLike } from "../durable_object.ts";

/** One entry of a user's index, as the user's object keeps it. */
export interface IndexEntry {
  /** The session's storage key. */
  key: string;
  /** When the entry was last written, by the application's clock (ms). */
  at: number;
  /** Names that write: a clean-up removes the entry only if it is still the one it examined. */
  token: string;
}

/** A lock as the object keeps it: its owner and when it lapses by the application's clock (ms). */
export interface StoredLock {
  owner: string;
  until: number;
}

/** One operation without the clock reading. */
type OperationBody =
  | { op: "load" }
  | { op: "save"; record: StoredSession; expectedVersion: number | null; user?: string }
  | { op: "destroy" }
  | { op: "touch"; expiresAt: number; version: number }
  | { op: "lock"; owner: string; ttlMs: number }
  | { op: "unlock"; owner: string }
  | { op: "owner" }
  | { op: "index"; key: string; token: string }
  | { op: "keys" }
  | { op: "unindex"; entries: { key: string; token: string }[] }
  | { op: "time" };

/**
 * What the store sends to the object: one operation per request, with the application's clock
 * reading (`now`, milliseconds since the epoch) by which the object decides expiry. `lock`,
 * `unlock` and `owner` go to a session's object; `index`, `keys` and `unindex` to a user's.
 */
export type Operation = { now?: number } & OperationBody;

export const RECORD = "record";
/**
 * The storage key of the session's lock (the stored name of earlier versions; kept so that old
 * and new objects share locks).
 */
export const LOCK = "lease";
/** A user's object keeps one entry per session key, under this prefix. */
export const INDEX_PREFIX = "index:";
/** The field of the stored JSON, beside the record's own, that names the user it is indexed under. */
export const INDEXED_USER = "indexedUser";
export const ORIGIN = "https://websession.invalid/";

/**
 * Durable Object storage takes a value of at most 128 KiB, as V8 serializes it (the limit of
 * the key-value storage backend; SQLite-backed objects take more, and the store keeps to the
 * lower limit so that a session fits alike on both).
 */
export const MAX_VALUE_BYTES = 131_072;

type Fields = Record<string, unknown>;

function parseSave(value: Fields): OperationBody {
  const record = toStoredSession(value.record);
  const expected = value.expectedVersion;
  if (record === null) throw new TypeError("Invalid save: malformed record");
  if (expected !== null && (!Number.isSafeInteger(expected) || (expected as number) < 1)) {
    throw new TypeError(`Invalid save: expectedVersion "${String(expected)}"`);
  }
  if (value.user !== undefined && typeof value.user !== "string") {
    throw new TypeError(`Invalid save: user "${String(value.user)}" is not a string`);
  }
  const save = { op: "save" as const, record, expectedVersion: expected as number | null };
  return value.user === undefined ? save : { ...save, user: value.user as string };
}

function parseTouch(value: Fields): OperationBody {
  if (!Number.isFinite(value.expiresAt)) throw new TypeError("Invalid touch: expiresAt is not a number");
  if (!Number.isSafeInteger(value.version) || (value.version as number) < 1) {
    throw new TypeError(`Invalid touch: version "${String(value.version)}"`);
  }
  return { op: "touch", expiresAt: value.expiresAt as number, version: value.version as number };
}

function parseLock(value: Fields): OperationBody {
  if (typeof value.owner !== "string") throw new TypeError("Invalid lock: owner is not a string");
  if (typeof value.ttlMs !== "number" || !(value.ttlMs > 0) || !Number.isFinite(value.ttlMs)) {
    throw new TypeError(`Invalid lock: ttlMs "${String(value.ttlMs)}" is not a positive number`);
  }
  return { op: "lock", owner: value.owner, ttlMs: value.ttlMs };
}

function parseUnlock(value: Fields): OperationBody {
  if (typeof value.owner !== "string") throw new TypeError("Invalid unlock: owner is not a string");
  return { op: "unlock", owner: value.owner };
}

function parseIndex(value: Fields): OperationBody {
  if (typeof value.key !== "string" || typeof value.token !== "string") {
    throw new TypeError("Invalid index: key and token must be strings");
  }
  return { op: "index", key: value.key, token: value.token };
}

function parseUnindex(value: Fields): OperationBody {
  const entries = value.entries;
  if (
    !Array.isArray(entries) ||
    !entries.every((e) => typeof e?.key === "string" && typeof e?.token === "string")
  ) {
    throw new TypeError("Invalid unindex: entries must be keys with tokens");
  }
  return {
    op: "unindex",
    entries: entries.map((e: { key: string; token: string }) => ({ key: e.key, token: e.token })),
  };
}

/** Each operation's parser; those with no arguments are just named. */
const PARSERS: Record<string, (value: Fields) => OperationBody> = {
  load: () => ({ op: "load" }),
  destroy: () => ({ op: "destroy" }),
  owner: () => ({ op: "owner" }),
  keys: () => ({ op: "keys" }),
  time: () => ({ op: "time" }),
  save: parseSave,
  touch: parseTouch,
  lock: parseLock,
  unlock: parseUnlock,
  index: parseIndex,
  unindex: parseUnindex,
};

/** Parses a request body into an operation; throws a `TypeError` naming what is malformed. */
export function parseOperation(body: unknown): Operation {
  const value = (typeof body === "object" && body !== null ? body : {}) as Fields;
  if (value.now !== undefined && !Number.isFinite(value.now)) {
    throw new TypeError(`Invalid operation: now "${String(value.now)}" is not a number`);
  }
  const clock = value.now === undefined ? {} : { now: value.now as number };
  const parse = typeof value.op === "string" && Object.hasOwn(PARSERS, value.op)
    ? PARSERS[value.op]
    : undefined;
  if (parse === undefined) throw new TypeError(`Invalid operation: "${String(value.op)}"`);
  return { ...clock, ...parse(value) };
}

export function tooLargeMessage(size: number): string {
  return `"${size}" bytes serialized, at most "${MAX_VALUE_BYTES}" fit in one value`;
}

/** The text the object stores: the record's JSON, with the user it is indexed under, if any. */
export function storedText(record: StoredSession, user: string | undefined): string {
  const text = JSON.stringify(record);
  return user === undefined ? text : `${text.slice(0, -1)},"${INDEXED_USER}":${JSON.stringify(user)}}`;
}

/**
 * Checks a record before anything is sent: well-formed numbers, JSON data, and a V8-serialized
 * size (with the user it is indexed under) within Durable Object storage's value limit. Returns
 * its JSON text.
 */
export function encode(record: StoredSession, user?: string): string {
  assertRecordShape(record);
  let text: string;
  try {
    text = storedText(record, user);
  } catch (error) {
    throw new SessionDataError(
      `Session data cannot be stored: not JSON-serializable: ${(error as Error).message}`,
      { cause: error },
    );
  }
  const size = v8SerializedStringSize(text);
  if (size > MAX_VALUE_BYTES) {
    throw new SessionTooLargeError(`Session too large for Durable Object storage: ${tooLargeMessage(size)}`);
  }
  return text;
}

/**
 * Sends one operation, with the application's clock reading, to the stub `stubOf` gives, and
 * returns its JSON answer. Failing to reach the object, or an answer without JSON or with an
 * error status, is `StoreUnavailableError`; `413` is `SessionTooLargeError`.
 */
export async function sendOperation(
  stubOf: () => DurableObjectStubLike,
  operation: Operation,
  now: () => number,
): Promise<Record<string, unknown>> {
  let response: DurableObjectResponseLike;
  try {
    response = await stubOf().fetch(ORIGIN + operation.op, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...operation, now: now() }),
    });
  } catch (error) {
    const message = (error as Error)?.message ?? String(error);
    throw new StoreUnavailableError(`Durable Object ${operation.op} failed: ${message}`, { cause: error });
  }
  let body: unknown;
  try {
    body = await response.json();
  } catch (error) {
    const message = `Durable Object ${operation.op} answered ${response.status} without JSON`;
    throw new StoreUnavailableError(message, { cause: error });
  }
  const answer = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  if (response.status === 413) {
    throw new SessionTooLargeError(`Session too large for Durable Object storage: ${String(answer.error)}`);
  }
  if (!response.ok) {
    throw new StoreUnavailableError(
      `Durable Object ${operation.op} answered ${response.status}: ${String(answer.error ?? "")}`,
    );
  }
  return answer;
}
