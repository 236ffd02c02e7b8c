/**
 * How many bytes V8's `ValueSerializer` writes for a string: the measure by which Deno KV
 * (64 KiB per value) and Durable Object storage (128 KiB per value) limit what they store. Stores
 * that keep a record as its JSON text use it to refuse an oversized record before writing, with
 * `SessionTooLargeError`, instead of letting the backend fail the write.
 *
 * @module
 */

/** A character V8 cannot keep in a one-byte (Latin-1) string. */
const TWO_BYTE = /[\u0100-\uffff]/;

/** The serializer's header: the version tag `0xFF` and the version, 15. */
const HEADER_BYTES = 2;

/**
 * The size of `text` serialized on its own by V8's `ValueSerializer` (format version 15): the
 * header, then a one-byte string (one byte a character) when every character is Latin-1, else a
 * two-byte string (two bytes a UTF-16 code unit, after one padding byte when needed to align).
 *
 * A string whose characters are all Latin-1 but that V8 keeps in a two-byte representation is
 * serialized at two bytes a character: this measures the usual case, a string built by
 * `JSON.stringify`, and a store still maps the backend's own refusal to `SessionTooLargeError`.
 *
 * @param text The string to measure.
 * @returns Its serialized size in bytes.
 * @example
 * ```ts
 * import { v8SerializedStringSize } from "./v8_size.ts";
 * import assert from "node:assert/strict";
 *
 * // Deno KV takes a value of at most 65,536 serialized bytes.
 * assert.equal(v8SerializedStringSize("x".repeat(65_530)), 65_536);
 * assert.equal(v8SerializedStringSize("\u0100".repeat(32_765)), 65_536);
 * assert.equal(v8SerializedStringSize("é"), 5); // Latin-1: one byte, after 4 of framing
 * assert.equal(v8SerializedStringSize("✓"), 6); // two bytes
 * assert.equal(v8SerializedStringSize("a".repeat(200) + "✓"), 408); // 402, a padding byte, framing
 * ```
 */
export function v8SerializedStringSize(text: string): number {
  if (!TWO_BYTE.test(text)) return HEADER_BYTES + 1 + varintSize(text.length) + text.length;
  const bytes = text.length * 2;
  const padding = (HEADER_BYTES + 1 + varintSize(bytes)) % 2;
  return HEADER_BYTES + padding + 1 + varintSize(bytes) + bytes;
}

/** The length of `n` as a base-128 varint. */
function varintSize(n: number): number {
  let size = 1;
  for (let rest = n; rest >= 0x80; rest = Math.floor(rest / 0x80)) size++;
  return size;
}
