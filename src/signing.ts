/**
 * Signed session cookies: the cookie value is `id.signature`, where the signature is
 * HMAC-SHA256 of the id under the first secret, base64url. Every secret in the list verifies, so
 * secrets rotate without logging anyone out.
 *
 * Verifying costs a `crypto.subtle` call, which on Node is a thread-pool hop (~40 µs). A bounded
 * cache of cookie values that verified (or that this process signed) makes a returning visitor
 * cost no crypto at all. The cache holds cookie values, which are live credentials, in the heap;
 * so does any server that can sign them (the secrets), so this adds no new exposure to a heap
 * dump, but it is why the cache is bounded and per secret list.
 *
 * @module
 */
import { createSessionId, encodeBase64Url, isSessionId, storageKeyOf } from "./id.ts";

/** A cookie value that verified. */
export interface VerifiedCookie {
  /** The session id it carries. */
  id: string;
  /** The id's storage key. */
  key: string;
  /** It verified with a secret other than the first: re-sign it. */
  rotated: boolean;
  /** The record version the cookie carries (only for stores with stale reads). */
  version?: number;
}

/** An id signed ahead of time: its cookie value and storage key are ready. */
export interface Minted {
  /** The session id. */
  id: string;
  /** The signed cookie value, `id.signature`. */
  value: string;
  /** The id's storage key. */
  key: string;
}

const POOL_LOW = 8;
const POOL_BATCH = 8;
const POOL_MAX = 64;

/** Why a cookie value failed to verify. */
export type SignatureFailure = "malformed" | "signature";

const encoder = new TextEncoder();
const SIGNATURE_PATTERN = /^[A-Za-z0-9_-]{43}$/;
const BASE64URL_PATTERN = /^[A-Za-z0-9_-]*$/;
const VERSION_PATTERN = /^[1-9][0-9]{0,14}$/;
const ALPHABET_INDEX = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const keyCache = new Map<string, Promise<CryptoKey>>();

function hmacKey(secret: string): Promise<CryptoKey> {
  let key = keyCache.get(secret);
  if (key === undefined) {
    key = crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
      "sign",
      "verify",
    ]);
    if (keyCache.size >= 256) keyCache.clear();
    keyCache.set(secret, key);
  }
  return key;
}

/**
 * Tells whether `text` is base64url (no padding) in its one canonical spelling: only the
 * alphabet, no length that leaves a lone character, and the last character's unused low bits
 * zero. Every byte string has exactly one such spelling; a decoder ignores those bits, so without
 * this check each value would have several spellings that decode alike (and each would miss a
 * cache keyed by the text). Signed ids and sealed cookies both refuse the others before any
 * crypto.
 *
 * @param text The text to check.
 * @returns `true` when `text` is canonical unpadded base64url (the empty string is).
 */
export function isCanonicalBase64Url(text: string): boolean {
  if (!BASE64URL_PATTERN.test(text)) return false;
  const rest = text.length % 4;
  if (rest === 0) return true;
  if (rest === 1) return false;
  // 2 characters carry one byte and 4 unused bits, 3 characters two bytes and 2 unused bits.
  return (ALPHABET_INDEX.indexOf(text[text.length - 1]!) & (rest === 2 ? 15 : 3)) === 0;
}

/**
 * Refuses a secrets list that holds one secret twice: a copy-paste slip that leaves a rotation
 * without its new secret, or keeps a retired one that was meant to go. The message names the
 * positions, never the secret.
 *
 * @param secrets The secrets, each a string.
 * @throws {TypeError} When a secret repeats an earlier one.
 */
export function refuseDuplicateSecrets(secrets: readonly string[]): void {
  const seen = new Map<string, number>();
  secrets.forEach((secret, i) => {
    const first = seen.get(secret);
    if (first !== undefined) {
      throw new TypeError(
        `Invalid secrets: secret ${i} is the same as secret ${first}: list each secret once`,
      );
    }
    seen.set(secret, i);
  });
}

function decodeBase64Url(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/**
 * A map bounded by two generations: lookups and inserts stay O(1) at any size (no LRU
 * bookkeeping on hits); when the young generation fills, it becomes the old one.
 */
export class GenerationalCache<K, V> {
  #young = new Map<K, V>();
  #old = new Map<K, V>();
  #limit: number;

  /** @param limit Entries per generation; at most twice this many are held. */
  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Returns the value for `key`, promoting it to the young generation. */
  get(key: K): V | undefined {
    const young = this.#young.get(key);
    if (young !== undefined) return young;
    const old = this.#old.get(key);
    if (old !== undefined) this.set(key, old);
    return old;
  }

  /** Stores a value. */
  set(key: K, value: V): void {
    if (this.#young.size >= this.#limit) {
      this.#old = this.#young;
      this.#young = new Map();
    }
    this.#young.set(key, value);
  }

  /** Forgets a key. */
  delete(key: K): void {
    this.#young.delete(key);
    this.#old.delete(key);
  }
}

/**
 * Signs and verifies session cookie values with a list of secrets (first signs, all verify).
 *
 * @example
 * ```ts
 * import { createSessionId } from "websession/store-kit";
 * import { Signer } from "./signing.ts";
 * import assert from "node:assert/strict";
 *
 * const signer = new Signer(["a secret of at least thirty-two characters"]);
 * const { value } = await signer.issue(createSessionId());
 * const verified = await signer.verify(value);
 * assert.ok(typeof verified === "object" && verified.rotated === false);
 * ```
 */
export class Signer {
  #secrets: readonly string[];
  #cache: GenerationalCache<string, VerifiedCookie>;
  #pool: Minted[] = [];
  #filling = false;

  /**
   * @param secrets The secrets, first one signs; validated by the caller.
   * @param cacheSize Verified values kept per generation.
   */
  constructor(secrets: readonly string[], cacheSize = 5_000) {
    this.#secrets = secrets;
    this.#cache = new GenerationalCache(cacheSize);
  }

  /**
   * Takes an id that was signed ahead of time, if one is ready, and starts minting more in the
   * background. On Node each `crypto.subtle` call is a thread-pool round trip; minting ids in
   * small parallel batches off the request path means a new visitor rarely waits for one.
   *
   * @returns A fresh id with its cookie value and storage key, or `undefined` when none is ready.
   */
  take(): Minted | undefined {
    const minted = this.#pool.pop();
    if (this.#pool.length < POOL_LOW) this.#refill();
    return minted;
  }

  /**
   * Gives back a minted id that was never shown to anyone (its session stayed empty).
   *
   * @param minted What `take()` returned.
   */
  recycle(minted: Minted): void {
    if (this.#pool.length < POOL_MAX) this.#pool.push(minted);
  }

  #refill(): void {
    if (this.#filling) return;
    this.#filling = true;
    const ids = Array.from({ length: POOL_BATCH }, createSessionId);
    // Dispatched after the current request's turn, so the jobs do not delay its response.
    new Promise((resolve) => setTimeout(resolve, 0)).then(() => Promise.all(ids.map((id) => this.issue(id))))
      .then((issued) => {
        issued.forEach(({ value, key }, i) => this.#pool.push({ id: ids[i]!, value, key }));
      }, () => {
        // Minting is an optimisation: on failure, requests sign their own ids.
      }).finally(() => {
        this.#filling = false;
      });
  }

  /** Returns a cached verification of `value` without doing any crypto. */
  cached(value: string): VerifiedCookie | undefined {
    return this.#cache.get(value);
  }

  /** Drops a value from the cache (its session was destroyed or replaced). */
  forget(value: string): void {
    this.#cache.delete(value);
  }

  /**
   * Signs an id and derives its storage key, both at once.
   *
   * @param id A session id.
   * @param version The record version to carry in the cookie (stores with stale reads).
   * @returns The cookie value and the storage key.
   */
  async issue(id: string, version?: number): Promise<{ value: string; key: string }> {
    const payload = version === undefined ? id : `${id}.${version}`;
    const [signature, key] = await Promise.all([this.#sign(payload), storageKeyOf(id)]);
    const value = `${payload}.${signature}`;
    this.#cache.set(
      value,
      version === undefined ? { id, key, rotated: false } : { id, key, rotated: false, version },
    );
    return { value, key };
  }

  async #sign(payload: string): Promise<string> {
    const mac = await crypto.subtle.sign("HMAC", await hmacKey(this.#secrets[0]!), encoder.encode(payload));
    return encodeBase64Url(new Uint8Array(mac));
  }

  /**
   * Verifies a cookie value in constant time (`crypto.subtle.verify`) against every secret.
   *
   * @param value The cookie value, `id.signature`.
   * @returns The verified id and storage key, or why it failed.
   */
  async verify(value: string): Promise<VerifiedCookie | SignatureFailure> {
    const hit = this.#cache.get(value);
    if (hit !== undefined) return hit;
    // `id.signature`, or `id.version.signature` for stores with stale reads.
    const dot = value.lastIndexOf(".");
    const payload = value.slice(0, dot);
    const signature = value.slice(dot + 1);
    const inner = payload.indexOf(".");
    const id = inner < 0 ? payload : payload.slice(0, inner);
    const versionText = inner < 0 ? undefined : payload.slice(inner + 1);
    if (dot < 0 || !isSessionId(id) || !SIGNATURE_PATTERN.test(signature)) return "malformed";
    if (versionText !== undefined && !VERSION_PATTERN.test(versionText)) return "malformed";
    // 43 characters carry 258 bits for a 256-bit MAC: only the canonical encoding (the last
    // character's two low bits zero) is accepted, so no altered value verifies.
    if (!isCanonicalBase64Url(signature)) return "signature";
    const mac = decodeBase64Url(signature);
    const data = encoder.encode(payload);
    for (let i = 0; i < this.#secrets.length; i++) {
      if (await crypto.subtle.verify("HMAC", await hmacKey(this.#secrets[i]!), mac, data)) {
        const verified: VerifiedCookie = { id, key: await storageKeyOf(id), rotated: i > 0 };
        if (versionText !== undefined) verified.version = Number(versionText);
        if (i === 0) this.#cache.set(value, verified);
        return verified;
      }
    }
    return "signature";
  }
}
