/**
 * Session ids and storage keys.
 *
 * An id is 24 bytes (192 bits) from `crypto.getRandomValues`, written as 32 base64url characters.
 * A store never sees the id: it gets the storage key, `SHA-256(id)` as 43 base64url characters.
 *
 * @module
 */

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const ID_BYTES = 24;
const ID_PATTERN = /^[A-Za-z0-9_-]{32}$/;
const POOL_IDS = 128;

let pool = new Uint8Array(0);
let poolOffset = 0;

/**
 * Encodes bytes as unpadded base64url.
 *
 * @param bytes The bytes to encode.
 * @returns The base64url text, without `=` padding.
 */
export function encodeBase64Url(bytes: Uint8Array): string {
  let out = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += ALPHABET[n >> 18]! + ALPHABET[(n >> 12) & 63]! + ALPHABET[(n >> 6) & 63]! + ALPHABET[n & 63]!;
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i]! << 16;
    out += ALPHABET[n >> 18]! + ALPHABET[(n >> 12) & 63]!;
  } else if (rest === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out += ALPHABET[n >> 18]! + ALPHABET[(n >> 12) & 63]! + ALPHABET[(n >> 6) & 63]!;
  }
  return out;
}

/**
 * Creates a new session id: 192 random bits as 32 base64url characters. Randomness is drawn
 * from `crypto.getRandomValues` in batches. The id is what a cookie carries; a store never sees
 * it, only its {@linkcode storageKeyOf}.
 *
 * @returns A fresh id.
 * @example
 * ```ts
 * import { createSessionId, isSessionId } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * const id = createSessionId();
 * assert.equal(id.length, 32);
 * assert.ok(isSessionId(id));
 * assert.notEqual(createSessionId(), id);
 * ```
 */
export function createSessionId(): string {
  if (poolOffset + ID_BYTES > pool.length) {
    pool = crypto.getRandomValues(new Uint8Array(ID_BYTES * POOL_IDS));
    poolOffset = 0;
  }
  const bytes = pool.subarray(poolOffset, poolOffset + ID_BYTES);
  poolOffset += ID_BYTES;
  const id = encodeBase64Url(bytes);
  bytes.fill(0); // drawn randomness is used once and not left behind
  return id;
}

/**
 * Tells whether `value` has the exact shape of a session id (32 base64url characters).
 *
 * @param value Anything.
 * @returns `true` for a well-formed id.
 * @example
 * ```ts
 * import { isSessionId } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * assert.equal(isSessionId("../../etc/passwd"), false);
 * assert.equal(isSessionId("A".repeat(32)), true);
 * ```
 */
export function isSessionId(value: unknown): value is string {
  return typeof value === "string" && ID_PATTERN.test(value);
}

const encoder = new TextEncoder();

/**
 * Derives the storage key of a session id: `SHA-256(id)` in base64url (43 characters). Stores
 * are only ever given this key, so a leaked store holds nothing that works as a cookie. Find a
 * session's record with it (a test, a migration script).
 *
 * @param id A session id.
 * @returns The storage key.
 * @throws {TypeError} When `id` is not a well-formed session id.
 * @example
 * ```ts
 * import { createSessionId, storageKeyOf } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * const key = await storageKeyOf(createSessionId());
 * assert.match(key, /^[A-Za-z0-9_-]{43}$/);
 * ```
 */
export async function storageKeyOf(id: string): Promise<string> {
  if (!isSessionId(id)) throw new TypeError(`Invalid session id: "${String(id).slice(0, 40)}"`);
  const digest = await crypto.subtle.digest("SHA-256", encoder.encode(id));
  return encodeBase64Url(new Uint8Array(digest));
}
