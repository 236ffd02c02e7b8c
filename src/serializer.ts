/**
 * Session values richer than JSON: `Date`, `Map`, `Set`, `URL`, `BigInt` (and `undefined`,
 * `NaN`, `±Infinity`, `-0`), nested in arrays and plain objects, stored in every store as plain
 * JSON with tags. Set {@linkcode richValues} as the `serializer` option of `withSession`.
 *
 * Reading never executes code: no `eval`, no `Function`, no constructor looked up by a name the
 * data gives; only the tags listed below are known, and keys such as `__proto__` and
 * `constructor` stay plain data. Guide: docs/guides/rich-values.md.
 *
 * @example
 * ```ts
 * import { getSession, MemoryStore, withSession } from "websession";
 * import { richValues } from "websession/serializer";
 * import assert from "node:assert/strict";
 *
 * type Data = { seen?: Set<string>; since?: Date };
 * const handler = withSession(async (req: Request) => {
 *   const session = await getSession<Data>(req);
 *   session.update("seen", (seen = new Set()) => seen.add(new URL(req.url).pathname));
 *   session.update("since", (since = new Date(0)) => since);
 *   return new Response([...session.get("seen")!].join(" "));
 * }, { store: new MemoryStore(), secrets: "a secret of at least thirty-two characters", serializer: richValues });
 *
 * const first = await handler(new Request("https://example.com/a"));
 * const cookie = first.headers.get("set-cookie")!.split(";")[0]!;
 * const second = await handler(new Request("https://example.com/b", { headers: { cookie } }));
 * assert.equal(await second.text(), "/a /b");
 * ```
 *
 * @module
 */
import { SessionDataError } from "./errors.ts";
import { joinData, splitData } from "./session_data.ts";
import { checkValue } from "./session_values.ts";
import { kCodec, SERIALIZER_KEY, type SerializerCodec } from "./session_state.ts";

/**
 * The `serializer` option of `withSession`: turns each session value into a JSON value for the
 * store and back. The shape of tRPC's `transformer` (`serialize`/`deserialize` on JSON values,
 * not on strings): stores keep storing JSON, and their size limits count the encoded form.
 *
 * `serialize` runs when a value is set (`set`, `update`, `flash`), so an unsupported value is
 * refused there; `deserialize` runs on every read (`get`, `peek`, `values`, ...), so a value
 * read is a fresh copy, and changing it in place changes nothing stored (call `set`).
 *
 * Make one with {@linkcode defineSerializer} (`richValues` is made with it): the `serializer`
 * option takes only those, so the code that runs it is bundled only where one is imported.
 *
 * @example
 * ```ts
 * import { defineSerializer, type SessionSerializer } from "websession/serializer";
 * import assert from "node:assert/strict";
 *
 * // Top-level Dates, as their ISO strings in an object tagged "$date".
 * const dates: SessionSerializer = defineSerializer({
 *   format: "dates/1",
 *   serialize: (value) => value instanceof Date ? { $date: value.toISOString() } : value,
 *   deserialize: (json) => typeof json === "object" && json !== null && "$date" in json ? new Date(String(json.$date)) : json,
 * });
 * assert.deepEqual(dates.serialize(new Date(0)), { $date: "1970-01-01T00:00:00.000Z" });
 * ```
 */
export interface SessionSerializer {
  /**
   * Names the format. Records written with a serializer carry this name (under the data key
   * `"__serializer"`), so a record written in another format, or read with no serializer, is
   * refused (a fresh session starts, `onInvalidCookie` reason `"data"`) instead of misread.
   * @default "custom"
   */
  readonly format?: string;
  /**
   * Turns a value into a JSON value (`JSON.stringify` must keep it as it is).
   * @throws {TypeError} When the value cannot be stored.
   */
  serialize(value: unknown): unknown;
  /**
   * Turns a JSON value `serialize` produced back into the value. Must never execute code.
   * @throws {SessionDataError} When the JSON is not in the serializer's format.
   */
  deserialize(json: unknown): unknown;
}

/**
 * Makes a serializer the `serializer` option takes: checks its parts and gives it what the core
 * runs with it (reading records written in its format or in plain JSON, refusing any other
 * format, comparing and replaying held values).
 *
 * @param spec `serialize`, `deserialize` and a `format` name, written into every record it makes: two
 *   serializers must not share one, or each would misread the other's records.
 * @returns A frozen {@linkcode SessionSerializer}.
 * @throws {TypeError} When `serialize` or `deserialize` is not a function, or `format` is not a
 *   non-empty string.
 *
 * @example
 * ```ts
 * import { getSession, MemoryStore, withSession } from "websession";
 * import { defineSerializer } from "websession/serializer";
 * import assert from "node:assert/strict";
 *
 * const dates = defineSerializer({
 *   format: "dates/1",
 *   serialize: (value) => value instanceof Date ? { $date: value.toISOString() } : value,
 *   deserialize: (json) => typeof json === "object" && json !== null && "$date" in json ? new Date(String(json.$date)) : json,
 * });
 * const app = withSession(async (req: Request) => {
 *   const session = await getSession<{ since?: Date }>(req);
 *   session.update("since", (since = new Date(0)) => since);
 *   return new Response(session.get("since")!.toISOString());
 * }, { store: new MemoryStore(), secrets: "at least 32 characters of secret....", serializer: dates });
 * assert.equal(await (await app(new Request("https://example.com/"))).text(), "1970-01-01T00:00:00.000Z");
 * assert.throws(() => defineSerializer({ format: "", serialize: (v) => v, deserialize: (v) => v }), TypeError);
 * ```
 */
export function defineSerializer(spec: SessionSerializer & { readonly format: string }): SessionSerializer {
  return makeSerializer(spec, true);
}

/**
 * {@linkcode defineSerializer}; with `checked`, what `serialize` returns is checked to be plain
 * JSON (a value it passes on unchanged, a `Set` say, would otherwise be stored as `{}`).
 */
function makeSerializer(spec: SessionSerializer, checked: boolean): SessionSerializer {
  const format = spec?.format;
  if (
    typeof spec?.serialize !== "function" || typeof spec.deserialize !== "function" ||
    typeof format !== "string" || format === ""
  ) {
    throw new TypeError(
      'Invalid serializer: expected serialize(), deserialize() and a format name such as "dates/1"',
    );
  }
  const serializer: SessionSerializer = {
    format,
    serialize: checked
      ? (value) => plainJson(spec.serialize(value), format)
      : (value) => spec.serialize(value),
    deserialize: (json) => spec.deserialize(json),
  };
  // Not enumerable: a spread copy of a serializer is not one (it was not checked).
  Object.defineProperty(serializer, kCodec, { value: codecFor(serializer, format) });
  return Object.freeze(serializer);
}

/** `json`, checked to be plain JSON that every store keeps as it is. */
function plainJson(json: unknown, format: string): unknown {
  try {
    checkValue(json, format);
  } catch (error) {
    throw new TypeError(
      `Invalid session value: the serializer "${format}" made something that is not plain JSON (${
        (error as Error).message.replace(/^Invalid session value for "[^"]*": /, "")
      }); serialize() must turn every value it is given into plain JSON`,
    );
  }
  return json;
}

/** What the core runs with `serializer` (see `SerializerCodec`). */
function codecFor(serializer: SessionSerializer, format: string): SerializerCodec {
  const codec: SerializerCodec = {
    format,
    converterOf(data) {
      if (!Object.hasOwn(data, SERIALIZER_KEY)) return (value) => serializer.serialize(value);
      if (data[SERIALIZER_KEY] !== format) {
        throw new SessionDataError(
          `Session data is in the serializer format ${
            JSON.stringify(data[SERIALIZER_KEY])
          }, but the serializer "${format}" is set: set the \`serializer\` option that wrote it`,
        );
      }
      return undefined;
    },
    // Plain JSON written before the serializer was set, as it would be held: a record that a
    // concurrent request only rewrote in this format (the switch to it) then compares equal to
    // the plain one this request loaded. A record in another format stays as it is (the merge
    // refuses it).
    heldForm(data) {
      if (Object.hasOwn(data, SERIALIZER_KEY)) return data;
      try {
        const held = splitData(data, serializer);
        return joinData(held.data, held.flash, undefined, serializer);
      } catch {
        return data;
      }
    },
    onHeld(fn) {
      return function updateHeld(held: unknown): unknown {
        const next = fn(held === undefined ? undefined : serializer.deserialize(held));
        return next === undefined ? undefined : serializer.serialize(next);
      };
    },
  };
  return codec;
}

/** The key of the tag in a tagged object: `{ "$": "Date", "v": "2026-01-01T00:00:00.000Z" }`. */
const TAG = "$";
/** The deepest nesting accepted, as for plain JSON values. */
const MAX_DEPTH = 64;
/**
 * The most decimal digits a `BigInt` may have (sign aside): reading parses it, so the bound
 * keeps a stored value from costing a request more than a moment. Checked when set as well, so
 * that no value accepted then is refused when read.
 */
const MAX_BIGINT_DIGITS = 4096;
/** The least `BigInt` with more than {@linkcode MAX_BIGINT_DIGITS} digits: 10^4096. */
const BIGINT_BOUND = 10n ** BigInt(MAX_BIGINT_DIGITS);

/** A JSON value. */
type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function define(target: Record<string, unknown>, key: string, value: unknown): void {
  // defineProperty keeps a `__proto__` key plain data instead of setting the prototype.
  if (key === "__proto__") {
    Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    target[key] = value;
  }
}

function tooDeep(): TypeError {
  return new TypeError(`Invalid session value: nested deeper than ${MAX_DEPTH} levels`);
}

/**
 * Encodes a value. Every tagged object counts as a level of nesting, scalars' tags included
 * (`{ "$": "bigint" }` at the 65th level is as deep as reading allows no more): whatever is
 * accepted here, `decode` reads back.
 */
function encode(value: unknown, depth: number, path: Set<object>): Json {
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      if (Number.isFinite(value) && !Object.is(value, -0)) return value;
      if (depth >= MAX_DEPTH) throw tooDeep();
      return { [TAG]: "number", v: Object.is(value, -0) ? "-0" : String(value) };
    case "bigint": {
      if (depth >= MAX_DEPTH) throw tooDeep();
      // Compared before `toString()`, which costs as much as reading would.
      if (value >= BIGINT_BOUND || value <= -BIGINT_BOUND) {
        throw new TypeError(`Invalid session value: a BigInt of more than ${MAX_BIGINT_DIGITS} digits`);
      }
      return { [TAG]: "bigint", v: value.toString() };
    }
    case "undefined":
      if (depth >= MAX_DEPTH) throw tooDeep();
      return { [TAG]: "undefined" };
    case "object":
      if (value === null) return null;
      if (depth >= MAX_DEPTH) throw tooDeep();
      if (path.has(value)) throw new TypeError("Invalid session value: it contains a cycle");
      path.add(value);
      try {
        return encodeObject(value, depth + 1, path);
      } finally {
        path.delete(value);
      }
    default:
      throw new TypeError(`Invalid session value: a ${typeof value} cannot be stored`);
  }
}

function encodeObject(value: object, depth: number, path: Set<object>): Json {
  if (Array.isArray(value)) {
    const out: Json[] = new Array(value.length);
    for (let i = 0; i < value.length; i++) out[i] = encode(value[i], depth, path);
    return out;
  }
  const proto = Object.getPrototypeOf(value);
  switch (proto) {
    case Object.prototype:
    case null: {
      const out: { [key: string]: Json } = {};
      for (const key of Object.keys(value)) {
        define(out, key, encode((value as Record<string, unknown>)[key], depth, path));
      }
      // A plain object with a "$" key of its own is wrapped, so that it is never taken for a tag.
      return Object.hasOwn(value, TAG) ? { [TAG]: "object", v: out } : out;
    }
    case Date.prototype: {
      const time = (value as Date).getTime();
      return { [TAG]: "Date", v: Number.isNaN(time) ? null : (value as Date).toISOString() };
    }
    case Map.prototype: {
      const entries: Json[] = [];
      for (const [k, v] of value as Map<unknown, unknown>) {
        entries.push([encode(k, depth, path), encode(v, depth, path)]);
      }
      return { [TAG]: "Map", v: entries };
    }
    case Set.prototype: {
      const items: Json[] = [];
      for (const item of value as Set<unknown>) items.push(encode(item, depth, path));
      return { [TAG]: "Set", v: items };
    }
    case URL.prototype:
      return { [TAG]: "URL", v: (value as URL).href };
  }
  const name = typeof proto?.constructor?.name === "string" ? proto.constructor.name : "class";
  throw new TypeError(`Invalid session value: a ${name || "class"} instance cannot be stored by richValues`);
}

/** A stored `BigInt`: its decimal digits, with a sign when negative. */
const BIGINT_TEXT = new RegExp(`^-?\\d{1,${MAX_BIGINT_DIGITS}}$`);

function unreadable(detail: string): SessionDataError {
  return new SessionDataError(`Session data cannot be read as richValues: ${detail}`);
}

function decode(json: unknown, depth: number): unknown {
  if (typeof json !== "object" || json === null) return json;
  if (depth >= MAX_DEPTH) throw unreadable(`nested deeper than ${MAX_DEPTH} levels`);
  if (Array.isArray(json)) {
    const out: unknown[] = new Array(json.length);
    for (let i = 0; i < json.length; i++) out[i] = decode(json[i], depth + 1);
    return out;
  }
  if (!Object.hasOwn(json, TAG)) return decodeFields(json as Record<string, unknown>, depth + 1);
  return decodeTagged(json as Record<string, unknown>, depth + 1);
}

function decodeFields(json: Record<string, unknown>, depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(json)) define(out, key, decode(json[key], depth));
  return out;
}

/** Decodes `{ "$": tag, "v": payload }`; only the tags below exist, matched by a `switch`. */
function decodeTagged(json: Record<string, unknown>, depth: number): unknown {
  const tag = json[TAG];
  const v = Object.hasOwn(json, "v") ? json.v : undefined;
  switch (tag) {
    case "undefined":
      return undefined;
    case "number":
      if (v === "NaN") return NaN;
      if (v === "Infinity") return Infinity;
      if (v === "-Infinity") return -Infinity;
      if (v === "-0") return -0;
      break;
    case "bigint":
      if (typeof v === "string" && BIGINT_TEXT.test(v)) return BigInt(v);
      break;
    case "Date": {
      if (v === null) return new Date(NaN);
      const date = typeof v === "string" ? new Date(v) : undefined;
      if (date !== undefined && !Number.isNaN(date.getTime())) return date;
      break;
    }
    case "URL":
      if (typeof v === "string") {
        try {
          return new URL(v);
        } catch {
          // not a URL: malformed
        }
      }
      break;
    case "Map":
      if (Array.isArray(v) && v.every((entry) => Array.isArray(entry) && entry.length === 2)) {
        return new Map(v.map((entry: unknown[]) => [decode(entry[0], depth), decode(entry[1], depth)]));
      }
      break;
    case "Set":
      if (Array.isArray(v)) return new Set(v.map((item) => decode(item, depth)));
      break;
    case "object":
      if (typeof v === "object" && v !== null && !Array.isArray(v)) {
        return decodeFields(v as Record<string, unknown>, depth);
      }
      break;
    default:
      throw unreadable(`unknown tag ${JSON.stringify(tag) ?? String(tag)}`);
  }
  throw unreadable(`a malformed ${String(tag)} value`);
}

/**
 * The built-in serializer: `Date`, `Map`, `Set`, `URL`, `BigInt`, `undefined` (inside arrays and
 * objects), `NaN`, `Infinity`, `-Infinity` and `-0`, nested in arrays and plain objects, as
 * tagged JSON: plain JSON values stay as they are, and each other value becomes an object such
 * as `{ "$": "Date", "v": "2026-01-01T00:00:00.000Z" }` (a plain object with a `"$"` key of its
 * own is wrapped as `{ "$": "object", "v": ... }`, so no data is ever taken for a tag).
 *
 * - Refused when set, with a `TypeError`: functions, symbols, other class instances (`RegExp`,
 *   typed arrays, subclasses of `Date` or `Map`, ...), cycles, a `BigInt` of more than 4096
 *   digits, nesting deeper than 64 levels (each tagged value, `undefined` and `BigInt` included,
 *   is a level). Whatever is accepted is read back.
 * - A value referenced twice is stored twice: it reads back as two equal copies.
 * - An object with a `null` prototype reads back as a plain object; symbol keys are dropped.
 * - Reading never executes code: only the tags above are known, matched by name; an unknown
 *   tag or a malformed value is a {@linkcode SessionDataError} (the session's own data never
 *   holds one unless the store was edited; a record in another format is refused at load).
 *
 * Its format name is `"rich/1"`.
 *
 * @example
 * ```ts
 * import { richValues } from "websession/serializer";
 * import assert from "node:assert/strict";
 *
 * const value = { at: new Date(0), tags: new Set(["a"]), big: 2n ** 64n };
 * const json = JSON.parse(JSON.stringify(richValues.serialize(value)));
 * assert.deepEqual(json.at, { $: "Date", v: "1970-01-01T00:00:00.000Z" });
 * assert.deepEqual(richValues.deserialize(json), value);
 * ```
 */
export const richValues: SessionSerializer = makeSerializer({
  format: "rich/1",
  serialize(value: unknown): unknown {
    return encode(value, 0, new Set());
  },
  deserialize(json: unknown): unknown {
    return decode(json, 0);
  },
}, false);
