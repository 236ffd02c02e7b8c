/**
 * What the framework adapters share: putting a committed session's `Set-Cookie` values on a
 * response (with `Vary: Cookie` and a private `Cache-Control`, as `withSession` does), and
 * turning a session error into the response `onError` gives.
 *
 * @module
 */
import { SessionError } from "../errors.ts";
import type { ResolvedOptions } from "../options.ts";

const VARY_COOKIE = /(^|,)\s*(cookie|\*)\s*(,|$)/i;
const PRIVATE = /(^|,)\s*(private|no-store)\s*(,|$)/i;
const SHARED = /^(public|s-maxage\s*=.*)$/i;

/**
 * Adds `Vary: Cookie` (a response that read the session depends on the cookie) and the
 * `Set-Cookie` values; when there are any, makes `Cache-Control` private so that no shared
 * cache keeps one user's cookie.
 *
 * @param headers The response headers (mutable).
 * @param cookies The `Set-Cookie` values from `commitSession`.
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
 * Returns `response` with the session headers added: the same object when its headers can be
 * changed, else a copy (`Response.redirect()`, a `fetch()` result).
 *
 * @param response The response.
 * @param cookies The `Set-Cookie` values from `commitSession`.
 * @returns The response to send.
 */
export function withSessionHeaders(response: Response, cookies: readonly string[]): Response {
  try {
    addSessionHeaders(response.headers, cookies);
    return response;
  } catch {
    const copy = new Response(response.body, response);
    addSessionHeaders(copy.headers, cookies);
    return copy;
  }
}

/**
 * The response for a session error: what `onError` returns, else an empty response with the
 * error's status (`409` for a conflict, `503` for a store outage).
 *
 * @param o The resolved options.
 * @param error The error.
 * @param request The request being answered.
 * @returns The response.
 */
export async function sessionErrorResponse(
  o: ResolvedOptions,
  error: SessionError,
  request: Request,
): Promise<Response> {
  const response = await o.onError(error, request);
  if (response instanceof Response) return response;
  return new Response(null, { status: error.status });
}

/**
 * The response for a session error when no options are at hand: the status and its text.
 *
 * @param error The error.
 * @returns The response.
 */
export function plainErrorResponse(error: SessionError): Response {
  if (error.status >= 500) console.error(error);
  const text = error.status === 409
    ? "Conflict"
    : error.status === 503
    ? "Service Unavailable"
    : "Internal Server Error";
  return new Response(text, {
    status: error.status,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}

/** Whether a value is a session error (answered with its status, never a bare 500). */
export function isSessionError(error: unknown): error is SessionError {
  return error instanceof SessionError;
}
