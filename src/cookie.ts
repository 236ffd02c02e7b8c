/**
 * Reading the session cookie from a `Cookie` header and writing `Set-Cookie` values
 * (RFC 6265 and the current RFC 6265bis draft: `SameSite`, `Partitioned`, cookie prefixes).
 *
 * @module
 */

/**
 * Cookie attributes of the session cookie.
 *
 * @example
 * ```ts
 * import { type CookieOptions, getSession, MemoryStore, withSession } from "websession";
 * import assert from "node:assert/strict";
 *
 * // A `__Host-` cookie, sent to same-site requests only and dropped when the browser closes.
 * const cookie: CookieOptions = { name: "__Host-sid", sameSite: "Strict", persistent: false };
 * const handler = withSession(async (req: Request) => {
 *   (await getSession(req)).set("seen", true);
 *   return new Response("ok");
 * }, { store: new MemoryStore(), secrets: ["a secret of at least thirty-two characters"], cookie });
 *
 * const response = await handler(new Request("https://example.com/"));
 * assert.match(
 *   response.headers.get("set-cookie")!,
 *   /^__Host-sid=[^;]+; Path=\/; HttpOnly; Secure; SameSite=Strict$/,
 * );
 * ```
 */
export interface CookieOptions {
  /**
   * The cookie name. A `__Host-` name requires `secure`, `path: "/"` and no `domain`; a
   * `__Secure-` name requires `secure`.
   * @default "session"
   */
  name?: string;
  /**
   * The `Path` attribute.
   * @default "/"
   */
  path?: string;
  /** The `Domain` attribute; omitted (host-only cookie) by default. */
  domain?: string;
  /**
   * The `Secure` attribute: sent over HTTPS only (browsers also keep it on http://localhost).
   * @default true
   */
  secure?: boolean;
  /**
   * The `HttpOnly` attribute: not readable from JavaScript.
   * @default true
   */
  httpOnly?: boolean;
  /**
   * The `SameSite` attribute. `"None"` requires `secure`.
   * @default "Lax"
   */
  sameSite?: "Strict" | "Lax" | "None";
  /** The CHIPS `Partitioned` attribute; requires `secure`. @default false */
  partitioned?: boolean;
  /**
   * `true`: the cookie carries `Max-Age`/`Expires` matching the session's expiry. `false`: a
   * browser-session cookie, dropped when the browser closes.
   * @default true
   */
  persistent?: boolean;
}

/** Cookie options after defaults and validation. */
export interface ResolvedCookieOptions {
  name: string;
  persistent: boolean;
  secure: boolean;
  /** The attribute suffix shared by every Set-Cookie (`; Path=/; HttpOnly; ...`). */
  attributes: string;
}

// RFC 6265 token: visible ASCII except separators.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Path attribute value: any CHAR except CTLs and ";".
const PATH = /^\/[\x20-\x3a\x3c-\x7e]*$/;
const DOMAIN =
  /^\.?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const COOKIE_VALUE = /^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*$/;

/**
 * Applies defaults to cookie options and validates them. Every misuse that a browser would
 * silently ignore, or that would let a value inject attributes, throws.
 *
 * @param options The cookie options.
 * @returns Resolved options with the attribute suffix prebuilt.
 * @throws {TypeError} On an invalid name, path or domain, `SameSite=None` or `Partitioned`
 * without `Secure`, or a `__Host-`/`__Secure-` name whose rules are not met.
 */
export function resolveCookieOptions(options: CookieOptions = {}): ResolvedCookieOptions {
  const {
    name = "session",
    path = "/",
    domain,
    secure = true,
    httpOnly = true,
    sameSite = "Lax",
    partitioned = false,
    persistent = true,
  } = options;
  if (typeof name !== "string" || !TOKEN.test(name)) {
    throw new TypeError(`Invalid cookie name: "${name}" is not an RFC 6265 token`);
  }
  if (typeof path !== "string" || !PATH.test(path)) {
    throw new TypeError(
      `Invalid cookie path: "${path}" must start with "/" and hold no ";" or control character`,
    );
  }
  if (domain !== undefined && (typeof domain !== "string" || !DOMAIN.test(domain))) {
    throw new TypeError(`Invalid cookie domain: "${domain}"`);
  }
  if (sameSite !== "Strict" && sameSite !== "Lax" && sameSite !== "None") {
    throw new TypeError(`Invalid cookie sameSite: "${sameSite}" is not "Strict", "Lax" or "None"`);
  }
  if (sameSite === "None" && !secure) {
    throw new TypeError(
      'Invalid cookie options: sameSite "None" requires secure (browsers reject it otherwise)',
    );
  }
  if (partitioned && !secure) {
    throw new TypeError("Invalid cookie options: partitioned requires secure");
  }
  const lower = name.toLowerCase();
  if (lower.startsWith("__host-") && (!secure || path !== "/" || domain !== undefined)) {
    throw new TypeError(`Invalid cookie options: "${name}" requires secure, path "/" and no domain`);
  }
  if (lower.startsWith("__secure-") && !secure) {
    throw new TypeError(`Invalid cookie options: "${name}" requires secure`);
  }
  let attributes = `; Path=${path}`;
  if (domain !== undefined) attributes += `; Domain=${domain}`;
  if (httpOnly) attributes += "; HttpOnly";
  if (secure) attributes += "; Secure";
  attributes += `; SameSite=${sameSite}`;
  if (partitioned) attributes += "; Partitioned";
  return { name, persistent: Boolean(persistent), secure: Boolean(secure), attributes };
}

/** What the request's `Cookie` header holds under one name. */
export interface CookieLookup {
  /** The value, when the name appears exactly once. */
  value?: string;
  /** How many times the name appears. */
  count: number;
}

function isSpace(code: number): boolean {
  return code === 32 || code === 9;
}

/**
 * Finds one cookie in a `Cookie` header without parsing the rest into a map.
 *
 * @param header The `Cookie` header, or `null`.
 * @param name The cookie name.
 * @returns The value (when present once) and how many times the name appears.
 * @example
 * ```ts
 * import { readCookie } from "./cookie.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(readCookie("a=1; session=xyz; b=2", "session"), { value: "xyz", count: 1 });
 * assert.equal(readCookie("session=1; session=2", "session").count, 2);
 * ```
 */
export function readCookie(header: string | null, name: string): CookieLookup {
  if (header === null || header.length === 0) return { count: 0 };
  let value: string | undefined;
  let count = 0;
  let index = header.indexOf(name);
  while (index !== -1) {
    // The name must start a pair: at the beginning, or after ";" and optional spaces.
    let before = index - 1;
    while (before >= 0 && isSpace(header.charCodeAt(before))) before--;
    let after = index + name.length;
    while (after < header.length && isSpace(header.charCodeAt(after))) after++;
    if ((before < 0 || header.charCodeAt(before) === 59) && header.charCodeAt(after) === 61) {
      let end = header.indexOf(";", after + 1);
      if (end === -1) end = header.length;
      count++;
      value = header.slice(after + 1, end).trim();
      if (value.length >= 2 && value.charCodeAt(0) === 34 && value.charCodeAt(value.length - 1) === 34) {
        value = value.slice(1, -1);
      }
      index = header.indexOf(name, end);
    } else {
      index = header.indexOf(name, index + 1);
    }
  }
  return count === 1 ? { value: value!, count } : { count };
}

/**
 * Parses every cookie of a `Cookie` header. A name seen twice keeps its first value and is
 * listed in `duplicates`.
 *
 * @param header The `Cookie` header, or `null`.
 * @returns The cookies and the names seen more than once.
 */
export function parseCookies(
  header: string | null,
): { cookies: Map<string, string>; duplicates: Set<string> } {
  const cookies = new Map<string, string>();
  const duplicates = new Set<string>();
  if (header === null) return { cookies, duplicates };
  for (const pair of header.split(";")) {
    const eq = pair.indexOf("=");
    if (eq < 0) continue;
    const name = pair.slice(0, eq).trim();
    let value = pair.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    if (name.length === 0) continue;
    if (cookies.has(name)) duplicates.add(name);
    else cookies.set(name, value);
  }
  return { cookies, duplicates };
}

/**
 * Serializes a `Set-Cookie` value.
 *
 * @param name The cookie name (already validated).
 * @param value The value; must hold only cookie-octets.
 * @param attributes The prebuilt attribute suffix.
 * @param maxAge Seconds until expiry; `0` deletes the cookie; `undefined` makes a browser-session
 * cookie.
 * @param now The current time in milliseconds, for `Expires`.
 * @returns The header value.
 * @throws {TypeError} When the value holds a character not allowed in a cookie.
 */
export function serializeCookie(
  name: string,
  value: string,
  attributes: string,
  maxAge: number | undefined,
  now: number,
): string {
  if (!COOKIE_VALUE.test(value)) throw new TypeError(`Invalid cookie value for "${name}"`);
  let cookie = `${name}=${value}${attributes}`;
  if (maxAge !== undefined) {
    const seconds = Math.max(0, Math.floor(maxAge));
    const expires = seconds === 0 ? new Date(0) : new Date(now + seconds * 1000);
    cookie += `; Max-Age=${seconds}; Expires=${expires.toUTCString()}`;
  }
  return cookie;
}
