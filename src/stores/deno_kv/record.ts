/**
 * How `DenoKvStore` writes a record into a Deno KV value and reads it back (its JSON text, with
 * the user it is indexed under), and how a Deno KV failure is reported.
 *
 * @module
 */
import { SessionDataError, SessionTooLargeError, StoreUnavailableError } from "../../errors.ts";
import { assertRecordShape, parseStoredSession, type StoredSession } from "../../store.ts";
import { v8SerializedStringSize } from "../../v8_size.ts";

/** Attempts of a read-check-commit round when the entry moved under us without a conflict. */
export const ATTEMPTS = 3;

/** Deno KV's limit on a value, as V8 serializes it. */
const MAX_VALUE_BYTES = 65_536;

/** The field of the stored JSON, beside the record's own, that names the user it is indexed under. */
const INDEXED_USER = "indexedUser";

/** A record as stored, and the user it is indexed under. */
export interface Decoded {
  record: StoredSession;
  user: string | undefined;
}

/** The record and the user it is indexed under, from the stored JSON text. */
export function decode(text: string): Decoded | null {
  const parsed = parseStoredSession(text) as (StoredSession & { [INDEXED_USER]?: unknown }) | null;
  if (parsed === null) return null;
  if (!(INDEXED_USER in parsed)) return { record: parsed, user: undefined };
  const { [INDEXED_USER]: user, ...record } = parsed;
  return { record, user: typeof user === "string" ? user : undefined };
}

/** The record's JSON text with the user it is indexed under, checked against the value limit. */
export function withUser(text: string, user: string): string {
  const indexed = `${text.slice(0, -1)},"${INDEXED_USER}":${JSON.stringify(user)}}`;
  checkSize(indexed, " with its user's id");
  return indexed;
}

/**
 * The record's JSON text, checked before anything is written: well-formed numbers, JSON data, and
 * a V8-serialized size within Deno KV's value limit.
 */
export function encode(record: StoredSession): string {
  assertRecordShape(record);
  let text: string;
  try {
    text = JSON.stringify(record);
  } catch (error) {
    throw new SessionDataError(
      `Session data cannot be stored: not JSON-serializable: ${(error as Error).message}`,
      { cause: error },
    );
  }
  checkSize(text, "");
  return text;
}

/** Refuses a text whose V8 serialization is over Deno KV's value limit. */
function checkSize(text: string, what: string): void {
  const size = v8SerializedStringSize(text);
  if (size > MAX_VALUE_BYTES) {
    throw new SessionTooLargeError(
      `Session too large for Deno KV: "${size}" bytes serialized${what}, at most "${MAX_VALUE_BYTES}" fit in one value`,
    );
  }
}

/** Runs one Deno KV call; a failure is `StoreUnavailableError`, Deno KV's refusal of a large value `SessionTooLargeError`. */
export async function kvCall<T>(what: string, operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    // The size check in `encode` measures the usual case; Deno KV's own refusal, for a string V8
    // keeps at two bytes a character though every character is Latin-1, means the same.
    if (error instanceof TypeError && /value too large/i.test(error.message)) {
      throw new SessionTooLargeError(`Session too large for Deno KV: ${error.message}`, { cause: error });
    }
    throw new StoreUnavailableError(`Deno KV ${what} failed: ${(error as Error)?.message ?? String(error)}`, {
      cause: error,
    });
  }
}
