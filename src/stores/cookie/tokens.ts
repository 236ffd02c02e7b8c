/**
 * Opening a seal: from the bounded cache of tokens the store sealed or opened (no decryption),
 * or by decryption; then parsed afresh and checked for shape and expiry.
 *
 * @module
 */
import { GenerationalCache, isCanonicalBase64Url } from "../../signing.ts";
import { type OpenedSession, toStoredSession } from "../../store.ts";
import { invalid, InvalidCookieError } from "./invalid.ts";
import { decryptOptions, type Keyring, openPayload } from "./keys.ts";

/** A token this store sealed or opened: what opening it again needs, without decryption. */
export interface CachedToken {
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
export interface Decoded {
  token: string;
  entry: CachedToken;
  opened: OpenedSession;
  /** It came from the cache. */
  hit: boolean;
}

/** The largest cache entry, in characters of cookie value and payload together. */
const MAX_CACHED_CHARS = 8192;

const decoder = new TextDecoder("utf-8", { fatal: true });

/** What opening needs: the keys, the payload limit, the clock and the cache's size (0: off). */
export interface OpenerOptions {
  keys: () => Promise<Keyring>;
  maxPayload: number;
  now: () => number;
  cacheSize: number;
}

/** Opens tokens, through a cache of those sealed or opened before. */
export class TokenOpener {
  #keys: () => Promise<Keyring>;
  #maxPayload: number;
  #now: () => number;
  #cache: GenerationalCache<string, CachedToken> | undefined;
  #options: ReturnType<typeof decryptOptions>;

  constructor(options: OpenerOptions) {
    this.#keys = options.keys;
    this.#maxPayload = options.maxPayload;
    this.#now = options.now;
    this.#cache = options.cacheSize === 0 ? undefined : new GenerationalCache(options.cacheSize);
    this.#options = decryptOptions(options.maxPayload);
  }

  /** Caches an opened or sealed token, unless the cache is off or the entry is too large. */
  remember(token: string, entry: CachedToken): void {
    if (this.#cache === undefined || token.length + entry.text.length > MAX_CACHED_CHARS) return;
    this.#cache.set(token, entry);
  }

  /** Drops a token that will never open again. */
  forget(token: string): void {
    this.#cache?.delete(token);
  }

  /**
   * Both a single cookie and chunks are present: two responses raced (one sealed a single cookie,
   * the other chunks) and each cleared only the cookies its request carried. The newer record
   * wins; the next write clears the other form.
   */
  async decodeEither(single: string, chunks: () => string): Promise<Decoded> {
    const [a, b] = await Promise.allSettled([
      this.decode(single),
      Promise.resolve().then(() => this.decode(chunks())),
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
  async decode(token: string): Promise<Decoded> {
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
    const { plaintext, used } = await openPayload(token, await this.#keys(), this.#options);
    if (plaintext.byteLength > this.#maxPayload) {
      throw invalid(`payload exceeds maxPayloadBytes "${this.#maxPayload}"`);
    }
    let text: string;
    try {
      text = decoder.decode(plaintext);
    } catch (error) {
      throw invalid("payload is not UTF-8", error);
    }
    const entry: CachedToken = { text, stale: used.index !== 0 };
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
}

function newer(a: Decoded, b: Decoded): Decoded {
  const [x, y] = [a.opened.record, b.opened.record];
  if (x.version !== y.version) return x.version > y.version ? a : b;
  return x.expiresAt >= y.expiresAt ? a : b;
}
