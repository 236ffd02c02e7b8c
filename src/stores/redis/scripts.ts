/**
 * The stored value's layout and the Lua scripts of the Redis store: each script is one atomic
 * step (compare-and-set, touch, index entry, lock). Their contracts are in the comments above
 * each; the store's docs page says what they add up to.
 *
 * @module
 */
import { ENDED_KEY, type StoredSession } from "../../store.ts";

// The stored value is the record as JSON with its fields in this fixed order, so that the Lua
// scripts can read the version and rewrite expiresAt with an anchored pattern, without decoding
// (and re-encoding, which cjson cannot do faithfully) the session data. A record saved with a
// user index ends with `,"user":"<tag>","userUntil":<ms>}` instead of `}`: the user's tag and
// until when (by the application's clock) its entry in that user's index is sure to last. The
// data, a JSON object, always ends with `}`, so that ending cannot be part of it.
export function encode(record: StoredSession, data: string): string {
  return `{"version":${JSON.stringify(record.version)},"createdAt":${JSON.stringify(record.createdAt)},` +
    `"expiresAt":${JSON.stringify(record.expiresAt)},"data":${data}}`;
}

/** The user tag and index expiry a stored value ends with, if it was saved with an index. */
export const INDEXED = /,"user":"([A-Za-z0-9_-]{43})","userUntil":(\d+)\}$/;

export { stringifyData } from "../../store_rules.ts";

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
export const SAVE = `local function fields(current)
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
export const TOUCH = `local current = redis.call('GET', KEYS[1])
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
export const INDEX = `${INDEX_FUNCTION}index(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return 1`;

// KEYS[1]: a user's index. ARGV[1]: now. The storage keys whose entries may still be needed.
export const USERS = `return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')`;

// KEYS[1]: the lock's key. ARGV[1]: the owner. ARGV[2]: milliseconds to live. Sets it to the
// owner when it is free or already the owner's (extending it); 0 while another owner holds it.
export const LOCK = `local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`;

// KEYS[1]: the lock's key. ARGV[1]: the owner. Deletes the lock only if the owner holds it.
export const UNLOCK = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0`;

/** Redis takes PX as a 64-bit integer: a far-off or non-finite expiry is capped, never sent as `1e+308`. */
const MAX_TTL_MS = Number.MAX_SAFE_INTEGER;

export function ttlOf(expiresAt: number, now: number): number {
  const ttl = Math.ceil(expiresAt - now);
  return Number.isNaN(ttl) ? 0 : Math.min(ttl, MAX_TTL_MS);
}

/** An expiry as the integer the scripts compare, capped like a time to live. */
export function msOf(time: number): string {
  return String(Math.min(Math.ceil(time), MAX_TTL_MS));
}

/**
 * Until when a user's index entry is made to last for a record expiring at `expiresAt`: as long
 * again as the record has left, so that the touches that slide its expiry along rarely need to
 * extend the entry first.
 */
export function untilOf(expiresAt: number, now: number): string {
  return msOf(expiresAt + ttlOf(expiresAt, now));
}

export interface Script {
  source: string;
  sha1: Promise<string>;
}

export function script(source: string): Script {
  const sha1 = crypto.subtle.digest("SHA-1", new TextEncoder().encode(source)).then(function hex(buffer) {
    return Array.from(new Uint8Array(buffer), (byte) => byte.toString(16).padStart(2, "0")).join("");
  });
  // Swallow here so an unawaited rejection is not reported; the await in #eval rethrows it.
  sha1.catch(() => {});
  return { source, sha1 };
}

export function unexpectedReply(reply: unknown): TypeError {
  return new TypeError(`Unexpected script reply from the Redis client: "${String(reply).slice(0, 64)}"`);
}
