/**
 * What the framework adapters share: putting a committed session's `Set-Cookie` values on a
 * response (with `Vary: Cookie` and a private `Cache-Control`, as `withSession` does), and
 * turning a session error into the response `onError` gives.
 *
 * @module
 */
import { SessionError } from "../errors.ts";
import type { ResolvedOptions } from "../options.ts";

export { addSessionHeaders, withSessionHeaders } from "../headers.ts";

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
