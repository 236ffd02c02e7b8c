/**
 * `MemcachedStore`: sessions in Memcached, with compare-and-set by Memcached's own CAS tokens
 * (`gets` / `cas`, `add` to create only if absent) and native expiry.
 *
 * Takes the user's own connected `memcache-client` client (or any client of the same shape);
 * the store does not import it.
 *
 * Sessions per user (`userKey`): each user has an index item listing the storage keys of their
 * sessions, written before the records it lists.
 *
 * What Memcached cannot promise, whatever the client: it is a cache. It evicts items under
 * memory pressure (a session, or a user's index, can vanish before it expires), it loses every
 * item when it restarts, and it cannot count or list its keys (no `count()`).
 *
 * @module
 */
import { SessionDataError, SessionTooLargeError } from "../errors.ts";
import {
  assertStorageKey,
  assertTouchArguments,
  type SaveIndex,
  type SaveResult,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
  toStoredSession,
  touchExtends,
} from "../store.ts";
import { userTag } from "../user_tag.ts";

/**
 * The shape of a `memcache-client` client (`new MemcacheClient({ server: "host:port" })`).
 * A store command that Memcached refuses (`NOT_STORED`, `EXISTS`, `NOT_FOUND`) rejects with an
 * error whose `cmdTokens[0]` (and message) is that reply.
 *
 * @example
 * ```ts
 * import { type MemcacheClientLike, MemcachedStore } from "websession/memcached";
 * import assert from "node:assert/strict";
 *
 * const methods: (keyof MemcacheClientLike)[] = ["get", "gets", "add", "cas", "delete"];
 * assert.equal(methods.length, 5);
 * // Anything else is refused when the store is built.
 * assert.throws(() => new MemcachedStore({ client: {} as MemcacheClientLike }), TypeError);
 * ```
 */
export interface MemcacheClientLike {
  /** `get key`; resolves `undefined` on a miss. */
  get(key: string): Promise<{ value: unknown } | undefined>;
  /** `gets key`; resolves `undefined` on a miss, else the value with its CAS token. */
  gets(key: string): Promise<{ value: unknown; casUniq?: string | number } | undefined>;
  /** `add key flags exptime bytes`; rejects on `NOT_STORED`. `lifetime` is the exptime. */
  add(key: string, value: string, options: { lifetime: number }): Promise<unknown>;
  /** `cas key flags exptime bytes token`; rejects on `EXISTS` and `NOT_FOUND`. */
  cas(key: string, value: string, options: { casUniq: string | number; lifetime: number }): Promise<unknown>;
  /** `delete key`; rejects on `NOT_FOUND`. */
  delete(key: string): Promise<unknown>;
  /**
   * Sends a command line as it is (`memcache-client`'s `cmd`); the store sends only `stats`, for
   * the server's clock (`SessionStore.time`), and resolves the reply's `STAT` lines as
   * `{ STAT: [name, value][] }`. Optional: without it the store has no `time`.
   */
  cmd?(data: string): Promise<unknown>;
}

/**
 * Options of {@linkcode MemcachedStore}.
 *
 * @example
 * ```ts
 * import { MemcachedStore, type MemcachedStoreOptions } from "websession/memcached";
 * import { MemcacheClient } from "memcache-client";
 * import assert from "node:assert/strict";
 *
 * const client = new MemcacheClient({ server: "127.0.0.1:11211", cmdTimeout: 2_000 });
 * const corrupt: string[] = [];
 * const options: MemcachedStoreOptions = {
 *   client,
 *   prefix: "example-options:",
 *   maxItemSize: 64 * 1024, // memcached -I 64k
 *   onCorrupt: (key) => void corrupt.push(key),
 * };
 * const store = new MemcachedStore(options);
 * const key = "c".repeat(43);
 * await client.set(`example-options:${key}`, "not a record", { lifetime: 60 });
 * assert.equal(await store.load(key), null); // reads as missing, and is reported
 * assert.deepEqual(corrupt, [key]);
 * await store.destroy(key);
 * client.shutdown();
 * ```
 */
export interface MemcachedStoreOptions {
  /** The user's connected client: `memcache-client`, or any client of its shape. */
  client: MemcacheClientLike;
  /**
   * Prepended to every item's key: `prefix` + storage key (a session), + `:lease` (a lease),
   * `prefix` + `user:` + SHA-256 of the user id in base64url (a user's index). Printable ASCII
   * without spaces, at most 201 bytes (a Memcached key is at most 250 bytes; the storage key
   * takes 43, a lease's suffix 6 more).
   * @default "websession:"
   */
  prefix?: string;
  /**
   * The server's largest item, in bytes: Memcached's `-I` setting. A record whose JSON, with its
   * key and 256 bytes of item overhead, would not fit is refused with `SessionTooLargeError`
   * before anything is sent.
   * @default 1048576 (1 MiB, Memcached's default)
   */
  maxItemSize?: number;
  /**
   * Called when a stored value is not a well-formed record; the session then reads as missing.
   * @default a warning to `logger`
   */
  onCorrupt?: (key: string, error: Error) => void;
  /**
   * Where warnings go (a corrupt stored value, unless `onCorrupt` is given): pass the same
   * logger as `withSession`'s to route them with the rest.
   * @default console
   */
  logger?: { warn(...args: unknown[]): void };
  /**
   * The clock, in milliseconds since the epoch (injectable for tests). It alone decides whether
   * a record has expired; Memcached's own expiry only frees the memory, a little later.
   * @default Date.now
   */
  now?: () => number;
}

/** What a Memcached store command answered. */
type StoreReply = "STORED" | "NOT_STORED" | "EXISTS" | "NOT_FOUND";

/** A `gets` hit: the raw value and its CAS token. */
interface Versioned {
  value: unknown;
  cas: string;
}

/** The few commands the store sends, over whichever client it was given. */
interface Commands {
  get(key: string): Promise<unknown>;
  gets(key: string): Promise<Versioned | undefined>;
  /** `NOT_STORED` when the key exists. */
  add(key: string, value: string, exptime: number): Promise<StoreReply>;
  /** `EXISTS` when the token no longer matches, `NOT_FOUND` when the item is gone. */
  cas(key: string, value: string, cas: string, exptime: number): Promise<StoreReply>;
  delete(key: string): Promise<void>;
  /** `stats`, where the client can send it. */
  stats?: () => Promise<unknown>;
}

const INVALID_CLIENT = "Invalid Memcached client: expected a memcache-client client";

function replyOf(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const tokens = (error as { cmdTokens?: unknown }).cmdTokens;
  if (Array.isArray(tokens) && typeof tokens[0] === "string") return tokens[0];
  const message = (error as { message?: unknown }).message;
  return typeof message === "string" ? message : undefined;
}

/** Turns a refused store command back into its reply; any other failure is rethrown. */
function refusal(error: unknown, expected: StoreReply[]): StoreReply {
  const reply = replyOf(error);
  if (expected.includes(reply as StoreReply)) return reply as StoreReply;
  throw error;
}

function tokenOf(cas: unknown): string {
  if (
    (typeof cas === "string" && /^\d+$/.test(cas)) || (typeof cas === "number" && Number.isSafeInteger(cas))
  ) {
    return String(cas);
  }
  throw new TypeError(`Unexpected gets reply from the Memcached client: CAS token "${String(cas)}"`);
}

function commandsOf(client: MemcacheClientLike): Commands {
  const any = client as unknown as Record<string, unknown> | null;
  const methods = ["get", "gets", "add", "cas", "delete"];
  if (typeof any !== "object" || any === null || !methods.every((name) => typeof any[name] === "function")) {
    throw new TypeError(INVALID_CLIENT);
  }
  const mc = client;
  return {
    get: async (key) => (await mc.get(key))?.value,
    async gets(key) {
      const hit = await mc.gets(key);
      return hit === undefined ? undefined : { value: hit.value, cas: tokenOf(hit.casUniq) };
    },
    add: (key, value, exptime) =>
      mc.add(key, value, { lifetime: exptime }).then(
        () => "STORED" as const,
        (error) => refusal(error, ["NOT_STORED"]),
      ),
    cas: (key, value, cas, exptime) =>
      mc.cas(key, value, { casUniq: cas, lifetime: exptime }).then(
        () => "STORED" as const,
        (error) => refusal(error, ["EXISTS", "NOT_FOUND"]),
      ),
    delete: (key) =>
      mc.delete(key).then(
        () => {},
        (error) => void refusal(error, ["NOT_FOUND"]),
      ),
    ...(typeof mc.cmd === "function" ? { stats: () => mc.cmd!("stats") } : {}),
  };
}

/**
 * Milliseconds since the epoch from a `stats` reply's `STAT time` line (whole seconds by the
 * server's clock), as `memcache-client` hands it over (`{ STAT: [name, value][] }`).
 */
function statsTime(reply: unknown): number {
  const lines = (reply as { STAT?: unknown } | null)?.STAT;
  const line = Array.isArray(lines)
    ? lines.find((entry) => Array.isArray(entry) && entry[0] === "time")
    : undefined;
  const seconds = Number(line?.[1]);
  if (!Number.isSafeInteger(seconds) || seconds <= 0) {
    throw new TypeError("Unexpected stats reply from the Memcached client: no time");
  }
  return seconds * 1000;
}

// Memcached reads an exptime over 30 days as an absolute Unix time, on the server's clock.
const THIRTY_DAYS_S = 60 * 60 * 24 * 30;
// An absolute exptime is set this much past expiresAt, so that a server clock running ahead of
// this process's does not drop a session early. Reads check expiresAt with this process's clock.
const ABSOLUTE_SLACK_S = 60 * 60;
// Memcached's exptime is a signed 32-bit number of seconds.
const MAX_EXPTIME = 2 ** 31 - 1;
// Room for Memcached's item header, flags, CAS and line endings within an item.
const ITEM_OVERHEAD = 256;
const MAX_KEY_BYTES = 250;
const KEY_LENGTH = 43;
// A lease lives in an item of its own: the storage key and this suffix, which no storage key has.
const LEASE_SUFFIX = ":lease";
const MAX_PREFIX_BYTES = MAX_KEY_BYTES - KEY_LENGTH - LEASE_SUFFIX.length;
// A user's index lives in an item of its own: this infix and SHA-256 of the user id (43
// characters), no longer than a lease's key and never the shape of a storage key (no `:`).
const USER_INFIX = "user:";
// Room kept in a record's item for its index mark: `,"index":{"user":"<43>","until":<ms>}`.
const MARK_RESERVE = 96;
// How long, in milliseconds, an entry keeps trying to land in a user's index while other
// processes' writes win the compare-and-set, before its save fails. Liveness only: an entry that
// lands is written by compare-and-set, never on the strength of a timer.
const INDEX_DEADLINE_MS = 10_000;
const STORAGE_KEY = /^[A-Za-z0-9_-]{43}$/;
// Printable ASCII, no space: what every client sends unchanged and Memcached accepts in a key.
const PREFIX = /^[\x21-\x7e]*$/;

/**
 * Memcached's exptime for a record expiring at `expiresAt`: seconds from now (rounded up, plus
 * one because Memcached's clock ticks once a second), an absolute time past 30 days, or `-1`
 * (stored already expired: nothing is kept) when `expiresAt` is not in the future.
 */
function exptimeOf(expiresAt: number, now: number): number {
  const ms = expiresAt - now;
  if (!(ms > 0)) return -1;
  const seconds = Math.ceil(ms / 1000) + 1;
  if (seconds <= THIRTY_DAYS_S) return seconds;
  return Math.min(Math.ceil(expiresAt / 1000) + ABSOLUTE_SLACK_S, MAX_EXPTIME);
}

/**
 * How long a record's entry in its user's index lasts, in milliseconds since the epoch: its
 * `expiresAt` and half its remaining life again, so that the sliding expiry of later saves and
 * touches rewrites the index at most once per half window instead of on every save.
 */
function entryUntil(expiresAt: number, now: number): number {
  return expiresAt + Math.ceil((expiresAt - now) / 2);
}

/** Full-jitter exponential backoff between lost compare-and-sets of an index: at most 50 ms. */
function pause(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(50, 2 ** attempt)));
}

/** The JSON length of one index entry, `"<key>":<until>`. */
function entryLength(key: string, until: number): number {
  return key.length + 3 + String(until).length;
}

/** One save's entry waiting to land in its user's index. */
interface Pending {
  key: string;
  until: number;
  /** When it gives up (`performance.now()`). */
  deadline: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * Where a record is indexed, kept in its item beside the record: the user's index item (by the
 * hash of the user id) and until when its entry there lasts (ms since the epoch). A save or touch
 * that moves `expiresAt` past `until` extends the entry first.
 */
interface IndexMark {
  user: string;
  until: number;
}

/** A record as held in its item, with its index mark. */
interface Held {
  record: StoredSession;
  mark: IndexMark | undefined;
}

function markOf(value: unknown): IndexMark | undefined | null {
  if (value === undefined) return undefined;
  if (typeof value !== "object" || value === null) return null;
  const { user, until } = value as { user?: unknown; until?: unknown };
  if (
    typeof user !== "string" || !STORAGE_KEY.test(user) || typeof until !== "number" ||
    !Number.isFinite(until)
  ) {
    return null;
  }
  return { user, until };
}

/** Parses an item's value: JSON text, bytes, or what a client already parsed. `null` when corrupt. */
function heldOf(value: unknown): Held | null {
  let raw = value;
  try {
    if (typeof raw === "string") raw = JSON.parse(raw);
    else if (raw instanceof Uint8Array) raw = JSON.parse(new TextDecoder().decode(raw));
  } catch {
    return null;
  }
  const checked = toStoredSession(raw);
  if (checked === null) return null;
  const { data, version, createdAt, expiresAt } = checked;
  const mark = markOf((raw as { index?: unknown }).index);
  if (mark === null) return null;
  return { record: { data, version, createdAt, expiresAt }, mark };
}

/** The item's value: the record as JSON, with its index mark when it has one. */
function itemValue(record: StoredSession, data: string, mark: IndexMark | undefined): string {
  const { version, createdAt, expiresAt } = record;
  const index = mark === undefined ? "" : `,"index":${JSON.stringify(mark)}`;
  return `{"version":${JSON.stringify(version)},"createdAt":${JSON.stringify(createdAt)},"expiresAt":${
    JSON.stringify(expiresAt)
  }${index},"data":${data}}`;
}

function utf8Length(text: string): number {
  return new TextEncoder().encode(text).length;
}

/** How many times a create retries when the key keeps vanishing between `add` and `gets`. */
const CREATE_ATTEMPTS = 3;

/**
 * Keeps sessions in Memcached, one item per session holding the record as JSON, with
 * Memcached's own expiry (no `cleanup()` needed): CherryPy's `MemcachedSession`, with
 * compare-and-set instead of a process-local lock.
 *
 * - `load` is one `get`.
 * - `save` with `expectedVersion` `null` is one `add` (creates only if absent). An update is
 *   `gets` (the record and its CAS token), a version check here, then `cas` with that token:
 *   Memcached stores it only if nobody wrote the item in between, so it is an atomic
 *   compare-and-set in two round trips. It never recreates a missing record.
 * - `touch` is `gets` then `cas` of the same record with the new `expiresAt`; `destroy` is one
 *   `delete`.
 * - Sessions per user (`capabilities.users`): a save given an `index` first enters the key in
 *   the user's index item (`gets`, then `cas` or `add`: two more round trips), and the record's
 *   item notes until when that entry lasts (the record's `expiresAt` and half its remaining life
 *   again). Later saves and touches of the record extend the entry first only when they move
 *   `expiresAt` past it, so a session with sliding expiry pays them about once per half idle
 *   window. `keysOfUser` is one `get`. Expired entries are dropped when the index is written;
 *   an index holds about 16,000 live sessions of one user in a 1 MiB item. Many sign-ins of one
 *   user at once do not fight over the index: in one process their entries wait for the write
 *   in flight and go together in the next one, and a write that another process beat is tried
 *   again on what that process wrote, with backoff, for up to 10 seconds per entry (200
 *   simultaneous sign-ins of one user all land).
 *
 * One clock decides expiry: this process's. A record past its `expiresAt` reads as missing
 * whatever Memcached still holds; Memcached's exptime is sent relative (seconds from now), so
 * a skew between this machine's clock and the server's does not matter. Past 30 days Memcached
 * only takes an absolute time on its own clock; the store then adds an hour of slack.
 *
 * Memcached is a cache: under memory pressure it evicts items before they expire (the user is
 * signed out), a restart loses every session, and it cannot count its keys (no `count()`). An
 * evicted user index loses the list of that user's sessions: `listUserSessions` misses them
 * and `endUserSessions` cannot end them until each is saved with its user again.
 * Client errors are thrown as they are (`withSession` wraps them in `StoreUnavailableError`);
 * give the client a short `cmdTimeout` so that a server that stops answering fails requests
 * quickly instead of holding them.
 *
 * @example
 * ```ts
 * import { MemcachedStore } from "websession/memcached";
 * import { MemcacheClient } from "memcache-client";
 * import assert from "node:assert/strict";
 *
 * const client = new MemcacheClient({ server: "127.0.0.1:11211", cmdTimeout: 2_000 });
 * const store = new MemcachedStore({ client, prefix: "example:" });
 * const key = "m".repeat(43);
 * const now = Date.now();
 * await store.destroy(key);
 * const v1 = { data: { a: 1 }, version: 1, createdAt: now, expiresAt: now + 60_000 };
 * assert.equal(await store.save(key, v1, null), true);
 * assert.equal((await store.load(key))?.data.a, 1);
 * assert.equal(await store.save(key, { ...v1, data: { a: 2 }, version: 2 }, 1), true);
 * // A writer that read version 1 is refused, and told what it lost to.
 * const lost = await store.save(key, { ...v1, data: { a: 9 }, version: 2 }, 1);
 * assert.ok(lost !== true && lost !== false && lost.current?.version === 2);
 * await store.destroy(key);
 * client.shutdown();
 * ```
 */
export class MemcachedStore implements SessionStore {
  /**
   * Compare-and-set: yes (Memcached's CAS tokens). Native expiry: yes (exptime). Leases: yes
   * (`add`, and `cas` to take over an expired one or to release), as evictable as any item.
   * Sessions per user: yes (an index item per user, as evictable as any item).
   */
  readonly capabilities: StoreCapabilities = { compareAndSet: true, ttl: true, locks: true, users: true };
  #commands: Commands;
  #prefix: string;
  #maxValueBytes: number;
  #maxIndexBytes: number;
  #onCorrupt: (key: string, error: Error) => void;
  #now: () => number;
  /** Entries waiting to be written, per user's index item: one write in flight per item. */
  #indexLanes = new Map<string, Pending[]>();
  /**
   * The Memcached server's clock: the `time` of one `stats` command, as milliseconds since the
   * epoch. It counts whole seconds and Memcached moves it once a second, so it reads up to about
   * two seconds behind the true time (an end and its grace are stamped and judged alike). Present when the client can send `stats` (its
   * `cmd` method, which `memcache-client` has). Asked only to stamp and judge the grace of a
   * session ended by a request (see `SessionStore.time`), never on an ordinary request; expiry
   * stays with the `now` option's clock. With several servers, the one the client picks answers.
   *
   * @example
   * ```ts
   * import { MemcacheClient } from "memcache-client";
   * import { MemcachedStore } from "websession/memcached";
   * import assert from "node:assert/strict";
   *
   * const client = new MemcacheClient({ server: "127.0.0.1:11211", cmdTimeout: 2_000 });
   * const store = new MemcachedStore({ client, prefix: "example:" });
   * const time = await store.time!("m".repeat(43));
   * assert.equal(time % 1000, 0); // whole seconds
   * assert.ok(Math.abs(time - Date.now()) < 60_000); // Memcached on this machine shares its clock
   * client.shutdown();
   * ```
   */
  readonly time?: (key: string) => Promise<number>;

  /**
   * Creates a store over the user's connected Memcached client.
   *
   * @param options See {@linkcode MemcachedStoreOptions}.
   * @throws {TypeError} When `client` is not of the supported shape, or `prefix` is not printable
   *   ASCII without spaces or is too long for a Memcached key.
   * @throws {RangeError} When `maxItemSize` is not an integer large enough for a record.
   */
  constructor(options: MemcachedStoreOptions) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError("Invalid MemcachedStore options: expected an object with a client");
    }
    this.#commands = commandsOf(options.client);
    const prefix = options.prefix ?? "websession:";
    if (typeof prefix !== "string" || !PREFIX.test(prefix)) {
      throw new TypeError(
        `Invalid prefix: "${String(prefix)}" must be printable ASCII without spaces or control characters`,
      );
    }
    if (prefix.length + KEY_LENGTH + LEASE_SUFFIX.length > MAX_KEY_BYTES) {
      throw new TypeError(
        `Invalid prefix: "${prefix}" is ${prefix.length} bytes; at most ${MAX_PREFIX_BYTES} fit in a Memcached key`,
      );
    }
    this.#prefix = prefix;
    const maxItemSize = options.maxItemSize ?? 1024 * 1024;
    if (!Number.isSafeInteger(maxItemSize) || maxItemSize < 1024) {
      throw new RangeError(`Invalid maxItemSize: "${maxItemSize}" must be an integer of at least 1024 bytes`);
    }
    this.#maxValueBytes = maxItemSize - ITEM_OVERHEAD - prefix.length - KEY_LENGTH;
    this.#maxIndexBytes = maxItemSize - ITEM_OVERHEAD - prefix.length - USER_INFIX.length - KEY_LENGTH;
    const logger = options.logger ?? console;
    this.#onCorrupt = options.onCorrupt ?? function warnCorrupt(key, error) {
      logger.warn(`websession: corrupt session record "${key}" read as missing: ${error.message}`);
    };
    this.#now = options.now ?? Date.now;
    const stats = this.#commands.stats;
    if (stats !== undefined) {
      this.time = async function time(key: string): Promise<number> {
        assertStorageKey(key);
        return statsTime(await stats());
      };
    }
  }

  /**
   * Reads a record with one `get`.
   *
   * @param key The storage key.
   * @returns The record, or `null` when missing, expired or corrupt (reported to `onCorrupt`).
   * @throws {TypeError} When `key` is not a storage key. Client errors pass through.
   */
  async load(key: string): Promise<StoredSession | null> {
    assertStorageKey(key);
    const value = await this.#commands.get(this.#prefix + key);
    if (value === undefined || value === null) return null;
    const held = this.#decode(key, value);
    return held === null || held.record.expiresAt <= this.#now() ? null : held.record;
  }

  /**
   * Compare-and-set. With `expectedVersion` `null`, `add` creates the record only if the key is
   * absent (an item whose record has expired by this process's clock counts as absent and is
   * replaced by `cas`). Otherwise `gets` reads the record and its CAS token, the version is
   * checked, and `cas` writes only if the item is still the one read. A record whose
   * `expiresAt` is already past is stored as expired: the save counts as done and leaves nothing.
   *
   * With `index`, the key is entered in the user's index item (`prefix` + `user:` + SHA-256 of
   * the user id) by `gets` and `cas` (or `add`) BEFORE the record is written, so `keysOfUser`
   * never misses a saved record; a save then refused leaves an entry the core skips. The entry
   * lasts past the record's `expiresAt` by half its remaining life, and the record's item notes
   * it, so later saves and touches of the record (with or without `index`) extend it first when
   * they move `expiresAt` past it: at most once per half window, not on every save.
   *
   * @param key The storage key.
   * @param record The record to store.
   * @param expectedVersion The stored version to replace, or `null` to create only if absent.
   * @param index The user whose index lists the key (`index.user`, a non-empty string).
   * @returns `true` when written. When refused on what `gets` read (the record is missing,
   *   expired, or at another version), a `SaveConflict` with that record (`null` when missing or
   *   expired); when `cas` finds the item changed since, `false`.
   * @throws {TypeError} When `key` is not a storage key, the record's times or version are not
   *   finite numbers, or `index.user` is not a non-empty string. Client errors pass through,
   *   and an `Error` when other processes kept winning the compare-and-set of the user's index
   *   for 10 seconds.
   * @throws {SessionDataError} When the data cannot be written as JSON (a `BigInt`, a cycle).
   * @throws {SessionTooLargeError} When the record does not fit in one Memcached item, or the
   *   user's index would not (about 16,000 live sessions of one user with a 1 MiB item).
   */
  async save(
    key: string,
    record: StoredSession,
    expectedVersion: number | null,
    index?: SaveIndex,
  ): Promise<SaveResult> {
    assertStorageKey(key);
    if (index !== undefined && (typeof index?.user !== "string" || index.user === "")) {
      throw new TypeError(`Invalid index: user "${String(index?.user)}" is not a non-empty string`);
    }
    const data = this.#encode(record);
    const exptime = exptimeOf(record.expiresAt, this.#now());
    const item = this.#prefix + key;
    if (expectedVersion === null) {
      const mark = await this.#mark(key, record.expiresAt, index, undefined);
      return await this.#create(key, item, itemValue(record, data, mark), exptime);
    }
    const found = await this.#read(key, item);
    if (found === "missing" || found === "corrupt") return found === "missing" ? { current: null } : false;
    if (found.record.version !== expectedVersion) return { current: found.record };
    const mark = await this.#mark(key, record.expiresAt, index, found.mark);
    return await this.#cas(item, itemValue(record, data, mark), found.cas, exptime) === "STORED";
  }

  async #create(key: string, item: string, value: string, exptime: number): Promise<SaveResult> {
    for (let attempt = 0; attempt < CREATE_ATTEMPTS; attempt++) {
      if (await this.#add(item, value, exptime) === "STORED") return true;
      const found = await this.#read(key, item, true);
      if (found === "corrupt") return false;
      if (found === "missing") continue; // gone since the add: try again
      if (found.record.expiresAt > this.#now()) return { current: found.record };
      // Expired by this process's clock though Memcached still holds it: replace that item.
      const reply = await this.#cas(item, value, found.cas, exptime);
      if (reply === "STORED") return true;
      if (reply === "EXISTS") return false;
    }
    return false;
  }

  /**
   * Removes a record with one `delete`; no error if it is absent.
   *
   * @param key The storage key.
   * @throws {TypeError} When `key` is not a storage key. Client errors pass through.
   */
  async destroy(key: string): Promise<void> {
    assertStorageKey(key);
    await this.#commands.delete(this.#prefix + key);
  }

  /**
   * Moves an existing record's expiry (the stored `expiresAt` and the item's exptime) without
   * changing its data or version: `gets`, then `cas` of the same record. Does nothing when the
   * record is missing or expired, or when another save changed it in between (that save set its
   * own expiry). A past `expiresAt` leaves the item expired.
   *
   * @param key The storage key.
   * @param expiresAt The new expiry, in milliseconds since the epoch.
   * @throws {TypeError} When `key` is not a storage key or `expiresAt` is not finite.
   */
  async touch(key: string, expiresAt: number, version: number): Promise<boolean> {
    assertStorageKey(key);
    assertTouchArguments(expiresAt, version);
    const item = this.#prefix + key;
    const found = await this.#read(key, item);
    if (typeof found === "string") return false;
    // The version check and the write are one `cas`: a save or end in between makes it miss.
    if (!touchExtends(found.record, expiresAt, version)) return false;
    const record = { ...found.record, expiresAt };
    const data = this.#encode(record);
    const mark = await this.#mark(key, expiresAt, undefined, found.mark);
    const reply = await this.#cas(
      item,
      itemValue(record, data, mark),
      found.cas,
      exptimeOf(expiresAt, this.#now()),
    );
    return reply === "STORED";
  }

  /**
   * The storage keys in the user's index whose entries have not expired: one `get` of the index
   * item. A superset of the user's live sessions (the caller checks each record): it may list
   * keys of sessions that have since ended, expired, been destroyed or changed user.
   *
   * Memcached may evict the index item under memory pressure like any item: the sessions it
   * listed are then missing from the answer until they are saved with `index` again.
   *
   * @param user The user's id.
   * @returns The keys, in no particular order; `[]` when the index is missing or corrupt
   *   (reported to `onCorrupt` under `user:` and the hash of the id).
   * @throws {TypeError} When `user` is not a non-empty string. Client errors pass through.
   * @example
   * ```ts
   * import { MemcachedStore } from "websession/memcached";
   * import { MemcacheClient } from "memcache-client";
   * import assert from "node:assert/strict";
   *
   * const client = new MemcacheClient({ server: "127.0.0.1:11211", cmdTimeout: 2_000 });
   * const store = new MemcachedStore({ client, prefix: `example-users-${Date.now()}:` });
   * const [phone, laptop] = ["p".repeat(43), "l".repeat(43)];
   * const now = Date.now();
   * const record = { data: { user: "ada" }, version: 1, createdAt: now, expiresAt: now + 60_000 };
   * // The core passes the user with the save that sets it; the index is written first.
   * await store.save(phone, record, null, { user: "ada" });
   * await store.save(laptop, record, null, { user: "ada" });
   * assert.deepEqual((await store.keysOfUser("ada")).sort(), [laptop, phone]);
   * assert.deepEqual(await store.keysOfUser("grace"), []);
   * client.shutdown();
   * ```
   */
  async keysOfUser(user: string): Promise<string[]> {
    if (typeof user !== "string" || user === "") {
      throw new TypeError(`Invalid user: "${String(user)}" is not a non-empty string`);
    }
    const name = USER_INFIX + await userTag(user);
    const value = await this.#commands.get(this.#prefix + name);
    if (value === undefined || value === null) return [];
    const entries = this.#parseIndex(name, value);
    if (entries === undefined) return [];
    const now = this.#now();
    const keys: string[] = [];
    for (const [key, until] of entries) if (until > now) keys.push(key);
    return keys;
  }

  /**
   * The index mark a record expiring at `expiresAt` must carry, entering the key in the user's
   * index first when the entry it has (`previous`) does not last that long. The user is
   * `index.user`, else the one `previous` names; `undefined` when neither (not indexed).
   */
  async #mark(
    key: string,
    expiresAt: number,
    index: SaveIndex | undefined,
    previous: IndexMark | undefined,
  ): Promise<IndexMark | undefined> {
    const user = index === undefined ? previous?.user : await userTag(index.user);
    if (user === undefined) return undefined;
    const now = this.#now();
    if (expiresAt <= now) return undefined; // stored expired: nothing to find
    if (previous !== undefined && previous.user === user && previous.until >= expiresAt) return previous;
    const until = entryUntil(expiresAt, now);
    await this.#enter(user, key, until);
    return { user, until };
  }

  /**
   * Enters `key` in the index of the user whose id hashes to `user`, lasting until `until`.
   *
   * The index is one item, written by compare-and-set, so writers of one user's index contend.
   * Two things keep every entry landing however many sign in at once:
   *
   * - In this process, entries for one index go through one lane: while a write of the item is
   *   in flight, the entries that arrive wait, and the next write (`gets`, then `cas`, or `add`
   *   when the item is missing) carries all of them. 200 simultaneous sign-ins of one user cost a
   *   handful of writes, not 200 writers fighting over one CAS token.
   * - Across processes, a write that loses the compare-and-set is retried on the item as it now
   *   stands, with jittered exponential backoff, for as long as it takes up to
   *   {@linkcode INDEX_DEADLINE_MS} for each entry; only then does that entry's save fail (with
   *   an `Error`, so the request answers 503 rather than leave a session out of the index).
   *
   * Each write keeps the entries there, with this lane's added or extended and the expired ones
   * dropped; the item's exptime follows its longest entry. An entry never gets shorter.
   */
  #enter(user: string, key: string, until: number): Promise<void> {
    const name = USER_INFIX + user;
    const item = this.#prefix + name;
    return new Promise<void>((resolve, reject) => {
      const entry: Pending = { key, until, deadline: performance.now() + INDEX_DEADLINE_MS, resolve, reject };
      const queue = this.#indexLanes.get(item);
      if (queue !== undefined) {
        queue.push(entry);
        return;
      }
      const own = [entry];
      this.#indexLanes.set(item, own);
      void this.#drain(name, item, own);
    });
  }

  /** Writes a lane's entries into the index item until none is left waiting. */
  async #drain(name: string, item: string, queue: Pending[]): Promise<void> {
    for (let lost = 0; queue.length > 0;) {
      let hit: Versioned | undefined;
      try {
        hit = await this.#commands.gets(item);
      } catch (error) {
        for (const entry of queue.splice(0)) entry.reject(error);
        break;
      }
      const batch = queue.splice(0);
      let reply: StoreReply;
      try {
        reply = await this.#writeIndex(name, item, hit, batch);
      } catch (error) {
        for (const entry of batch) entry.reject(error);
        continue;
      }
      if (reply === "STORED") {
        lost = 0;
        for (const entry of batch) entry.resolve();
        continue;
      }
      // Another process wrote the index in between: try again on what it wrote.
      const now = performance.now();
      const retry = batch.filter((entry) => {
        if (entry.deadline > now) return true;
        entry.reject(
          new Error(
            `Memcached index of a user kept changing: its compare-and-set lost for ${
              INDEX_DEADLINE_MS / 1000
            } s at "${item}"`,
          ),
        );
        return false;
      });
      queue.unshift(...retry);
      if (queue.length > 0) await pause(++lost);
    }
    this.#indexLanes.delete(item);
  }

  /**
   * One write of the index item read as `hit` (`undefined`: missing), with `batch` entered.
   * Entries already there for as long are settled at once, as are those that would not fit
   * (`SessionTooLargeError`); `"STORED"` when nothing was left to write.
   */
  async #writeIndex(
    name: string,
    item: string,
    hit: Versioned | undefined,
    batch: Pending[],
  ): Promise<StoreReply> {
    const now = this.#now();
    const empty = hit === undefined || hit.value === undefined || hit.value === null;
    const entries = empty ? new Map<string, number>() : this.#parseIndex(name, hit!.value) ?? new Map();
    const fresh = new Map<string, number>();
    for (const entry of batch) {
      if ((entries.get(entry.key) ?? -Infinity) >= entry.until) continue;
      if ((fresh.get(entry.key) ?? -Infinity) < entry.until) fresh.set(entry.key, entry.until);
    }
    if (fresh.size === 0) return "STORED";
    const kept: Record<string, number> = {};
    let last = 0;
    let count = 0;
    let length = 2; // {}
    for (const [other, otherUntil] of entries) {
      if (otherUntil <= now || fresh.has(other)) continue;
      kept[other] = otherUntil;
      if (otherUntil > last) last = otherUntil;
      length += entryLength(other, otherUntil) + (count++ === 0 ? 0 : 1);
    }
    for (const [key, until] of fresh) {
      const grown = length + entryLength(key, until) + (count === 0 ? 0 : 1);
      if (grown > this.#maxIndexBytes) {
        const error = new SessionTooLargeError(
          `Too many sessions for one user: the index "${name}" would take "${grown}" bytes, at most "${this.#maxIndexBytes}" fit in one Memcached item`,
        );
        for (let i = batch.length - 1; i >= 0; i--) {
          if (batch[i]!.key === key) batch.splice(i, 1)[0]!.reject(error);
        }
        continue;
      }
      kept[key] = until;
      if (until > last) last = until;
      length = grown;
      count++;
    }
    if (batch.length === 0) return "STORED";
    const value = JSON.stringify(kept);
    const exptime = exptimeOf(last, now);
    return hit === undefined
      ? await this.#add(item, value, exptime)
      : await this.#cas(item, value, hit.cas, exptime);
  }

  /** The entries of an index item (storage key → until), or `undefined` when corrupt (reported). */
  #parseIndex(name: string, value: unknown): Map<string, number> | undefined {
    let raw = value;
    try {
      if (typeof raw === "string") raw = JSON.parse(raw);
      else if (raw instanceof Uint8Array) raw = JSON.parse(new TextDecoder().decode(raw));
    } catch {
      raw = undefined;
    }
    const entries = new Map<string, number>();
    let ok = typeof raw === "object" && raw !== null && !Array.isArray(raw);
    if (ok) {
      for (const [key, until] of Object.entries(raw as Record<string, unknown>)) {
        if (!STORAGE_KEY.test(key) || typeof until !== "number" || !Number.isFinite(until)) {
          ok = false;
          break;
        }
        entries.set(key, until);
      }
    }
    if (ok) return entries;
    this.#onCorrupt(
      name,
      new TypeError(`Corrupt user index: not a map of storage keys to times at "${this.#prefix + name}"`),
    );
    return undefined;
  }

  /**
   * Takes the lease named `key` for `owner` for `ttlMs` milliseconds: `add` of a lease item
   * (apart from the record), or `cas` over a lease that has expired by this process's clock or
   * that `owner` already holds (which extends it). Of concurrent takers exactly one wins.
   *
   * Memcached may evict a lease under memory pressure like any item; another owner can then
   * take it before it expires. Give Memcached memory to spare where `session.lock()` guards
   * side effects that must never run twice.
   *
   * @param key The storage key.
   * @param owner Who takes it; only this owner can release it.
   * @param ttlMs How long the lease lasts unless released, in milliseconds.
   * @returns `true` when taken, `false` when another owner holds a live lease.
   * @throws {TypeError} When `key` is not a storage key or `owner` is not a string.
   * @throws {RangeError} When `ttlMs` is not a positive finite number.
   */
  async lock(key: string, owner: string, ttlMs: number): Promise<boolean> {
    assertStorageKey(key);
    if (typeof owner !== "string") throw new TypeError(`Invalid owner: "${String(owner)}" is not a string`);
    if (!(ttlMs > 0) || !Number.isFinite(ttlMs)) {
      throw new RangeError(`Invalid ttlMs: "${ttlMs}" must be a positive number of milliseconds`);
    }
    const item = this.#prefix + key + LEASE_SUFFIX;
    const now = this.#now();
    const expiresAt = now + ttlMs;
    const value = JSON.stringify({ owner, expiresAt });
    const exptime = exptimeOf(expiresAt, now);
    for (let attempt = 0; attempt < CREATE_ATTEMPTS; attempt++) {
      if (await this.#commands.add(item, value, exptime) === "STORED") return true;
      const found = await this.#readLease(item);
      if (found === "missing") continue; // released or expired since the add: try again
      if (found === "corrupt") return false;
      if (found.lease.owner !== owner && found.lease.expiresAt > this.#now()) return false;
      const reply = await this.#commands.cas(item, value, found.cas, exptime);
      if (reply === "STORED") return true;
      if (reply === "EXISTS") return false;
    }
    return false;
  }

  /**
   * Releases the lease named `key` if, and only if, `owner` holds it: `gets`, then `cas` of an
   * already expired item, so a lease another owner took in between is left alone.
   *
   * @param key The storage key.
   * @param owner The owner that took it.
   * @throws {TypeError} When `key` is not a storage key.
   */
  async unlock(key: string, owner: string): Promise<void> {
    assertStorageKey(key);
    const item = this.#prefix + key + LEASE_SUFFIX;
    const found = await this.#readLease(item);
    if (typeof found === "string" || found.lease.owner !== owner) return;
    await this.#commands.cas(item, "{}", found.cas, -1);
  }

  async #readLease(
    item: string,
  ): Promise<{ lease: { owner: unknown; expiresAt: number }; cas: string } | "missing" | "corrupt"> {
    const hit = await this.#commands.gets(item);
    if (hit === undefined || hit.value === undefined || hit.value === null) return "missing";
    let lease: unknown = hit.value;
    try {
      if (typeof lease === "string") lease = JSON.parse(lease);
      else if (lease instanceof Uint8Array) lease = JSON.parse(new TextDecoder().decode(lease));
    } catch {
      return "corrupt";
    }
    const { owner, expiresAt } = (lease ?? {}) as { owner?: unknown; expiresAt?: unknown };
    if (typeof owner !== "string" || typeof expiresAt !== "number" || !Number.isFinite(expiresAt)) {
      return "corrupt";
    }
    return { lease: { owner, expiresAt }, cas: hit.cas };
  }

  /**
   * Reads the record and its CAS token with `gets`. `"missing"` for no item or, unless
   * `withExpired`, a record past its `expiresAt`.
   */
  async #read(
    key: string,
    item: string,
    withExpired = false,
  ): Promise<{ record: StoredSession; mark: IndexMark | undefined; cas: string } | "missing" | "corrupt"> {
    const hit = await this.#commands.gets(item);
    if (hit === undefined || hit.value === undefined || hit.value === null) return "missing";
    const held = this.#decode(key, hit.value);
    if (held === null) return "corrupt";
    if (!withExpired && held.record.expiresAt <= this.#now()) return "missing";
    return { record: held.record, mark: held.mark, cas: hit.cas };
  }

  #decode(key: string, value: unknown): Held | null {
    const held = heldOf(value);
    if (held === null) {
      this.#onCorrupt(
        key,
        new TypeError(`Corrupt session record: not a well-formed record at "${this.#prefix + key}"`),
      );
    }
    return held;
  }

  /**
   * Checks a record and writes its data as JSON text; refuses it, before anything is sent, when
   * its item (with room for an index mark) would not fit.
   */
  #encode(record: StoredSession): string {
    const { version, createdAt, expiresAt } = record;
    if (!Number.isSafeInteger(version) || !Number.isFinite(createdAt) || !Number.isFinite(expiresAt)) {
      throw new TypeError(
        `Invalid record: version "${version}", createdAt "${createdAt}" and expiresAt "${expiresAt}" must be finite`,
      );
    }
    const data = record.data;
    if (typeof data !== "object" || data === null || Array.isArray(data)) {
      throw new SessionDataError("Session data cannot be stored: not a JSON object");
    }
    let value: string;
    try {
      value = JSON.stringify(data);
    } catch (error) {
      throw new SessionDataError(
        `Session data cannot be stored: not JSON-serializable: ${(error as Error).message}`,
        { cause: error },
      );
    }
    if (typeof value !== "string" || value[0] !== "{") {
      throw new SessionDataError("Session data cannot be stored: not a JSON object");
    }
    // UTF-8 takes 1 to 3 bytes per UTF-16 code unit: measure only when the bound is unclear.
    const limit = this.#maxValueBytes - itemValue(record, "", undefined).length - MARK_RESERVE;
    if (value.length > limit || (value.length * 3 > limit && utf8Length(value) > limit)) {
      throw new SessionTooLargeError(
        `Session too large for Memcached: "${
          utf8Length(value)
        }" bytes of JSON data, at most "${limit}" fit in one item`,
      );
    }
    return value;
  }

  async #add(item: string, value: string, exptime: number): Promise<StoreReply> {
    try {
      return await this.#commands.add(item, value, exptime);
    } catch (error) {
      throw this.#tooLarge(error);
    }
  }

  async #cas(item: string, value: string, cas: string, exptime: number): Promise<StoreReply> {
    try {
      return await this.#commands.cas(item, value, cas, exptime);
    } catch (error) {
      throw this.#tooLarge(error);
    }
  }

  /** A server whose `-I` is smaller than `maxItemSize` answers this instead of storing. */
  #tooLarge(error: unknown): unknown {
    const message = error instanceof Error ? error.message : "";
    if (!/object too large for cache/i.test(message)) return error;
    return new SessionTooLargeError(
      `Session too large for Memcached: the server refused the item: "${message}"`,
      { cause: error },
    );
  }
}
