/**
 * `CookieStore`: the whole session sealed into the cookie itself, with no server copy: a compact
 * JWE (`dir`, `A256GCM`, RFC 7516) sealed and opened by [jose](https://github.com/panva/jose),
 * deflated (`zip: "DEF"`) when that is shorter, with a key per secret (HKDF-SHA-256) named by
 * the `kid` header so that old secrets keep opening cookies. Docs: `docs/stores/cookie.md`.
 *
 * @module
 */
import { type Backend, kBackend } from "../backend.ts";
import { sealedBackend } from "../backends/sealed.ts";
import { SessionConfigError, SessionTooLargeError } from "../errors.ts";
import type {
  InvalidSeal,
  OpenedSession,
  SealedCookie,
  SealedSessionStore,
  SessionStore,
  StoreCapabilities,
  StoredSession,
} from "../store.ts";
import { type ChunkLimits, joinChunks, nonEmpty, splitToken } from "./cookie/chunks.ts";
import { InvalidCookieError } from "./cookie/invalid.ts";
import { deriveKeyring, type Keyring, sealPayload } from "./cookie/keys.ts";
import { resolveOptions } from "./cookie/options.ts";
import { Revocation } from "./cookie/revocation.ts";
import { type CachedToken, type Decoded, TokenOpener } from "./cookie/tokens.ts";

const encoder = new TextEncoder();

/**
 * Options of {@linkcode CookieStore}. Docs, with the reasons for the size defaults:
 * `docs/stores/cookie.md`.
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
 * const record = (note: string) => ({ data: { note }, version: 1, createdAt: now, expiresAt: now + 60_000 });
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
   * Deflate payloads (JWE `zip: "DEF"`) of 512 bytes or more (`true`), of this many bytes or
   * more (a number), or never (`false`); a compressed seal is kept only when it is shorter.
   * @default true
   */
  compress?: boolean | number;
  /**
   * The most bytes the session's cookies may take in a request's `Cookie` header: every name,
   * `=`, value, and the `; ` between them; more is refused at seal time with
   * `SessionTooLargeError`. The default fits nginx's 8 KiB per header line and Node's 16 KiB of
   * headers with room for other cookies: raise it only when every server and proxy in front of
   * the application accepts more.
   * @default 6144
   */
  maxCookieHeaderBytes?: number;
  /**
   * The longest value of one cookie, in characters; name and value together never exceed 4096
   * bytes (RFC 6265bis §5.6).
   * @default 3800
   */
  chunkSize?: number;
  /**
   * The most cookies one session may use; more is refused with `SessionTooLargeError`.
   * @default 5
   */
  maxCookies?: number;
  /**
   * The largest session payload (JSON, before compression), in bytes: `seal` refuses a larger
   * one and `open` stops inflating past it.
   * @default 131072
   */
  maxPayloadBytes?: number;
  /**
   * A server store that records the live seal of each session (its version, by compare-and-set
   * on the one before) or a tombstone: `open` then refuses a replayed, older seal
   * (`"superseded"`) and a seal of an ended session (`"ended"`), each with `at`, when that
   * happened (ms by `now`). One store write per seal, one read per request carrying a session.
   * Give it a key space of its own and no eviction.
   * @default undefined (no revocation: any unexpired seal opens, replays included)
   */
  revocation?: SessionStore;
  /**
   * The session key that holds the user's id, as in `userSessions({ userKey })` of `withSession`'s `users`. Needs a
   * `revocation` store, where a generation per user (keyed by a hash of the user id) lets
   * `endUser(user)` end every seal of the user's sessions made before. Costs a second
   * revocation-store read per request carrying a session that holds a user, and reads before
   * each seal's write.
   * @default undefined (no generations per user; `endUser` throws)
   */
  userKey?: string;
  /**
   * Tokens kept per generation in the cache of tokens this store sealed or opened (at most
   * twice this many, each within 8192 characters of value and payload), so a returning visitor's
   * cookie opens without decryption; `0` turns it off.
   * @default 2048
   */
  cacheSize?: number;
  /**
   * The clock, in milliseconds since the epoch (injectable for tests).
   * @default Date.now
   */
  now?: () => number;
}

/**
 * Keeps the whole session in the cookie, sealed (encrypted and authenticated) with a key only the
 * server holds: nothing to run or clean up, and opaque to the client. On its own it cannot
 * compare-and-set (`capabilities.compareAndSet` is `false`: the last cookie the browser keeps
 * wins) nor stop a replayed seal; a `revocation` store gives it both, and with `userKey`,
 * `endUser`. A user's sessions cannot be listed (`capabilities.users` is `false`). A payload over
 * one cookie is split into `name.0`, `name.1`, ... within `maxCookieHeaderBytes`. Docs, with
 * everything it cannot do: `docs/stores/cookie.md`.
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
  /** The sealed-cookie flow `withSession` drives this store with (see `sealedStore`). */
  readonly [kBackend]: Backend = sealedBackend;
  /**
   * Compare-and-set: no. Native expiry: yes (the seal carries it). Revocation: only with the
   * `revocation` option. Sessions per user (`users`): no; `endUser` ends them all with `userKey`.
   */
  readonly capabilities: StoreCapabilities & { revocation: boolean };
  #secrets: readonly string[];
  #keyring: Promise<Keyring> | undefined;
  #compressAt: number;
  #limits: ChunkLimits;
  #maxPayload: number;
  #revocation: Revocation | undefined;
  #userKey: string | undefined;
  #opener: TokenOpener;

  /**
   * @param options See {@linkcode CookieStoreOptions}.
   * @throws {TypeError} When `secrets` is missing or empty, a secret is shorter than 32
   *   characters or the same as an earlier one; when `userKey` is not a session key or is given
   *   without a `revocation` store.
   * @throws {RangeError} When `chunkSize`, `maxCookieHeaderBytes`, `maxCookies`,
   *   `maxPayloadBytes`, `cacheSize` or `compress` is out of range.
   */
  constructor(options: CookieStoreOptions) {
    const settings = resolveOptions(options);
    const { revocation, userKey, now } = settings;
    this.#secrets = settings.secrets;
    this.#compressAt = settings.compressAt;
    this.#limits = {
      chunkSize: settings.chunkSize,
      headerBudget: settings.headerBudget,
      maxCookies: settings.maxCookies,
    };
    this.#maxPayload = settings.maxPayload;
    this.#revocation = revocation === undefined ? undefined : new Revocation(revocation, userKey, now);
    this.#userKey = userKey;
    const keys = () => this.#keys();
    this.#opener = new TokenOpener({
      keys,
      maxPayload: settings.maxPayload,
      now,
      cacheSize: settings.cacheSize,
    });
    this.capabilities = { compareAndSet: false, ttl: true, revocation: revocation !== undefined };
  }

  /**
   * Opens the session from the request's cookies.
   *
   * @param get Returns a request cookie's value by name.
   * @param name The session cookie's name.
   * @returns `null` when the request carries no session cookie; `{ invalid: "malformed", detail }`
   *   when it cannot be opened (tampered, unknown secret, expired, truncated, a chunk missing;
   *   `detail` is an `Error` saying which); with a `revocation` store, `{ invalid: "ended", at }`
   *   for a destroyed or regenerated session (or, with `userKey`, one sealed before `endUser`),
   *   `{ invalid: "superseded", at }` for a seal older than the session's latest, `at` in ms
   *   since the epoch by `now` when known. Otherwise the session.
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
      if (head === undefined) decoded = await this.#opener.decode(single!);
      else {
        const chunks = () => joinChunks(get, name, head, this.#limits.maxCookies);
        decoded = await (single === undefined
          ? this.#opener.decode(chunks())
          : this.#opener.decodeEither(single, chunks));
      }
    } catch (error) {
      if (error instanceof InvalidCookieError) return { invalid: "malformed", detail: error };
      throw error;
    }
    if (this.#revocation !== undefined) {
      const refused = await this.#revocation.check(decoded);
      if (refused !== undefined) {
        this.#opener.forget(decoded.token); // it will never open again
        return refused;
      }
    }
    if (!decoded.hit) this.#opener.remember(decoded.token, decoded.entry);
    return decoded.opened;
  }

  /**
   * Seals a record with `id` into the cookies to send: `name` alone when it fits in one cookie,
   * else `name.0` ... `name.N-1`. With a `revocation` store, the record's version is recorded
   * there first (with `userKey`, under its user's generation).
   *
   * @param id The session id, sealed with the record.
   * @param record The record to seal; its `expiresAt` is enforced when opening.
   * @param name The session cookie's name.
   * @param options `replaces`: the id of the session a `regenerate()` ended for this one (with
   *   `userKey`, this seal is then live only under the user's generation that session was ended
   *   under: a `endUser` since ends it too); `repeatable` (default `true`): with a `revocation`
   *   store, whether a concurrent seal of this version with the same data stands for this one
   *   (`false`: the seal carries a change of its own, and is then refused as a conflict).
   * @returns The cookies to send, values made of base64url characters and `.`.
   * @throws {SessionTooLargeError} When the payload is over `maxPayloadBytes`, or the cookies
   *   would take more than `maxCookieHeaderBytes` or `maxCookies`; nothing is written.
   * @throws {SessionConflictError} With a `revocation` store, when another request has sealed a
   *   different version of this session meanwhile, or ended it (with `userKey`, also by ending
   *   every session of the user the session held when last sealed).
   * @throws {StoreUnavailableError} When the revocation store cannot be written.
   */
  async seal(
    id: string,
    record: StoredSession,
    name: string,
    options?: { replaces?: string; repeatable?: boolean },
  ): Promise<SealedCookie[]> {
    const text = JSON.stringify({ id, record });
    const plaintext = encoder.encode(text);
    if (plaintext.byteLength > this.#maxPayload) {
      throw new SessionTooLargeError(
        `Session too large for a cookie: ${plaintext.byteLength} bytes of payload, over maxPayloadBytes "${this.#maxPayload}"`,
      );
    }
    // The revocation store's keys and the data's fingerprint, computed while the payload is sealed.
    const fingerprints = this.#revocation?.fingerprints(id, record);
    const { sealing } = await this.#keys();
    const token = await sealPayload(sealing, plaintext, this.#compressAt);
    const cookies = splitToken(token, name, this.#limits);
    const entry: CachedToken = { text, stale: false };
    if (fingerprints !== undefined) {
      await this.#revocation!.record(fingerprints, record, entry, options);
    }
    this.#opener.remember(token, entry);
    return cookies;
  }

  /**
   * Revokes a session: replaces its record in the `revocation` store (keyed by `SHA-256(id)`) by a
   * tombstone, kept until the later of `record.expiresAt` and the recorded seal's expiry, that
   * says when (`at`); no seal of it opens again. Does nothing without a `revocation` store; a
   * session already revoked keeps its first tombstone.
   *
   * @param id The session id.
   * @param record The session's record (its `expiresAt` bounds the tombstone's life).
   * @param options `carried`: the data, as loaded, that goes on under a new id (a `regenerate()`):
   *   refused when a seal newer than `record.version`, of other data, was recorded meanwhile.
   * @returns `"ended"` when the session was revoked already (by a log in that regenerated it,
   *   say), `"missing"` when the revocation store held nothing of it (a tombstone is written
   *   anyway); nothing when revoked by this call or without a `revocation` store. See
   *   `SealedSessionStore.revoke`.
   * @throws {SessionConflictError} With `carried`, when another request sealed a newer version
   *   of the session, of other data, meanwhile: nothing is revoked.
   * @throws {StoreUnavailableError} When the revocation store cannot be read or written.
   */
  async revoke(
    id: string,
    record: StoredSession,
    options?: { carried?: StoredSession["data"] },
  ): Promise<void | "ended" | "missing"> {
    return await this.#revocation?.revoke(id, record, options?.carried);
  }

  /**
   * Ends every session of `user` sealed until now ("log out everywhere"), or every one but the
   * session whose id is `options.except` ("sign out other devices"), by moving the user's
   * generation on in the `revocation` store. Their seals then open as `{ invalid: "ended" }`, and
   * a request in flight with one cannot seal it again. It cannot list a user's sessions.
   *
   * @param user The user's id, as sessions hold it under `userKey`.
   * @param options `except`: the id of the session to keep (`session.id` of the request that asks).
   * @throws {SessionConfigError} Without `userKey` (which needs a `revocation` store).
   * @throws {TypeError} When `user` or `except` is not a non-empty string.
   * @throws {StoreUnavailableError} When the revocation store fails or keeps refusing the write.
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
  async endUser(user: string, options: { except?: string } = {}): Promise<void> {
    if (this.#userKey === undefined) {
      throw new SessionConfigError(
        "Ending a user's sessions needs the userKey option and a revocation store",
      );
    }
    await this.#revocation!.endUser(user, options);
  }

  #keys(): Promise<Keyring> {
    this.#keyring ??= deriveKeyring(this.#secrets);
    return this.#keyring;
  }
}
