/**
 * What PostgreSQL `jsonb` and `text` cannot hold, checked before anything is sent, and how a
 * refusal by PostgreSQL itself is told from an outage: both are `SessionDataError`, never
 * `StoreUnavailableError`.
 *
 * @module
 */
import { SessionDataError } from "../../errors.ts";
import { stringifyData } from "../../store.ts";

// What jsonb cannot hold, as JSON.stringify writes it: U+0000 as the escape \u0000, and a lone
// surrogate (never a valid pair, which it writes as is) as a \udXXX escape. An escape counts
// only after an even run of backslashes (a literal backslash is written \\).
const UNSTORABLE_ESCAPE = /(?<!\\)(?:\\\\)*\\u(?:0000|d[89a-f][0-9a-f]{2})/;
// The same in a string: NUL, a high surrogate not followed by a low one, a low one not
// preceded by a high one.
// deno-lint-ignore no-control-regex -- U+0000 is what it looks for
const UNSTORABLE_CHAR = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function escapeText(text: string): string {
  return text.replace(
    // deno-lint-ignore no-control-regex -- control characters are what it escapes
    /[\u0000-\u001f\u007f\ud800-\udfff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

// Finds what made UNSTORABLE_ESCAPE match, for the message: a path in the data and the character.
function describeUnstorable(value: unknown, path: string): string | undefined {
  if (typeof value === "string") {
    const found = UNSTORABLE_CHAR.exec(value);
    return found === null ? undefined : `${what(found[0])} in the value at "${path}"`;
  }
  if (typeof value !== "object" || value === null) return undefined;
  if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) {
      const found = describeUnstorable(item, `${path}[${i}]`);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  for (const [key, item] of Object.entries(value)) {
    const inKey = UNSTORABLE_CHAR.exec(key);
    const at = path === "" ? escapeText(key) : `${path}.${escapeText(key)}`;
    if (inKey !== null) {
      return `${what(inKey[0])} in the key "${escapeText(key)}"${path === "" ? "" : ` at "${path}"`}`;
    }
    const found = describeUnstorable(item, at);
    if (found !== undefined) return found;
  }
  return undefined;
}

function what(char: string): string {
  return char === "\u0000" ? `the character U+0000` : `the lone surrogate "${escapeText(char)}"`;
}

// Throws SessionDataError for data JSON or jsonb cannot hold; returns the JSON text otherwise.
export function storableJson(data: unknown): string {
  const json = stringifyData(data);
  if (UNSTORABLE_ESCAPE.test(json)) {
    const detail = describeUnstorable(JSON.parse(json), "") ?? "a character it cannot hold";
    throw new SessionDataError(`Session data cannot be stored in PostgreSQL jsonb: ${detail}`);
  }
  return json;
}

// SQLSTATE classes 22 (data exception: invalid jsonb text, a time or version out of range) and
// 54 (program limit exceeded: jsonb too large or too deeply nested) from a save: PostgreSQL
// refused the values, and since the statement failed nothing was written.
export function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^(?:22|54)[0-9A-Z]{3}$/.test(code);
}

// A user id as a text parameter: PostgreSQL text holds neither U+0000 nor, over UTF8, a lone
// surrogate.
export function userOf(user: unknown): string {
  if (typeof user !== "string" || UNSTORABLE_CHAR.test(user)) {
    throw new TypeError(
      `Invalid user: "${escapeText(String(user)).slice(0, 64)}" is not a string PostgreSQL text can hold`,
    );
  }
  return user;
}
