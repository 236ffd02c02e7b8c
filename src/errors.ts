/**
 * Errors raised by websession. Every error carries a stable `code` that callers can switch on;
 * messages are for people and may change.
 *
 * @module
 */

/**
 * The stable codes of websession's errors, one per error class (`ERR_SESSION` is the base class's,
 * for an error a store raises as a plain {@linkcode SessionError}). Messages may change; codes do not.
 *
 * @example
 * ```ts
 * import { SessionError, type SessionErrorCode } from "websession";
 * import assert from "node:assert/strict";
 *
 * function statusFor(error: unknown): number {
 *   if (!(error instanceof SessionError)) return 500;
 *   const code: SessionErrorCode = error.code;
 *   return code === "ERR_SESSION_CONFLICT" ? 409 : error.status;
 * }
 * assert.equal(statusFor(new SessionError("x")), 500);
 * ```
 */
export type SessionErrorCode =
  | "ERR_SESSION"
  | "ERR_SESSION_CONFLICT"
  | "ERR_SESSION_STORE_UNAVAILABLE"
  | "ERR_SESSION_CONFIG"
  | "ERR_SESSION_TOO_LARGE"
  | "ERR_SESSION_STATE"
  | "ERR_SESSION_DATA"
  | "ERR_SESSION_RECENT_AUTH_REQUIRED";

/**
 * Base class of every error websession raises.
 *
 * @example
 * ```ts
 * import { SessionError, StoreUnavailableError } from "websession";
 * import assert from "node:assert/strict";
 *
 * const error = new StoreUnavailableError("Redis did not answer");
 * assert.ok(error instanceof SessionError);
 * assert.equal(error.code, "ERR_SESSION_STORE_UNAVAILABLE");
 * ```
 */
export class SessionError extends Error {
  /** A stable machine-readable code, e.g. `ERR_SESSION_CONFLICT`. */
  readonly code: SessionErrorCode = "ERR_SESSION";
  /** The HTTP status `withSession` answers with when this error reaches it. */
  readonly status: number = 500;

  /**
   * Creates an error.
   *
   * @param message What went wrong.
   * @param options `cause`: the underlying error.
   */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * A save kept losing the compare-and-set against other requests for the same session, more
 * times than `maxAttempts` allows, or the `conflict` policy is `"reject"`. Answered with `409`.
 *
 * @example
 * ```ts
 * import { SessionConflictError } from "websession";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new SessionConflictError("lost").status, 409);
 * ```
 */
export class SessionConflictError extends SessionError {
  /** The stable code of this error. */
  override readonly code = "ERR_SESSION_CONFLICT";
  /** The HTTP status `withSession` answers with. */
  override readonly status = 409;
}

/**
 * The store could not be reached or failed. The original error is in `cause`. Answered with
 * `503`; a failed read is never treated as "no such session".
 *
 * @example
 * ```ts
 * import { StoreUnavailableError } from "websession";
 * import assert from "node:assert/strict";
 *
 * const error = new StoreUnavailableError("Load failed", { cause: new Error("ECONNREFUSED") });
 * assert.equal(error.status, 503);
 * assert.equal((error.cause as Error).message, "ECONNREFUSED");
 * ```
 */
export class StoreUnavailableError extends SessionError {
  /** The stable code of this error. */
  override readonly code = "ERR_SESSION_STORE_UNAVAILABLE";
  /** The HTTP status `withSession` answers with. */
  override readonly status = 503;
}

/**
 * The options given to `withSession` or a store are invalid. Raised when they are read: at
 * construction for a plain options object, on the request for an options function.
 *
 * @example
 * ```ts
 * import { SessionConfigError } from "websession";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new SessionConfigError("bad").code, "ERR_SESSION_CONFIG");
 * ```
 */
export class SessionConfigError extends SessionError {
  /** The stable code of this error. */
  override readonly code = "ERR_SESSION_CONFIG";
}

/**
 * The session cannot be written because it is too large for its store (a cookie over its
 * limit, for instance). Nothing is written: a browser would silently drop such a cookie.
 *
 * @example
 * ```ts
 * import { SessionTooLargeError } from "websession";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new SessionTooLargeError("too big").status, 500);
 * ```
 */
export class SessionTooLargeError extends SessionError {
  /** The stable code of this error. */
  override readonly code = "ERR_SESSION_TOO_LARGE";
}

/**
 * The session was changed in a way that can no longer reach the client: after the response
 * headers were sent (a new session, `regenerate()`), for example while a body streams.
 *
 * @example
 * ```ts
 * import { SessionStateError } from "websession";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new SessionStateError("late").code, "ERR_SESSION_STATE");
 * ```
 */
export class SessionStateError extends SessionError {
  /** The stable code of this error. */
  override readonly code = "ERR_SESSION_STATE";
}

/**
 * The session holds data its store cannot keep faithfully (a NUL character or a lone UTF-16
 * surrogate in PostgreSQL `jsonb`, for instance). Raised by the store before anything is
 * written; a programming error, never an outage, so a store never wraps it as
 * `StoreUnavailableError`. Answered with `500`.
 *
 * @example
 * ```ts
 * import { SessionDataError, StoreUnavailableError } from "websession";
 * import assert from "node:assert/strict";
 *
 * const error = new SessionDataError('Session data cannot be stored: "\\ud800" is a lone surrogate');
 * assert.equal(error.code, "ERR_SESSION_DATA");
 * assert.equal(error.status, 500);
 * assert.ok(!(error instanceof StoreUnavailableError));
 * ```
 */
export class SessionDataError extends SessionError {
  /** The stable code of this error. */
  override readonly code = "ERR_SESSION_DATA";
}

/**
 * A sensitive action needs a more recent sign-in ("sudo mode", step-up): the session's user
 * last authenticated longer ago than the action allows (`maxAge` seconds), or never. Raised by
 * `requireRecentAuth`; answered with `401` and a challenge the client can act on (ask for the
 * password again, then retry):
 *
 * `WWW-Authenticate: Cookie error="insufficient_user_authentication", error_description="...", max_age="300"`
 *
 * The `error` value and the `max_age` parameter (seconds) are those of RFC 9470 §3 (OAuth 2.0
 * Step Up Authentication Challenge), which extends the challenge of RFC 6750 §3; a cookie app
 * has no bearer token, so the scheme is `Cookie` (the name draft-broyer-http-cookie-auth gave
 * cookie-based authentication; browsers show no password dialog for it). RFC 9110 §15.5.2: a
 * 401 carries at least one challenge.
 *
 * @example
 * ```ts
 * import { RecentAuthRequiredError } from "websession";
 * import assert from "node:assert/strict";
 *
 * const error = new RecentAuthRequiredError(300, undefined);
 * assert.equal(error.code, "ERR_SESSION_RECENT_AUTH_REQUIRED");
 * assert.equal(error.status, 401);
 * assert.equal(
 *   error.challenge,
 *   'Cookie error="insufficient_user_authentication", error_description="Sign in again to continue", max_age="300"',
 * );
 * ```
 */
export class RecentAuthRequiredError extends SessionError {
  /** The stable code of this error. */
  override readonly code = "ERR_SESSION_RECENT_AUTH_REQUIRED";
  /** The HTTP status `withSession` answers with. */
  override readonly status = 401;
  /** The most seconds since the last authentication that the action allows. */
  readonly maxAge: number;
  /** When the user last authenticated (milliseconds since the epoch); `undefined`: never. */
  readonly authenticatedAt: number | undefined;

  /**
   * The challenge's scheme: `Cookie`, or `Bearer` for a session that came as
   * `Authorization: Bearer <token>` (the header transport): RFC 9470 §3's challenge as written.
   */
  readonly scheme: "Cookie" | "Bearer";

  /**
   * Creates the error.
   *
   * @param maxAge The seconds since the last authentication the action allows.
   * @param authenticatedAt When the user last authenticated, in ms since the epoch, if ever.
   * @param scheme The challenge's scheme (default `Cookie`).
   */
  constructor(maxAge: number, authenticatedAt: number | undefined, scheme: "Cookie" | "Bearer" = "Cookie") {
    super(
      authenticatedAt === undefined
        ? `Recent authentication required: this session never authenticated (allowed: ${maxAge} s)`
        : `Recent authentication required: the last authentication is older than ${maxAge} s`,
    );
    this.maxAge = maxAge;
    this.authenticatedAt = authenticatedAt;
    this.scheme = scheme;
  }

  /** The `WWW-Authenticate` value of the default answer (RFC 9470 §3's error and `max_age`). */
  get challenge(): string {
    return `${this.scheme} error="insufficient_user_authentication", error_description="Sign in again to continue", max_age="${
      Math.floor(this.maxAge)
    }"`;
  }
}
