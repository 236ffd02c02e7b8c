/**
 * How a seal travels in cookies: one cookie `name` when it fits, else numbered chunks `name.0`
 * ... `name.N-1`, the first carrying the count, all within the per-cookie limit and the
 * `Cookie` header budget.
 *
 * @module
 */
import { SessionTooLargeError } from "../../errors.ts";
import type { SealedCookie } from "../../store.ts";
import { invalid } from "./invalid.ts";

/** Bytes of name and value one cookie may hold (RFC 6265bis §5.6, "cookie-name-value-max"). */
export const MAX_COOKIE_BYTES = 4096;
/** The most chunks any setting allows (the upper bound of `maxCookies`). */
export const MAX_MAX_COOKIES = 50;
const CHUNK_HEAD = /^([1-9][0-9]?)\.(.+)$/s;

/** The limits a split keeps to. */
export interface ChunkLimits {
  chunkSize: number;
  headerBudget: number;
  maxCookies: number;
}

/** An empty cookie value counts as absent. */
export function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}

/**
 * Splits a token over cookies within the per-cookie limits and the `Cookie` header budget.
 * Bytes of header: every `name=value`, and `; ` between cookies.
 */
export function splitToken(token: string, name: string, limits: ChunkLimits): SealedCookie[] {
  if (token.length <= Math.min(limits.chunkSize, MAX_COOKIE_BYTES - name.length)) {
    const bytes = name.length + 1 + token.length;
    if (bytes > limits.headerBudget) throw overBudget(bytes, limits); // chunks would only add bytes
    return [{ name, value: token }];
  }
  const { count, size } = chunking(token, name, limits.chunkSize);
  const value = `${count}.${token}`;
  let bytes = 2 * (count - 1) + value.length;
  for (let i = 0; i < count; i++) bytes += `${name}.${i}=`.length;
  if (bytes > limits.headerBudget) throw overBudget(bytes, limits);
  if (count > limits.maxCookies || value.length > count * size) {
    throw new SessionTooLargeError(
      `Session too large for cookies: ${token.length} characters sealed need more than ${
        Math.min(count, limits.maxCookies)
      } cookies, over maxCookies "${limits.maxCookies}"`,
    );
  }
  const cookies: SealedCookie[] = [];
  for (let i = 0; i < count; i++) {
    cookies.push({ name: `${name}.${i}`, value: value.slice(i * size, (i + 1) * size) });
  }
  return cookies;
}

/**
 * How many chunks, and how long each: the first chunk carries the count (`count.` then the
 * token), cut into equal chunks no longer than `chunkSize`, nor than 4096 bytes with the longest
 * chunk name. A larger count can only need as many chunks or more, so jumping to what a count
 * needs reaches the fixed point.
 */
function chunking(token: string, name: string, chunkSize: number): { count: number; size: number } {
  let count = 2;
  let size: number;
  for (;;) {
    size = Math.min(chunkSize, MAX_COOKIE_BYTES - `${name}.${count - 1}`.length);
    const needed = Math.ceil((String(count).length + 1 + token.length) / size);
    if (needed <= count || needed > MAX_MAX_COOKIES) break;
    count = needed;
  }
  return { count, size };
}

function overBudget(bytes: number, limits: ChunkLimits): SessionTooLargeError {
  return new SessionTooLargeError(
    `Session too large for cookies: ${bytes} bytes of Cookie header sealed, over maxCookieHeaderBytes "${limits.headerBudget}"`,
  );
}

/**
 * Joins the chunks whose first, `head`, names the count; throws `InvalidCookieError` for a
 * count out of range or a missing chunk.
 */
export function joinChunks(
  get: (name: string) => string | undefined,
  name: string,
  head: string,
  maxCookies: number,
): string {
  const match = CHUNK_HEAD.exec(head);
  if (match === null) throw invalid(`chunk "${name}.0" has no chunk count`);
  const count = Number(match[1]);
  if (count < 2 || count > maxCookies) {
    throw invalid(`chunk count "${count}" is outside 2 to maxCookies "${maxCookies}"`);
  }
  let token = match[2]!;
  for (let i = 1; i < count; i++) {
    const chunk = nonEmpty(get(`${name}.${i}`));
    if (chunk === undefined) throw invalid(`chunk "${name}.${i}" of ${count} is missing`);
    token += chunk;
  }
  return token; // chunks past the count are leftovers of an older seal: ignored
}
