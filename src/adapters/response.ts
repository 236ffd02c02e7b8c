/**
 * What the framework adapters share: putting a committed session's `Set-Cookie` values on a
 * response (with `Vary: Cookie` and a private `Cache-Control`, as `withSession` does), and
 * turning a session error into the response `onError` gives.
 *
 * @module
 */
import { SessionError } from "../errors.ts";
import { logError } from "../log.ts";
import type { ResolvedOptions, SessionLogger } from "../options.ts";

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
 * The response for a session error when no `onError` can be asked: the status and its text. A
 * server error (`5xx`) is logged to `logger`, in full once and then counted (`logError`), so a
 * store outage does not write a stack trace per request.
 *
 * @param error The error.
 * @param logger The `logger` option, when the options are at hand.
 * @returns The response.
 */
export function plainErrorResponse(error: SessionError, logger: SessionLogger = console): Response {
  if (error.status >= 500) logError(logger, error);
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
