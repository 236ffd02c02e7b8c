/**
 * The cookie store's options, checked and resolved once at construction.
 *
 * @module
 */
import { refuseDuplicateSecrets } from "../../signing.ts";
import type { SessionStore } from "../../store.ts";
import type { CookieStoreOptions } from "../cookie.ts";
import { MAX_MAX_COOKIES } from "./chunks.ts";

const MIN_SECRET_LENGTH = 32;
const DEFAULT_COMPRESS_THRESHOLD = 512;
const DEFAULT_CHUNK_SIZE = 3800;
const MAX_CHUNK_SIZE = 4000;
const MIN_CHUNK_SIZE = 64;
const DEFAULT_HEADER_BUDGET = 6144;
const MAX_HEADER_BUDGET = 256 * 1024;
const DEFAULT_MAX_COOKIES = 5;
const DEFAULT_MAX_PAYLOAD = 128 * 1024;
const DEFAULT_CACHE_SIZE = 2048;
const MAX_CACHE_SIZE = 1_000_000;

/** The options as the store uses them. */
export interface Settings {
  secrets: readonly string[];
  /** Payloads of this many bytes or more are deflated (`Infinity`: never). */
  compressAt: number;
  chunkSize: number;
  headerBudget: number;
  maxCookies: number;
  maxPayload: number;
  revocation: SessionStore | undefined;
  userKey: string | undefined;
  now: () => number;
  cacheSize: number;
}

function integerOption(
  name: string,
  value: number | undefined,
  fallback: number,
  range: [min: number, max: number],
): number {
  const n = value ?? fallback;
  const [min, max] = range;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new RangeError(`Invalid ${name}: "${n}" is not an integer from ${min} to ${max}`);
  }
  return n;
}

function checkSecrets(options: CookieStoreOptions): readonly string[] {
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
  return [...secrets];
}

function compressThreshold(compress: boolean | number): number {
  const at = compress === true ? DEFAULT_COMPRESS_THRESHOLD : compress === false ? Infinity : compress;
  if (typeof at !== "number" || !(at >= 0)) {
    throw new RangeError(`Invalid compress: "${String(compress)}" is not a boolean or a byte count`);
  }
  return at;
}

function checkUserKey(userKey: string | undefined, revocation: SessionStore | undefined): string | undefined {
  if (userKey === undefined) return undefined;
  if (typeof userKey !== "string" || userKey === "" || userKey.startsWith("__")) {
    throw new TypeError(
      `Invalid userKey: "${
        String(userKey)
      }" must be a session key (a non-empty string not starting with "__")`,
    );
  }
  if (revocation === undefined) {
    throw new TypeError("Invalid userKey: ending a user's sessions needs a revocation store");
  }
  return userKey;
}

/**
 * Checks the options, in the order they are documented, and resolves their defaults.
 *
 * @throws {TypeError} For bad secrets or `userKey`.
 * @throws {RangeError} For a size or count out of range.
 */
export function resolveOptions(options: CookieStoreOptions): Settings {
  const secrets = checkSecrets(options);
  const compressAt = compressThreshold(options.compress ?? true);
  const chunkSize = integerOption("chunkSize", options.chunkSize, DEFAULT_CHUNK_SIZE, [
    MIN_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
  ]);
  const headerBudget = integerOption(
    "maxCookieHeaderBytes",
    options.maxCookieHeaderBytes,
    DEFAULT_HEADER_BUDGET,
    [
      MIN_CHUNK_SIZE,
      MAX_HEADER_BUDGET,
    ],
  );
  const maxCookies = integerOption("maxCookies", options.maxCookies, DEFAULT_MAX_COOKIES, [
    1,
    MAX_MAX_COOKIES,
  ]);
  const maxPayload = integerOption("maxPayloadBytes", options.maxPayloadBytes, DEFAULT_MAX_PAYLOAD, [
    1,
    Number.MAX_SAFE_INTEGER,
  ]);
  const revocation = options.revocation;
  const userKey = checkUserKey(options.userKey, revocation);
  const now = options.now ?? Date.now;
  const cacheSize = integerOption("cacheSize", options.cacheSize, DEFAULT_CACHE_SIZE, [0, MAX_CACHE_SIZE]);
  return {
    secrets,
    compressAt,
    chunkSize,
    headerBudget,
    maxCookies,
    maxPayload,
    revocation,
    userKey,
    now,
    cacheSize,
  };
}
