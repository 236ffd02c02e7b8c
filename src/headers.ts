/**
 * The headers a response that used the session gets: `Vary: Cookie` always, the `Set-Cookie`
 * values when there are any, and then a private `Cache-Control`. Shared by `withSession` and
 * the framework adapters.
 *
 * @module
 */
import type { ResolvedOptions } from "./options.ts";

const VARY_COOKIE = /(^|,)\s*(cookie|\*)\s*(,|$)/i;
const PRIVATE = /(^|,)\s*(private|no-store)\s*(,|$)/i;
const SHARED = /^(public|s-maxage\s*=.*)$/i;

/**
 * Adds `Vary: Cookie` (a response that read the session depends on the cookie) and the
 * `Set-Cookie` values; when there are any, makes `Cache-Control` private so that no shared
 * cache keeps one user's cookie (RFC 9111 §5.2.2.7). The handler's other directives stay.
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
  const cacheControl = headers.get("cache-control");
  if (cacheControl === null) headers.set("cache-control", "private, no-store");
  else if (!PRIVATE.test(cacheControl)) {
    const kept = cacheControl.split(",").map((d) => d.trim()).filter((d) => d !== "" && !SHARED.test(d));
    headers.set("cache-control", ["private", ...kept].join(", "));
  }
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
  const url = new URL(request.url);
  if (url.protocol !== "http:" || LOCAL.test(url.hostname)) return;
  if (/^https$/i.test(request.headers.get("x-forwarded-proto") ?? "")) return;
  o.warned = true;
  o.logger.warn(
    `websession: a Secure session cookie was sent in answer to a plain-http request for "${url.host}": browsers drop it, so every request starts a new session. Serve the site over https (behind a proxy that terminates TLS, have it send X-Forwarded-Proto: https), or set cookie: { secure: false } for plain-http development`,
  );
}
