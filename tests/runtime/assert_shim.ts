// A stand-in for `node:assert/strict` in runtimes without Node's modules (workerd without
// `nodejs_compat`). Same names and the same strict semantics for what the suites use: `ok`,
// `equal`, `notEqual`, `deepEqual`, `notDeepEqual`, `match`, `doesNotMatch`, `throws`,
// `doesNotThrow`, `rejects`, `doesNotReject`, `fail`, `ifError`, and their `strict*` aliases.

type Message = string | Error | undefined;

/** The error every failed assertion throws, shaped like Node's. */
export class AssertionError extends Error {
  override name = "AssertionError";
  readonly code = "ERR_ASSERTION";
  readonly actual: unknown;
  readonly expected: unknown;
  readonly operator: string;
  readonly generatedMessage: boolean;

  constructor(
    options: { message?: string; actual?: unknown; expected?: unknown; operator: string; generated?: string },
  ) {
    super(options.message ?? options.generated ?? "Assertion failed");
    this.actual = options.actual;
    this.expected = options.expected;
    this.operator = options.operator;
    this.generatedMessage = options.message === undefined;
  }
}

/** A short, deterministic rendering of a value for failure messages. */
export function inspect(value: unknown, depth = 0, seen: unknown[] = []): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "number") return Object.is(value, -0) ? "-0" : String(value);
  if (typeof value === "function") return `[Function: ${value.name || "anonymous"}]`;
  if (typeof value === "symbol") return value.toString();
  if (value === null || typeof value !== "object") return String(value);
  if (seen.includes(value)) return "[Circular]";
  if (depth > 4) return Array.isArray(value) ? "[Array]" : "[Object]";
  const inner = [...seen, value];
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  if (value instanceof Date) return value.toISOString();
  if (value instanceof RegExp) return String(value);
  if (Array.isArray(value)) return `[${value.map((v) => inspect(v, depth + 1, inner)).join(", ")}]`;
  if (value instanceof Map) {
    return `Map(${value.size}) {${
      [...value].map(([k, v]) => `${inspect(k, depth + 1, inner)} => ${inspect(v, depth + 1, inner)}`).join(
        ", ",
      )
    }}`;
  }
  if (value instanceof Set) {
    return `Set(${value.size}) {${[...value].map((v) => inspect(v, depth + 1, inner)).join(", ")}}`;
  }
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${value.byteLength})`;
  const proto = Object.getPrototypeOf(value);
  const prefix = proto === null
    ? "[Object: null prototype] "
    : proto === Object.prototype
    ? ""
    : `${proto.constructor?.name ?? "Object"} `;
  const entries = Object.keys(value).map((key) =>
    `${/^[A-Za-z_$][\w$]*$/.test(key) ? key : JSON.stringify(key)}: ${
      inspect((value as Record<string, unknown>)[key], depth + 1, inner)
    }`
  );
  return `${prefix}{${entries.length > 0 ? ` ${entries.join(", ")} ` : ""}}`;
}

function fail(
  message: Message,
  generated: string,
  actual: unknown,
  expected: unknown,
  operator: string,
): never {
  if (message instanceof Error) throw message;
  throw new AssertionError({ message, generated, actual, expected, operator });
}

function ownKeys(value: object): PropertyKey[] {
  const symbols = Object.getOwnPropertySymbols(value).filter((s) =>
    Object.prototype.propertyIsEnumerable.call(value, s)
  );
  return [...Object.keys(value), ...symbols];
}

function bytes(view: ArrayBufferView | ArrayBuffer): Uint8Array {
  return view instanceof ArrayBuffer
    ? new Uint8Array(view)
    : new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/** Node's `isDeepStrictEqual`: same prototypes, same own enumerable keys, `Object.is` on leaves. */
export function isDeepStrictEqual(a: unknown, b: unknown, pairs: Array<[unknown, unknown]> = []): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  const tag = Object.prototype.toString.call(a);
  if (tag !== Object.prototype.toString.call(b)) return false;
  if (pairs.some(([x, y]) => x === a && y === b)) return true;
  const memo: Array<[unknown, unknown]> = [...pairs, [a, b]];

  if (Array.isArray(a) && a.length !== (b as unknown[]).length) return false;
  if (a instanceof Date && a.getTime() !== (b as Date).getTime()) return false;
  if (a instanceof RegExp) {
    const r = b as RegExp;
    if (a.source !== r.source || a.flags !== r.flags || a.lastIndex !== r.lastIndex) return false;
  }
  if (a instanceof Error) {
    const e = b as Error;
    if (a.message !== e.message || a.name !== e.name) return false;
  }
  if (a instanceof Number || a instanceof String || a instanceof Boolean) {
    if (!Object.is(a.valueOf(), (b as { valueOf(): unknown }).valueOf())) return false;
  }
  if (ArrayBuffer.isView(a) || a instanceof ArrayBuffer) {
    const x = bytes(a);
    const y = bytes(b as ArrayBufferView);
    if (x.length !== y.length || x.some((v, i) => v !== y[i])) return false;
    if (!ArrayBuffer.isView(a) || a instanceof DataView) return true;
  }
  if (a instanceof Map) {
    const m = b as Map<unknown, unknown>;
    if (a.size !== m.size) return false;
    for (const [key, value] of a) {
      if (m.has(key)) {
        if (!isDeepStrictEqual(value, m.get(key), memo)) return false;
      } else if (
        typeof key !== "object" || key === null ||
        ![...m].some(([k, v]) => isDeepStrictEqual(key, k, memo) && isDeepStrictEqual(value, v, memo))
      ) return false;
    }
  }
  if (a instanceof Set) {
    const s = b as Set<unknown>;
    if (a.size !== s.size) return false;
    for (const value of a) {
      if (s.has(value)) continue;
      if (
        typeof value !== "object" || value === null || ![...s].some((v) => isDeepStrictEqual(value, v, memo))
      ) return false;
    }
  }
  const keysA = ownKeys(a);
  const keysB = ownKeys(b);
  if (keysA.length !== keysB.length) return false;
  for (const key of keysA) {
    if (!Object.prototype.hasOwnProperty.call(b, key)) return false;
    if (!Object.prototype.propertyIsEnumerable.call(b, key)) return false;
    const x = (a as Record<PropertyKey, unknown>)[key];
    const y = (b as Record<PropertyKey, unknown>)[key];
    if (!isDeepStrictEqual(x, y, memo)) return false;
  }
  return true;
}

/** Fails unless `value` is truthy. */
export function ok(value: unknown, message?: Message): asserts value {
  if (!value) {
    fail(
      message,
      `The expression evaluated to a falsy value:\n\n  assert.ok(${inspect(value)})\n`,
      value,
      true,
      "==",
    );
  }
}

/** Fails unless `Object.is(actual, expected)`. */
export function equal<T>(actual: unknown, expected: T, message?: Message): asserts actual is T {
  if (!Object.is(actual, expected)) {
    fail(
      message,
      `Expected values to be strictly equal:\n\n${inspect(actual)} !== ${inspect(expected)}\n`,
      actual,
      expected,
      "strictEqual",
    );
  }
}

/** Fails if `Object.is(actual, expected)`. */
export function notEqual(actual: unknown, expected: unknown, message?: Message): void {
  if (Object.is(actual, expected)) {
    fail(
      message,
      `Expected "actual" to be strictly unequal to: ${inspect(expected)}`,
      actual,
      expected,
      "notStrictEqual",
    );
  }
}

/** Fails unless the two values are deeply and strictly equal. */
export function deepEqual<T>(actual: unknown, expected: T, message?: Message): asserts actual is T {
  if (!isDeepStrictEqual(actual, expected)) {
    fail(
      message,
      `Expected values to be strictly deep-equal:\n+ actual - expected\n\n+ ${inspect(actual)}\n- ${
        inspect(expected)
      }\n`,
      actual,
      expected,
      "deepStrictEqual",
    );
  }
}

/** Fails if the two values are deeply and strictly equal. */
export function notDeepEqual(actual: unknown, expected: unknown, message?: Message): void {
  if (isDeepStrictEqual(actual, expected)) {
    fail(
      message,
      `Expected "actual" not to be strictly deep-equal to: ${inspect(expected)}`,
      actual,
      expected,
      "notDeepStrictEqual",
    );
  }
}

/** Fails unless `string` is a string matching `regexp`. */
export function match(string: unknown, regexp: RegExp, message?: Message): void {
  if (typeof string !== "string" || !regexp.test(string)) {
    const what = typeof string !== "string"
      ? `The "string" argument must be of type string. Received ${inspect(string)}`
      : `The input did not match the regular expression ${regexp}. Input:\n\n${inspect(string)}\n`;
    fail(message, what, string, regexp, "match");
  }
}

/** Fails if `string` matches `regexp` (or is not a string). */
export function doesNotMatch(string: unknown, regexp: RegExp, message?: Message): void {
  if (typeof string !== "string" || regexp.test(string)) {
    fail(
      message,
      `The input was expected to not match the regular expression ${regexp}. Input:\n\n${inspect(string)}\n`,
      string,
      regexp,
      "doesNotMatch",
    );
  }
}

type Expected =
  | RegExp
  | ((error: unknown) => boolean)
  | (new (...args: never[]) => unknown)
  | Record<string, unknown>
  | Error;

function checkError(
  actual: unknown,
  expected: Expected | undefined,
  message: Message,
  operator: string,
): void {
  if (expected === undefined) return;
  if (expected instanceof RegExp) {
    if (!expected.test(String(actual))) {
      fail(
        message,
        `The error message does not match the regular expression ${expected}. Error: ${inspect(actual)}`,
        actual,
        expected,
        operator,
      );
    }
    return;
  }
  if (typeof expected === "function") {
    if (expected.prototype !== undefined && actual instanceof (expected as new () => unknown)) return;
    if (Object.prototype.isPrototypeOf.call(Error, expected) || expected === Error) {
      fail(
        message,
        `The error is expected to be an instance of "${expected.name}". Received ${inspect(actual)}`,
        actual,
        expected,
        operator,
      );
    }
    const result = (expected as (error: unknown) => unknown)(actual);
    if (result !== true) {
      fail(
        message,
        `The ${expected.name || "validation"} function is expected to return "true". Received ${
          inspect(result)
        }`,
        actual,
        expected,
        operator,
      );
    }
    return;
  }
  if (typeof expected === "object" && expected !== null) {
    const keys = expected instanceof Error
      ? ["name", "message", ...Object.keys(expected)]
      : Object.keys(expected);
    for (const key of keys) {
      const want = (expected as Record<string, unknown>)[key];
      const got = actual !== null && typeof actual === "object"
        ? (actual as Record<string, unknown>)[key]
        : undefined;
      if (want instanceof RegExp && typeof got === "string" ? want.test(got) : isDeepStrictEqual(got, want)) {
        continue;
      }
      fail(
        message,
        `Expected values to be strictly deep-equal at "${key}":\n+ ${inspect(got)}\n- ${inspect(want)}\n`,
        actual,
        expected,
        operator,
      );
    }
  }
}

function splitArgs(
  expected: Expected | string | undefined,
  message: Message,
): [Expected | undefined, Message] {
  return typeof expected === "string" ? [undefined, expected] : [expected, message];
}

/** Fails unless `fn` throws an error that matches `expected` (class, RegExp, object or validator). */
export function throws(fn: () => unknown, expected?: Expected | string, message?: Message): void {
  const [want, msg] = splitArgs(expected, message);
  let threw = false;
  let error: unknown;
  try {
    fn();
  } catch (e) {
    threw = true;
    error = e;
  }
  if (!threw) {
    fail(
      msg,
      `Missing expected exception${
        want && typeof want === "function" && want.name ? ` (${want.name})` : ""
      }.`,
      undefined,
      want,
      "throws",
    );
  }
  checkError(error, want, msg, "throws");
}

/** Fails if `fn` throws. */
export function doesNotThrow(fn: () => unknown, expected?: Expected | string, message?: Message): void {
  const [, msg] = splitArgs(expected, message);
  try {
    fn();
  } catch (error) {
    fail(
      msg,
      `Got unwanted exception.\nActual message: "${(error as Error)?.message ?? String(error)}"`,
      error,
      expected,
      "doesNotThrow",
    );
  }
}

/** Fails unless the promise (or the promise `fn` returns) rejects with an error matching `expected`. */
export async function rejects(
  promiseOrFn: Promise<unknown> | (() => Promise<unknown>),
  expected?: Expected | string,
  message?: Message,
): Promise<void> {
  const [want, msg] = splitArgs(expected, message);
  let rejected = false;
  let error: unknown;
  try {
    await (typeof promiseOrFn === "function" ? promiseOrFn() : promiseOrFn);
  } catch (e) {
    rejected = true;
    error = e;
  }
  if (!rejected) {
    fail(
      msg,
      `Missing expected rejection${
        want && typeof want === "function" && want.name ? ` (${want.name})` : ""
      }.`,
      undefined,
      want,
      "rejects",
    );
  }
  checkError(error, want, msg, "rejects");
}

/** Fails if the promise (or the promise `fn` returns) rejects. */
export async function doesNotReject(
  promiseOrFn: Promise<unknown> | (() => Promise<unknown>),
  expected?: Expected | string,
  message?: Message,
): Promise<void> {
  const [, msg] = splitArgs(expected, message);
  try {
    await (typeof promiseOrFn === "function" ? promiseOrFn() : promiseOrFn);
  } catch (error) {
    fail(
      msg,
      `Got unwanted rejection.\nActual message: "${(error as Error)?.message ?? String(error)}"`,
      error,
      expected,
      "doesNotReject",
    );
  }
}

/** Always fails. */
function failNow(message?: Message): never {
  fail(message, "Failed", undefined, undefined, "fail");
}
export { failNow as fail };

/** Fails if `value` is neither `null` nor `undefined` (throws it when it is an error). */
export function ifError(value: unknown): void {
  if (value === null || value === undefined) return;
  if (value instanceof Error) throw value;
  fail(undefined, `ifError got unwanted exception: ${inspect(value)}`, value, null, "ifError");
}

export {
  deepEqual as deepStrictEqual,
  equal as strictEqual,
  notDeepEqual as notDeepStrictEqual,
  notEqual as notStrictEqual,
};

type Assert = typeof ok & {
  ok: typeof ok;
  equal: typeof equal;
  strictEqual: typeof equal;
  notEqual: typeof notEqual;
  notStrictEqual: typeof notEqual;
  deepEqual: typeof deepEqual;
  deepStrictEqual: typeof deepEqual;
  notDeepEqual: typeof notDeepEqual;
  notDeepStrictEqual: typeof notDeepEqual;
  match: typeof match;
  doesNotMatch: typeof doesNotMatch;
  throws: typeof throws;
  doesNotThrow: typeof doesNotThrow;
  rejects: typeof rejects;
  doesNotReject: typeof doesNotReject;
  fail: typeof failNow;
  ifError: typeof ifError;
  AssertionError: typeof AssertionError;
  strict: Assert;
};

/** `assert(value)` is `assert.ok(value)`; every other assertion hangs off it, as in Node. */
const assert: Assert = Object.assign(
  function assert(value: unknown, message?: Message): asserts value {
    ok(value, message);
  },
  {
    ok,
    equal,
    strictEqual: equal,
    notEqual,
    notStrictEqual: notEqual,
    deepEqual,
    deepStrictEqual: deepEqual,
    notDeepEqual,
    notDeepStrictEqual: notDeepEqual,
    match,
    doesNotMatch,
    throws,
    doesNotThrow,
    rejects,
    doesNotReject,
    fail: failNow,
    ifError,
    AssertionError,
  },
) as Assert;
assert.strict = assert;

export { assert as strict };
export default assert;
