/**
 * `CookieStore`: the whole session sealed into the cookie itself, with no server copy.
 *
 * The record is encrypted and authenticated as a compact JWE (`alg: "dir"`, `enc: "A256GCM"`).
 * Sealing builds the compact form with one Web Crypto AES-GCM encryption under a protected header
 * serialized once per key; opening goes through [jose](https://github.com/panva/jose)'s checks.
 * Each secret yields its own 256-bit key through HKDF-SHA-256; the JWE `kid` header names the key
 * (a short fingerprint, not the key), so opening picks the right key at once and old secrets keep
 * opening cookies while the first one seals.
 *
 * @module
 */
import { base64url, compactDecrypt, type CompactJWEHeaderParameters, errors as joseErrors } from "jose";
import { SessionError, SessionTooLargeError, StoreUnavailableError } from "../errors.ts";
import { GenerationalCache } from "../signing.ts";
import {
  type OpenedSession,
  type SealedCookie,
  type SealedSessionStore,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
  toStoredSession,
} from "../store.ts";

/**
 * Options of {@linkcode CookieStore}.
 *
 * @example
 * ```ts
 * import { CookieStore, type CookieStoreOptions } from "websession/cookie";
 * import { SessionTooLargeError } from "websession";
 * import assert from "node:assert/strict";
 *
 * const options: CookieStoreOptions = {
 *   secrets: ["the current secret, 32 characters or more", "the previous one, still opening cookies"],
 *   compress: false,
 *   maxCookies: 2,
 * };
 * const store = new CookieStore(options);
 * const now = Date.now();
 * const record = (note: string) => ({
 *   data: { note },
 *   version: 1,
 *   createdAt: now,
 *   expiresAt: now + 60_000,
 * });
 * assert.equal((await store.seal("id", record("short"), "session")).length, 1);
 * // More than two cookies' worth is refused rather than sent for the browser to drop.
 * await assert.rejects(store.seal("id", record("x".repeat(10_000)), "session"), SessionTooLargeError);
 * ```
 */
export interface CookieStoreOptions {
  /**
   * The secrets keys are derived from, each at least 32 characters. With a list, the first seals
   * and every one opens: put a new secret first, keep the old ones until their cookies expired.
   */
  secrets: string | readonly string[];
  /**
   * Deflate payloads before sealing: `true` tries it on payloads of 512 bytes or more, a number
   * sets that threshold in bytes, `false` never compresses. A compressed payload is kept only when
   * it is smaller than the plain one.
   * @default true
   */
  compress?: boolean | number;
  /**
   * The longest value of one cookie, in characters. Browsers keep about 4096 bytes of name and
   * value per cookie; the default leaves room for the name and the attributes.
   * @default 3800
   */
  chunkSize?: number;
  /**
   * The most cookies one session may use. A session that needs more is refused with
   * `SessionTooLargeError` instead of being sent as cookies the browser would drop.
   * @default 5
   */
  maxCookies?: number;
  /**
   * The largest session payload (JSON, before compression), in bytes. `seal` refuses a larger one
   * and `open` stops decompressing past it, so a crafted payload cannot exhaust memory.
   * @default 131072
   */
  maxPayloadBytes?: number;
  /**
   * A server store that keeps a revocation list: `revoke` writes a tombstone for the session and
   * `open` refuses a revoked session. Costs one store read per request that carries a session.
   * Give it a key space of its own (a prefix, a table).
   * @default undefined (no revocation)
   */
  revocation?: SessionStore;
  /**
   * Tokens kept per generation in the cache of tokens this store sealed or opened, so a
   * returning visitor's cookie opens without decryption; at most twice this many are held, and
   * only tokens whose cookie value and payload together stay within 8192 characters. `0` turns
   * the cache off.
   * @default 2048
   */
  cacheSize?: number;
  /**
   * The clock, in milliseconds since the epoch (injectable for tests).
   * @default Date.now
   */
  now?: () => number;
}

/** A key derived from one secret. */
interface Key {
  kid: string;
  key: CryptoKey;
  /** The protected headers this key seals under, serialized once: plain and deflated. */
  headers: { plain: ProtectedHeader; zip: ProtectedHeader };
  /** Position of the secret in the list: 0 seals, others are retired. */
  index: number;
}

interface Keyring {
  sealing: Key;
  byKid: Map<string, Key>;
}

/** A JWE protected header as it goes into the token, and as the AES-GCM additional data. */
interface ProtectedHeader {
  /** `BASE64URL(UTF8(JSON))` of the header. */
  encoded: string;
  /** The same characters as bytes: the additional authenticated data. */
  aad: Uint8Array<ArrayBuffer>;
}

/** A token this store sealed or opened: what opening it again needs, without decryption. */
interface CachedToken {
  /** The decrypted payload, JSON text of `{ id, record }`: parsed afresh on every hit. */
  text: string;
  /** It was sealed with a retired secret. */
  stale: boolean;
  /** The revocation key of its id, once computed (only with a revocation store). */
  revocationKey?: string;
}

const MIN_SECRET_LENGTH = 32;
const DEFAULT_COMPRESS_THRESHOLD = 512;
const DEFAULT_CHUNK_SIZE = 3800;
const MAX_CHUNK_SIZE = 4000;
const MIN_CHUNK_SIZE = 64;
const DEFAULT_MAX_COOKIES = 5;
const MAX_MAX_COOKIES = 50;
const DEFAULT_MAX_PAYLOAD = 128 * 1024;
const DEFAULT_CACHE_SIZE = 2048;
const MAX_CACHE_SIZE = 1_000_000;
/** The largest cache entry, in characters of cookie value and payload together. */
const MAX_CACHED_CHARS = 8192;
const HKDF_SALT = "websession cookie store";
const HKDF_INFO = "websession/cookie-store/A256GCM/v1";
const KID_INFO = "websession/cookie-store/kid/v1";
/** Private protected-header parameter marking a deflated payload (listed in `crit`). */
const ZIP_HEADER = "wsz";
const ZIP_VALUE = "deflate-raw";
/** Bytes a compressed token's header adds: `,"crit":["wsz"],"wsz":"deflate-raw"`. */
const ZIP_HEADER_BYTES = `,"crit":["${ZIP_HEADER}"],"${ZIP_HEADER}":"${ZIP_VALUE}"`.length;
const CHUNK_HEAD = /^([1-9][0-9]?)\.(.+)$/s;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
const DECRYPT_OPTIONS = {
  keyManagementAlgorithms: ["dir" as const],
  contentEncryptionAlgorithms: ["A256GCM" as const],
  crit: { [ZIP_HEADER]: true },
  maxDecompressedLength: 0, // jose's own "zip" is never produced here: refuse it
};
const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * Keeps the whole session in the cookie, sealed: encrypted and authenticated with a key only the
 * server holds. There is nothing to run and nothing to clean up, and what a client sees is
 * opaque: neither the data nor its size in detail nor the id can be read or changed.
 *
 * What a cookie store cannot do, plainly:
 *
 * - **No compare-and-set.** There is no server copy to compare with. Two concurrent requests
 *   each seal their own version and the last cookie the browser keeps wins: updates can be lost
 *   (`capabilities.compareAndSet` is `false`).
 * - **No revocation, unless configured.** A copied cookie stays valid until it expires, even
 *   after logout. Pass `revocation` (any server store) to keep a tombstone per revoked session
 *   until it would have expired; the price is one store read per request carrying a session.
 * - **Size.** A browser keeps about 4 KB per cookie. A larger payload is split over numbered
 *   cookies (`name.0`, `name.1`, ...; a single one is just `name`), every one sent on every
 *   request; past `maxCookies` sealing fails with `SessionTooLargeError` rather than sending
 *   cookies the browser would silently drop. Large payloads are deflated when that helps.
 * - **Expiry** is enforced from the sealed `expiresAt`, so a cookie kept past it is refused.
 *
 * Secrets rotate: the first seals, all open; a cookie sealed with a retired secret opens with
 * `stale: true` and `withSession` re-seals it with the current one on its next write. Each
 * secret's key is derived once and cached; a seal costs one AES-GCM encryption.
 *
 * Opening a token this store sealed or already opened costs no decryption: a bounded cache
 * (`cacheSize`) maps the exact token to its decrypted payload, still checked for expiry and
 * revocation on every hit, and parsed afresh so no two requests share objects. Those tokens are
 * live credentials held in the heap; the store already holds the keys that open them, so a heap
 * dump exposes nothing more, but it is why the cache is bounded and per store.
 *
 * @example
 * ```ts
 * import { CookieStore } from "websession/cookie";
 * import assert from "node:assert/strict";
 *
 * const store = new CookieStore({ secrets: ["a secret of at least 32 characters!"] });
 * const now = Date.now();
 * const record = { data: { user: "ada" }, version: 1, createdAt: now, expiresAt: now + 60_000 };
 * const cookies = await store.seal("some-session-id", record, "session");
 * assert.equal(cookies.length, 1);
 * const jar = new Map(cookies.map((c) => [c.name, c.value]));
 * const opened = await store.open((name) => jar.get(name), "session");
 * assert.equal(opened?.record.data.user, "ada");
 * assert.equal(await store.open(() => undefined, "session"), null);
 * ```
 */
export class CookieStore implements SealedSessionStore {
  /** Marks the store as cookie-sealed. */
  readonly sealed = true as const;
  /**
   * Compare-and-set: no (no server copy). Native expiry: yes (the seal carries it).
   * Revocation: only with the `revocation` option.
   */
  readonly capabilities: StoreCapabilities & { revocation: boolean };
  #secrets: readonly string[];
  #keyring: Promise<Keyring> | undefined;
  #compressAt: number;
  #chunkSize: number;
  #maxCookies: number;
  #maxPayload: number;
  #revocation: SessionStore | undefined;
  #now: () => number;
  #cache: GenerationalCache<string, CachedToken> | undefined;

  /**
   * Creates a store that seals with the first secret and opens with any of them.
   *
   * @param options See {@linkcode CookieStoreOptions}.
   * @throws {TypeError} When `secrets` is missing or empty, or a secret is shorter than 32
   *   characters.
   * @throws {RangeError} When `chunkSize`, `maxCookies`, `maxPayloadBytes`, `cacheSize` or
   *   `compress` is out of range.
   */
  constructor(options: CookieStoreOptions) {
    const secrets = typeof options?.secrets === "string" ? [options.secrets] : options?.secrets;
    if (!Array.isArray(secrets) || secrets.length === 0) {
      throw new TypeError("Invalid secrets: a secret or a non-empty list of secrets is required");
    }
    secrets.forEach((secret: unknown, i) => {
      if (typeof secret !== "string" || secret.length < MIN_SECRET_LENGTH) {
        throw new TypeError(
          `Invalid secrets: secret ${i} must be a string of at least ${MIN_SECRET_LENGTH} characters`,
        );
      }
    });
    this.#secrets = [...secrets];
    const compress = options.compress ?? true;
    this.#compressAt = compress === true
      ? DEFAULT_COMPRESS_THRESHOLD
      : compress === false
      ? Infinity
      : compress;
    if (typeof this.#compressAt !== "number" || !(this.#compressAt >= 0)) {
      throw new RangeError(`Invalid compress: "${String(compress)}" is not a boolean or a byte count`);
    }
    this.#chunkSize = integerOption(
      "chunkSize",
      options.chunkSize,
      DEFAULT_CHUNK_SIZE,
      MIN_CHUNK_SIZE,
      MAX_CHUNK_SIZE,
    );
    this.#maxCookies = integerOption(
      "maxCookies",
      options.maxCookies,
      DEFAULT_MAX_COOKIES,
      1,
      MAX_MAX_COOKIES,
    );
    this.#maxPayload = integerOption(
      "maxPayloadBytes",
      options.maxPayloadBytes,
      DEFAULT_MAX_PAYLOAD,
      1,
      Number.MAX_SAFE_INTEGER,
    );
    this.#revocation = options.revocation;
    this.#now = options.now ?? Date.now;
    const cacheSize = integerOption("cacheSize", options.cacheSize, DEFAULT_CACHE_SIZE, 0, MAX_CACHE_SIZE);
    this.#cache = cacheSize === 0 ? undefined : new GenerationalCache(cacheSize);
    this.capabilities = { compareAndSet: false, ttl: true, revocation: this.#revocation !== undefined };
  }

  /**
   * Opens the session from the request's cookies.
   *
   * @param get Returns a request cookie's value by name.
   * @param name The session cookie's name.
   * @returns The session, or `null` when the request carries no session cookie.
   * @throws {TypeError} When a session cookie is present but invalid: tampered, sealed with an
   *   unknown secret, expired, revoked, malformed, or missing a chunk. The message says which.
   * @throws {StoreUnavailableError} When the revocation store cannot answer.
   */
  async open(get: (name: string) => string | undefined, name: string): Promise<OpenedSession | null> {
    const single = nonEmpty(get(name));
    const head = nonEmpty(get(`${name}.0`));
    if (head === undefined) return single === undefined ? null : this.#openToken(single);
    if (single === undefined) return this.#openToken(this.#join(get, name, head));
    // Both forms present: two responses raced (one sealed a single cookie, the other chunks) and
    // each cleared only the cookies its request carried. The newer record wins; the next write
    // clears the other form.
    const [a, b] = await Promise.allSettled([
      this.#openToken(single),
      Promise.resolve().then(() => this.#openToken(this.#join(get, name, head))),
    ]);
    if (a.status === "rejected" && b.status === "rejected") throw a.reason;
    if (a.status === "rejected") return (b as PromiseFulfilledResult<OpenedSession>).value;
    if (b.status === "rejected") return a.value;
    return newer(a.value, b.value);
  }

  /**
   * Seals a record into the cookies to send: `name` alone when it fits in one cookie, otherwise
   * `name.0` ... `name.N-1` (the first chunk carries the count).
   *
   * @param id The session id, sealed with the record.
   * @param record The record to seal; its `expiresAt` is enforced when opening.
   * @param name The session cookie's name.
   * @returns The cookies to send, values made of base64url characters and `.`.
   * @throws {SessionTooLargeError} When the payload is over `maxPayloadBytes` or needs more than
   *   `maxCookies` cookies. Nothing should be sent then.
   */
  async seal(id: string, record: StoredSession, name: string): Promise<SealedCookie[]> {
    const text = JSON.stringify({ id, record });
    const plaintext = encoder.encode(text);
    if (plaintext.byteLength > this.#maxPayload) {
      throw new SessionTooLargeError(
        `Session too large for a cookie: ${plaintext.byteLength} bytes of payload, over maxPayloadBytes "${this.#maxPayload}"`,
      );
    }
    const { sealing } = await this.#keys();
    let payload: Uint8Array = plaintext;
    let zip = false;
    if (plaintext.byteLength >= this.#compressAt) {
      const deflated = await deflate(plaintext);
      if (deflated.byteLength + ZIP_HEADER_BYTES < plaintext.byteLength) {
        payload = deflated;
        zip = true;
      }
    }
    const token = await sealCompact(sealing, payload, zip);
    const cookies = this.#split(token, name);
    this.#remember(token, { text, stale: false });
    return cookies;
  }

  /**
   * Revokes a session: writes a tombstone keyed by `SHA-256(id)` into the `revocation` store,
   * kept until the record's `expiresAt`. Does nothing without a `revocation` store.
   *
   * @param id The session id.
   * @param record The session's record (its `expiresAt` bounds the tombstone's life).
   * @throws {StoreUnavailableError} When the revocation store cannot be written.
   */
  async revoke(id: string, record: StoredSession): Promise<void> {
    const store = this.#revocation;
    if (store === undefined) return;
    const now = this.#now();
    if (record.expiresAt <= now) return; // its cookies are refused as expired already
    const key = await revocationKey(id);
    const tombstone: StoredSession = {
      data: { revoked: true },
      version: 1,
      createdAt: now,
      expiresAt: record.expiresAt,
    };
    try {
      await store.save(key, tombstone, null); // false: a tombstone is there already
    } catch (error) {
      throw unavailable("Revocation store failed to save", error);
    }
  }

  #split(token: string, name: string): SealedCookie[] {
    const size = this.#chunkSize;
    if (token.length <= size) return [{ name, value: token }];
    let count = 2;
    while (count * size - (String(count).length + 1) < token.length) count++;
    if (count > this.#maxCookies) {
      throw new SessionTooLargeError(
        `Session too large for cookies: ${token.length} characters sealed need ${count} cookies, over maxCookies "${this.#maxCookies}"`,
      );
    }
    const value = `${count}.${token}`;
    const cookies: SealedCookie[] = [];
    for (let i = 0; i < count; i++) {
      cookies.push({ name: `${name}.${i}`, value: value.slice(i * size, (i + 1) * size) });
    }
    return cookies;
  }

  #join(get: (name: string) => string | undefined, name: string, head: string): string {
    const match = CHUNK_HEAD.exec(head);
    if (match === null) throw invalid(`chunk "${name}.0" has no chunk count`);
    const count = Number(match[1]);
    if (count < 2 || count > this.#maxCookies) {
      throw invalid(`chunk count "${count}" is outside 2 to maxCookies "${this.#maxCookies}"`);
    }
    let token = match[2]!;
    for (let i = 1; i < count; i++) {
      const chunk = nonEmpty(get(`${name}.${i}`));
      if (chunk === undefined) throw invalid(`chunk "${name}.${i}" of ${count} is missing`);
      token += chunk;
    }
    return token; // chunks past the count are leftovers of an older seal: ignored
  }

  async #openToken(token: string): Promise<OpenedSession> {
    const cached = this.#cache?.get(token);
    if (cached !== undefined) {
      try {
        return await this.#accept(cached);
      } catch (error) {
        // Expired or revoked: it will never open again. An outage leaves it cached.
        if (error instanceof InvalidCookieError) this.#cache!.delete(token);
        throw error;
      }
    }
    const keyring = await this.#keys();
    let used: Key | undefined;
    let result: Awaited<ReturnType<typeof compactDecrypt>>;
    try {
      result = await compactDecrypt(
        token,
        function selectKey(header: CompactJWEHeaderParameters): CryptoKey {
          used = typeof header.kid === "string" ? keyring.byKid.get(header.kid) : undefined;
          if (used === undefined) throw invalid("sealed with an unknown key (kid)");
          return used.key;
        },
        DECRYPT_OPTIONS,
      );
    } catch (error) {
      throw error instanceof InvalidCookieError ? error : invalid(describeJoseError(error), error);
    }
    let plaintext: Uint8Array = result.plaintext;
    const zip = result.protectedHeader?.[ZIP_HEADER];
    if (zip !== undefined) {
      if (zip !== ZIP_VALUE) throw invalid(`unknown compression "${String(zip)}"`);
      plaintext = await inflate(plaintext, this.#maxPayload);
    } else if (plaintext.byteLength > this.#maxPayload) {
      throw invalid(`payload exceeds maxPayloadBytes "${this.#maxPayload}"`);
    }
    let text: string;
    try {
      text = decoder.decode(plaintext);
    } catch (error) {
      throw invalid("payload is not JSON", error);
    }
    const entry: CachedToken = { text, stale: used!.index !== 0 };
    const opened = await this.#accept(entry);
    this.#remember(token, entry);
    return opened;
  }

  /**
   * Turns a decrypted payload into what `open` returns: parsed afresh, checked for shape, expiry
   * and revocation. The same steps whether the payload was just decrypted or came from the cache.
   */
  async #accept(entry: CachedToken): Promise<OpenedSession> {
    let parsed: unknown;
    try {
      parsed = JSON.parse(entry.text);
    } catch (error) {
      throw invalid("payload is not JSON", error);
    }
    const { id, record: raw } = (parsed ?? {}) as { id?: unknown; record?: unknown };
    const record = toStoredSession(raw);
    if (typeof id !== "string" || id.length === 0 || record === null) throw invalid("malformed payload");
    if (record.expiresAt <= this.#now()) throw invalid("expired");
    if (this.#revocation !== undefined) {
      entry.revocationKey ??= await revocationKey(id);
      await this.#checkRevoked(entry.revocationKey);
    }
    return { id, record, stale: entry.stale };
  }

  /** Caches an opened or sealed token, unless the cache is off or the entry is too large. */
  #remember(token: string, entry: CachedToken): void {
    if (this.#cache === undefined || token.length + entry.text.length > MAX_CACHED_CHARS) return;
    this.#cache.set(token, entry);
  }

  async #checkRevoked(key: string): Promise<void> {
    let tombstone: StoredSession | null;
    try {
      tombstone = await this.#revocation!.load(key);
    } catch (error) {
      throw unavailable("Revocation store failed to load", error);
    }
    if (tombstone !== null) throw invalid("revoked");
  }

  #keys(): Promise<Keyring> {
    this.#keyring ??= deriveKeyring(this.#secrets);
    return this.#keyring;
  }
}

function integerOption(
  name: string,
  value: number | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  const n = value ?? fallback;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new RangeError(`Invalid ${name}: "${n}" is not an integer from ${min} to ${max}`);
  }
  return n;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}

function newer(a: OpenedSession, b: OpenedSession): OpenedSession {
  if (a.record.version !== b.record.version) return a.record.version > b.record.version ? a : b;
  return a.record.expiresAt >= b.record.expiresAt ? a : b;
}

/** Why a present cookie cannot be opened; `withSession` starts a fresh session on it. */
class InvalidCookieError extends TypeError {
  override name = "TypeError";
}

function invalid(reason: string, cause?: unknown): InvalidCookieError {
  return new InvalidCookieError(
    `Invalid session cookie: ${reason}`,
    cause === undefined ? undefined : { cause },
  );
}

function unavailable(message: string, error: unknown): SessionError {
  return error instanceof SessionError ? error : new StoreUnavailableError(message, { cause: error });
}

function describeJoseError(error: unknown): string {
  if (error instanceof joseErrors.JWEDecryptionFailed) {
    return "decryption failed (tampered, or sealed with another key)";
  }
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return "algorithm not allowed";
  if (error instanceof joseErrors.JOSEError) return `malformed seal: ${error.message}`;
  return "malformed seal";
}

async function deriveKeyring(secrets: readonly string[]): Promise<Keyring> {
  const keys = await Promise.all(secrets.map(deriveKey));
  const byKid = new Map<string, Key>();
  for (const key of keys) if (!byKid.has(key.kid)) byKid.set(key.kid, key); // a repeated secret keeps its first place
  return { sealing: keys[0]!, byKid };
}

/** HKDF-SHA-256 from the secret: 256 bits of AES-GCM key, then 48 bits of key id. */
async function deriveKey(secret: string, index: number): Promise<Key> {
  const base = await crypto.subtle.importKey("raw", encoder.encode(secret), "HKDF", false, ["deriveBits"]);
  const salt = encoder.encode(HKDF_SALT);
  const [keyBits, kidBits] = await Promise.all([
    crypto.subtle.deriveBits(
      { name: "HKDF", hash: "SHA-256", salt, info: encoder.encode(HKDF_INFO) },
      base,
      256,
    ),
    crypto.subtle.deriveBits(
      { name: "HKDF", hash: "SHA-256", salt, info: encoder.encode(KID_INFO) },
      base,
      48,
    ),
  ]);
  const key = await crypto.subtle.importKey("raw", keyBits, "AES-GCM", false, ["encrypt", "decrypt"]);
  const kid = base64url.encode(new Uint8Array(kidBits));
  const headers = {
    plain: protectedHeader({ alg: "dir", enc: "A256GCM", kid }),
    zip: protectedHeader({ alg: "dir", enc: "A256GCM", kid, crit: [ZIP_HEADER], [ZIP_HEADER]: ZIP_VALUE }),
  };
  return { kid, key, index, headers };
}

/**
 * Seals a payload as a compact JWE with `alg: "dir"` and `enc: "A256GCM"` (RFC 7516):
 * `header..iv.ciphertext.tag`, the encoded header as additional data. One AES-GCM encryption.
 */
async function sealCompact(key: Key, payload: Uint8Array, zip: boolean): Promise<string> {
  const header = zip ? key.headers.zip : key.headers.plain;
  const iv = freshIv();
  const sealed = new Uint8Array(
    await crypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: header.aad, tagLength: TAG_BYTES * 8 },
      key.key,
      payload as Uint8Array<ArrayBuffer>,
    ),
  );
  return `${header.encoded}..${base64url.encode(iv)}.${base64url.encode(sealed.subarray(0, -TAG_BYTES))}.${
    base64url.encode(sealed.subarray(-TAG_BYTES))
  }`;
}

/** Random ivs are drawn this many at a time: one `getRandomValues` call per this many seals. */
const IV_BATCH = 256;
let ivPool = new Uint8Array(0);
let ivNext = 0;

/** A fresh random 96-bit iv. Each is handed out once; a batch is never written after it is drawn. */
function freshIv(): Uint8Array<ArrayBuffer> {
  if (ivNext + IV_BYTES > ivPool.length) {
    ivPool = crypto.getRandomValues(new Uint8Array(IV_BYTES * IV_BATCH));
    ivNext = 0;
  }
  const iv = ivPool.subarray(ivNext, ivNext + IV_BYTES);
  ivNext += IV_BYTES;
  return iv;
}

function protectedHeader(header: Record<string, unknown>): ProtectedHeader {
  const encoded = base64url.encode(JSON.stringify(header));
  return { encoded, aad: encoder.encode(encoded) };
}

async function revocationKey(id: string): Promise<string> {
  return base64url.encode(new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(id))));
}

async function deflate(input: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([input as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new CompressionStream("deflate-raw"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Inflates, stopping as soon as the output passes `limit` bytes. */
async function inflate(input: Uint8Array, limit: number): Promise<Uint8Array> {
  const stream = new Blob([input as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new DecompressionStream("deflate-raw"),
  );
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let length = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      length += value.byteLength;
      if (length > limit) {
        await reader.cancel().catch(() => {});
        throw invalid(`decompressed payload exceeds maxPayloadBytes "${limit}"`);
      }
      chunks.push(value);
    }
  } catch (error) {
    throw error instanceof InvalidCookieError ? error : invalid("payload does not decompress", error);
  }
  const out = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}
