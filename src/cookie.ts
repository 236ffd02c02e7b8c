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
 * @throws {TypeError} When `options` is not an object, a flag is not a boolean; on an invalid
 * name, path or domain, `SameSite=None` or `Partitioned` without `Secure`, or a
 * `__Host-`/`__Secure-` name whose rules are not met.
 */
export function resolveCookieOptions(options: CookieOptions = {}): ResolvedCookieOptions {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`Invalid cookie: expected an object such as { name: "sid" }, got ${typeof options}`);
  }
  for (const flag of ["secure", "httpOnly", "partitioned", "persistent"] as const) {
    if (options[flag] !== undefined && typeof options[flag] !== "boolean") {
      throw new TypeError(
        `Invalid cookie ${flag}: expected true or false, got ${JSON.stringify(options[flag])}`,
      );
    }
  }
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

function isSpace(code: number): boolean {
  return code === 32 || code === 9;
}

/** `;` separates cookies; `,` too, where a runtime joined two `Cookie` headers (RFC 9110 §5.3). */
function isSeparator(code: number): boolean {
  return code === 59 || code === 44;
}

function unquote(value: string): string {
  return value.length >= 2 && value.charCodeAt(0) === 34 && value.charCodeAt(value.length - 1) === 34
    ? value.slice(1, -1)
    : value;
}

/**
 * Finds every value of one cookie in a `Cookie` header, in order, without parsing the rest.
 * A browser sends a name more than once when it holds cookies of that name for several
 * `Domain`s or `Path`s (RFC 6265bis §5.8.3 orders the longer path first). Cookies joined with
 * `", "` (two `Cookie` fields appended to one `Headers`) are read too: a cookie value never
 * holds a comma.
 *
 * @param header The `Cookie` header, or `null`.
 * @param name The cookie name.
 * @returns The values, possibly empty.
 * @example
 * ```ts
 * import { readCookies } from "./cookie.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(readCookies("a=1; session=xyz; b=2", "session"), ["xyz"]);
 * assert.deepEqual(readCookies("session=1; session=2", "session"), ["1", "2"]);
 * assert.deepEqual(readCookies("a=1, session=2", "session"), ["2"]);
 * ```
 */
export function readCookies(header: string | null, name: string): string[] {
  if (header === null || header.length === 0) return [];
  // Made with its first value: an empty array's first `push` reserves room for 17.
  let values: string[] | undefined;
  let index = header.indexOf(name);
  while (index !== -1) {
    // The name must start a pair: at the beginning, or after a separator and optional spaces.
    let before = index - 1;
    while (before >= 0 && isSpace(header.charCodeAt(before))) before--;
    let after = index + name.length;
    while (after < header.length && isSpace(header.charCodeAt(after))) after++;
    if ((before < 0 || isSeparator(header.charCodeAt(before))) && header.charCodeAt(after) === 61) {
      let end = after + 1;
      while (end < header.length && !isSeparator(header.charCodeAt(end))) end++;
      const value = unquote(header.slice(after + 1, end).trim());
      if (values === undefined) values = [value];
      else values.push(value);
      index = header.indexOf(name, end);
    } else {
      index = header.indexOf(name, index + 1);
    }
  }
  return values ?? [];
}

/**
 * Parses every cookie of a `Cookie` header into lists of values per name, in order.
 *
 * @param header The `Cookie` header, or `null`.
 * @returns Each name's values.
 */
export function parseCookies(header: string | null): Map<string, string[]> {
  const cookies = new Map<string, string[]>();
  if (header === null) return cookies;
  for (const pair of header.split(/[;,]/)) {
    const eq = pair.indexOf("=");
    if (eq < 0) continue;
    const name = pair.slice(0, eq).trim();
    if (name.length === 0) continue;
    const value = unquote(pair.slice(eq + 1).trim());
    const list = cookies.get(name);
    if (list === undefined) cookies.set(name, [value]);
    else list.push(value);
  }
  return cookies;
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
