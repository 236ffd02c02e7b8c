/**
 * CSRF tokens tied to the session: a secret kept in the session, a MAC of its id under that
 * secret, masked afresh for every token (BREACH). `csrfToken` and `verifyCsrfToken` are exported
 * from `websession/csrf`.
 *
 * @module
 */
import { encodeBase64Url } from "../id.ts";
import type { Session } from "../session.ts";
import { isCanonicalBase64Url } from "../signing.ts";

/** The session key that holds the CSRF secret. */
export const KEY = "_csrf";
const SECRET_PATTERN = /^[A-Za-z0-9_-]{43}$/;
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{86}$/;
const LABEL = new TextEncoder().encode("websession csrf token\0");
const encoder = new TextEncoder();

function decodeBase64Url(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function macKey(secret: string, usage: "sign" | "verify"): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", decodeBase64Url(secret), { name: "HMAC", hash: "SHA-256" }, false, [
    usage,
  ]);
}

/** What the token's MAC covers: a label and the session id (so a new id retires old tokens). */
function macInput(id: string): Uint8Array<ArrayBuffer> {
  const idBytes = encoder.encode(id);
  const data = new Uint8Array(LABEL.length + idBytes.length);
  data.set(LABEL);
  data.set(idBytes, LABEL.length);
  return data;
}

/** A session of any data shape, seen through the one key this module uses. */
type CsrfSession = Session<{ _csrf?: string }>;

/**
 * Returns a CSRF token for the session, for a hidden `_csrf` form field or an `X-CSRF-Token`
 * header. The first call creates the session's CSRF secret (so the session is saved, and a
 * visitor gets a cookie); every call returns a freshly masked token, and all of them stay valid
 * until the session's id changes (`regenerate()` on log in, `destroy()`) or it ends.
 *
 * @param session The request's session (`getSession(req)`, `c.var.session`).
 * @returns The token: 86 base64url characters, safe in HTML attributes and headers.
 * @example
 * ```ts
 * import { getSession, MemoryStore, withSession } from "websession";
 * import { csrfToken, verifyCsrfToken } from "websession/csrf";
 * import assert from "node:assert/strict";
 *
 * const app = withSession(async (req: Request) => {
 *   const session = await getSession(req);
 *   const first = await csrfToken(session);
 *   const second = await csrfToken(session);
 *   assert.notEqual(first, second); // masked differently each time (BREACH)
 *   assert.ok(await verifyCsrfToken(session, first) && await verifyCsrfToken(session, second));
 *   session.regenerate(); // log in
 *   assert.equal(await verifyCsrfToken(session, first), false);
 *   return new Response(await csrfToken(session));
 * }, { store: new MemoryStore(), secrets: ["a secret of at least thirty-two characters"] });
 * assert.match(await (await app(new Request("https://example.com/"))).text(), /^[A-Za-z0-9_-]{86}$/);
 * ```
 */
export async function csrfToken<T extends object>(session: Session<T>): Promise<string> {
  const s = session as unknown as CsrfSession;
  let secret = s.get(KEY);
  if (typeof secret !== "string" || !SECRET_PATTERN.test(secret)) {
    secret = encodeBase64Url(crypto.getRandomValues(new Uint8Array(32)));
    s.set(KEY, secret);
  }
  const mac = new Uint8Array(
    await crypto.subtle.sign("HMAC", await macKey(secret, "sign"), macInput(session.id)),
  );
  const masked = new Uint8Array(64);
  crypto.getRandomValues(masked.subarray(0, 32));
  for (let i = 0; i < 32; i++) masked[32 + i] = masked[i]! ^ mac[i]!;
  return encodeBase64Url(masked);
}

/**
 * Tells whether `token` is a CSRF token of this session (of its current id), in constant time.
 * {@linkcode csrf} and {@linkcode csrfMiddleware} call it; call it yourself to check a token
 * that arrives another way. Never creates the session's secret.
 *
 * @param session The request's session.
 * @param token The presented token.
 * @returns `true` for a token from `csrfToken` on this session since its id last changed.
 * @example
 * ```ts
 * import { MemoryStore, openSession } from "websession";
 * import { csrfToken, verifyCsrfToken } from "websession/csrf";
 * import assert from "node:assert/strict";
 *
 * const options = { store: new MemoryStore(), secrets: ["a secret of at least thirty-two characters"] };
 * const session = await openSession(null, options);
 * assert.equal(await verifyCsrfToken(session, "A".repeat(86)), false); // no secret yet
 * const token = await csrfToken(session);
 * assert.equal(await verifyCsrfToken(session, token), true);
 * const altered = token.slice(0, 40) + (token[40] === "A" ? "B" : "A") + token.slice(41);
 * assert.equal(await verifyCsrfToken(session, altered), false);
 * ```
 */
export async function verifyCsrfToken<T extends object>(
  session: Session<T>,
  token: string,
): Promise<boolean> {
  const secret = (session as unknown as CsrfSession).peek(KEY);
  if (typeof secret !== "string" || !SECRET_PATTERN.test(secret)) return false;
  if (typeof token !== "string" || !TOKEN_PATTERN.test(token) || !isCanonicalBase64Url(token)) return false;
  const masked = decodeBase64Url(token);
  const mac = new Uint8Array(32);
  for (let i = 0; i < 32; i++) mac[i] = masked[i]! ^ masked[32 + i]!;
  // crypto.subtle.verify compares in constant time.
  return await crypto.subtle.verify("HMAC", await macKey(secret, "verify"), mac, macInput(session.id));
}
