/**
 * The store kit: what a store author needs and an application does not. The contract
 * (`SessionStore`, `SealedSessionStore`, `StoredSession`, `SaveResult`), the tombstone helpers
 * (`ENDED_KEY`, `isEnded`), the rule of a version-checked touch (`touchExtends`), the
 * validators every store runs on what it is handed and what it reads back, the rule for a
 * user's id in key names (`userTag`), and the errors a store throws.
 *
 * Each export is documented where it is declared; the notes here say what a store does with it.
 *
 * @example
 * ```ts
 * import { assertStorageKey, parseStoredSession } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => assertStorageKey("../../etc/passwd"), TypeError);
 * assert.equal(parseStoredSession("not json"), null);
 * ```
 *
 * @module
 */
export {
  /**
   * Checks a record before a store writes it: a safe-integer version, finite times (else a
   * `TypeError`), data a JSON object (else a `SessionDataError`).
   *
   * @example
   * ```ts
   * import { assertRecordShape } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * assert.throws(() => assertRecordShape({ data: {}, version: 1.5, createdAt: 0, expiresAt: 1 }), TypeError);
   * ```
   */
  assertRecordShape,
  /** Checks that a value is a server store: what a store made of stores asks of its parts. */
  assertServerStore,
  /**
   * Checks that a key has the shape of a storage key (base64url SHA-256, 43 characters); throws
   * a `TypeError` otherwise. Call it before a key reaches a file name, a Redis key or SQL.
   *
   * @example
   * ```ts
   * import { assertStorageKey } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * assertStorageKey("k".repeat(43));
   * assert.throws(() => assertStorageKey("k".repeat(42)), TypeError);
   * ```
   */
  assertStorageKey,
  /**
   * Checks `touch`'s arguments: `expiresAt` a finite number, `version` a positive integer;
   * throws a `TypeError` otherwise. A caller of the earlier two-argument `touch` is refused,
   * never served an unchecked touch.
   *
   * @example
   * ```ts
   * import { assertTouchArguments } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * assertTouchArguments(Date.now() + 60_000, 1);
   * assert.throws(() => assertTouchArguments(Date.now() + 60_000, 0), TypeError);
   * ```
   */
  assertTouchArguments,
  /**
   * The tombstone's data key holding when the session ended (ms since the epoch, the app's
   * clock); read it with `endedAt`.
   *
   * @example
   * ```ts
   * import { ENDED_AT_KEY, ENDED_KEY, endedAt } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * const data = { [ENDED_KEY]: true, [ENDED_AT_KEY]: 1_700_000_000_000 };
   * assert.equal(endedAt({ data, version: 3, createdAt: 0, expiresAt: 1 }), 1_700_000_000_000);
   * ```
   */
  ENDED_AT_KEY,
  /** The tombstone's data key saying the session was ended from elsewhere (no grace). */
  ENDED_BY_KEY,
  /**
   * The data key of a tombstone, the record that replaces an ended session's. A store keeps a
   * tombstone like any record, until its `expiresAt`.
   *
   * @example
   * ```ts
   * import { ENDED_KEY } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * const now = Date.now();
   * const tombstone = { data: { [ENDED_KEY]: true }, version: 2, createdAt: now, expiresAt: now + 60_000 };
   * assert.deepEqual(Object.keys(tombstone.data), [ENDED_KEY]);
   * ```
   */
  ENDED_KEY,
  /**
   * When a tombstone says its session ended (ms since the epoch), or `undefined`.
   *
   * @example
   * ```ts
   * import { ENDED_KEY, endedAt } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * // A tombstone written without a time says nothing about when.
   * const tombstone = { data: { [ENDED_KEY]: true }, version: 2, createdAt: 0, expiresAt: 1 };
   * assert.equal(endedAt(tombstone), undefined);
   * ```
   */
  endedAt,
  /** Whether a tombstone says its session was ended from elsewhere. */
  endedRemotely,
  /**
   * Tells whether a record is a tombstone. A store that cannot compare-and-set uses it to refuse
   * to overwrite one.
   *
   * @example
   * ```ts
   * import { ENDED_KEY, isEnded } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * const now = Date.now();
   * const record = { data: { [ENDED_KEY]: true }, version: 2, createdAt: now, expiresAt: now + 60_000 };
   * assert.equal(isEnded(record), true);
   * assert.equal(isEnded({ ...record, data: { user: "ada" } }), false);
   * assert.equal(isEnded(null), false);
   * ```
   */
  isEnded,
  /**
   * Tells a {@linkcode SealedSessionStore} (the record travels in the cookie) from a server
   * store.
   *
   * @example
   * ```ts
   * import { MemoryStore } from "websession";
   * import { CookieStore } from "websession/cookie";
   * import { isSealedStore } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * const secrets = ["a secret of at least thirty-two characters"];
   * assert.equal(isSealedStore(new CookieStore({ secrets })), true);
   * assert.equal(isSealedStore(new MemoryStore()), false);
   * ```
   */
  isSealedStore,
  /**
   * Parses a record written as `JSON.stringify(record)`; `null` for text that is not a
   * well-formed record (a corrupt record reads as missing instead of crashing a request).
   *
   * @example
   * ```ts
   * import { parseStoredSession } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * const record = { data: { user: "ada" }, version: 4, createdAt: 0, expiresAt: 60_000 };
   * assert.deepEqual(parseStoredSession(JSON.stringify(record)), record);
   * assert.equal(parseStoredSession('{"data":[],"version":4}'), null);
   * ```
   */
  parseStoredSession,
  /**
   * Checks the shape of a value read back from a store (a parsed document, a driver's row) and
   * returns it as a {@linkcode StoredSession}, or `null` when the shape is wrong.
   *
   * @example
   * ```ts
   * import { toStoredSession } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * const record = { data: {}, version: 1, createdAt: 0, expiresAt: 1 };
   * assert.equal(toStoredSession(record)?.version, 1);
   * assert.equal(toStoredSession({ ...record, version: 0 }), null); // versions start at 1
   * ```
   */
  toStoredSession,
  /**
   * Decides a touch on the live record as it stands: `true` when it is at the version named,
   * is not a tombstone and expires before the new expiry. A store reads, decides with it and
   * writes in one atomic step (a single-threaded object, a checked commit); stores that decide
   * inside the backend (a Lua script, one SQL statement) write the same rule there.
   *
   * @example
   * ```ts
   * import { touchExtends } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * const now = Date.now();
   * const record = { data: {}, version: 4, createdAt: now, expiresAt: now + 60_000 };
   * assert.equal(touchExtends(record, record.expiresAt + 1, 4), true);
   * assert.equal(touchExtends(record, record.expiresAt, 4), false); // not later: nothing to extend
   * ```
   */
  touchExtends,
} from "./store.ts";
export type {
  /**
   * Why a sealed store's `open` could not use the cookies it was shown: `"malformed"`,
   * `"ended"` or `"superseded"`, with `at` and `detail` when known.
   *
   * @example
   * ```ts
   * import { CookieStore } from "websession/cookie";
   * import type { InvalidSeal, OpenedSession } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * const store = new CookieStore({ secrets: ["a secret of at least thirty-two characters"] });
   * const result: OpenedSession | InvalidSeal | null = await store.open(
   *   (name) => name === "session" ? "not a seal" : undefined,
   *   "session",
   * );
   * assert.equal((result as InvalidSeal).invalid, "malformed");
   * ```
   */
  InvalidSeal,
  /**
   * What a sealed store's `open` returns for cookies it could use: the session id, the record
   * and whether the seal used a retired secret (`stale`).
   *
   * @example
   * ```ts
   * import { CookieStore } from "websession/cookie";
   * import type { OpenedSession } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * const store = new CookieStore({ secrets: ["a secret of at least thirty-two characters"] });
   * const now = Date.now();
   * const record = { data: { user: "ada" }, version: 1, createdAt: now, expiresAt: now + 60_000 };
   * const jar = new Map((await store.seal("an-id", record, "session")).map((c) => [c.name, c.value]));
   * const opened = await store.open((name) => jar.get(name), "session");
   * assert.ok(opened !== null && !("invalid" in opened));
   * const session: OpenedSession = opened;
   * assert.deepEqual([session.id, session.record, session.stale], ["an-id", record, false]);
   * ```
   */
  OpenedSession,
  /**
   * What a refused save reports when the store read the current record in the same atomic
   * step: `{ current }`, `null` when the record is absent or expired.
   *
   * @example
   * ```ts
   * import type { SaveConflict } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * // A compare-and-set over a Map: the check and the read happen in one synchronous step.
   * const records = new Map<string, { version: number }>();
   * function refusal(key: string): SaveConflict {
   *   const current = records.get(key);
   *   if (current === undefined) return { current: null };
   *   return { current: { data: {}, createdAt: 0, expiresAt: 1, ...current } };
   * }
   * records.set("k", { version: 3 });
   * assert.equal(refusal("k").current?.version, 3);
   * assert.equal(refusal("gone").current, null);
   * ```
   */
  SaveConflict,
  /**
   * What `save` is told to index (`{ user }`), for stores with `capabilities.users`: the index
   * entry is written in the same atomic step as the record, or before it.
   *
   * @example
   * ```ts
   * import { MemoryStore } from "websession";
   * import type { SaveIndex } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * const store = new MemoryStore();
   * const now = Date.now();
   * const index: SaveIndex = { user: "grace" };
   * const record = { data: {}, version: 1, createdAt: now, expiresAt: now + 60_000 };
   * await store.save("g".repeat(43), record, null, index);
   * assert.deepEqual(await store.keysOfUser("grace"), ["g".repeat(43)]);
   * ```
   */
  SaveIndex,
  /**
   * What `save` resolves to: `true` when written, `false` when refused, or a
   * {@linkcode SaveConflict} when refused with the current record.
   *
   * @example
   * ```ts
   * import { MemoryStore } from "websession";
   * import type { SaveResult } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * const store = new MemoryStore();
   * const now = Date.now();
   * const record = { data: {}, version: 1, createdAt: now, expiresAt: now + 60_000 };
   * const created: SaveResult = await store.save("c".repeat(43), record, null);
   * const again: SaveResult = await store.save("c".repeat(43), record, null); // create-only-if-absent
   * assert.equal(created, true);
   * assert.notEqual(again, true);
   * ```
   */
  SaveResult,
  /**
   * One cookie a sealed store wants sent (`name`, `value`): the session cookie, or chunk
   * `name.N` of a long seal.
   *
   * @example
   * ```ts
   * import { CookieStore } from "websession/cookie";
   * import type { SealedCookie } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * const store = new CookieStore({ secrets: ["a secret of at least thirty-two characters"] });
   * const now = Date.now();
   * const record = { data: { user: "ada" }, version: 1, createdAt: now, expiresAt: now + 60_000 };
   * const cookies: SealedCookie[] = await store.seal("an-id", record, "session");
   * assert.deepEqual(cookies.map((cookie) => cookie.name), ["session"]);
   * ```
   */
  SealedCookie,
  /**
   * The contract of a store with no server copy, whose record travels sealed in the cookie
   * (`CookieStore`): `sealed: true`, `open` and `seal`.
   *
   * @example
   * ```ts
   * import { CookieStore } from "websession/cookie";
   * import type { SealedSessionStore } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * const secrets = ["a secret of at least thirty-two characters"];
   * const store: SealedSessionStore = new CookieStore({ secrets });
   * assert.equal(store.sealed, true);
   * assert.equal(store.capabilities.compareAndSet, false);
   * ```
   */
  SealedSessionStore,
  /**
   * Session data: a JSON object, as a store receives it in `record.data`.
   *
   * @example
   * ```ts
   * import { parseStoredSession, type SessionData } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * const data: SessionData = { user: "ada", cart: [{ sku: "book", qty: 2 }] };
   * const text = JSON.stringify({ data, version: 1, createdAt: 0, expiresAt: 1 });
   * assert.deepEqual(parseStoredSession(text)?.data, data);
   * ```
   */
  SessionData,
  /**
   * The contract of a server-side store: `load`, `save` (a compare-and-set on the version),
   * `destroy`, and the optional `touch`, `cleanup`, `count`, `lock`, `unlock`, `keysOfUser`,
   * `time` (the store's clock, by which the grace of an ended session is stamped and judged).
   *
   * `touch(key, expiresAt, version)` is a compare-and-set on the expiry: in one atomic step it
   * moves a live record's `expiresAt` forward, leaving data and version as they are, only when
   * the record is at `version`, is not a tombstone and expires before `expiresAt`, and resolves
   * to whether it did (`touchExtends` is the rule; `assertTouchArguments` checks the
   * arguments). It never creates, revives, shortens or deletes a record. A store of the earlier
   * contract resolves to `undefined`, which the core treats as an unchecked touch.
   *
   * @example
   * ```ts
   * import { MemoryStore } from "websession";
   * import type { SessionStore } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * // A wrapper that counts writes and passes everything else through.
   * const inner = new MemoryStore();
   * let writes = 0;
   * const store: SessionStore = {
   *   capabilities: { compareAndSet: true, ttl: false },
   *   load: (key) => inner.load(key),
   *   save: (key, record, expectedVersion, index) => {
   *     writes++;
   *     return inner.save(key, record, expectedVersion, index);
   *   },
   *   destroy: (key) => inner.destroy(key),
   * };
   * const now = Date.now();
   * const record = { data: {}, version: 1, createdAt: now, expiresAt: now + 60_000 };
   * await store.save("w".repeat(43), record, null);
   * assert.equal(writes, 1);
   * assert.equal((await store.load("w".repeat(43)))?.version, 1);
   * ```
   */
  SessionStore,
  /**
   * What a store promises (`compareAndSet`, `ttl`, and the optional `staleReads`, `locks`,
   * `users`). The core and the docs rely on it being honest.
   *
   * @example
   * ```ts
   * import type { StoreCapabilities } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * // A store over a cache that expires keys by itself but cannot compare-and-set.
   * const capabilities: StoreCapabilities = { compareAndSet: false, ttl: true };
   * assert.equal(capabilities.locks ?? false, false);
   * ```
   */
  StoreCapabilities,
  /**
   * One stored record: `data`, `version` (1 on creation, +1 per save), `createdAt` and
   * `expiresAt` (ms since the epoch). A store never returns a record past `expiresAt`.
   *
   * @example
   * ```ts
   * import type { StoredSession } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * function isLive(record: StoredSession, now: number): boolean {
   *   return record.expiresAt > now;
   * }
   * assert.equal(isLive({ data: {}, version: 1, createdAt: 0, expiresAt: 1_000 }, 999), true);
   * assert.equal(isLive({ data: {}, version: 1, createdAt: 0, expiresAt: 1_000 }, 1_000), false);
   * ```
   */
  StoredSession,
} from "./store.ts";
export {
  /**
   * What a store throws, before writing anything, for data it cannot store faithfully
   * (`ERR_SESSION_DATA`, answered with 500). Never wrap it as `StoreUnavailableError`.
   *
   * @example
   * ```ts
   * import { SessionDataError } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * function checkText(data: unknown): void {
   *   if (JSON.stringify(data).includes("\\u0000")) {
   *     throw new SessionDataError('Session data cannot be stored: "\\u0000" is not allowed');
   *   }
   * }
   * checkText({ note: "fine" });
   * assert.throws(() => checkText({ note: "a\u0000b" }), SessionDataError);
   * ```
   */
  SessionDataError,
  /**
   * What a store throws, before writing anything, for a record over its size limit
   * (`ERR_SESSION_TOO_LARGE`, answered with 500).
   *
   * @example
   * ```ts
   * import { SessionTooLargeError } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * const limit = 16;
   * function checkSize(text: string): void {
   *   if (text.length > limit) {
   *     throw new SessionTooLargeError(`Session too large: "${text.length}" characters, limit "${limit}"`);
   *   }
   * }
   * assert.throws(() => checkSize("x".repeat(17)), { code: "ERR_SESSION_TOO_LARGE" });
   * ```
   */
  SessionTooLargeError,
  /**
   * What a store throws when it cannot answer (an outage), with the driver's error in `cause`
   * (`ERR_SESSION_STORE_UNAVAILABLE`, answered with 503). A failed read is never "no session".
   *
   * @example
   * ```ts
   * import { StoreUnavailableError } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * async function load(): Promise<null> {
   *   try {
   *     throw new Error("connect ECONNREFUSED 127.0.0.1:6379");
   *   } catch (cause) {
   *     throw new StoreUnavailableError("Redis did not answer", { cause });
   *   }
   * }
   * await assert.rejects(load(), (error: StoreUnavailableError) => {
   *   assert.equal(error.status, 503);
   *   assert.match(String(error.cause), /ECONNREFUSED/);
   *   return true;
   * });
   * ```
   */
  StoreUnavailableError,
} from "./errors.ts";
export {
  /**
   * Creates a session id: 192 random bits as 32 base64url characters (what a cookie carries;
   * a store never sees it, only its `storageKeyOf`).
   *
   * @example
   * ```ts
   * import { createSessionId, isSessionId } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * assert.ok(isSessionId(createSessionId()));
   * ```
   */
  createSessionId,
  /**
   * Tells whether a value has the exact shape of a session id (32 base64url characters).
   *
   * @example
   * ```ts
   * import { isSessionId } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * assert.equal(isSessionId("../../etc/passwd"), false);
   * ```
   */
  isSessionId,
  /**
   * The storage key of a session id, `SHA-256(id)` in base64url (43 characters): the only key a
   * store is given, so a leaked store holds nothing that works as a cookie. Find a session's
   * record with it (a test, a migration script). Throws a `TypeError` for a malformed id.
   *
   * @example
   * ```ts
   * import { createSessionId, storageKeyOf } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * assert.match(await storageKeyOf(createSessionId()), /^[A-Za-z0-9_-]{43}$/);
   * ```
   */
  storageKeyOf,
} from "./id.ts";
export {
  /**
   * A user's tag, SHA-256 of the id's UTF-8 in base64url: what a store writes in key names
   * instead of the user's id (its index of a user's sessions).
   *
   * @example
   * ```ts
   * import { userTag } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * const key = `sessions:users:${await userTag("ada@example.com")}`;
   * assert.equal(key.includes("ada"), false);
   * ```
   */
  userTag,
} from "./user_tag.ts";
export {
  /** Gives a sealed store of your own the sealed-cookie flow (`CookieStore` is built with it). */
  sealedStore,
} from "./backends/sealed.ts";
export {
  /**
   * A record's data as JSON text, for a store that writes JSON; a `SessionDataError` when the data
   * is not a JSON object or cannot be stringified.
   */
  stringifyData,
} from "./store_rules.ts";
export {
  /**
   * Checks the options every store shares (`now`, `onCorrupt`, `logger`) and fills in their
   * defaults: `Date.now`, and a warning to `logger` (by default `console`).
   */
  type StoreHookOptions,
  storeHooks,
} from "./store_rules.ts";
export {
  /** Checks a store's `lock` and `unlock` arguments: one rule (owner, duration) for every store. */
  assertLockArguments,
} from "./store_rules.ts";
