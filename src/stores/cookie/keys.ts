/**
 * The cookie store's cryptography, through jose: a 256-bit AES-GCM key and a key id per secret
 * (HKDF-SHA-256), sealing a payload as a compact JWE (`dir`, `A256GCM`, deflated with
 * `zip: "DEF"` when that is shorter), and opening one with the key its `kid` names.
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
import { invalid, InvalidCookieError } from "./invalid.ts";

/** A key derived from one secret. */
export interface Key {
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

export interface Keyring {
  sealing: Key;
  byKid: Map<string, Key>;
}

const HKDF_SALT = "websession cookie store";
const HKDF_INFO = "websession/cookie-store/A256GCM/v1";
const KID_INFO = "websession/cookie-store/kid/v1";
/** base64url characters of a 96-bit iv and a 128-bit tag. */
const IV_CHARS = 16;
const TAG_CHARS = 22;

const encoder = new TextEncoder();

export async function deriveKeyring(secrets: readonly string[]): Promise<Keyring> {
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

/** Seals a payload as a compact JWE (`dir`, `A256GCM`), deflated by jose when `zip`. */
function encrypt(key: Key, payload: Uint8Array, zip: boolean): Promise<string> {
  return new CompactEncrypt(payload).setProtectedHeader(zip ? key.zip : key.plain).encrypt(key.key);
}

/** Characters of base64url (no padding) for `n` bytes. */
function base64Length(n: number): number {
  return Math.ceil((n * 4) / 3);
}

/** Seals `plaintext` with `key`: deflated when it has `compressAt` bytes or more and that is shorter. */
export async function sealPayload(key: Key, plaintext: Uint8Array, compressAt: number): Promise<string> {
  if (plaintext.byteLength < compressAt) return await encrypt(key, plaintext, false);
  const token = await encrypt(key, plaintext, true);
  // Deflate cannot shrink every payload: keep the plain seal when it is shorter.
  if (token.length >= key.plainOverhead + base64Length(plaintext.byteLength)) {
    return await encrypt(key, plaintext, false);
  }
  return token;
}

/** What jose may decrypt: `dir` + `A256GCM` only, inflating at most `maxPayload` bytes. */
export function decryptOptions(maxPayload: number): DecryptOptions {
  return {
    keyManagementAlgorithms: ["dir"],
    contentEncryptionAlgorithms: ["A256GCM"],
    maxDecompressedLength: maxPayload,
  };
}

/**
 * Decrypts a compact JWE with the key its `kid` names. Throws `InvalidCookieError` for a token
 * that cannot be opened; anything else it throws is a bug.
 */
export async function openPayload(
  token: string,
  keyring: Keyring,
  options: DecryptOptions,
): Promise<{ plaintext: Uint8Array; used: Key }> {
  let used: Key | undefined;
  try {
    const { plaintext } = await compactDecrypt(
      token,
      function selectKey(header: CompactJWEHeaderParameters): CryptoKey {
        used = typeof header.kid === "string" ? keyring.byKid.get(header.kid) : undefined;
        if (used === undefined) throw invalid("sealed with an unknown key (kid)");
        return used.key;
      },
      options,
    );
    return { plaintext, used: used! };
  } catch (error) {
    if (error instanceof InvalidCookieError) throw error;
    if (error instanceof joseErrors.JOSEError) throw invalid(describe(error, options), error);
    throw error;
  }
}

function describe(error: InstanceType<typeof joseErrors.JOSEError>, options: DecryptOptions): string {
  if (error instanceof joseErrors.JWEDecryptionFailed) {
    return "decryption failed (tampered, or sealed with another key)";
  }
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return "algorithm not allowed";
  if (/decompressed plaintext exceeded/i.test(error.message)) {
    return `decompressed payload exceeds maxPayloadBytes "${options.maxDecompressedLength}"`;
  }
  return `malformed seal: ${error.message}`;
}

/** SHA-256 of the text's UTF-8, in base64url. */
export async function sha256(text: string): Promise<string> {
  return base64url.encode(new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(text))));
}
