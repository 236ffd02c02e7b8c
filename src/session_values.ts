/**
 * What goes into a session and comes out: keys checked against the reserved ones, values checked
 * to be plain JSON or passed through the `serializer` option, both ways.
 *
 * @module
 */
import {
  AUTH_AT_KEY,
  FLASH_KEY,
  isSignInKey,
  META_KEY,
  REMEMBER_KEY,
  SERIALIZER_KEY,
  type SessionState,
} from "./session_state.ts";

export function checkKey(key: unknown): asserts key is string {
  if (typeof key !== "string") {
    throw new TypeError(`Invalid session key: expected a string, got ${typeof key}`);
  }
  if (
    key === FLASH_KEY || key === "__ended" || key === META_KEY || isSignInKey(key) || key === SERIALIZER_KEY
  ) {
    throw new TypeError(`Invalid session key: "${key}" is reserved`);
  }
}

/**
 * Checks that a value is plain JSON that every store keeps as it is: no `undefined` inside
 * arrays, no `NaN` or `Infinity`, no `BigInt`, functions, symbols, class instances (`Date`,
 * `Map`, ...) or cycles.
 */
export function checkValue(value: unknown, key: string, depth = 0, seen?: Set<object>): void {
  switch (typeof value) {
    case "string":
    case "boolean":
      return;
    case "number":
      if (Number.isFinite(value)) return;
      throw new TypeError(`Invalid session value for "${key}": ${value} is not a JSON number`);
    case "object": {
      if (value === null) return;
      if (depth > 64) throw new TypeError(`Invalid session value for "${key}": nested deeper than 64 levels`);
      seen ??= new Set();
      if (seen.has(value)) throw new TypeError(`Invalid session value for "${key}": it contains a cycle`);
      seen.add(value);
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const item = value[i];
          if (item === undefined) {
            throw new TypeError(`Invalid session value for "${key}": an array holds undefined`);
          }
          checkValue(item, key, depth + 1, seen);
        }
      } else {
        const proto = Object.getPrototypeOf(value);
        if (proto !== Object.prototype && proto !== null) {
          throw new TypeError(
            `Invalid session value for "${key}": a ${
              proto?.constructor?.name ?? "class"
            } instance is not plain JSON`,
          );
        }
        for (const field in value) {
          const item = (value as Record<string, unknown>)[field];
          if (item !== undefined) checkValue(item, key, depth + 1, seen);
        }
      }
      seen.delete(value);
      return;
    }
    default:
      throw new TypeError(`Invalid session value for "${key}": a ${typeof value} is not JSON`);
  }
}

/** A held value as the handler sees it: under a `serializer`, deserialized (a fresh copy). */
export function readValue(s: SessionState, value: unknown): unknown {
  const serializer = s.serializer;
  return serializer === undefined || value === undefined ? value : serializer.deserialize(value);
}

/** A value as the session holds it: checked to be plain JSON, or serialized by the `serializer`. */
export function holdValue(s: SessionState, key: string, value: unknown): unknown {
  if (s.serializer === undefined) {
    checkValue(value, key);
    return value;
  }
  return s.serializer.serialize(value);
}

/** How many of a data map's keys are sign-in keys. */
export function signInKeys(data: Map<string, unknown>): number {
  return (data.has(REMEMBER_KEY) ? 1 : 0) + (data.has(AUTH_AT_KEY) ? 1 : 0);
}

/** The entries of `data` that are the handler's own (sign-in keys left out), mapped by `of`. */
export function* visible<V>(
  data: Map<string, unknown>,
  of: (entry: [string, unknown]) => V,
): IterableIterator<V> {
  for (const entry of data) if (!isSignInKey(entry[0])) yield of(entry);
}
