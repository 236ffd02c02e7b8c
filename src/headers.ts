/**
 * The headers a response that used the session gets: `Vary: Cookie` always, the `Set-Cookie`
 * values when there are any, and then a private `Cache-Control`. Shared by `withSession` and
 * the framework adapters.
 *
 * @module
 */
import type { ResolvedOptions } from "./options.ts";

const VARY_COOKIE = /(^|,)\s*(cookie|\*)\s*(,|$)/i;
/** Directives only shared caches obey (RFC 9111 §5.2.2.9, §5.2.2.10): dropped beside a cookie. */
const SHARED = new Set(["public", "s-maxage"]);

/** One `Cache-Control` directive: its name (lowercase) and its text as the handler wrote it. */
interface Directive {
  name: string;
  /** Whether it has an argument (`name=value`). */
  valued: boolean;
  text: string;
}

/**
 * Splits a `Cache-Control` value into its directives (RFC 9111 §5.2, the list syntax of RFC 9110
 * §5.6.1): commas separate directives except inside a quoted-string (RFC 9110 §5.6.4, where a
 * backslash escapes the next character), and empty elements are skipped.
 */
function directives(value: string): Directive[] {
  const list: Directive[] = [];
  let start = 0;
  let quoted = false;
  const push = (end: number): void => {
    const text = value.slice(start, end).trim();
    start = end + 1;
    if (text === "") return;
    const eq = text.indexOf("=");
    const name = (eq < 0 ? text : text.slice(0, eq)).trim().toLowerCase();
    list.push({ name, valued: eq >= 0, text });
  };
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (quoted) {
      if (c === "\\") i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === ",") push(i);
  }
  push(value.length);
  return list;
}

/**
 * Adds `Vary: Cookie` (a response that read the session depends on the cookie) and the
 * `Set-Cookie` values; when there are any, makes `Cache-Control` private so that no shared
 * cache keeps one user's cookie (RFC 9111 §5.2.2.7). The handler's directives are parsed as
 * RFC 9111 §5.2 says (quoted arguments respected): the shared-cache directives (`public`,
 * `s-maxage`) are dropped, `private` goes first unless a real `private` or `no-store` is there
 * already, and the others stay.
 *
 * @param headers The response headers (mutable).
 * @param cookies The `Set-Cookie` values.
 * @throws {TypeError} When the headers are immutable.
 */
export function addSessionHeaders(headers: Headers, cookies: readonly string[]): void {
  const vary = headers.get("vary");
  if (vary === null) headers.set("vary", "Cookie");
  else if (!VARY_COOKIE.test(vary)) headers.set("vary", `${vary}, Cookie`);
  if (cookies.length === 0) return;
  for (const cookie of cookies) headers.append("set-cookie", cookie);
  makePrivate(headers);
}

/**
 * Adds a request header's name to `Vary` (RFC 9110 §12.5.5) unless it, or `*`, is there.
 *
 * @param headers The response headers (mutable).
 * @param name The header name.
 * @throws {TypeError} When the headers are immutable.
 */
export function addVary(headers: Headers, name: string): void {
  const vary = headers.get("vary");
  if (vary === null) {
    headers.set("vary", name);
    return;
  }
  const lower = name.toLowerCase();
  const listed = vary.split(",").some((item) => {
    const field = item.trim().toLowerCase();
    return field === lower || field === "*";
  });
  if (!listed) headers.set("vary", `${vary}, ${name}`);
}

/**
 * Makes `Cache-Control` private, for a response that hands out a credential: no shared cache
 * keeps it (RFC 9111 §5.2.2.7). `private, no-store` when the handler set none; else the
 * shared-cache directives (`public`, `s-maxage`) are dropped and `private` goes first unless a
 * real `private` or `no-store` is there already (quoted arguments respected, RFC 9111 §5.2).
 *
 * @param headers The response headers (mutable).
 * @throws {TypeError} When the headers are immutable.
 */
export function makePrivate(headers: Headers): void {
  const cacheControl = headers.get("cache-control");
  if (cacheControl === null) {
    headers.set("cache-control", "private, no-store");
    return;
  }
  // Only a real directive counts: `private` unqualified (a `private="field"` lets a shared cache
  // keep the rest) or `no-store`; never the word inside a quoted argument of another directive.
  const list = directives(cacheControl);
  const isPrivate = list.some((d) => d.name === "no-store" || (d.name === "private" && !d.valued));
  const kept = list.filter((d) => !SHARED.has(d.name) && (isPrivate || d.name !== "private"));
  if (isPrivate && kept.length === list.length) return;
  headers.set("cache-control", [...(isPrivate ? [] : ["private"]), ...kept.map((d) => d.text)].join(", "));
}

/**
 * Returns `response` with the session headers added. `Set-Cookie` values always go on a copy:
 * a handler may return one `Response` object to many requests (a module-level `204` or redirect),
 * and a cookie added to that object would be sent to every later caller, signing them in as
 * someone else. Without cookies only `Vary: Cookie` is added, in place when the headers can be
 * changed (it holds for every request that reaches the response), else on a copy. A `101`
 * (protocol switch) response is never copied (it cannot be constructed); it is made per
 * connection, so its own headers take the cookies.
 *
 * @param response The handler's response; never given a `Set-Cookie`, unless its status is `101`.
 * @param cookies The `Set-Cookie` values.
 * @returns The response to send: `response` itself, or a copy of it.
 */
export function withSessionHeaders(response: Response, cookies: readonly string[]): Response {
  if (cookies.length === 0 || response.status === 101) {
    try {
      addSessionHeaders(response.headers, cookies);
      return response;
    } catch {
      // immutable headers: `Response.redirect()`, a `fetch()` result
    }
  }
  const copy = new Response(response.body, response);
  addSessionHeaders(copy.headers, cookies);
  return copy;
}

const LOCAL = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$|\.localhost$/;

/**
 * Browsers drop a `Secure` cookie set over plain http (RFC 6265bis §5.7), except on localhost:
 * the site then starts a new session on every request, silently. Say so once.
 */
export function warnInsecure(o: ResolvedOptions, request: Request): void {
  // Most requests are https: no URL to parse (this runs on every response that sets a cookie).
  if (request.url.startsWith("https:")) return;
  const url = new URL(request.url);
  if (url.protocol !== "http:" || LOCAL.test(url.hostname)) return;
  if (/^https$/i.test(request.headers.get("x-forwarded-proto") ?? "")) return;
  o.warned = true;
  o.logger.warn(
    `websession: a Secure session cookie was sent in answer to a plain-http request for "${url.host}": browsers drop it, so every request starts a new session. Serve the site over https (behind a proxy that terminates TLS, have it send X-Forwarded-Proto: https), or set cookie: { secure: false } for plain-http development`,
  );
}
