/**
 * The one rule for a user's id in storage: a store names what it keeps per user (an index key,
 * an index item, an object) by the id's tag, never by the id itself.
 *
 * @module
 */
import { encodeBase64Url } from "./id.ts";

const encoder = new TextEncoder();

/**
 * A user's tag: SHA-256 of the user id's UTF-8, in unpadded base64url (43 characters of
 * `A-Z a-z 0-9 - _`). Stores put it in key names instead of the id, so that key listings,
 * dashboards and logs show no personal data (an email address), every user's keys have one
 * length whatever the id's (within Workers KV's 512-byte and Deno KV's 2,048-byte key limits),
 * and no store needs escaping rules for `:` or other characters in ids.
 *
 * The tag identifies, it does not protect: anyone who can guess an id can compute its tag. A
 * lone UTF-16 surrogate encodes as U+FFFD (the WHATWG Encoding Standard's UTF-8 encoder), so two
 * ids that differ only there share a tag; callers check the user a record holds, as
 * `listUserSessions` and `endUserSessions` do.
 *
 * @param user The user's id.
 * @returns The tag, 43 characters.
 * @throws {TypeError} When `user` is not a string.
 * @example
 * ```ts
 * import { userTag } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * const tag = await userTag("ada@example.com");
 * assert.match(tag, /^[A-Za-z0-9_-]{43}$/);
 * assert.equal(await userTag("ada@example.com"), tag); // the same id, the same tag
 * assert.notEqual(await userTag("grace@example.com"), tag);
 * ```
 */
export async function userTag(user: string): Promise<string> {
  if (typeof user !== "string") throw new TypeError(`Invalid user: "${String(user)}" is not a string`);
  const digest = await crypto.subtle.digest("SHA-256", encoder.encode(user));
  return encodeBase64Url(new Uint8Array(digest));
}
