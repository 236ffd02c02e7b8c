// The session secret every example signs cookies with, read from the environment: a missing or
// short one stops the example with a message that names SESSION_SECRET and says how to set it,
// instead of a validation error about "secrets" that names neither.

/**
 * Returns the SESSION_SECRET value, or throws saying how to set it.
 *
 * @param value The variable's value (`process.env.SESSION_SECRET`, `env.SESSION_SECRET`, ...).
 * @param howToSet Where this example reads it from, e.g. "run: npx wrangler secret put SESSION_SECRET".
 * @returns The secret, 32 characters or more.
 * @throws {TypeError} When it is unset, empty or shorter than 32 characters.
 */
export function sessionSecret(value: string | undefined, howToSet: string): string {
  if (value === undefined || value === "") {
    throw new TypeError(
      `Missing SESSION_SECRET: set it to 32 or more random characters (openssl rand -base64 32): ${howToSet}`,
    );
  }
  if (value.length < 32) {
    throw new TypeError(
      `Invalid SESSION_SECRET: it has ${value.length} characters, it needs 32 or more: ${howToSet}`,
    );
  }
  return value;
}
