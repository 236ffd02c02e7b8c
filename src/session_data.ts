/**
 * A session's maps and the stored `data` object, both ways (`splitData`, `joinData`), and the
 * merge's side of the data: replaying an operation log on a fresh record (`replay`) and telling
 * whether what the handler looked at still holds there (`observationsHold`).
 *
 * @module
 */
import type { SessionData } from "./store.ts";
import type { SessionSerializer } from "./serializer.ts";
import { SessionDataError } from "./errors.ts";
import {
  codecOf,
  FLASH_KEY,
  isSignInKey,
  META_KEY,
  NO_OPS,
  type Operation,
  SERIALIZER_KEY,
  type SessionState,
} from "./session_state.ts";

/**
 * The incoming flash values of a session that has none, shared: a session only ever reads,
 * deletes or clears its incoming flash values, so one empty map serves every request.
 */
class NoFlash extends Map<string, unknown> {
  override set(): this {
    throw new TypeError("The shared empty flash map cannot hold values");
  }
}
export const NO_FLASH: Map<string, unknown> = new NoFlash();

/**
 * Builds a session's data and flash maps from a stored `data` object.
 *
 * @param data The stored data, possibly holding flash values under {@linkcode FLASH_KEY}.
 * @param serializer The `serializer` option: the maps then hold serialized values. Data
 *   written without it (plain JSON, before it was set) is serialized here.
 * @returns The user data and the flash values.
 * @throws {SessionDataError} When the data names a serializer format other than `serializer`'s
 *   (or any, when there is none): it cannot be read as it was meant.
 */
export function splitData(
  data: SessionData,
  serializer?: SessionSerializer,
): { data: Map<string, unknown>; flash: Map<string, unknown> } {
  const convert = serializer === undefined ? undefined : codecOf(serializer).converterOf(data);
  const map = new Map<string, unknown>();
  let flash: Map<string, unknown> | undefined;
  for (const key in data) {
    if (!Object.hasOwn(data, key)) continue;
    const value = data[key];
    if (key === META_KEY) {
      continue; // metadata, not data: the core writes it anew with each save
    } else if (key === FLASH_KEY) {
      if (typeof value === "object" && value !== null && !Array.isArray(value)) {
        flash = new Map(Object.entries(value));
        if (convert !== undefined) { for (const [k, v] of flash) flash.set(k, convert(v)); }
      }
    } else if (key === SERIALIZER_KEY) {
      if (serializer === undefined) throw noSerializer(value);
    } else {
      map.set(key, convert === undefined ? value : convert(value));
    }
  }
  return { data: map, flash: flash ?? NO_FLASH };
}

/** Data in a serializer's format, read with none: never misread as plain JSON. */
function noSerializer(format: unknown): SessionDataError {
  return new SessionDataError(
    `Session data is in the serializer format ${
      JSON.stringify(format)
    }, but no serializer is set: set the \`serializer\` option that wrote it`,
  );
}

function define(target: SessionData, key: string, value: unknown): void {
  // defineProperty keeps keys such as `__proto__` plain data.
  if (key === "__proto__") {
    Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    target[key] = value;
  }
}

/**
 * Serializes data and flash maps into a stored `data` object (own properties only, so keys
 * such as `__proto__` stay plain data).
 *
 * @param data The values.
 * @param flash Unread flash values of earlier requests.
 * @param flashOut Flash values set by this request.
 * @param serializer The `serializer` option: the values are serialized already; the object
 *   names its format under {@linkcode SERIALIZER_KEY}.
 * @returns The object to store.
 */
export function joinData(
  data: Map<string, unknown>,
  flash?: Map<string, unknown>,
  flashOut?: Map<string, unknown>,
  serializer?: SessionSerializer,
): SessionData {
  const out: SessionData = {};
  if (serializer !== undefined) out[SERIALIZER_KEY] = codecOf(serializer).format;
  for (const [key, value] of data) define(out, key, value);
  if ((flash !== undefined && flash.size > 0) || (flashOut !== undefined && flashOut.size > 0)) {
    const all: SessionData = {};
    if (flash !== undefined) { for (const [key, value] of flash) define(all, key, value); }
    if (flashOut !== undefined) { for (const [key, value] of flashOut) define(all, key, value); }
    define(out, FLASH_KEY, all);
  }
  return out;
}

/** The stored data this state would write now. */
export function stateData(s: SessionState): SessionData {
  return withMeta(joinData(s.data, s.flash, s.flashOut, s.serializer), s.meta);
}

/** Adds the metadata a save writes (see `metadata.ts`) to the data it stores. */
export function withMeta(data: SessionData, meta: SessionData | undefined): SessionData {
  if (meta !== undefined) data[META_KEY] = meta;
  return data;
}

/**
 * Replays an operation log on fresh data: what a merge does after losing a compare-and-set.
 * `update` functions run again on the fresh values.
 *
 * @param ops The log.
 * @param fresh The stored data to replay on.
 * @param serializer The `serializer` option (the log holds values it serialized).
 * @returns The merged data and flash values (incoming and set by the log).
 * @throws {SessionDataError} When `fresh` is in another serializer format (see `splitData`).
 */
export function replay(
  ops: readonly Operation[],
  fresh: SessionData,
  serializer?: SessionSerializer,
): { data: Map<string, unknown>; flash: Map<string, unknown>; flashOut: Map<string, unknown> } {
  const { data, flash } = splitData(fresh, serializer);
  const landed = { data, flash, flashOut: new Map<string, unknown>() };
  applyOps(ops, landed);
  return landed;
}

/**
 * After a save that held the first `included` operations: the others stay for the next commit
 * (returned: a fresh list, or the shared empty one), and what the request reads from now on is a
 * look at the record it saved. What it wrote blindly or cleared before is in that record, so
 * reading it now depends on it: a concurrent change to it must make the next commit re-run or
 * refuse, not merge over it.
 */
export function laterOps(s: SessionState, included: number): Operation[] {
  s.blind = undefined;
  s.cleared = false;
  return s.ops.length > included ? s.ops.slice(included) : NO_OPS;
}

/** Applies operations to a session's maps, in order. */
export function applyOps(
  ops: readonly Operation[],
  maps: {
    data: Map<string, unknown>;
    flash: Map<string, unknown>;
    flashOut: Map<string, unknown> | undefined;
  },
): void {
  const { data, flash } = maps;
  for (const op of ops) {
    switch (op.type) {
      case "set":
        data.set(op.key, op.value);
        break;
      case "delete":
        data.delete(op.key);
        break;
      case "clear":
        data.clear();
        flash.clear();
        maps.flashOut?.clear();
        break;
      case "update":
        setValue(data, op.key, op.fn(data.get(op.key)));
        break;
      case "flash":
        (maps.flashOut ??= new Map()).set(op.key, op.value);
        break;
      case "consume":
        flash.delete(op.key);
        break;
    }
  }
}

function same(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  return JSON.stringify(a) === JSON.stringify(b);
}

function flashOf(data: SessionData): Record<string, unknown> | undefined {
  const flash = Object.hasOwn(data, FLASH_KEY) ? data[FLASH_KEY] : undefined;
  return typeof flash === "object" && flash !== null ? flash as Record<string, unknown> : undefined;
}

function valueOf(data: SessionData | undefined, key: string): unknown {
  return data !== undefined && Object.hasOwn(data, key) ? data[key] : undefined;
}

/**
 * Tells whether everything the handler looked at has the same value in `fresh` as in the
 * record it loaded: then replaying its operation log on `fresh` is the same as running it after
 * whatever wrote `fresh`, a serial order.
 *
 * @param s The request's session state.
 * @param loaded The data the handler saw (`base.data`, or `{}` for a new session).
 * @param fresh The data now stored.
 */
export function observationsHold(s: SessionState, loaded: SessionData, fresh: SessionData): boolean {
  if (s.serializer !== undefined) {
    const codec = codecOf(s.serializer);
    loaded = codec.heldForm(loaded);
    fresh = codec.heldForm(fresh);
  }
  if (s.readAll) {
    for (const key in loaded) {
      if (
        key !== FLASH_KEY && key !== META_KEY && !isSignInKey(key) && Object.hasOwn(loaded, key) &&
        !same(loaded[key], valueOf(fresh, key))
      ) {
        return false;
      }
    }
    for (const key in fresh) {
      if (
        key !== FLASH_KEY && key !== META_KEY && !isSignInKey(key) && Object.hasOwn(fresh, key) &&
        !Object.hasOwn(loaded, key)
      ) {
        return false;
      }
    }
  } else if (s.reads !== undefined) {
    for (const key of s.reads) if (!same(valueOf(loaded, key), valueOf(fresh, key))) return false;
  }
  if (s.flashReads !== undefined) {
    const before = flashOf(loaded);
    const after = flashOf(fresh);
    for (const key of s.flashReads) if (!same(valueOf(before, key), valueOf(after, key))) return false;
  }
  return true;
}

function setValue(map: Map<string, unknown>, key: string, value: unknown): void {
  if (value === undefined) map.delete(key);
  else map.set(key, value);
}
