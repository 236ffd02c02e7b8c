/**
 * The key space of `CloudflareKvStore` and the KV calls over it: the key layout, the checks of
 * the prefix against KV's key limit, the listings (`keysOfUser`, `count`), and how a KV failure
 * is reported.
 *
 * @module
 */
import { SessionConfigError, SessionTooLargeError, StoreUnavailableError } from "../../errors.ts";
import type { KvNamespaceLike } from "./types.ts";
import type { KvRecordMetadata } from "./record.ts";

/** Workers KV's limit on a key: 512 bytes. */
const MAX_KEY_BYTES = 512;

/** The length of a storage key (base64url SHA-256). */
const STORAGE_KEY_LENGTH = 43;

/**
 * Index keys are `${prefix}users:${userTag(user)}:${storageKey}`: the user's tag, never the id, so
 * that listings show no personal data and every index key is 93 bytes after the prefix. No
 * storage key holds a ":".
 */
export const USERS_PART = "users:";
const INDEX_KEY_BYTES = USERS_PART.length + STORAGE_KEY_LENGTH + 1 + STORAGE_KEY_LENGTH;

/**
 * The earlier layout, `${prefix}user:${user}:${storageKey}` with the raw id, is still read by
 * `keysOfUser` (never written) so that sessions indexed before the upgrade are found until they
 * lapse; "user:" is not a prefix of "users:". Remove this read once the longest session lifetime
 * (the larger of `absoluteTimeout` and `remember.absoluteTimeout`) has passed since the upgrade:
 * by then every such record has been rewritten in the new layout or has expired, and its old key
 * lapses a day after that (`INDEX_KEEP_MS`).
 */
const OLD_USER_PART = "user:";

/**
 * The end of a session lives in a key of its own, `${prefix}ended:${storageKey}`, written once and
 * never by a save of data: a late data write at a location that had not seen the end can land in
 * the record's key, never in this one, so once KV converges the session reads as ended.
 */
export const END_PART = "ended:";

/**
 * How long an index key is kept past the record's `expiresAt` when it is written, in ms: a session
 * kept alive rewrites its index key about once a day of activity, not on every save.
 */
export const INDEX_KEEP_MS = 86_400_000;

/** Runs one KV call; a failure is `StoreUnavailableError`, KV's refusal of a large value `SessionTooLargeError`. */
export async function kvCall<T>(what: string, operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    const message = (error as Error)?.message ?? String(error);
    // `encode` measures first; KV's own refusal of a value over its limit means the same.
    if (what === "put" && /value length of \d+ exceeds limit|too large/i.test(message)) {
      throw new SessionTooLargeError(`Session too large for Workers KV: ${message}`, { cause: error });
    }
    throw new StoreUnavailableError(`Workers KV ${what} failed: ${message}`, { cause: error });
  }
}

/** Checks that `prefix` leaves room for an end key within KV's key limit. */
export function checkPrefix(prefix: unknown): string {
  if (typeof prefix !== "string") throw new TypeError(`Invalid prefix: "${String(prefix)}" is not a string`);
  const bytes = new TextEncoder().encode(prefix).length;
  const most = MAX_KEY_BYTES - END_PART.length - STORAGE_KEY_LENGTH;
  if (bytes > most) {
    throw new RangeError(
      `Invalid prefix: "${bytes}" bytes, at most "${most}" leave room for an end key within KV's 512-byte key limit`,
    );
  }
  return prefix;
}

/** The user's id, checked to be a string; the prefix, checked to leave room for its index key. */
export function checkUser(prefix: string, user: unknown): string {
  if (typeof user !== "string") throw new TypeError(`Invalid index: user "${String(user)}" is not a string`);
  const bytes = new TextEncoder().encode(prefix).length;
  if (bytes + INDEX_KEY_BYTES > MAX_KEY_BYTES) {
    throw new SessionConfigError(
      `Invalid prefix: "${bytes}" bytes leave no room for a user's index key within Workers KV's 512-byte key limit; at most "${
        MAX_KEY_BYTES - INDEX_KEY_BYTES
      }" bytes index sessions per user`,
    );
  }
  return user;
}

/** Every key listed under `prefix`, page by page. */
async function* listAll(namespace: KvNamespaceLike, prefix: string) {
  let cursor: string | undefined;
  do {
    const page = await kvCall(
      "list",
      () => namespace.list(cursor === undefined ? { prefix } : { prefix, cursor }),
    );
    yield* page.keys;
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor !== undefined);
}

/** The storage keys listed under an index prefix, exactly one storage key after it. */
export async function listIndex(namespace: KvNamespaceLike, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const { name } of listAll(namespace, prefix)) {
    // Exactly one storage key after the prefix: not the key of a user whose id continues it.
    if (name.length === prefix.length + STORAGE_KEY_LENGTH) keys.push(name.slice(prefix.length));
  }
  return keys;
}

/**
 * The keys indexed under `user` in the earlier layout, `${prefix}user:${user}:${storageKey}`
 * (see `OLD_USER_PART`). An id too long for that layout was never indexed in it.
 */
export function listOldIndex(namespace: KvNamespaceLike, prefix: string, user: string): Promise<string[]> {
  const old = `${prefix}${OLD_USER_PART}${user}:`;
  if (new TextEncoder().encode(old).length + STORAGE_KEY_LENGTH > MAX_KEY_BYTES) return Promise.resolve([]);
  return listIndex(namespace, old);
}

/**
 * How many records under `prefix` the listing shows live at `now`, by their metadata: not index
 * keys, not tombstones, not a record whose end key is listed.
 */
export async function countLive(namespace: KvNamespaceLike, prefix: string, now: number): Promise<number> {
  const endPrefix = prefix + END_PART;
  const live: string[] = [];
  const ended = new Set<string>();
  for await (const { name, metadata } of listAll(namespace, prefix)) {
    if (name.length === endPrefix.length + STORAGE_KEY_LENGTH && name.startsWith(endPrefix)) {
      ended.add(name.slice(endPrefix.length));
      continue;
    }
    if (name.length !== prefix.length + STORAGE_KEY_LENGTH) continue; // an index key
    const known = metadata as Partial<KvRecordMetadata> | null | undefined;
    if (known?.ended === true) continue;
    if (typeof known?.expiresAt !== "number" || known.expiresAt > now) live.push(name.slice(prefix.length));
  }
  return live.filter((key) => !ended.has(key)).length;
}
