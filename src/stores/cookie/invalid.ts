/**
 * Why a present session cookie cannot be opened: the `detail` of a malformed seal.
 *
 * @module
 */

/** Why a present cookie cannot be opened: the `detail` of a malformed seal. */
export class InvalidCookieError extends Error {
  override name = "InvalidCookieError";
}

export function invalid(reason: string, cause?: unknown): InvalidCookieError {
  return new InvalidCookieError(
    `Invalid session cookie: ${reason}`,
    cause === undefined ? undefined : { cause },
  );
}
