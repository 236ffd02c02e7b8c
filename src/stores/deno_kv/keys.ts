/**
 * The key space of `DenoKvStore`: the key layout, the encoded sizes checked against Deno KV's key
 * limit, and the listings over it (`keysOfUser`, `count`, `cleanup`).
 *
 * @module
 */
import { SessionConfigError } from "../../errors.ts";
import { parseStoredSession } from "../../store.ts";
import { lockOf } from "./lock.ts";
import { kvCall } from "./record.ts";
import type { DenoKvEntryLike, DenoKvKey, DenoKvLike } from "./types.ts";

/** Deno KV's limit on a key written, encoded. */
const MAX_KEY_BYTES = 2_048;

/** The encoded size of the storage key part: a 43-character string, its type byte and end byte. */
const STORAGE_KEY_PART_BYTES = 45;

/**
 * The key part that holds locks, `[...prefix, "lease", storageKey]`, and its encoded size
 * (`"lease"`: the stored name of earlier versions; kept so that old and new processes share locks).
 */
export const LOCK_PART = "lease";
const LOCK_PART_BYTES = 7;

/**
 * The key part that holds the per-user index, `[...prefix, "users", userTag(user), storageKey]`:
 * the user's tag, never the id, so that listings show no personal data and an entry's key has one
 * size whatever the id. An entry's encoded size after the prefix: the part, a 43-character tag, a
 * storage key.
 */
export const USERS_PART = "users";
const INDEX_KEY_BYTES = 7 + 45 + STORAGE_KEY_PART_BYTES;

/**
 * The earlier layout, `[...prefix, "user", user, storageKey]` with the raw id: `keysOfUser` still
 * reads it (never writes it) so that sessions indexed before the upgrade are found. Remove that
 * read and this part in `cleanup()` once the longest session lifetime (the larger of
 * `absoluteTimeout` and `remember.absoluteTimeout`) has passed since the upgrade: by then every
 * such record has been written again (each commit writes its entry in the new layout) or has
 * expired, and Deno KV has dropped its old entry with it.
 */
const OLD_USER_PART = "user";
const OLD_USER_PART_BYTES = 6;

/** The longest prefix, encoded: a lock's key must fit in Deno KV's key limit. */
const MAX_PREFIX_BYTES = MAX_KEY_BYTES - STORAGE_KEY_PART_BYTES - LOCK_PART_BYTES;

/** The encoded size of `prefix`, checked to leave room for a lock's key. */
export function checkPrefix(prefix: unknown): number {
  if (!Array.isArray(prefix)) {
    throw new TypeError(`Invalid prefix: "${String(prefix)}" is not an array of key parts`);
  }
  const bytes = prefix.reduce((sum: number, part: unknown) => sum + keyPartSize(part), 0);
  if (bytes > MAX_PREFIX_BYTES) {
    throw new RangeError(
      `Invalid prefix: "${bytes}" bytes encoded, at most "${MAX_PREFIX_BYTES}" leave room for a lock's key within Deno KV's 2048-byte key limit`,
    );
  }
  return bytes;
}

/** The user's id, checked to be a string; the prefix, checked to leave room for its index key. */
export function checkUser(prefixBytes: number, user: unknown): string {
  if (typeof user !== "string") throw new TypeError(`Invalid index: user "${String(user)}" is not a string`);
  if (prefixBytes + INDEX_KEY_BYTES > MAX_KEY_BYTES) {
    throw new SessionConfigError(
      `Invalid prefix: "${prefixBytes}" bytes encoded leave no room for a user's index key within Deno KV's 2,048-byte key limit; at most "${
        MAX_KEY_BYTES - INDEX_KEY_BYTES
      }" bytes index sessions per user`,
    );
  }
  return user;
}

/** The storage keys of the live entries one key part under `prefix` (an index's listing). */
export async function listIndex(kv: DenoKvLike, prefix: DenoKvKey, now: number): Promise<string[]> {
  const keys: string[] = [];
  await kvCall("list", async () => {
    for await (const entry of kv.list({ prefix })) {
      const key = entry.key[prefix.length];
      if (entry.key.length !== prefix.length + 1 || typeof key !== "string") continue;
      if (typeof entry.value === "number" && entry.value <= now) continue;
      keys.push(key);
    }
  });
  return keys;
}

/**
 * The keys indexed under `user` in the earlier layout, `[...prefix, "user", user, key]` (see
 * `OLD_USER_PART`). An id too long for that layout was never indexed in it.
 */
export function listOldIndex(
  kv: DenoKvLike,
  prefix: DenoKvKey,
  prefixBytes: number,
  user: string,
  now: number,
): Promise<string[]> {
  const bytes = prefixBytes + OLD_USER_PART_BYTES + keyPartSize(user) + STORAGE_KEY_PART_BYTES;
  if (bytes > MAX_KEY_BYTES) return Promise.resolve([]);
  return listIndex(kv, [...prefix, OLD_USER_PART, user], now);
}

/** How many records under `prefix` are live at `now` (not locks, not index entries). */
export async function countLive(kv: DenoKvLike, prefix: DenoKvKey, now: number): Promise<number> {
  const depth = prefix.length + 1;
  let live = 0;
  await kvCall("list", async () => {
    for await (const entry of kv.list({ prefix })) {
      if (entry.key.length !== depth) continue; // a lock or an index entry
      const record = typeof entry.value === "string" ? parseStoredSession(entry.value) : null;
      if (record !== null && record.expiresAt > now) live++;
    }
  });
  return live;
}

/** An entry `cleanup()` removes, and whether it is a record (the others are not counted). */
export interface Lapsed {
  entry: DenoKvEntryLike;
  record: boolean;
}

/** The entries under `prefix` lapsed at `now`: expired or unreadable records, locks, index entries. */
export async function listLapsed(kv: DenoKvLike, prefix: DenoKvKey, now: number): Promise<Lapsed[]> {
  const lapsed: Lapsed[] = [];
  const depth = prefix.length;
  await kvCall("list", async () => {
    for await (const entry of kv.list({ prefix })) {
      const kind = entry.key.length - depth;
      if (kind === 1) {
        const record = typeof entry.value === "string" ? parseStoredSession(entry.value) : null;
        if (record === null || record.expiresAt <= now) lapsed.push({ entry, record: true });
      } else if (kind === 2 && entry.key[depth] === LOCK_PART) {
        const lock = lockOf(entry.value);
        if (lock === null || lock.until <= now) lapsed.push({ entry, record: false });
      } else if (kind === 3 && (entry.key[depth] === USERS_PART || entry.key[depth] === OLD_USER_PART)) {
        if (typeof entry.value !== "number" || entry.value <= now) lapsed.push({ entry, record: false });
      }
    }
  });
  return lapsed;
}

/** An upper bound of a key part's encoded size in Deno KV (exact for strings and bytes). */
function keyPartSize(part: unknown): number {
  if (typeof part === "string") return escapedSize(new TextEncoder().encode(part));
  if (part instanceof Uint8Array) return escapedSize(part);
  if (typeof part === "number") return 9;
  if (typeof part === "boolean") return 1;
  if (typeof part === "bigint") return 2 + Math.ceil((part < 0n ? -part : part).toString(16).length / 2);
  throw new TypeError(
    `Invalid prefix: key part "${String(part)}" is not a string, number, bigint, boolean or Uint8Array`,
  );
}

/** A type byte, the bytes with each NUL escaped as two bytes, and an end byte. */
function escapedSize(bytes: Uint8Array): number {
  let size = bytes.length + 2;
  for (const byte of bytes) if (byte === 0) size++;
  return size;
}
