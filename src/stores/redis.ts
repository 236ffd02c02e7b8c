/**
 * `RedisStore`: sessions in Redis, with compare-and-set by a Lua script and native expiry.
 *
 * Takes the user's own connected client: `@upstash/redis` (HTTP; Workers, Deno, Bun, Node),
 * `ioredis` or `redis` (node-redis v4+). The store imports none of them; it recognises the
 * client by its shape.
 *
 * @module
 */
import { SessionDataError } from "../errors.ts";
import {
  assertStorageKey,
  parseStoredSession,
  type SaveResult,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
  toStoredSession,
} from "../store.ts";

/**
 * The shape of an `@upstash/redis` client (`new Redis({ url, token })` or `Redis.fromEnv()`),
 * with or without `automaticDeserialization` and auto-pipelining.
 *
 * @example
 * ```ts
 * import type { UpstashRedisLike } from "websession/redis";
 * import assert from "node:assert/strict";
 *
 * const methods: (keyof UpstashRedisLike)[] = ["get", "del", "eval", "evalsha", "scan"];
 * assert.equal(methods.length, 5);
 * ```
 */
export interface UpstashRedisLike {
  /** `GET key`; the value may come back already JSON-parsed. */
  get(key: string): Promise<unknown>;
  /** `DEL key...`. */
  del(...keys: string[]): Promise<unknown>;
  /** `EVAL script numkeys key... arg...`. */
  eval(script: string, keys: string[], args: string[]): Promise<unknown>;
  /** `EVALSHA sha1 numkeys key... arg...`. */
  evalsha(sha1: string, keys: string[], args: string[]): Promise<unknown>;
  /** `SCAN cursor MATCH pattern COUNT count`. */
  scan(cursor: string | number, options: { match: string; count: number }): Promise<unknown>;
}

/**
 * The shape of an `ioredis` client (`new Redis(url)`): any client with a variadic `call`.
 *
 * @example
 * ```ts
 * import type { IoRedisLike } from "websession/redis";
 * import assert from "node:assert/strict";
 *
 * const client: IoRedisLike = { call: async (command) => (command === "GET" ? null : 0) };
 * assert.equal(await client.call("GET", "k"), null);
 * ```
 */
export interface IoRedisLike {
  /** Sends one command with its arguments and resolves with the raw reply. */
  call(command: string, ...args: (string | number)[]): Promise<unknown>;
}

/**
 * The shape of a node-redis v4+ client (`await createClient({ url }).connect()`).
 *
 * @example
 * ```ts
 * import type { NodeRedisLike } from "websession/redis";
 * import assert from "node:assert/strict";
 *
 * const methods: (keyof NodeRedisLike)[] = ["sendCommand", "evalSha"];
 * assert.equal(methods.length, 2);
 * ```
 */
export interface NodeRedisLike {
  /** Sends one command given as an array of strings and resolves with the raw reply. */
  sendCommand(args: string[]): Promise<unknown>;
  /** `EVALSHA`; node-redis names it in camel case, which is how it is told apart. */
  evalSha(sha1: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  /** `EVAL`. */
  eval(script: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
}

/**
 * Any client {@linkcode RedisStore} accepts. Told apart by shape: a camel-case `evalSha` is
 * node-redis, a `call` method is ioredis, `evalsha` and `scan` without `call` is Upstash.
 *
 * @example
 * ```ts
 * import type { RedisLike } from "websession/redis";
 * import assert from "node:assert/strict";
 *
 * const client: RedisLike = { call: async () => null };
 * assert.equal(typeof client, "object");
 * ```
 */
export type RedisLike = UpstashRedisLike | IoRedisLike | NodeRedisLike;

/**
 * Options of {@linkcode RedisStore}.
 *
 * @example
 * ```ts
 * import { RedisStore, type RedisStoreOptions } from "websession/redis";
 * import { Redis } from "ioredis";
 * import assert from "node:assert/strict";
 *
 * const client = new Redis("redis://127.0.0.1:6379", { maxRetriesPerRequest: 1 }); // fail fast on an outage
 * const corrupt: string[] = [];
 * const options: RedisStoreOptions = {
 *   client,
 *   prefix: "example-options:",
 *   onCorrupt: (key) => void corrupt.push(key),
 * };
 * const store = new RedisStore(options);
 * const key = "c".repeat(43);
 * await client.set(`example-options:${key}`, "not a record", "PX", 60_000);
 * assert.equal(await store.load(key), null); // reads as missing, and is reported
 * assert.deepEqual(corrupt, [key]);
 * await client.del(`example-options:${key}`);
 * client.disconnect();
 * ```
 */
export interface RedisStoreOptions {
  /**
   * The user's connected client: `@upstash/redis` (`new Redis({ url, token })`), `ioredis`
   * (`new Redis(url)`) or node-redis v4+ (`await createClient({ url }).connect()`). The store
   * never connects, disconnects or configures it.
   */
  client: RedisLike;
  /**
   * Prepended to every storage key: a session lives under the Redis key `prefix + key`, where
   * `key` is the 43-character storage key (base64url SHA-256 of the session id). `count()`
   * scans for keys with this prefix (glob characters in it are escaped), so give each
   * application its own, and let nothing else write under it.
   * @default "websession:"
   */
  prefix?: string;
  /**
   * Called when a stored value is not a well-formed record; the session then reads as missing,
   * and a save over it is refused (`false`) without overwriting it.
   * @default a `console.warn`
   */
  onCorrupt?: (key: string, error: Error) => void;
  /**
   * The clock that decides expiry, in milliseconds since the epoch. A record is live while
   * `expiresAt > now()`: `load` checks it, the save and touch scripts receive `now()` and check
   * the stored `expiresAt` against it, and the key's time to live is `expiresAt - now()`
   * milliseconds, so Redis removes the key no earlier than this clock says. The Redis server's
   * own clock is never compared with `expiresAt`. Give it the clock that computes `expiresAt`
   * (the one `withSession` uses).
   * @default Date.now
   */
  now?: () => number;
}

// The stored value is the record as JSON with its fields in this fixed order, so that the Lua
// scripts can read the version and rewrite expiresAt with an anchored pattern, without decoding
// (and re-encoding, which cjson cannot do faithfully) the session data.
function encode(record: StoredSession, data: string): string {
  return `{"version":${JSON.stringify(record.version)},"createdAt":${JSON.stringify(record.createdAt)},` +
    `"expiresAt":${JSON.stringify(record.expiresAt)},"data":${data}}`;
}

/** `JSON.stringify` of a record's data, or a `SessionDataError` when it is not a JSON object. */
function stringifyData(data: unknown): string {
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new SessionDataError("Session data cannot be stored: it is not a JSON object");
  }
  try {
    return JSON.stringify(data);
  } catch (error) {
    throw new SessionDataError(
      `Session data cannot be stored as JSON: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
}

// KEYS[1]: the key. ARGV[1]: the expected version, or "" to create only if absent.
// ARGV[2]: the record as JSON, or "" when it is already expired (delete instead of writing).
// ARGV[3]: milliseconds to live. ARGV[4]: now, in milliseconds since the epoch, by the
// application's clock: a stored record whose expiresAt is not after it counts as absent, even
// if its key has not expired yet.
// Returns 1 when written; when refused, 0 if nothing live is stored, else { the stored value }
// (a one-element array, which no client can mistake for the integer 1).
// A record written by other means (another field order) is read with cjson, for its version
// and expiry only.
const SAVE = `local function fields(current)
  local v, e = string.match(current, '^{"version":(%d+),"createdAt":[^,]+,"expiresAt":([^,]+),"data":')
  if v then return v, tonumber(e) end
  local ok, decoded = pcall(cjson.decode, current)
  if not ok or type(decoded) ~= 'table' then return nil, nil end
  local version, expires = decoded.version, decoded.expiresAt
  if type(version) == 'number' and version >= 1 and version <= 9007199254740991 and version % 1 == 0 then
    v = string.format('%.0f', version)
  end
  if type(expires) == 'number' then e = expires end
  return v, e
end
local current = redis.call('GET', KEYS[1])
local version
if current then
  local expires
  version, expires = fields(current)
  if expires and expires <= tonumber(ARGV[4]) then current = false end
end
if ARGV[1] == '' then
  if current then return { current } end
elseif not current then
  return 0
elseif version ~= ARGV[1] then
  return { current }
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`;

// KEYS[1]: the key. ARGV[1]: the new expiresAt as a JSON number. ARGV[2]: milliseconds to live,
// or "" when the new expiry is already past. ARGV[3]: now, by the application's clock.
// Rewrites only the expiresAt field of a record that is live by that clock; never creates or
// revives one.
const TOUCH = `local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local from, to = string.match(current, '^{"version":%d+,"createdAt":[^,]+,"expiresAt":()[^,]+(),"data":')
if not from then return 0 end
local expires = tonumber(string.sub(current, from, to - 1))
if not expires or expires <= tonumber(ARGV[3]) then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('SET', KEYS[1], string.sub(current, 1, from - 1) .. ARGV[1] .. string.sub(current, to), 'PX', ARGV[2])
return 1`;

/** Redis takes PX as a 64-bit integer: a far-off or non-finite expiry is capped, never sent as `1e+308`. */
const MAX_TTL_MS = Number.MAX_SAFE_INTEGER;

function ttlOf(expiresAt: number, now: number): number {
  const ttl = Math.ceil(expiresAt - now);
  return Number.isNaN(ttl) ? 0 : Math.min(ttl, MAX_TTL_MS);
}

interface Script {
  source: string;
  sha1: Promise<string>;
}

function script(source: string): Script {
  const sha1 = crypto.subtle.digest("SHA-1", new TextEncoder().encode(source)).then(function hex(buffer) {
    return Array.from(new Uint8Array(buffer), (byte) => byte.toString(16).padStart(2, "0")).join("");
  });
  // Swallow here so an unawaited rejection is not reported; the await in #run rethrows it.
  sha1.catch(() => {});
  return { source, sha1 };
}

/** The few commands the store sends, over whichever client it was given. */
interface Commands {
  get(key: string): Promise<unknown>;
  del(key: string): Promise<unknown>;
  evalsha(sha1: string, key: string, args: string[]): Promise<unknown>;
  eval(source: string, key: string, args: string[]): Promise<unknown>;
  scan(cursor: string, match: string): Promise<unknown>;
}

const SCAN_COUNT = 1000;

function commandsOf(client: RedisLike): Commands {
  const any = client as unknown as Record<string, unknown>;
  if (typeof client !== "object" || client === null) {
    throw new TypeError("Invalid Redis client: expected an @upstash/redis, ioredis or node-redis client");
  }
  if (typeof any.evalSha === "function" && typeof any.sendCommand === "function") {
    const redis = client as NodeRedisLike;
    return {
      get: (key) => redis.sendCommand(["GET", key]),
      del: (key) => redis.sendCommand(["DEL", key]),
      evalsha: (sha1, key, args) => redis.evalSha(sha1, { keys: [key], arguments: args }),
      eval: (source, key, args) => redis.eval(source, { keys: [key], arguments: args }),
      scan: (cursor, match) =>
        redis.sendCommand(["SCAN", cursor, "MATCH", match, "COUNT", String(SCAN_COUNT)]),
    };
  }
  if (typeof any.call === "function") {
    const redis = client as IoRedisLike;
    return {
      get: (key) => redis.call("GET", key),
      del: (key) => redis.call("DEL", key),
      evalsha: (sha1, key, args) => redis.call("EVALSHA", sha1, 1, key, ...args),
      eval: (source, key, args) => redis.call("EVAL", source, 1, key, ...args),
      scan: (cursor, match) => redis.call("SCAN", cursor, "MATCH", match, "COUNT", SCAN_COUNT),
    };
  }
  if (typeof any.evalsha === "function" && typeof any.scan === "function" && typeof any.get === "function") {
    const redis = client as UpstashRedisLike;
    return {
      get: (key) => redis.get(key),
      del: (key) => redis.del(key),
      evalsha: (sha1, key, args) => redis.evalsha(sha1, [key], args),
      eval: (source, key, args) => redis.eval(source, [key], args),
      scan: (cursor, match) => redis.scan(cursor, { match, count: SCAN_COUNT }),
    };
  }
  throw new TypeError("Invalid Redis client: expected an @upstash/redis, ioredis or node-redis client");
}

function isNoScript(error: unknown): boolean {
  return error instanceof Error && /\bNOSCRIPT\b/.test(error.message);
}

const GLOB = /[*?[\]\\]/g;

function defaultOnCorrupt(key: string, error: Error): void {
  console.warn(`websession: corrupt session record "${key}" read as missing: ${error.message}`);
}

/**
 * Keeps sessions in Redis, one string key per session holding the record as JSON, with Redis'
 * own expiry (no `cleanup()` needed). Every operation is one round trip: `load` is one `GET`,
 * `save` and `touch` are one Lua script each (`EVALSHA`, falling back to `EVAL` once when Redis
 * does not know the script yet), `destroy` is one `DEL`.
 *
 * `save` checks the stored version inside the script, so it is an atomic compare-and-set: with
 * `expectedVersion` `null` it creates only if no live record is stored, otherwise it replaces
 * only the same version and never recreates a record that is gone. A refused save answers a
 * {@linkcode SaveConflict} carrying the record the script found, read in the same atomic step.
 *
 * One clock decides expiry: the `now` option's (the application's). The scripts are handed
 * `now()` and compare the stored `expiresAt` with it, and the key's time to live is
 * `expiresAt - now()` milliseconds (`PX`, relative), so a skew between this machine's clock and
 * the Redis server's neither shortens nor stretches sessions.
 *
 * Any session data that JSON can express is kept exactly: the record is stored as the text of
 * `JSON.stringify`, which writes NUL and lone surrogates (`"\ud800"`) as escapes, so they reach
 * Redis as ASCII over every client, Upstash's base64 HTTP encoding included. Object keys keep
 * their order. A value is limited by Redis' 512 MB string limit (`proto-max-bulk-len`), and
 * over HTTP by the Upstash plan's request size.
 *
 * Driver errors are thrown as they are (`withSession` wraps them in `StoreUnavailableError`).
 * Configure the client to fail fast when Redis is down (ioredis `maxRetriesPerRequest`,
 * node-redis `disableOfflineQueue`): a queued command holds the request until Redis returns.
 *
 * @example
 * ```ts
 * import { RedisStore } from "websession/redis";
 * import type { SaveConflict } from "websession/store-kit";
 * import { Redis } from "ioredis";
 * import assert from "node:assert/strict";
 *
 * const client = new Redis("redis://127.0.0.1:6379");
 * const store = new RedisStore({ client, prefix: "example:" });
 * const key = "r".repeat(43);
 * const now = Date.now();
 * await store.destroy(key);
 * const v1 = { data: { a: 1 }, version: 1, createdAt: now, expiresAt: now + 60_000 };
 * assert.equal(await store.save(key, v1, null), true);
 * assert.equal((await store.load(key))?.data.a, 1);
 * // A writer that expected version 5 is refused, and told what is stored instead.
 * const refused = await store.save(key, { ...v1, data: { a: 2 }, version: 6 }, 5) as SaveConflict;
 * assert.deepEqual(refused.current, v1);
 * await store.destroy(key);
 * client.disconnect();
 * ```
 */
export class RedisStore implements SessionStore {
  /** Compare-and-set: yes (a Lua script). Native expiry: yes (`PX`). */
  readonly capabilities: StoreCapabilities = { compareAndSet: true, ttl: true };
  #commands: Commands;
  #prefix: string;
  #onCorrupt: (key: string, error: Error) => void;
  #now: () => number;
  #save = script(SAVE);
  #touch = script(TOUCH);

  /**
   * Creates a store over the user's connected Redis client.
   *
   * @param options See {@linkcode RedisStoreOptions}.
   * @throws {TypeError} When `client` is none of the supported shapes, `prefix` is not a string
   *   or `now` is not a function.
   */
  constructor(options: RedisStoreOptions) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError("Invalid RedisStore options: expected an object with a client");
    }
    this.#commands = commandsOf(options.client);
    const prefix = options.prefix ?? "websession:";
    if (typeof prefix !== "string") {
      throw new TypeError(`Invalid prefix: "${String(prefix)}" is not a string`);
    }
    if (options.now !== undefined && typeof options.now !== "function") {
      throw new TypeError(`Invalid now: "${String(options.now)}" is not a function`);
    }
    this.#prefix = prefix;
    this.#onCorrupt = options.onCorrupt ?? defaultOnCorrupt;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Reads a record with one `GET`.
   *
   * @param key The storage key.
   * @returns The record, or `null` when missing, expired by the `now` clock, or corrupt
   *   (reported to `onCorrupt`).
   * @throws {TypeError} When `key` is not a storage key. Driver errors pass through.
   */
  async load(key: string): Promise<StoredSession | null> {
    assertStorageKey(key);
    const value = await this.#commands.get(this.#prefix + key);
    if (value === null || value === undefined) return null;
    const record = this.#parse(key, value);
    return record === null || record.expiresAt <= this.#now() ? null : record;
  }

  /**
   * Compare-and-set in one Lua script; sets the key's expiry from `record.expiresAt`. A stored
   * record whose `expiresAt` is not after `now()` counts as absent. A record whose `expiresAt`
   * is already past is not written (a live one at the expected version is deleted instead) and
   * the save counts as done.
   *
   * @param key The storage key.
   * @param record The record to store.
   * @param expectedVersion The stored version to replace, or `null` to create only if absent.
   * @returns `true` when written. When refused, a {@linkcode SaveConflict} whose `current` is
   *   the live record the script found, or `null` when none is live; plain `false` only when the
   *   stored value is corrupt (reported to `onCorrupt`, and left as it is).
   * @throws {SessionDataError} When `record.data` is not a JSON object `JSON.stringify` can
   *   write (a `BigInt`, a cycle); nothing is sent.
   * @throws {TypeError} When `key` is not a storage key. Driver errors pass through.
   */
  async save(key: string, record: StoredSession, expectedVersion: number | null): Promise<SaveResult> {
    assertStorageKey(key);
    const data = stringifyData(record.data);
    const now = this.#now();
    const ttl = ttlOf(record.expiresAt, now);
    const args = [
      expectedVersion === null ? "" : String(expectedVersion),
      ttl > 0 ? encode(record, data) : "",
      ttl > 0 ? String(ttl) : "",
      String(now),
    ];
    const reply = await this.#run(this.#save, key, args);
    if (reply === 1) return true;
    if (reply === 0) return { current: null };
    const current = this.#parse(key, reply[0]);
    // The script compared the same fields with the same clock; these can only fail for a value
    // it could not read, and then nothing more is known.
    if (current === null || current.version === expectedVersion) return false;
    return { current: current.expiresAt <= now ? null : current };
  }

  /**
   * Removes a record with one `DEL`; no error if it is absent.
   *
   * @param key The storage key.
   * @throws {TypeError} When `key` is not a storage key. Driver errors pass through.
   */
  async destroy(key: string): Promise<void> {
    assertStorageKey(key);
    await this.#commands.del(this.#prefix + key);
  }

  /**
   * Moves a live record's expiry (the key's TTL and the stored `expiresAt`) in one script,
   * without rewriting its data or version; does nothing when the key is missing or its record
   * has expired by the `now` clock. An `expiresAt` already past deletes the record.
   *
   * @param key The storage key.
   * @param expiresAt The new expiry, in milliseconds since the epoch.
   * @throws {TypeError} When `key` is not a storage key or `expiresAt` is not finite.
   */
  async touch(key: string, expiresAt: number): Promise<void> {
    assertStorageKey(key);
    if (!Number.isFinite(expiresAt)) {
      throw new TypeError(`Invalid expiresAt: "${expiresAt}" is not a finite number`);
    }
    const now = this.#now();
    const ttl = ttlOf(expiresAt, now);
    const reply = await this.#run(this.#touch, key, [
      JSON.stringify(expiresAt),
      ttl > 0 ? String(ttl) : "",
      String(now),
    ]);
    if (reply !== 0 && reply !== 1) throw unexpectedReply(reply);
  }

  /**
   * Counts the keys under the prefix with `SCAN` (never `KEYS`): several round trips on a
   * large database, meant for monitoring, not for every request. Redis removes a key when its
   * time to live, `expiresAt - now()` at the last save or touch, runs out, so the count agrees
   * with `load` whatever the skew between the two machines' clocks; a key of a record that has
   * just expired may still be counted for the milliseconds a command takes to reach Redis.
   *
   * @returns How many sessions the prefix holds.
   * @throws Driver errors pass through.
   */
  async count(): Promise<number> {
    const match = this.#prefix.replace(GLOB, "\\$&") + "*";
    let cursor = "0";
    let total = 0;
    do {
      const reply = await this.#commands.scan(cursor, match);
      if (!Array.isArray(reply) || reply.length !== 2 || !Array.isArray(reply[1])) {
        throw new TypeError("Unexpected SCAN reply from the Redis client");
      }
      cursor = String(reply[0]);
      total += reply[1].length;
    } while (cursor !== "0");
    return total;
  }

  // A stored value as the client hands it over: a string, bytes, or (Upstash with automatic
  // deserialization) the JSON already parsed.
  #parse(key: string, value: unknown): StoredSession | null {
    let record: StoredSession | null;
    if (typeof value === "string") record = parseStoredSession(value);
    else if (value instanceof Uint8Array) record = parseStoredSession(new TextDecoder().decode(value));
    else record = toStoredSession(value);
    if (record === null) {
      this.#onCorrupt(
        key,
        new TypeError(`Corrupt session record: not a well-formed record at "${this.#prefix + key}"`),
      );
    }
    return record;
  }

  async #run(code: Script, key: string, args: string[]): Promise<0 | 1 | [unknown]> {
    const sha1 = await code.sha1;
    const redisKey = this.#prefix + key;
    let reply: unknown;
    try {
      reply = await this.#commands.evalsha(sha1, redisKey, args);
    } catch (error) {
      // Only "this server does not know the script" falls back; every other failure is real.
      if (!isNoScript(error)) throw error;
      reply = await this.#commands.eval(code.source, redisKey, args);
    }
    if (reply === 1 || reply === 0) return reply;
    if (Array.isArray(reply) && reply.length === 1) return reply as [unknown];
    throw unexpectedReply(reply);
  }
}

function unexpectedReply(reply: unknown): TypeError {
  return new TypeError(`Unexpected script reply from the Redis client: "${String(reply).slice(0, 64)}"`);
}
