/**
 * Rules every store follows on records: tombstones (how an ended session's record is marked and
 * read) and the version-checked touch. Exported from `websession/store-kit` through `store.ts`.
 *
 * @module
 */
import { SessionDataError } from "./errors.ts";
import type { StoredSession } from "./store.ts";

/**
 * The data key that marks an ended session's tombstone. When a session is destroyed or
 * regenerated, the core does not delete its record: it replaces it, by compare-and-set, with a
 * tombstone `{ [ENDED_KEY]: true }` that lives until the session would have expired, so that a
 * request still in flight with the old cookie learns that the session ended (and neither
 * resurrects it nor clears the browser's new cookie). Stores keep tombstones like any record;
 * a store that cannot compare-and-set should refuse to overwrite one (see `isEnded`).
 *
 * @example
 * ```ts
 * import { MemoryStore } from "websession";
 * import { ENDED_KEY, isEnded } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * const store = new MemoryStore();
 * const key = "k".repeat(43);
 * const now = Date.now();
 * const live = { data: { user: "ada" }, version: 1, createdAt: now, expiresAt: now + 60_000 };
 * await store.save(key, live, null);
 * // Ending the session replaces the record by compare-and-set; the store keeps the tombstone.
 * assert.equal(await store.save(key, { ...live, data: { [ENDED_KEY]: true }, version: 2 }, 1), true);
 * assert.equal(isEnded(await store.load(key)), true);
 * ```
 */
export const ENDED_KEY = "__ended";

/**
 * The tombstone's data key saying the session was ended from elsewhere (`endUserSessions`: "log
 * out everywhere", an administrator, a password reset), not by a request of its own browser. No
 * newer cookie of that browser exists to protect, so its next request may start a new session at
 * once (a browser's own log out or log in keeps its old cookie from doing so for a grace period).
 * `"destroy"` says the browser's own log out (`destroy()`) ended it: within the grace, its old
 * cookie may still log in (`regenerate()`), since no data of the session lives on anywhere.
 *
 * @example
 * ```ts
 * import { ENDED_BY_KEY, ENDED_KEY, endedRemotely } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * const now = Date.now();
 * const tombstone = { data: { [ENDED_KEY]: true, [ENDED_BY_KEY]: "remote" }, version: 2, createdAt: now, expiresAt: now + 60_000 };
 * assert.equal(endedRemotely(tombstone), true);
 * ```
 */
export const ENDED_BY_KEY = "__endedBy";

/**
 * Whether a tombstone says its session was ended from elsewhere (see {@linkcode ENDED_BY_KEY}).
 *
 * @example
 * ```ts
 * import { ENDED_KEY, endedRemotely } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * const now = Date.now();
 * assert.equal(endedRemotely({ data: { [ENDED_KEY]: true }, version: 2, createdAt: now, expiresAt: now + 1 }), false);
 * ```
 */
export function endedRemotely(record: StoredSession): boolean {
  return (record.data as Record<string, unknown>)[ENDED_BY_KEY] === "remote";
}

/**
 * The tombstone's data key holding when the session ended (ms since the epoch, the app's clock);
 * read it with {@linkcode endedAt}.
 *
 * @example
 * ```ts
 * import { ENDED_AT_KEY, ENDED_KEY, endedAt } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * const now = Date.now();
 * const data = { [ENDED_KEY]: true, [ENDED_AT_KEY]: now };
 * assert.equal(endedAt({ data, version: 2, createdAt: now, expiresAt: now + 60_000 }), now);
 * ```
 */
export const ENDED_AT_KEY = "__endedAt";

/**
 * When a tombstone says its session ended (ms since the epoch), if it says.
 *
 * @param record A tombstone.
 * @returns The time, or `undefined`.
 * @example
 * ```ts
 * import { ENDED_AT_KEY, ENDED_KEY, endedAt } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * const data = { [ENDED_KEY]: true, [ENDED_AT_KEY]: 1_700_000_000_000 };
 * assert.equal(endedAt({ data, version: 2, createdAt: 0, expiresAt: 1 }), 1_700_000_000_000);
 * ```
 */
export function endedAt(record: StoredSession): number | undefined {
  const at = (record.data as Record<string, unknown>)[ENDED_AT_KEY];
  return typeof at === "number" && Number.isFinite(at) ? at : undefined;
}

/**
 * Tells whether a stored record is the tombstone of an ended session. A store that cannot
 * compare-and-set uses it to refuse to overwrite one.
 *
 * @param record A record read from a store, or `null`.
 * @returns `true` for a tombstone.
 * @example
 * ```ts
 * import { ENDED_KEY, isEnded } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * const now = Date.now();
 * assert.equal(isEnded({ data: { [ENDED_KEY]: true }, version: 3, createdAt: now, expiresAt: now + 1 }), true);
 * assert.equal(isEnded({ data: { user: "ada" }, version: 3, createdAt: now, expiresAt: now + 1 }), false);
 * assert.equal(isEnded(null), false);
 * ```
 */
export function isEnded(record: StoredSession | null | undefined): boolean {
  return record != null && (record.data as Record<string, unknown>)[ENDED_KEY] === true;
}

/**
 * Checks the arguments of {@linkcode SessionStore.touch}: `expiresAt` a finite number,
 * `version` a positive integer. Stores call it before anything reaches the backend.
 *
 * @param expiresAt The new expiry, in milliseconds since the epoch.
 * @param version The version the caller read.
 * @throws {TypeError} When either has another shape (a caller of the earlier contract, which
 *   passed no version, is refused rather than served an unchecked touch).
 * @example
 * ```ts
 * import { assertTouchArguments } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * assertTouchArguments(Date.now() + 60_000, 3);
 * assert.throws(() => assertTouchArguments(Date.now() + 60_000, undefined as unknown as number), TypeError);
 * assert.throws(() => assertTouchArguments(NaN, 3), TypeError);
 * ```
 */
export function assertTouchArguments(expiresAt: number, version: number): void {
  if (typeof expiresAt !== "number" || !Number.isFinite(expiresAt)) {
    throw new TypeError(`Invalid expiresAt: "${String(expiresAt)}" is not a finite number`);
  }
  if (!Number.isSafeInteger(version) || version < 1) {
    throw new TypeError(`Invalid version: "${String(version)}" is not a positive integer`);
  }
}

/**
 * Decides a touch on the record as it stands: `true` when `touch(key, expiresAt, version)` may
 * extend it, that is when it is at `version`, is not a tombstone and expires before
 * `expiresAt`. The caller passes only a live record (or `null`), and writes in the same atomic
 * step as the read it decided on (a single-threaded object, a checked commit). Stores that decide
 * inside the backend (a Lua script, one SQL statement) write the same rule there.
 *
 * @param record The live record, or `null` when there is none.
 * @param expiresAt The expiry asked for.
 * @param version The version the caller named.
 * @returns Whether the touch extends the record.
 * @example
 * ```ts
 * import { ENDED_KEY, touchExtends } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * const now = Date.now();
 * const record = { data: { user: "ada" }, version: 2, createdAt: now, expiresAt: now + 60_000 };
 * assert.equal(touchExtends(record, now + 120_000, 2), true);
 * assert.equal(touchExtends(record, now + 120_000, 1), false); // replaced meanwhile
 * assert.equal(touchExtends(record, now + 30_000, 2), false); // never shortens
 * assert.equal(touchExtends({ ...record, data: { [ENDED_KEY]: true } }, now + 120_000, 2), false);
 * assert.equal(touchExtends(null, now + 120_000, 2), false);
 * ```
 */
export function touchExtends(
  record: StoredSession | null | undefined,
  expiresAt: number,
  version: number,
): boolean {
  return record != null && record.version === version && !isEnded(record) && expiresAt > record.expiresAt;
}

/**
 * Checks a record a store is about to write: a safe-integer version, finite times, and data that is
 * a JSON object. Call it before encoding, so nothing is written for a malformed record.
 *
 * @param record The record handed to `save`.
 * @throws {TypeError} When the version or a time is not a finite number.
 * @throws {SessionDataError} When `data` is not a plain object (an array, `null`, a primitive).
 * @example
 * ```ts
 * import { assertRecordShape, SessionDataError } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * assertRecordShape({ data: { n: 1 }, version: 1, createdAt: 0, expiresAt: 60_000 });
 * assert.throws(() => assertRecordShape({ data: [] as never, version: 1, createdAt: 0, expiresAt: 1 }), SessionDataError);
 * ```
 */
export function assertRecordShape(record: StoredSession): void {
  const { version, createdAt, expiresAt, data } = record;
  if (!Number.isSafeInteger(version) || !Number.isFinite(createdAt) || !Number.isFinite(expiresAt)) {
    throw new TypeError(
      `Invalid record: version "${version}", createdAt "${createdAt}" and expiresAt "${expiresAt}" must be finite`,
    );
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new SessionDataError("Session data cannot be stored: not a JSON object");
  }
}

/**
 * A record's data as JSON text, for a store that writes JSON.
 *
 * @param data The record's data.
 * @returns `JSON.stringify(data)`.
 * @throws {SessionDataError} When `data` is not a JSON object, cannot be stringified (a cycle, a
 *   `BigInt`), or its `toJSON` makes it something other than an object.
 *
 * @example
 * ```ts
 * import { SessionDataError } from "websession";
 * import { stringifyData } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * assert.equal(stringifyData({ user: "ada" }), '{"user":"ada"}');
 * assert.throws(() => stringifyData({ n: 1n }), SessionDataError);
 * ```
 */
export function stringifyData(data: unknown): string {
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new SessionDataError("Session data cannot be stored: it is not a JSON object");
  }
  let text: string | undefined;
  try {
    text = JSON.stringify(data);
  } catch (error) {
    throw new SessionDataError(
      `Session data cannot be stored as JSON: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  if (typeof text !== "string" || text[0] !== "{") {
    throw new SessionDataError("Session data cannot be stored: it is not a JSON object");
  }
  return text;
}

/**
 * The options every store with a clock and a corrupt-record report takes (see `storeHooks`).
 *
 * @example
 * ```ts
 * import type { StoreHookOptions } from "websession/store-kit";
 *
 * interface MyStoreOptions extends StoreHookOptions {
 *   url: string;
 * }
 * const options: MyStoreOptions = { url: "https://kv.example", now: Date.now };
 * ```
 */
export interface StoreHookOptions {
  /** The clock that decides expiry, in ms since the epoch. */
  now?: () => number;
  /** Told of a stored value that is not a well-formed record (it then reads as missing). */
  onCorrupt?: (key: string, error: Error) => void;
  /** Where the default `onCorrupt` warns. */
  logger?: { warn(...args: unknown[]): void };
}

/**
 * Checks the options every store shares and fills in their defaults: `now` (`Date.now`) and
 * `onCorrupt` (a warning to `logger`, by default `console`).
 *
 * @param options The store's options.
 * @param what What a corrupt value is called in the warning (`"session record"`, `"session row"`).
 * @returns The clock, and the report of a corrupt value.
 * @throws {TypeError} When `now` or `onCorrupt` is not a function, or `logger` has no `warn()`.
 *
 * @example
 * ```ts
 * import { storeHooks } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * const warnings: unknown[] = [];
 * const { now, onCorrupt } = storeHooks({ logger: { warn: (w) => void warnings.push(w) } });
 * assert.equal(now, Date.now);
 * onCorrupt("k".repeat(43), new SyntaxError("Unexpected token"));
 * assert.match(String(warnings[0]), /corrupt session record "k+" read as missing: Unexpected token/);
 * assert.throws(() => storeHooks({ now: 5 as unknown as () => number }), /Invalid now/);
 * ```
 */
export function storeHooks(
  options: StoreHookOptions,
  what = "session record",
): { now: () => number; onCorrupt: (key: string, error?: Error) => void } {
  for (const name of ["now", "onCorrupt"] as const) {
    if (options[name] !== undefined && typeof options[name] !== "function") {
      throw new TypeError(`Invalid ${name}: "${String(options[name])}" is not a function`);
    }
  }
  const logger = options.logger ?? console;
  if (typeof logger?.warn !== "function") {
    throw new TypeError("Invalid logger: expected an object with warn(), such as console");
  }
  const onCorrupt = options.onCorrupt as ((key: string, error?: Error) => void) | undefined;
  return {
    now: options.now ?? Date.now,
    onCorrupt: onCorrupt ??
      ((key, error) =>
        logger.warn(
          `websession: corrupt ${what} "${key}" read as missing${error ? `: ${error.message}` : ""}`,
        )),
  };
}

/**
 * Checks the arguments of a store's `lock(key, owner, ttlMs)` and `unlock(key, owner)` (without
 * `ttlMs`): one rule for every store.
 *
 * @param owner Who takes or releases the lock: a non-empty string.
 * @param ttlMs How long the lock lasts unless released, in milliseconds: a positive finite number.
 * @throws {TypeError} When `owner` is not a non-empty string, or `ttlMs` is given and is not a number.
 * @throws {RangeError} When `ttlMs` is not positive and finite.
 *
 * @example
 * ```ts
 * import { assertLockArguments } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * assertLockArguments("request-1", 30_000);
 * assert.throws(() => assertLockArguments("", 30_000), TypeError);
 * assert.throws(() => assertLockArguments("request-1", 0), RangeError);
 * ```
 */
export function assertLockArguments(owner: unknown, ...ttl: [ttlMs?: unknown]): void {
  if (typeof owner !== "string" || owner === "") {
    throw new TypeError(`Invalid owner: "${String(owner)}" is not a non-empty string`);
  }
  if (ttl.length === 0) return;
  const ttlMs = ttl[0];
  if (typeof ttlMs !== "number") {
    throw new TypeError(`Invalid ttlMs: "${String(ttlMs)}" is not a number of milliseconds`);
  }
  if (!(ttlMs > 0) || !Number.isFinite(ttlMs)) {
    throw new RangeError(`Invalid ttlMs: "${ttlMs}" is not a positive number of milliseconds`);
  }
}

/**
 * A store's `save` answer, checked: `true`, `false` or a `SaveConflict` (`{ current }`, `current` a
 * well-formed record or `null`: what the core merges onto, so checked as a loaded record is). A store
 * that answers anything else breaks the contract; the core reports it as a failed save (a
 * `StoreUnavailableError`, logged) rather than take it for a refusal and answer 409.
 *
 * @param result What `save` resolved to.
 * @returns `result`.
 * @throws {TypeError} When it is none of those.
 */
export function checkedSaveResult<R>(result: R): R {
  if (result === true || result === false) return result;
  const current = (result as { current?: unknown } | null)?.current;
  if (
    typeof result === "object" && result !== null &&
    (current === null || toStoredSession(current) !== null)
  ) {
    return result;
  }
  const what = typeof result === "string"
    ? JSON.stringify(result)
    : typeof result === "object" && result !== null
    ? "{ current } whose current is not a record" // version not a whole number, data missing, ...
    : String(result);
  throw new TypeError(
    `The store's save() answered ${what}: expected true, false or { current } with current a record or null (see SessionStore in websession/store-kit)`,
  );
}

/**
 * Checks that a value read back from a store is a well-formed record, and returns it typed.
 * Stores use it on everything they parse so that a corrupt record reads as missing (and is
 * reported) instead of crashing a request.
 *
 * @param value Anything, typically the result of `JSON.parse`.
 * @returns The record, or `null` when the shape is wrong.
 * @example
 * ```ts
 * import { toStoredSession } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * assert.equal(toStoredSession({ data: [], version: 1 }), null);
 * const ok = { data: {}, version: 1, createdAt: 0, expiresAt: 1 };
 * assert.deepEqual(toStoredSession(ok), ok);
 * ```
 */
export function toStoredSession(value: unknown): StoredSession | null {
  if (typeof value !== "object" || value === null) return null;
  const record = value as Record<string, unknown>;
  const { data, version, createdAt, expiresAt } = record;
  if (typeof data !== "object" || data === null || Array.isArray(data)) return null;
  if (!Number.isSafeInteger(version) || (version as number) < 1) return null;
  if (!Number.isFinite(createdAt) || !Number.isFinite(expiresAt)) return null;
  return value as StoredSession;
}
