/**
 * `CookieStore`: the whole session sealed into the cookie itself, with no server copy.
 *
 * The record is encrypted and authenticated as a compact JWE (`alg: "dir"`, `enc: "A256GCM"`,
 * RFC 7516), sealed and opened by [jose](https://github.com/panva/jose); a payload that deflate
 * shrinks carries jose's standard `zip: "DEF"` header, inflated on opening only up to
 * `maxPayloadBytes`. Each secret yields its own 256-bit key through HKDF-SHA-256; the JWE `kid`
 * header names the key (a short fingerprint, not the key), so opening picks the right key at once
 * and old secrets keep opening cookies while the first one seals.
 *
 * @module
 */
import {
  base64url,
  compactDecrypt,
  CompactEncrypt,
  type CompactJWEHeaderParameters,
  type DecryptOptions,
  errors as joseErrors,
} from "jose";
import {
  SessionConfigError,
  SessionConflictError,
  SessionError,
  SessionTooLargeError,
  StoreUnavailableError,
} from "../errors.ts";
import { GenerationalCache, isCanonicalBase64Url, refuseDuplicateSecrets } from "../signing.ts";
import {
  ENDED_KEY,
  type InvalidSeal,
  isEnded,
  type OpenedSession,
  type SaveResult,
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
 *   maxCookieHeaderBytes: 2048,
 * };
 * const store = new CookieStore(options);
 * const now = Date.now();
 * const record = (note: string) => ({
 *   data: { note },
 *   version: 1,
 *   createdAt: now,
 *   expiresAt: now + 60_000,
 * });
 * const [cookie] = await store.seal("id", record("short"), "session");
 * assert.ok(cookie!.name.length + 1 + cookie!.value.length <= 2048);
 * // More than 2048 bytes of Cookie header is refused rather than sent for a server to reject.
 * await assert.rejects(store.seal("id", record("x".repeat(2000)), "session"), SessionTooLargeError);
 * ```
 */
export interface CookieStoreOptions {
  /**
   * The secrets keys are derived from, each at least 32 characters. With a list, the first seals
   * and every one opens: put a new secret first, keep the old ones until their cookies expired.
   */
  secrets: string | readonly string[];
  /**
   * Deflate payloads before sealing (JWE `zip: "DEF"`): `true` tries it on payloads of 512 bytes
   * or more, a number sets that threshold in bytes, `false` never compresses. A compressed seal is
   * kept only when it is shorter than the plain one.
   * @default true
   */
  compress?: boolean | number;
  /**
   * The most bytes the session's cookies may take in a request's `Cookie` header: every name,
   * `=`, value, and the `; ` between them. A session that needs more is refused at seal time
   * with `SessionTooLargeError` and nothing is sent.
   *
   * The default keeps the session well inside the request-header limits of common servers and
   * proxies, with room left for the application's other cookies and headers: nginx's default
   * `large_client_header_buffers 4 8k` takes at most 8 KiB per header line (the whole `Cookie`
   * line: 6 KiB of session leaves about 2 KiB for other cookies), and Node's default
   * `--max-http-header-size` is 16 KiB for the request line and all headers together (6 KiB
   * leaves about 10 KiB). Raise it only when every server and proxy in front of the application
   * accepts more.
   * @default 6144
   */
  maxCookieHeaderBytes?: number;
  /**
   * The longest value of one cookie, in characters. A cookie's name and value together never
   * exceed 4096 bytes, what browsers keep per cookie (RFC 6265bis §5.6); the default leaves room
   * for the name.
   * @default 3800
   */
  chunkSize?: number;
  /**
   * The most cookies one session may use. A session that needs more is refused with
   * `SessionTooLargeError` instead of being sent.
   * @default 5
   */
  maxCookies?: number;
  /**
   * The largest session payload (JSON, before compression), in bytes. `seal` refuses a larger one
   * and `open` stops inflating past it, so a crafted payload cannot exhaust memory.
   * @default 131072
   */
  maxPayloadBytes?: number;
  /**
   * A server store that tells which seal of each session is the live one. Every seal writes the
   * session's version there (a compare-and-set on the previous version), `revoke` replaces it by
   * a tombstone, and `open` refuses a seal older than the recorded version (`"superseded"`: a
   * replayed cookie cannot roll the session back) or of an ended session (`"ended"`). Costs one
   * store write per seal and one store read per request that carries a session. Give it a key
   * space of its own (a prefix, a table) and no eviction: a record it loses lets the older seals
   * of that session open again.
   *
   * Each record also holds when it was written (`at`, ms since the epoch by `now`): an older
   * seal opens as `{ invalid: "superseded", at }` or `{ invalid: "ended", at }`, so that
   * `withSession` refuses a write only from a request that was in flight at that time, and
   * treats a cookie presented long after as unknown (a browser that lost a response is not
   * locked out).
   * @default undefined (no revocation: any unexpired seal opens, replays included)
   */
  revocation?: SessionStore;
  /**
   * The session key that holds the user's id (a string), as in `withSession`'s `userKey`: the
   * store is never shown `withSession`'s options, so it is told here. Needs a `revocation`
   * store, where it keeps a generation per user (keyed by a hash of the user id); each seal of
   * a session holding a user records that user's generation beside the seal's version, and
   * `endUser(user)` moves it on, so every seal of the user's sessions made before opens as
   * `{ invalid: "ended" }`: "log out everywhere", or with `except`, everywhere but the current
   * session. Listing a user's sessions is impossible: there is no server copy
   * (`capabilities.users` stays `false`).
   *
   * Costs: on every request carrying a session that holds a user, a second revocation-store
   * read (in parallel with the first); before each seal's write, a read of the session's record
   * (and of the user's generation, in parallel).
   * @default undefined (no generations per user; `endUser` throws)
   * @example
   * ```ts
   * import { CookieStore } from "websession/cookie";
   * import { MemoryStore } from "websession";
   * import type { InvalidSeal, OpenedSession } from "websession/store-kit";
   * import assert from "node:assert/strict";
   *
   * const store = new CookieStore({
   *   secrets: ["a secret of at least 32 characters!"],
   *   revocation: new MemoryStore(),
   *   userKey: "user",
   * });
   * const now = Date.now();
   * const record = { data: { user: "ada" }, version: 1, createdAt: now, expiresAt: now + 60_000 };
   * const phoneId = "phone-session-id-at-least-a-few-chars";
   * const laptopId = "laptop-session-id-at-least-a-few-chars";
   * const phone = new Map((await store.seal(phoneId, record, "s")).map((c) => [c.name, c.value]));
   * const laptop = new Map((await store.seal(laptopId, record, "s")).map((c) => [c.name, c.value]));
   *
   * // "Sign out other devices", asked from the phone.
   * await store.endUser("ada", { except: phoneId });
   * assert.equal(((await store.open((n) => phone.get(n), "s")) as OpenedSession).id, phoneId);
   * assert.equal(((await store.open((n) => laptop.get(n), "s")) as InvalidSeal).invalid, "ended");
   * // "Log out everywhere".
   * await store.endUser("ada");
   * assert.equal(((await store.open((n) => phone.get(n), "s")) as InvalidSeal).invalid, "ended");
   * ```
   */
  userKey?: string;
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
  /** The protected headers this key seals under: plain and deflated. */
  plain: CompactJWEHeaderParameters;
  zip: CompactJWEHeaderParameters;
  /** Characters of a plain seal besides its ciphertext: header, the four dots, iv and tag. */
  plainOverhead: number;
  /** Position of the secret in the list: 0 seals, others are retired. */
  index: number;
}

interface Keyring {
  sealing: Key;
  byKid: Map<string, Key>;
}

/** A token this store sealed or opened: what opening it again needs, without decryption. */
interface CachedToken {
  /** The decrypted payload, JSON text of `{ id, record }`: parsed afresh on every hit. */
  text: string;
  /** It was sealed with a retired secret. */
  stale: boolean;
  /** The revocation key of its id, once computed (only with a revocation store). */
  revocationKey?: string;
  /**
   * The revocation key of its user's generation, once computed (only with `userKey`); `null`
   * when the sealed record holds no user.
   */
  generationKey?: string | null;
}

/** A token opened and checked for shape and expiry, not yet against the revocation store. */
interface Decoded {
  token: string;
  entry: CachedToken;
  opened: OpenedSession;
  /** It came from the cache. */
  hit: boolean;
}

const MIN_SECRET_LENGTH = 32;
const DEFAULT_COMPRESS_THRESHOLD = 512;
/** Bytes of name and value one cookie may hold (RFC 6265bis §5.6, "cookie-name-value-max"). */
const MAX_COOKIE_BYTES = 4096;
const DEFAULT_CHUNK_SIZE = 3800;
const MAX_CHUNK_SIZE = 4000;
const MIN_CHUNK_SIZE = 64;
const DEFAULT_HEADER_BUDGET = 6144;
const MAX_HEADER_BUDGET = 256 * 1024;
const DEFAULT_MAX_COOKIES = 5;
const MAX_MAX_COOKIES = 50;
const DEFAULT_MAX_PAYLOAD = 128 * 1024;
const DEFAULT_CACHE_SIZE = 2048;
const MAX_CACHE_SIZE = 1_000_000;
/** The largest cache entry, in characters of cookie value and payload together. */
const MAX_CACHED_CHARS = 8192;
/** Compare-and-set attempts on the revocation store before giving up. */
const MAX_REVOCATION_ATTEMPTS = 4;
/**
 * How long a user's generation is kept after it last moved, in milliseconds: 400 days, the
 * longest a seal sealed before then can live (`withSession` refuses an `idleTimeout` over 400
 * days, what browsers keep a cookie, RFC 6265bis §5.5).
 */
const GENERATION_MS = 400 * 24 * 3600 * 1000;
/** Domain separation of a user's generation key from session keys (`SHA-256(id)`). */
const GENERATION_PREFIX = "websession/cookie-store/user-generation\u0000";
const HKDF_SALT = "websession cookie store";
const HKDF_INFO = "websession/cookie-store/A256GCM/v1";
const KID_INFO = "websession/cookie-store/kid/v1";
/** base64url characters of a 96-bit iv and a 128-bit tag. */
const IV_CHARS = 16;
const TAG_CHARS = 22;
const CHUNK_HEAD = /^([1-9][0-9]?)\.(.+)$/s;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Keeps the whole session in the cookie, sealed: encrypted and authenticated with a key only the
 * server holds. There is nothing to run and nothing to clean up, and what a client sees is
 * opaque: neither the data nor its size in detail nor the id can be read or changed.
 *
 * What a cookie store cannot do, plainly:
 *
 * - **No compare-and-set, and replays, unless given a `revocation` store.** With no server copy,
 *   two concurrent requests each seal their own version and the last cookie the browser keeps
 *   wins: updates can be lost (`capabilities.compareAndSet` is `false`). And every seal stays
 *   valid until it expires: a copied cookie outlives logout, and an older cookie of a live
 *   session (say, from before credits were spent) still opens and rolls the data back. With a
 *   `revocation` store, only the latest seal of a live session opens, a destroyed or regenerated
 *   session's seals stop opening, and of two concurrent writers of different data only one is
 *   sealed (the other gets `SessionConflictError`); each seal then costs one store write and each
 *   request carrying a session one store read. A response lost after a write (a dropped
 *   connection, a request the browser aborted) leaves the browser holding the previous seal,
 *   which no longer opens: `open` says when it was superseded (`at`), and `withSession` refuses
 *   its writes only for a short grace after that, then starts a fresh session for it.
 * - **Sessions per user, in part.** With `userKey` and a `revocation` store, `endUser(user)`
 *   ends every session of a user ("log out everywhere"), and `endUser(user, { except })` every
 *   one but the current ("sign out other devices"), through a generation per user that each
 *   seal records. A user's sessions cannot be listed: there is no server copy to list
 *   (`capabilities.users` is `false`; `listUserSessions` refuses this store).
 * - **Size.** A browser keeps about 4 KB per cookie, and servers and proxies cap request
 *   headers (Node 16 KiB in all, nginx 8 KiB per line by default). A payload over one cookie is
 *   split over numbered cookies (`name.0`, `name.1`, ...; a single one is just `name`), all sent
 *   on every request, within `maxCookieHeaderBytes` (6 KiB by default) of `Cookie` header; past
 *   it sealing fails with `SessionTooLargeError` rather than sending cookies a server would
 *   answer with `431` or `400`. Payloads are deflated when that makes the seal shorter.
 * - **Expiry** is enforced from the sealed `expiresAt`, so a cookie kept past it is refused.
 *
 * Secrets rotate: the first seals, all open; a cookie sealed with a retired secret opens with
 * `stale: true` and `withSession` re-seals it with the current one on its next write. Each
 * secret's key is derived once and cached; a seal costs one AES-GCM encryption.
 *
 * Opening a token this store sealed or already opened costs no decryption: a bounded cache
 * (`cacheSize`) maps the exact token to its decrypted payload, still checked for expiry and
 * against the revocation store on every hit, and parsed afresh so no two requests share objects.
 * Those tokens are live credentials held in the heap; the store already holds the keys that open
 * them, so a heap dump exposes nothing more, but it is why the cache is bounded and per store.
 *
 * @example
 * ```ts
 * import { CookieStore } from "websession/cookie";
 * import type { InvalidSeal, OpenedSession } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * const store = new CookieStore({ secrets: ["a secret of at least 32 characters!"] });
 * const now = Date.now();
 * const record = { data: { user: "ada" }, version: 1, createdAt: now, expiresAt: now + 60_000 };
 * const cookies = await store.seal("some-session-id", record, "session");
 * assert.equal(cookies.length, 1);
 * const jar = new Map(cookies.map((c) => [c.name, c.value]));
 * const opened = (await store.open((name) => jar.get(name), "session")) as OpenedSession;
 * assert.equal(opened.record.data.user, "ada");
 * assert.equal(await store.open(() => undefined, "session"), null); // no session cookie
 * const forged = (await store.open(() => "forged", "session")) as InvalidSeal;
 * assert.equal(forged.invalid, "malformed");
 * ```
 */
export class CookieStore implements SealedSessionStore {
  /** Marks the store as cookie-sealed. */
  readonly sealed = true as const;
  /**
   * Compare-and-set: no (no server copy). Native expiry: yes (the seal carries it).
   * Revocation: only with the `revocation` option. Sessions per user (`users`): no, no server
   * copy to list; `endUser` ends them all with `userKey`.
   */
  readonly capabilities: StoreCapabilities & { revocation: boolean };
  #secrets: readonly string[];
  #keyring: Promise<Keyring> | undefined;
  #compressAt: number;
  #chunkSize: number;
  #headerBudget: number;
  #maxCookies: number;
  #maxPayload: number;
  #decryptOptions: DecryptOptions;
  #revocation: SessionStore | undefined;
  #userKey: string | undefined;
  #now: () => number;
  #cache: GenerationalCache<string, CachedToken> | undefined;

  /**
   * Creates a store that seals with the first secret and opens with any of them.
   *
   * @param options See {@linkcode CookieStoreOptions}.
   * @throws {TypeError} When `secrets` is missing or empty, a secret is shorter than 32
   *   characters or the same as an earlier one; when `userKey` is not a session key or is given without a `revocation` store.
   * @throws {RangeError} When `chunkSize`, `maxCookieHeaderBytes`, `maxCookies`,
   *   `maxPayloadBytes`, `cacheSize` or `compress` is out of range.
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
    refuseDuplicateSecrets(secrets);
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
    this.#headerBudget = integerOption(
      "maxCookieHeaderBytes",
      options.maxCookieHeaderBytes,
      DEFAULT_HEADER_BUDGET,
      MIN_CHUNK_SIZE,
      MAX_HEADER_BUDGET,
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
    this.#decryptOptions = {
      keyManagementAlgorithms: ["dir"],
      contentEncryptionAlgorithms: ["A256GCM"],
      maxDecompressedLength: this.#maxPayload,
    };
    this.#revocation = options.revocation;
    const userKey = options.userKey;
    if (userKey !== undefined) {
      if (typeof userKey !== "string" || userKey === "" || userKey.startsWith("__")) {
        throw new TypeError(
          `Invalid userKey: "${
            String(userKey)
          }" must be a session key (a non-empty string not starting with "__")`,
        );
      }
      if (this.#revocation === undefined) {
        throw new TypeError("Invalid userKey: ending a user's sessions needs a revocation store");
      }
    }
    this.#userKey = userKey;
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
   * @returns `null` when the request carries no session cookie; `{ invalid: "malformed", detail }`
   *   when it cannot be opened (tampered, sealed with an unknown secret, expired, truncated,
   *   missing a chunk; `detail` is an `Error` whose message says which); with a `revocation`
   *   store, `{ invalid: "ended", at }` for a destroyed or regenerated session, or (with
   *   `userKey`) one sealed before `endUser` ended its user's sessions, and
   *   `{ invalid: "superseded", at }` for a seal older than the session's latest; `at` is when
   *   the session was ended or its latest seal written (ms since the epoch by `now`; an upper
   *   bound of when an older seal was superseded), absent for records written without it.
   *   Otherwise the session.
   * @throws {StoreUnavailableError} When the revocation store cannot answer. Any other exception
   *   is a bug and propagates.
   */
  async open(
    get: (name: string) => string | undefined,
    name: string,
  ): Promise<OpenedSession | InvalidSeal | null> {
    const single = nonEmpty(get(name));
    const head = nonEmpty(get(`${name}.0`));
    if (single === undefined && head === undefined) return null;
    let decoded: Decoded;
    try {
      if (head === undefined) decoded = await this.#decode(single!);
      else if (single === undefined) decoded = await this.#decode(this.#join(get, name, head));
      else decoded = await this.#decodeEither(single, () => this.#join(get, name, head));
    } catch (error) {
      if (error instanceof InvalidCookieError) return { invalid: "malformed", detail: error };
      throw error;
    }
    if (this.#revocation !== undefined) {
      const refused = await this.#check(decoded);
      if (refused !== undefined) {
        this.#cache?.delete(decoded.token); // it will never open again
        return refused;
      }
    }
    if (!decoded.hit) this.#remember(decoded.token, decoded.entry);
    return decoded.opened;
  }

  /**
   * Seals a record into the cookies to send: `name` alone when it fits in one cookie, otherwise
   * `name.0` ... `name.N-1` (the first chunk carries the count). With a `revocation` store, the
   * record's version is written there first (compare-and-set on the version before it), with
   * the time; with `userKey`, the session's record and its user's generation are read first and
   * the generation is written beside the version.
   *
   * @param id The session id, sealed with the record.
   * @param record The record to seal; its `expiresAt` is enforced when opening.
   * @param name The session cookie's name.
   * @returns The cookies to send, values made of base64url characters and `.`.
   * @throws {SessionTooLargeError} When the payload is over `maxPayloadBytes`, or the cookies
   *   would take more than `maxCookieHeaderBytes` of `Cookie` header or more than `maxCookies`
   *   cookies. Nothing is written and nothing should be sent.
   * @throws {SessionConflictError} With a `revocation` store, when another request has sealed a
   *   different version of this session meanwhile, or ended it (with `userKey`, also by ending
   *   every session of the user the session held when last sealed).
   * @throws {StoreUnavailableError} When the revocation store cannot be written.
   */
  async seal(id: string, record: StoredSession, name: string): Promise<SealedCookie[]> {
    const text = JSON.stringify({ id, record });
    const plaintext = encoder.encode(text);
    if (plaintext.byteLength > this.#maxPayload) {
      throw new SessionTooLargeError(
        `Session too large for a cookie: ${plaintext.byteLength} bytes of payload, over maxPayloadBytes "${this.#maxPayload}"`,
      );
    }
    // The revocation store's keys and the data's fingerprint, computed while the payload is sealed.
    const user = this.#userOf(record);
    const fingerprints = this.#revocation === undefined ? undefined : Promise.all([
      revocationKey(id),
      dataDigest(record.data),
      user === undefined ? undefined : generationKey(user),
    ]);
    fingerprints?.catch(() => {}); // awaited below, unless sealing fails first
    const { sealing } = await this.#keys();
    let token: string;
    if (plaintext.byteLength >= this.#compressAt) {
      token = await encrypt(sealing, plaintext, true);
      // Deflate cannot shrink every payload: keep the plain seal when it is shorter.
      if (token.length >= sealing.plainOverhead + base64Length(plaintext.byteLength)) {
        token = await encrypt(sealing, plaintext, false);
      }
    } else {
      token = await encrypt(sealing, plaintext, false);
    }
    const cookies = this.#split(token, name);
    const entry: CachedToken = { text, stale: false };
    if (fingerprints !== undefined) {
      const [key, digest, userGeneration] = await fingerprints;
      if (this.#userKey === undefined) {
        await this.#publish(key, digest, record, {}, undefined);
      } else {
        const [current, generation] = await Promise.all([
          this.#load(key),
          userGeneration === undefined ? null : this.#load(userGeneration),
        ]);
        await this.#refuseEndedUser(key, current, userGeneration, generation);
        const mark = userGeneration === undefined
          ? {}
          : { user: userGeneration, g: generationOf(generation) };
        await this.#publish(key, digest, record, mark, current);
        entry.generationKey = userGeneration ?? null;
      }
      entry.revocationKey = key;
    }
    this.#remember(token, entry);
    return cookies;
  }

  /**
   * Revokes a session: replaces its record in the `revocation` store (keyed by `SHA-256(id)`) by a
   * tombstone kept until the later of `record.expiresAt` and the recorded seal's expiry, so no
   * seal of it opens again; the tombstone holds when (`at`, ms since the epoch by `now`). Does
   * nothing without a `revocation` store; a session already revoked keeps its first tombstone.
   *
   * @param id The session id.
   * @param record The session's record (its `expiresAt` bounds the tombstone's life).
   * @throws {StoreUnavailableError} When the revocation store cannot be read or written.
   */
  async revoke(id: string, record: StoredSession): Promise<void> {
    const store = this.#revocation;
    if (store === undefined) return;
    const key = await revocationKey(id);
    let current = await this.#load(key);
    for (let attempt = 0; attempt < MAX_REVOCATION_ATTEMPTS; attempt++) {
      if (isEnded(current)) return;
      const now = this.#now();
      const expiresAt = Math.max(record.expiresAt, current?.expiresAt ?? 0);
      if (expiresAt <= now) return; // every seal of it is refused as expired already
      const tombstone: StoredSession = {
        data: { [ENDED_KEY]: true, at: now },
        version: (current?.version ?? 0) + 1,
        createdAt: current?.createdAt ?? now,
        expiresAt,
      };
      const result = await this.#save(key, tombstone, current?.version ?? null);
      if (result === true) return;
      current = result === false ? await this.#load(key) : result.current;
    }
    throw new StoreUnavailableError(
      `Revocation store refused the tombstone: ${MAX_REVOCATION_ATTEMPTS} compare-and-set attempts lost`,
    );
  }

  /**
   * Ends every session of `user` sealed until now ("log out everywhere"), or every one but the
   * session `except` names ("sign out other devices"): moves the user's generation on in the
   * `revocation` store, by compare-and-set. A seal of the user's sessions made before then opens
   * as `{ invalid: "ended", at }` (`at`: now), and a request in flight with one cannot seal it
   * again (`SessionConflictError`). The session `except` names keeps opening, and its next seal
   * takes the new generation. The generation is kept 400 days after it last moved, the longest
   * a seal can live.
   *
   * What it cannot do: list a user's sessions (they have no server copy), nor end one of them
   * alone except through its own id (`revoke`, what `destroy()` uses).
   *
   * @param user The user's id, as sessions hold it under `userKey`.
   * @param options `except`: the id of the session to keep (`session.id` of the request that
   *   asks).
   * @throws {SessionConfigError} Without `userKey` (which needs a `revocation` store).
   * @throws {TypeError} When `user` or `except` is not a non-empty string.
   * @throws {StoreUnavailableError} When the revocation store fails or keeps refusing the write.
   *   (An example is under the `userKey` option.)
   */
  async endUser(user: string, options: { except?: string } = {}): Promise<void> {
    if (this.#userKey === undefined) {
      throw new SessionConfigError(
        "Ending a user's sessions needs the userKey option and a revocation store",
      );
    }
    if (typeof user !== "string" || user === "") {
      throw new TypeError(`Invalid user: "${String(user)}" is not a non-empty string`);
    }
    const except = options?.except;
    if (except !== undefined && (typeof except !== "string" || except === "")) {
      throw new TypeError(`Invalid except: "${String(except)}" is not a session id`);
    }
    const [key, keep] = await Promise.all([
      generationKey(user),
      except === undefined ? undefined : revocationKey(except),
    ]);
    let current = await this.#load(key);
    for (let attempt = 0; attempt < MAX_REVOCATION_ATTEMPTS; attempt++) {
      const now = this.#now();
      const previous = generationOf(current);
      const data: Record<string, unknown> = { g: Math.max(now, previous + 1), at: now };
      if (keep !== undefined) {
        // The kept session may still carry the generation an earlier "all but this one" kept.
        const kept = current?.data.keep === keep && typeof current.data.kept === "number"
          ? current.data.kept
          : previous;
        data.keep = keep;
        data.kept = kept;
      }
      const next: StoredSession = {
        data,
        version: (current?.version ?? 0) + 1,
        createdAt: current?.createdAt ?? now,
        expiresAt: Math.max(current?.expiresAt ?? 0, now + GENERATION_MS),
      };
      const result = await this.#save(key, next, current?.version ?? null);
      if (result === true) return;
      current = result === false ? await this.#load(key) : result.current;
    }
    throw new StoreUnavailableError(
      `Revocation store refused the user's generation: ${MAX_REVOCATION_ATTEMPTS} compare-and-set attempts lost`,
    );
  }

  /**
   * Refuses to seal again a session whose previous seal (`current`, its record in the
   * revocation store) belongs to a user whose sessions were all ended since: a request that was
   * in flight when `endUser` ran. `userGeneration` and `generation` are the new record's user's
   * key and generation record, read already.
   */
  async #refuseEndedUser(
    key: string,
    current: StoredSession | null,
    userGeneration: string | undefined,
    generation: StoredSession | null,
  ): Promise<void> {
    if (current === null || isEnded(current)) return; // unknown, or ended: #publish decides
    const previousUser = current.data.user;
    if (typeof previousUser !== "string") return;
    const previous = previousUser === userGeneration ? generation : await this.#load(previousUser);
    if (!sealedUnder(current, previous, key)) {
      throw new SessionConflictError("Session ended: every session of its user was ended by another request");
    }
  }

  /**
   * Records `record.version` as the live seal of the session under `key`, by compare-and-set on
   * the version before it; `digest` fingerprints the data, `mark` names the user's generation the
   * seal was made under. `known` is the record as just read (`undefined`: not read; the first
   * attempt then assumes the version before this one).
   */
  async #publish(
    key: string,
    digest: string,
    record: StoredSession,
    mark: { user?: string; g?: number },
    known: StoredSession | null | undefined,
  ): Promise<void> {
    const latest: StoredSession = {
      data: { digest, at: this.#now(), ...mark },
      version: record.version,
      createdAt: record.createdAt,
      expiresAt: record.expiresAt,
    };
    let expected: number | null = record.version > 1 ? record.version - 1 : null;
    let current = known;
    for (let attempt = 0; attempt < MAX_REVOCATION_ATTEMPTS; attempt++) {
      if (current === null) {
        expected = null; // unknown to the store (sealed before it was configured, or lost): create
      } else if (current === undefined) {
        // Not read yet: assume the store holds the version before this one.
      } else if (isEnded(current)) {
        throw new SessionConflictError("Session ended: it was destroyed or regenerated by another request");
      } else if (current.version > record.version) {
        throw new SessionConflictError(
          `Session changed concurrently: version "${current.version}" was sealed by another request`,
        );
      } else if (current.version === record.version) {
        // Another request sealed this version first. With the same data (concurrent expiry
        // refreshes, re-seals after a rotation) either seal is the session as it stands.
        if ((current.data as { digest?: unknown }).digest === digest) return;
        throw new SessionConflictError(
          `Session changed concurrently: version "${current.version}" was sealed by another request`,
        );
      } else {
        expected = current.version; // the store is behind this seal's lineage: catch it up
      }
      const result = await this.#save(key, latest, expected);
      if (result === true) return;
      current = result === false ? await this.#load(key) : result.current;
    }
    throw new SessionConflictError(
      `Session changed concurrently: ${MAX_REVOCATION_ATTEMPTS} compare-and-set attempts lost`,
    );
  }

  /** Checks a decoded seal against the revocation store; `undefined` when it may open. */
  async #check(decoded: Decoded): Promise<InvalidSeal | undefined> {
    const { entry, opened } = decoded;
    if (
      entry.revocationKey === undefined || (this.#userKey !== undefined && entry.generationKey === undefined)
    ) {
      const user = this.#userOf(opened.record);
      const [key, userGeneration] = await Promise.all([
        entry.revocationKey ?? revocationKey(opened.id),
        user === undefined ? null : generationKey(user),
      ]);
      entry.revocationKey = key;
      if (this.#userKey !== undefined) entry.generationKey = userGeneration;
    }
    const userGeneration = entry.generationKey ?? null;
    const [latest, generation] = await Promise.all([
      this.#load(entry.revocationKey),
      userGeneration === null ? null : this.#load(userGeneration),
    ]);
    if (latest !== null && isEnded(latest)) {
      return {
        invalid: "ended",
        at: atOf(latest),
        detail: invalid("the session was destroyed or regenerated"),
      };
    }
    if (latest !== null && latest.version > opened.record.version) {
      return {
        invalid: "superseded",
        at: atOf(latest),
        detail: invalid(`version "${opened.record.version}" was superseded by version "${latest.version}"`),
      };
    }
    if (generation !== null) {
      // The generation this seal was made under: what the store recorded for its version, else
      // none (sealed before the store knew it): ended by any generation.
      const sealed = latest !== null && latest.version === opened.record.version ? latest : null;
      if (!sealedUnder(sealed, generation, entry.revocationKey)) {
        return {
          invalid: "ended",
          at: atOf(generation),
          remote: true,
          detail: invalid("every session of its user was ended"),
        };
      }
    }
    return undefined;
  }

  /** The user id `record` holds under `userKey`, if the store has one and it is a string. */
  #userOf(record: StoredSession): string | undefined {
    const name = this.#userKey;
    if (name === undefined || !Object.hasOwn(record.data, name)) return undefined;
    const user = record.data[name];
    return typeof user === "string" && user !== "" ? user : undefined;
  }

  async #load(key: string): Promise<StoredSession | null> {
    try {
      return await this.#revocation!.load(key);
    } catch (error) {
      throw unavailable("Revocation store failed to load", error);
    }
  }

  async #save(key: string, record: StoredSession, expected: number | null): Promise<SaveResult> {
    try {
      return await this.#revocation!.save(key, record, expected);
    } catch (error) {
      throw unavailable("Revocation store failed to save", error);
    }
  }

  /**
   * Splits a token over cookies within the per-cookie limits and the `Cookie` header budget.
   * Bytes of header: every `name=value`, and `; ` between cookies.
   */
  #split(token: string, name: string): SealedCookie[] {
    if (token.length <= Math.min(this.#chunkSize, MAX_COOKIE_BYTES - name.length)) {
      const bytes = name.length + 1 + token.length;
      if (bytes > this.#headerBudget) throw this.#overBudget(bytes); // chunks would only add bytes
      return [{ name, value: token }];
    }
    // The first chunk carries the count: `count.` then the token, cut into equal chunks no longer
    // than chunkSize, nor than 4096 bytes with the longest chunk name. A larger count can only
    // need as many chunks or more, so jumping to what a count needs reaches the fixed point.
    let count = 2;
    let size: number;
    for (;;) {
      size = Math.min(this.#chunkSize, MAX_COOKIE_BYTES - `${name}.${count - 1}`.length);
      const needed = Math.ceil((String(count).length + 1 + token.length) / size);
      if (needed <= count || needed > MAX_MAX_COOKIES) break;
      count = needed;
    }
    const value = `${count}.${token}`;
    let bytes = 2 * (count - 1) + value.length;
    for (let i = 0; i < count; i++) bytes += `${name}.${i}=`.length;
    if (bytes > this.#headerBudget) throw this.#overBudget(bytes);
    if (count > this.#maxCookies || value.length > count * size) {
      throw new SessionTooLargeError(
        `Session too large for cookies: ${token.length} characters sealed need more than ${
          Math.min(count, this.#maxCookies)
        } cookies, over maxCookies "${this.#maxCookies}"`,
      );
    }
    const cookies: SealedCookie[] = [];
    for (let i = 0; i < count; i++) {
      cookies.push({ name: `${name}.${i}`, value: value.slice(i * size, (i + 1) * size) });
    }
    return cookies;
  }

  #overBudget(bytes: number): SessionTooLargeError {
    return new SessionTooLargeError(
      `Session too large for cookies: ${bytes} bytes of Cookie header sealed, over maxCookieHeaderBytes "${this.#headerBudget}"`,
    );
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

  /**
   * Both a single cookie and chunks are present: two responses raced (one sealed a single cookie,
   * the other chunks) and each cleared only the cookies its request carried. The newer record
   * wins; the next write clears the other form.
   */
  async #decodeEither(single: string, chunks: () => string): Promise<Decoded> {
    const [a, b] = await Promise.allSettled([
      this.#decode(single),
      Promise.resolve().then(() => this.#decode(chunks())),
    ]);
    for (const result of [a, b]) {
      if (result.status === "rejected" && !(result.reason instanceof InvalidCookieError)) throw result.reason;
    }
    if (a.status === "rejected" && b.status === "rejected") throw a.reason;
    if (a.status === "rejected") return (b as PromiseFulfilledResult<Decoded>).value;
    if (b.status === "rejected") return a.value;
    return newer(a.value, b.value);
  }

  /**
   * Opens one token: from the cache, or by decryption through jose. Throws `InvalidCookieError`
   * for a token that cannot be used; anything else it throws is a bug.
   */
  async #decode(token: string): Promise<Decoded> {
    const cached = this.#cache?.get(token);
    if (cached !== undefined) {
      try {
        return { token, entry: cached, opened: this.#accept(cached), hit: true };
      } catch (error) {
        this.#cache!.delete(token); // expired: it will never open again
        throw error;
      }
    }
    // Each part of a compact JWE in its one canonical base64url spelling, as the signer asks of
    // signatures: a decoder ignores the last character's unused bits, so each seal would have
    // many spellings that open alike, each missing the cache and costing a decryption.
    const parts = token.split(".");
    if (parts.length !== 5 || !parts.every(isCanonicalBase64Url)) {
      throw invalid("malformed seal: not five parts of canonical base64url");
    }
    const keyring = await this.#keys();
    let used: Key | undefined;
    let plaintext: Uint8Array;
    try {
      ({ plaintext } = await compactDecrypt(
        token,
        function selectKey(header: CompactJWEHeaderParameters): CryptoKey {
          used = typeof header.kid === "string" ? keyring.byKid.get(header.kid) : undefined;
          if (used === undefined) throw invalid("sealed with an unknown key (kid)");
          return used.key;
        },
        this.#decryptOptions,
      ));
    } catch (error) {
      if (error instanceof InvalidCookieError) throw error;
      if (error instanceof joseErrors.JOSEError) throw invalid(this.#describe(error), error);
      throw error;
    }
    if (plaintext.byteLength > this.#maxPayload) {
      throw invalid(`payload exceeds maxPayloadBytes "${this.#maxPayload}"`);
    }
    let text: string;
    try {
      text = decoder.decode(plaintext);
    } catch (error) {
      throw invalid("payload is not UTF-8", error);
    }
    const entry: CachedToken = { text, stale: used!.index !== 0 };
    return { token, entry, opened: this.#accept(entry), hit: false };
  }

  /**
   * Turns a decrypted payload into an opened session: parsed afresh, checked for shape and
   * expiry. The same steps whether the payload was just decrypted or came from the cache.
   */
  #accept(entry: CachedToken): OpenedSession {
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
    return { id, record, stale: entry.stale };
  }

  #describe(error: InstanceType<typeof joseErrors.JOSEError>): string {
    if (error instanceof joseErrors.JWEDecryptionFailed) {
      return "decryption failed (tampered, or sealed with another key)";
    }
    if (error instanceof joseErrors.JOSEAlgNotAllowed) return "algorithm not allowed";
    if (/decompressed plaintext exceeded/i.test(error.message)) {
      return `decompressed payload exceeds maxPayloadBytes "${this.#maxPayload}"`;
    }
    return `malformed seal: ${error.message}`;
  }

  /** Caches an opened or sealed token, unless the cache is off or the entry is too large. */
  #remember(token: string, entry: CachedToken): void {
    if (this.#cache === undefined || token.length + entry.text.length > MAX_CACHED_CHARS) return;
    this.#cache.set(token, entry);
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

function newer(a: Decoded, b: Decoded): Decoded {
  const [x, y] = [a.opened.record, b.opened.record];
  if (x.version !== y.version) return x.version > y.version ? a : b;
  return x.expiresAt >= y.expiresAt ? a : b;
}

/** Characters of base64url (no padding) for `n` bytes. */
function base64Length(n: number): number {
  return Math.ceil((n * 4) / 3);
}

/** Why a present cookie cannot be opened: the `detail` of a malformed seal. */
class InvalidCookieError extends Error {
  override name = "InvalidCookieError";
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

/** Seals a payload as a compact JWE (`dir`, `A256GCM`), deflated by jose when `zip`. */
function encrypt(key: Key, payload: Uint8Array, zip: boolean): Promise<string> {
  return new CompactEncrypt(payload).setProtectedHeader(zip ? key.zip : key.plain).encrypt(key.key);
}

async function deriveKeyring(secrets: readonly string[]): Promise<Keyring> {
  const keys = await Promise.all(secrets.map(deriveKey));
  const byKid = new Map<string, Key>();
  for (const key of keys) if (!byKid.has(key.kid)) byKid.set(key.kid, key); // the first secret of a kid keeps it
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
  const plain: CompactJWEHeaderParameters = { alg: "dir", enc: "A256GCM", kid };
  const zip: CompactJWEHeaderParameters = { ...plain, zip: "DEF" };
  const plainOverhead = base64url.encode(JSON.stringify(plain)).length + 4 + IV_CHARS + TAG_CHARS;
  return { kid, key, plain, zip, plainOverhead, index };
}

async function sha256(text: string): Promise<string> {
  return base64url.encode(new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(text))));
}

/** The revocation store's key of a session: `SHA-256(id)` in base64url, never the id itself. */
function revocationKey(id: string): Promise<string> {
  return sha256(id);
}

/**
 * The revocation store's key of a user's generation: `SHA-256` of a fixed prefix and the user id
 * in base64url, never the id itself, and never a session's key.
 */
function generationKey(user: string): Promise<string> {
  return sha256(GENERATION_PREFIX + user);
}

/** A user's generation from its record: `0` when it has none (never ended, or expired). */
function generationOf(record: StoredSession | null): number {
  const g = record?.data.g;
  return typeof g === "number" && Number.isFinite(g) ? g : 0;
}

/**
 * Whether a seal, as its session's record in the revocation store describes it (`null`: not
 * recorded, generation 0), is still under its user's current generation (`generation`, `null`
 * when the user's sessions were never ended): made since the generation moved on, or the
 * session `endUser` kept when it did.
 */
function sealedUnder(sealed: StoredSession | null, generation: StoredSession | null, key: string): boolean {
  const current = generationOf(generation);
  const g = generationOf(sealed);
  if (g >= current) return true;
  const { keep, kept } = generation!.data;
  return keep === key && typeof kept === "number" && g >= kept;
}

/** When a revocation record was written (ms since the epoch), if it says. */
function atOf(record: StoredSession): number | undefined {
  const at = record.data.at;
  return typeof at === "number" && Number.isFinite(at) ? at : undefined;
}

/** A fingerprint of the data, telling two seals of one version apart in the revocation store. */
function dataDigest(data: StoredSession["data"]): Promise<string> {
  return sha256(JSON.stringify(data));
}
