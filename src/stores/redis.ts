/**
 * `RedisStore`: sessions in Redis, with compare-and-set by a Lua script and native expiry.
 *
 * Takes the user's own connected client: `@upstash/redis` (HTTP; Workers, Deno, Bun, Node),
 * `ioredis` or `redis` (node-redis v4+), each also as a Redis Cluster client (ioredis
 * `Cluster`, node-redis `createCluster`). The store imports none of them; it recognises the
 * client by its shape.
 *
 * @module
 */
import { SessionDataError } from "../errors.ts";
import {
  assertStorageKey,
  assertTouchArguments,
  ENDED_KEY,
  parseStoredSession,
  type SaveIndex,
  type SaveResult,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
  toStoredSession,
} from "../store.ts";
import { userTag } from "../user_tag.ts";

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
 * The shape of an `ioredis` Redis Cluster client (`new Cluster([{ host, port }])`): `call`
 * routes each command by its key, and `nodes("master")` lists a client per master.
 *
 * @example
 * ```ts
 * import type { IoRedisClusterLike } from "websession/redis";
 * import assert from "node:assert/strict";
 *
 * const methods: (keyof IoRedisClusterLike)[] = ["isCluster", "call", "nodes"];
 * assert.equal(methods.length, 3);
 * ```
 */
export interface IoRedisClusterLike extends IoRedisLike {
  /** `true` on an ioredis `Cluster`: how it is told apart from a single-node client. */
  readonly isCluster: true;
  /** The clients of the cluster's nodes with a role; the store asks for the masters. */
  nodes(role: "master"): IoRedisLike[];
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
 * The shape of a node-redis v4+ Redis Cluster client
 * (`await createCluster({ rootNodes }).connect()`): `sendCommand` takes the key that routes the
 * command, and `masters` with `nodeClient` reach each master.
 *
 * @example
 * ```ts
 * import type { NodeRedisClusterLike } from "websession/redis";
 * import assert from "node:assert/strict";
 *
 * const methods: (keyof NodeRedisClusterLike)[] = ["sendCommand", "evalSha", "eval", "masters", "nodeClient"];
 * assert.equal(methods.length, 5);
 * ```
 */
export interface NodeRedisClusterLike {
  /** Sends one command to the node that serves `firstKey`. */
  sendCommand(firstKey: string, isReadonly: boolean, args: string[]): Promise<unknown>;
  /** `EVALSHA`, routed by the first key. */
  evalSha(sha1: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  /** `EVAL`, routed by the first key. */
  eval(script: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  /** The masters the client knows of. */
  readonly masters: readonly unknown[];
  /** The connected client of one of `masters`. */
  nodeClient(node: unknown): Promise<{ sendCommand(args: string[]): Promise<unknown> }>;
}

/**
 * Any client {@linkcode RedisStore} accepts. Told apart by shape: `nodeClient` is a node-redis
 * cluster, a camel-case `evalSha` is node-redis, `isCluster` is an ioredis cluster, a `call`
 * method is ioredis, `evalsha` and `scan` without `call` is Upstash.
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
export type RedisLike =
  | UpstashRedisLike
  | IoRedisLike
  | IoRedisClusterLike
  | NodeRedisLike
  | NodeRedisClusterLike;

/**
 * Where a {@linkcode RedisStore} writes its warnings: `console`, the `logger` given to
 * `withSession`, or any object with a `warn` method.
 *
 * @example
 * ```ts
 * import { RedisStore, type RedisStoreLogger } from "websession/redis";
 * import { Redis } from "ioredis";
 * import assert from "node:assert/strict";
 *
 * const client = new Redis("redis://127.0.0.1:6379", { maxRetriesPerRequest: 1 });
 * const warnings: string[] = [];
 * const logger: RedisStoreLogger = { warn: (message) => void warnings.push(String(message)) };
 * const store = new RedisStore({ client, prefix: "example-logger:", logger });
 * const key = "l".repeat(43);
 * await client.set(`example-logger:${key}`, "not a record", "PX", 60_000);
 * assert.equal(await store.load(key), null);
 * assert.match(warnings[0]!, /corrupt session record/);
 * await client.del(`example-logger:${key}`);
 * client.disconnect();
 * ```
 */
export interface RedisStoreLogger {
  /** A warning: a stored value the store had to ignore. */
  warn(...args: unknown[]): void;
}

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
   * (`new Redis(url)`, or `new Cluster(nodes)`) or node-redis v4+
   * (`await createClient({ url }).connect()`, or `createCluster`). The store never connects,
   * disconnects or configures it.
   */
  client: RedisLike;
  /**
   * Prepended to every key the store writes: a session lives under `prefix + key`, where `key`
   * is the 43-character storage key (base64url SHA-256 of the session id); a lease under
   * `prefix + "lock:" + key`; a user's index under `prefix + "user:{" + tag + "}"`, where `tag`
   * is the base64url SHA-256 of the user's id. `count()` scans for keys of the session shape
   * under this prefix (glob characters in it are escaped), so give each application its own,
   * and let nothing else write under it.
   * @default "websession:"
   */
  prefix?: string;
  /**
   * The client talks to a Redis Cluster, where one script may only touch keys of one slot: a
   * save that indexes a user then writes the user's index with a command of its own, before
   * the record (see the class notes). Detected for ioredis `Cluster` and node-redis
   * `createCluster`; set it for a cluster reached some other way (through a proxy that
   * refuses cross-slot scripts, say).
   * @default whether the client is a cluster client
   */
  cluster?: boolean;
  /**
   * Called when a stored value is not a well-formed record; the session then reads as missing,
   * and a save over it is refused (`false`) without overwriting it. Given, it replaces the
   * warning written to `logger`.
   * @default a warning to `logger`
   */
  onCorrupt?: (key: string, error: Error) => void;
  /**
   * Where warnings go (a corrupt stored value, unless `onCorrupt` is given): pass the same
   * logger as `withSession`'s to route them with the rest.
   * @default console
   */
  logger?: RedisStoreLogger;
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
// (and re-encoding, which cjson cannot do faithfully) the session data. A record saved with a
// user index ends with `,"user":"<tag>","userUntil":<ms>}` instead of `}`: the user's tag and
// until when (by the application's clock) its entry in that user's index is sure to last. The
// data, a JSON object, always ends with `}`, so that ending cannot be part of it.
function encode(record: StoredSession, data: string): string {
  return `{"version":${JSON.stringify(record.version)},"createdAt":${JSON.stringify(record.createdAt)},` +
    `"expiresAt":${JSON.stringify(record.expiresAt)},"data":${data}}`;
}

/** The user tag and index expiry a stored value ends with, if it was saved with an index. */
const INDEXED = /,"user":"([A-Za-z0-9_-]{43})","userUntil":(\d+)\}$/;

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

// Lua: enters `member` in the user index `set` (a sorted set scored by until when each entry
// must last, in ms by the application's clock) for at least `untilv`, drops entries that no
// record can need any more (scored at or before `now`), and gives the set a time to live that
// reaches its furthest entry. An entry's score is raised before a record notes it, so an entry
// dropped here belongs to no live record.
const INDEX_FUNCTION = `local function index(set, member, untilv, now)
  local score = redis.call('ZSCORE', set, member)
  if not score or tonumber(score) < tonumber(untilv) then redis.call('ZADD', set, untilv, member) end
  redis.call('ZREMRANGEBYSCORE', set, '-inf', now)
  local top = redis.call('ZRANGE', set, -1, -1, 'WITHSCORES')
  if top[2] then
    redis.call('PEXPIRE', set, string.format('%.0f', math.ceil(tonumber(top[2]) - tonumber(now))))
  end
end
`;

// KEYS[1]: the record's key. KEYS[2], on a single node only: the user's index.
// ARGV[1]: the expected version, or "" to create only if absent.
// ARGV[2]: the record as JSON, or "" when it is already expired (delete instead of writing).
// ARGV[3]: milliseconds to live. ARGV[4]: now, in milliseconds since the epoch, by the
// application's clock: a stored record whose expiresAt is not after it counts as absent, even
// if its key has not expired yet. ARGV[5]: the new expiresAt, as an integer.
// ARGV[6]: the user's tag, or "" to index nothing. ARGV[7]: until when the user's index entry
// must last: with KEYS[2] the script writes the entry; without (a cluster), it is until when
// the caller has already written it, or "" when it has not. ARGV[8]: the storage key.
// Returns 1 when written; when refused, 0 if nothing live is stored, else { the stored value }
// (a one-element array, which no client can mistake for an integer); -1 when, on a cluster,
// the record needs an index entry the caller has not written yet (nothing was written).
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
${INDEX_FUNCTION}local current = redis.call('GET', KEYS[1])
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
local value = ARGV[2]
if ARGV[6] ~= '' then
  local noted
  if current then
    local tag, u = string.match(current, ',"user":"([%w_%-]+)","userUntil":(%d+)}$')
    if tag == ARGV[6] and tonumber(u) >= tonumber(ARGV[5]) then noted = u end
  end
  if not noted then
    if #KEYS == 2 then
      index(KEYS[2], ARGV[8], ARGV[7], ARGV[4])
      noted = ARGV[7]
    elseif ARGV[7] ~= '' and tonumber(ARGV[7]) >= tonumber(ARGV[5]) then
      noted = ARGV[7]
    else
      return -1
    end
  end
  value = string.sub(value, 1, -2) .. ',"user":"' .. ARGV[6] .. '","userUntil":' .. noted .. '}'
end
redis.call('SET', KEYS[1], value, 'PX', ARGV[3])
return 1`;

// KEYS[1]: the key. ARGV[1]: the new expiresAt as a JSON number. ARGV[2]: milliseconds to live.
// ARGV[3]: now, by the application's clock. ARGV[4]: the new expiresAt as an integer.
// ARGV[5], ARGV[6]: a user's tag and until when the caller has made its index entry for this
// key last, or "". ARGV[7]: the version the caller read.
// A compare-and-set on the expiry: rewrites only the expiresAt field (and, when it moves past
// what the record notes of its index entry, that note) of a record that is live by that clock,
// at version ARGV[7], not a tombstone (its data holds "__ended": true at the top level), and
// expiring before ARGV[1]; never creates, revives, shortens or deletes one. Returns 1 when
// written, 0 when not; or { tag } without writing anything when the record's entry in that
// user's index must first be made to last until the new expiry.
const TOUCH = `local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local version, from, to = string.match(current, '^{"version":(%d+),"createdAt":[^,]+,"expiresAt":()[^,]+(),"data":')
if not version or version ~= ARGV[7] then return 0 end
local expires = tonumber(string.sub(current, from, to - 1))
if not expires or expires <= tonumber(ARGV[3]) or tonumber(ARGV[1]) <= expires then return 0 end
if string.find(current, '"${ENDED_KEY}"', to, true) then
  local ok, decoded = pcall(cjson.decode, current)
  if not ok or type(decoded) ~= 'table' or type(decoded.data) ~= 'table' or decoded.data['${ENDED_KEY}'] == true then
    return 0
  end
end
local value = string.sub(current, 1, from - 1) .. ARGV[1] .. string.sub(current, to)
local at, tag, noted = string.match(value, '()[,]"user":"([%w_%-]+)","userUntil":(%d+)}$')
if tag and tonumber(noted) < tonumber(ARGV[4]) then
  local untilv = tonumber(ARGV[6])
  if tag ~= ARGV[5] or not untilv or untilv < tonumber(ARGV[4]) then return { tag } end
  value = string.sub(value, 1, at - 1) .. ',"user":"' .. tag .. '","userUntil":' .. ARGV[6] .. '}'
end
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return 1`;

// KEYS[1]: a user's index. ARGV[1]: the storage key. ARGV[2]: until when its entry must last.
// ARGV[3]: now, by the application's clock.
const INDEX = `${INDEX_FUNCTION}index(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return 1`;

// KEYS[1]: a user's index. ARGV[1]: now. The storage keys whose entries may still be needed.
const USERS = `return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')`;

// KEYS[1]: the lease's key. ARGV[1]: the owner. ARGV[2]: milliseconds to live. Takes the lease
// when it is free or already the owner's (extending it); 0 while another owner holds it.
const LOCK = `local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`;

// KEYS[1]: the lease's key. ARGV[1]: the owner. Deletes the lease only if the owner holds it.
const UNLOCK = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0`;

/** Redis takes PX as a 64-bit integer: a far-off or non-finite expiry is capped, never sent as `1e+308`. */
const MAX_TTL_MS = Number.MAX_SAFE_INTEGER;

function ttlOf(expiresAt: number, now: number): number {
  const ttl = Math.ceil(expiresAt - now);
  return Number.isNaN(ttl) ? 0 : Math.min(ttl, MAX_TTL_MS);
}

/** An expiry as the integer the scripts compare, capped like a time to live. */
function msOf(time: number): string {
  return String(Math.min(Math.ceil(time), MAX_TTL_MS));
}

/**
 * Until when a user's index entry is made to last for a record expiring at `expiresAt`: as long
 * again as the record has left, so that the touches that slide its expiry along rarely need to
 * extend the entry first.
 */
function untilOf(expiresAt: number, now: number): string {
  return msOf(expiresAt + ttlOf(expiresAt, now));
}

interface Script {
  source: string;
  sha1: Promise<string>;
}

function script(source: string): Script {
  const sha1 = crypto.subtle.digest("SHA-1", new TextEncoder().encode(source)).then(function hex(buffer) {
    return Array.from(new Uint8Array(buffer), (byte) => byte.toString(16).padStart(2, "0")).join("");
  });
  // Swallow here so an unawaited rejection is not reported; the await in #eval rethrows it.
  sha1.catch(() => {});
  return { source, sha1 };
}

type Scan = (cursor: string, match: string) => Promise<unknown>;

/** The few commands the store sends, over whichever client it was given. */
interface Commands {
  /** The client is a cluster client. */
  cluster: boolean;
  get(key: string): Promise<unknown>;
  del(key: string): Promise<unknown>;
  evalsha(sha1: string, keys: string[], args: string[]): Promise<unknown>;
  eval(source: string, keys: string[], args: string[]): Promise<unknown>;
  /** One `SCAN` per master: one on a single node. */
  scanners(): Promise<Scan[]>;
  /** `TIME`, on the node that serves `key` where the client routes by key. */
  time(key: string): Promise<unknown>;
}

// Upstash's client has no method of its own for TIME: a script returns it (read-only).
const TIME_SCRIPT = "return redis.call('TIME')";

const SCAN_COUNT = 1000;

function ioScan(redis: IoRedisLike): Scan {
  return (cursor, match) => redis.call("SCAN", cursor, "MATCH", match, "COUNT", SCAN_COUNT);
}

function nodeScan(redis: { sendCommand(args: string[]): Promise<unknown> }): Scan {
  return (cursor, match) => redis.sendCommand(["SCAN", cursor, "MATCH", match, "COUNT", String(SCAN_COUNT)]);
}

function commandsOf(client: RedisLike): Commands {
  const any = client as unknown as Record<string, unknown>;
  if (typeof client !== "object" || client === null) {
    throw new TypeError("Invalid Redis client: expected an @upstash/redis, ioredis or node-redis client");
  }
  if (
    typeof any.nodeClient === "function" && typeof any.evalSha === "function" &&
    typeof any.sendCommand === "function"
  ) {
    const redis = client as NodeRedisClusterLike;
    return {
      cluster: true,
      get: (key) => redis.sendCommand(key, true, ["GET", key]),
      del: (key) => redis.sendCommand(key, false, ["DEL", key]),
      evalsha: (sha1, keys, args) => redis.evalSha(sha1, { keys, arguments: args }),
      eval: (source, keys, args) => redis.eval(source, { keys, arguments: args }),
      scanners: async () =>
        (await Promise.all(redis.masters.map((node) => redis.nodeClient(node)))).map(nodeScan),
      time: (key) => redis.sendCommand(key, true, ["TIME"]),
    };
  }
  if (typeof any.evalSha === "function" && typeof any.sendCommand === "function") {
    const redis = client as NodeRedisLike;
    return {
      cluster: false,
      get: (key) => redis.sendCommand(["GET", key]),
      del: (key) => redis.sendCommand(["DEL", key]),
      evalsha: (sha1, keys, args) => redis.evalSha(sha1, { keys, arguments: args }),
      eval: (source, keys, args) => redis.eval(source, { keys, arguments: args }),
      scanners: () => Promise.resolve([nodeScan(redis)]),
      time: () => redis.sendCommand(["TIME"]),
    };
  }
  if (typeof any.call === "function") {
    const redis = client as IoRedisLike;
    const cluster = any.isCluster === true && typeof any.nodes === "function";
    return {
      cluster,
      get: (key) => redis.call("GET", key),
      del: (key) => redis.call("DEL", key),
      evalsha: (sha1, keys, args) => redis.call("EVALSHA", sha1, keys.length, ...keys, ...args),
      eval: (source, keys, args) => redis.call("EVAL", source, keys.length, ...keys, ...args),
      scanners: () =>
        Promise.resolve(
          cluster ? (client as IoRedisClusterLike).nodes("master").map(ioScan) : [ioScan(redis)],
        ),
      time: () => redis.call("TIME"),
    };
  }
  if (typeof any.evalsha === "function" && typeof any.scan === "function" && typeof any.get === "function") {
    const redis = client as UpstashRedisLike;
    return {
      cluster: false,
      get: (key) => redis.get(key),
      del: (key) => redis.del(key),
      evalsha: (sha1, keys, args) => redis.evalsha(sha1, keys, args),
      eval: (source, keys, args) => redis.eval(source, keys, args),
      scanners: () => Promise.resolve([(cursor, match) => redis.scan(cursor, { match, count: SCAN_COUNT })]),
      time: () => redis.eval(TIME_SCRIPT, [], []),
    };
  }
  throw new TypeError("Invalid Redis client: expected an @upstash/redis, ioredis or node-redis client");
}

/**
 * Milliseconds since the epoch from a `TIME` reply: `[seconds, microseconds]`, as strings, bytes,
 * or (Upstash with automatic deserialization) numbers.
 */
function timeOf(reply: unknown): number {
  if (Array.isArray(reply) && reply.length === 2) {
    const [seconds, micros] = reply.map((part) => Number(text(part) ?? part));
    if (Number.isSafeInteger(seconds) && Number.isSafeInteger(micros)) {
      return seconds! * 1000 + micros! / 1000;
    }
  }
  throw new TypeError(`Unexpected TIME reply from the Redis client: "${String(reply).slice(0, 64)}"`);
}

function isNoScript(error: unknown): boolean {
  return error instanceof Error && /\bNOSCRIPT\b/.test(error.message);
}

const GLOB = /[*?[\]\\]/g;
/** A storage key's length: `count()` matches exactly this many characters after the prefix. */
const KEY_LENGTH = 43;

/** A reply string as the client hands it over: a string, or bytes. */
function text(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (value instanceof Uint8Array) return new TextDecoder().decode(value);
  return undefined;
}

/** How many user tags each of the two generations of the tag cache holds. */
const TAG_CACHE = 1024;

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
 * Leases (`session.lock()`): `lock` is one script that sets `prefix + "lock:" + key` to the
 * owner with a time to live (`PX`) when it is free or already that owner's, so of concurrent
 * takers exactly one wins and the lease lapses by itself if its holder dies; `unlock` deletes
 * it in one script only if the owner still holds it.
 *
 * Sessions per user: a save given an `index` enters the key in the user's index, a sorted set
 * under `prefix + "user:{" + tag + "}"` (`tag`: base64url SHA-256 of the user id, so no
 * personal data appears in key names), scored by until when each entry must last, with a time
 * to live that reaches its furthest entry; entries that no record can need any more are dropped
 * as the index is written. The record notes its user's tag and its entry's expiry, and a touch
 * that would move the record's expiry past that extends the entry first (a second script,
 * about once per idle timeout for a session that is only read). On a single node the save
 * script writes the entry itself, only if the save succeeds: still one round trip. On a Redis
 * Cluster the record and the user's index are in different slots, which one script cannot
 * touch together, so the entry is written by a script of its own BEFORE the record's save
 * (the first save of a user's session, and one each time the entry needs extending, take three
 * round trips; other saves one). A save refused after that leaves an entry the record does not
 * note, so on a cluster `keysOfUser` reads each listed record and returns only those that note
 * the user: it never misses an indexed live record, and may list one whose user has since
 * changed (the caller checks each record).
 *
 * Redis Cluster: give the store an ioredis `Cluster` or node-redis `createCluster` client. Every
 * script touches one key (no cross-slot script), `count()` scans every master, and the client
 * follows `MOVED` and `ASK` redirections. Redis replicates asynchronously: a save acknowledged by
 * a master that then crashes before its replica received it is lost when the replica takes
 * over (a manual `CLUSTER FAILOVER` waits for the replica to catch up and loses nothing).
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
 * An eviction policy that may evict keys with a time to live (`volatile-*`, `allkeys-*`) can
 * drop sessions, leases and index entries under memory pressure; use `noeviction` for sessions.
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
 * // A lease: one owner at a time.
 * assert.equal(await store.lock(key, "request-1", 30_000), true);
 * assert.equal(await store.lock(key, "request-2", 30_000), false);
 * await store.unlock(key, "request-1");
 * // Sessions per user: the save that sets the user indexes the key.
 * assert.equal(await store.save(key, { ...v1, data: { user: "ada" }, version: 2 }, 1, { user: "ada" }), true);
 * assert.deepEqual(await store.keysOfUser("ada"), [key]);
 * await store.destroy(key);
 * client.disconnect();
 * ```
 */
export class RedisStore implements SessionStore {
  /**
   * Compare-and-set: yes (a Lua script). Native expiry: yes (`PX`). Leases: yes. An index of
   * each user's sessions: yes.
   */
  readonly capabilities: StoreCapabilities = { compareAndSet: true, ttl: true, locks: true, users: true };
  #commands: Commands;
  #cluster: boolean;
  #prefix: string;
  #onCorrupt: (key: string, error: Error) => void;
  #now: () => number;
  #save = script(SAVE);
  #touch = script(TOUCH);
  #index = script(INDEX);
  #users = script(USERS);
  #lock = script(LOCK);
  #unlock = script(UNLOCK);
  /** User tags by user id, in two generations (the young one is swapped out when full). */
  #tags = new Map<string, string>();
  #oldTags = new Map<string, string>();

  /**
   * Creates a store over the user's connected Redis client.
   *
   * @param options See {@linkcode RedisStoreOptions}.
   * @throws {TypeError} When `client` is none of the supported shapes, `prefix` is not a string,
   *   `cluster` is not a boolean, `now` is not a function or `logger` has no `warn` method.
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
    if (options.cluster !== undefined && typeof options.cluster !== "boolean") {
      throw new TypeError(`Invalid cluster: "${String(options.cluster)}" is not a boolean`);
    }
    if (options.now !== undefined && typeof options.now !== "function") {
      throw new TypeError(`Invalid now: "${String(options.now)}" is not a function`);
    }
    const logger = options.logger ?? console;
    if (typeof logger?.warn !== "function") {
      throw new TypeError("Invalid logger: expected an object with warn(), such as console");
    }
    this.#prefix = prefix;
    this.#cluster = options.cluster ?? this.#commands.cluster;
    this.#onCorrupt = options.onCorrupt ??
      ((key, error) =>
        logger.warn(`websession: corrupt session record "${key}" read as missing: ${error.message}`));
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
   * @param index The user to index the key under (`keysOfUser`); entered in the same script as
   *   the record on a single node, and before it on a cluster (see the class notes).
   * @returns `true` when written. When refused, a {@linkcode SaveConflict} whose `current` is
   *   the live record the script found, or `null` when none is live; plain `false` only when the
   *   stored value is corrupt (reported to `onCorrupt`, and left as it is).
   * @throws {SessionDataError} When `record.data` is not a JSON object `JSON.stringify` can
   *   write (a `BigInt`, a cycle); nothing is sent.
   * @throws {TypeError} When `key` is not a storage key or `index.user` is not a string. Driver
   *   errors pass through.
   */
  async save(
    key: string,
    record: StoredSession,
    expectedVersion: number | null,
    index?: SaveIndex,
  ): Promise<SaveResult> {
    assertStorageKey(key);
    const data = stringifyData(record.data);
    if (index !== undefined && typeof index?.user !== "string") {
      throw new TypeError(`Invalid index: "${String(index?.user)}" is not a user id`);
    }
    const tag = index === undefined ? "" : await this.#tagOf(index.user);
    const recordKey = this.#prefix + key;
    const keys = tag !== "" && !this.#cluster ? [recordKey, this.#userKey(tag)] : [recordKey];
    let indexed = "";
    for (;;) {
      const now = this.#now();
      const ttl = ttlOf(record.expiresAt, now);
      const reply = await this.#eval(this.#save, keys, [
        expectedVersion === null ? "" : String(expectedVersion),
        ttl > 0 ? encode(record, data) : "",
        ttl > 0 ? String(ttl) : "",
        String(now),
        msOf(record.expiresAt),
        ttl > 0 ? tag : "",
        keys.length === 2 ? untilOf(record.expiresAt, now) : indexed,
        key,
      ]);
      if (reply === 1) return true;
      if (reply === 0) return { current: null };
      if (reply === -1 && indexed === "") {
        // A cluster: the user's index is written first, by a script of its own.
        indexed = untilOf(record.expiresAt, now);
        await this.#enter(tag, key, indexed, now);
        continue;
      }
      const stored = Array.isArray(reply) && reply.length === 1 ? reply[0] : undefined;
      if (stored === undefined) throw unexpectedReply(reply);
      const current = this.#parse(key, stored);
      // The script compared the same fields with the same clock; these can only fail for a value
      // it could not read, and then nothing more is known.
      if (current === null || current.version === expectedVersion) return false;
      return { current: current.expiresAt <= now ? null : current };
    }
  }

  /**
   * Removes a record with one `DEL`; no error if it is absent. Its entry in a user's index stays
   * until that entry lapses (`keysOfUser` may list the key; the caller checks each record).
   *
   * @param key The storage key.
   * @throws {TypeError} When `key` is not a storage key. Driver errors pass through.
   */
  async destroy(key: string): Promise<void> {
    assertStorageKey(key);
    await this.#commands.del(this.#prefix + key);
  }

  /**
   * Extends a live record's expiry (the key's TTL and the stored `expiresAt`) in one script,
   * without rewriting its data or version, when the record is at `version`, is not a tombstone
   * and expires before `expiresAt` by the `now` clock: the script checks all of it and writes in
   * the same atomic step. When the record is indexed under a user and the new expiry passes
   * what its index entry is sure to last, the entry is extended first (one more script), then
   * the touch is decided and made.
   *
   * @param key The storage key.
   * @param expiresAt The new expiry, in milliseconds since the epoch.
   * @param version The version the caller read.
   * @returns `true` when extended; `false` when the record is missing, expired, at another
   *   version, ended, or already expires at or after `expiresAt` (nothing is written).
   * @throws {TypeError} When `key` is not a storage key, `expiresAt` is not finite or `version`
   *   is not a positive integer.
   * @throws {Error} When the record's user changed under five touches in a row.
   */
  async touch(key: string, expiresAt: number, version: number): Promise<boolean> {
    assertStorageKey(key);
    assertTouchArguments(expiresAt, version);
    let tag = "";
    let indexed = "";
    for (let attempt = 0; attempt < 5; attempt++) {
      const now = this.#now();
      const ttl = ttlOf(expiresAt, now);
      // A live record expires after now: an expiry not after now can extend none.
      if (ttl <= 0) return false;
      const reply = await this.#eval(this.#touch, [this.#prefix + key], [
        JSON.stringify(expiresAt),
        String(ttl),
        String(now),
        msOf(expiresAt),
        tag,
        indexed,
        String(version),
      ]);
      if (reply === 0 || reply === 1) return reply === 1;
      const wanted = Array.isArray(reply) && reply.length === 1 ? text(reply[0]) : undefined;
      if (wanted === undefined || !/^[A-Za-z0-9_-]{43}$/.test(wanted)) throw unexpectedReply(reply);
      tag = wanted;
      indexed = untilOf(expiresAt, now);
      await this.#enter(tag, key, indexed, now);
    }
    throw new Error(`Touch gave up: the user of session record "${key}" kept changing`);
  }

  /**
   * Takes the lease named `key` for `owner` in one script: sets `prefix + "lock:" + key` to the
   * owner with a time to live of `ttlMs` when no other owner holds it (the same owner extends
   * it).
   *
   * @param key The storage key the lease is named after.
   * @param owner Who takes it: a unique, non-empty string.
   * @param ttlMs Milliseconds after which the lease lapses unless released (rounded up; at least 1).
   * @returns `true` when taken, `false` while another owner holds it.
   * @throws {TypeError} When `key` is not a storage key, `owner` is empty or `ttlMs` is not a
   *   positive number. Driver errors pass through.
   */
  async lock(key: string, owner: string, ttlMs: number): Promise<boolean> {
    assertStorageKey(key);
    assertOwner(owner);
    if (typeof ttlMs !== "number" || !(ttlMs > 0) || !Number.isFinite(ttlMs)) {
      throw new TypeError(`Invalid ttlMs: "${String(ttlMs)}" is not a positive number of milliseconds`);
    }
    const reply = await this.#eval(this.#lock, [this.#leaseKey(key)], [owner, String(Math.ceil(ttlMs))]);
    if (reply !== 0 && reply !== 1) throw unexpectedReply(reply);
    return reply === 1;
  }

  /**
   * Releases the lease named `key` if, and only if, `owner` holds it (a compare-and-delete
   * script); otherwise does nothing.
   *
   * @param key The storage key the lease is named after.
   * @param owner Who took it.
   * @throws {TypeError} When `key` is not a storage key or `owner` is empty. Driver errors pass
   *   through.
   */
  async unlock(key: string, owner: string): Promise<void> {
    assertStorageKey(key);
    assertOwner(owner);
    const reply = await this.#eval(this.#unlock, [this.#leaseKey(key)], [owner]);
    if (reply !== 0 && reply !== 1) throw unexpectedReply(reply);
  }

  /**
   * The storage keys indexed under `user` whose entries may still be needed by the `now` clock:
   * one script on a single node. On a cluster, each listed record is then read (one `GET`
   * each, in parallel) and only those that are live and note this user are returned. The list
   * may still hold a key whose record has since changed user or ended; it never misses a live
   * record saved with this user in its index.
   *
   * @param user The user's id.
   * @returns The storage keys, in no particular order.
   * @throws {TypeError} When `user` is not a string. Driver errors pass through.
   */
  async keysOfUser(user: string): Promise<string[]> {
    if (typeof user !== "string") throw new TypeError(`Invalid user: "${String(user)}" is not a string`);
    const tag = await this.#tagOf(user);
    const now = this.#now();
    const reply = await this.#eval(this.#users, [this.#userKey(tag)], [String(now)]);
    if (!Array.isArray(reply)) throw unexpectedReply(reply);
    const keys = reply.map(text).filter((key): key is string =>
      key !== undefined && key.length === KEY_LENGTH
    );
    if (!this.#cluster) return keys;
    const noted = await Promise.all(keys.map(async (key) => {
      const value = await this.#commands.get(this.#prefix + key);
      const found = text(value) ?? (value == null ? undefined : JSON.stringify(value));
      const match = found === undefined ? null : INDEXED.exec(found);
      if (match === null || match[1] !== tag) return false;
      const record = this.#parse(key, found);
      return record !== null && record.expiresAt > now;
    }));
    return keys.filter((_, i) => noted[i]);
  }

  /**
   * The Redis server's clock, with one `TIME` (the node that serves `key` on a node-redis
   * cluster; on Upstash, a read-only script that calls it). Asked only to stamp and judge the
   * grace of a session ended by a request (see `SessionStore.time`), never on an ordinary
   * request; expiry stays with the `now` option's clock.
   *
   * @param key The storage key the time is wanted for.
   * @returns Milliseconds since the epoch by Redis' clock (microsecond precision).
   * @throws {TypeError} When `key` is not a storage key or the reply is not a `TIME` reply.
   *   Driver errors pass through.
   * @example
   * ```ts
   * import { Redis } from "ioredis";
   * import { RedisStore } from "websession/redis";
   * import assert from "node:assert/strict";
   *
   * const client = new Redis("redis://127.0.0.1:6379");
   * const store = new RedisStore({ client, prefix: "websession:time-example:" });
   * const before = Date.now();
   * const time = await store.time("k".repeat(43));
   * assert.ok(Math.abs(time - before) < 60_000); // Redis on this machine shares its clock
   * client.disconnect();
   * ```
   */
  async time(key: string): Promise<number> {
    assertStorageKey(key);
    return timeOf(await this.#commands.time(this.#prefix + key));
  }

  /**
   * Counts the session keys under the prefix with `SCAN` (never `KEYS`), on every master of a
   * cluster: several round trips on a large database, meant for monitoring, not for every
   * request. Only keys of the session shape (the prefix and 43 characters) count, not leases or
   * user indexes. Redis removes a key when its time to live, `expiresAt - now()` at the last save
   * or touch, runs out, so the count agrees with `load` whatever the skew between the two
   * machines' clocks; a key of a record that has just expired may still be counted for the
   * milliseconds a command takes to reach Redis, and a cluster that is moving slots between
   * masters or failing over may count a key twice or not at all.
   *
   * @returns How many sessions the prefix holds.
   * @throws Driver errors pass through.
   */
  async count(): Promise<number> {
    const match = this.#prefix.replace(GLOB, "\\$&") + "?".repeat(KEY_LENGTH);
    let total = 0;
    for (const scan of await this.#commands.scanners()) {
      let cursor = "0";
      do {
        const reply = await scan(cursor, match);
        if (!Array.isArray(reply) || reply.length !== 2 || !Array.isArray(reply[1])) {
          throw new TypeError("Unexpected SCAN reply from the Redis client");
        }
        cursor = String(reply[0]);
        total += reply[1].length;
      } while (cursor !== "0");
    }
    return total;
  }

  #leaseKey(key: string): string {
    return `${this.#prefix}lock:${key}`;
  }

  #userKey(tag: string): string {
    return `${this.#prefix}user:{${tag}}`;
  }

  async #tagOf(user: string): Promise<string> {
    let tag = this.#tags.get(user) ?? this.#oldTags.get(user);
    if (tag !== undefined) return tag;
    tag = await userTag(user); // the store kit's rule: a user index's hash tag
    if (this.#tags.size >= TAG_CACHE) {
      this.#oldTags = this.#tags;
      this.#tags = new Map();
    }
    this.#tags.set(user, tag);
    return tag;
  }

  /** Makes `key`'s entry in the index of the user tagged `tag` last until `untilv` (one script). */
  async #enter(tag: string, key: string, untilv: string, now: number): Promise<void> {
    const reply = await this.#eval(this.#index, [this.#userKey(tag)], [key, untilv, String(now)]);
    if (reply !== 1) throw unexpectedReply(reply);
  }

  // A stored value as the client hands it over: a string, bytes, or (Upstash with automatic
  // deserialization) the JSON already parsed. What a save notes of its user index is left out.
  #parse(key: string, value: unknown): StoredSession | null {
    const found = text(value);
    const parsed = found === undefined ? toStoredSession(value) : parseStoredSession(found);
    if (parsed === null) {
      this.#onCorrupt(
        key,
        new TypeError(`Corrupt session record: not a well-formed record at "${this.#prefix + key}"`),
      );
      return null;
    }
    const { data, version, createdAt, expiresAt } = parsed;
    return { data, version, createdAt, expiresAt };
  }

  async #eval(code: Script, keys: string[], args: string[]): Promise<unknown> {
    const sha1 = await code.sha1;
    try {
      return await this.#commands.evalsha(sha1, keys, args);
    } catch (error) {
      // Only "this server does not know the script" falls back; every other failure is real.
      if (!isNoScript(error)) throw error;
      return await this.#commands.eval(code.source, keys, args);
    }
  }
}

function assertOwner(owner: string): void {
  if (typeof owner !== "string" || owner === "") {
    throw new TypeError(`Invalid owner: "${String(owner)}" is not a non-empty string`);
  }
}

function unexpectedReply(reply: unknown): TypeError {
  return new TypeError(`Unexpected script reply from the Redis client: "${String(reply).slice(0, 64)}"`);
}
