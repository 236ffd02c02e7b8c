/**
 * What one request's session holds and records: the reserved record keys, the state behind a
 * `Session`, the operation log of what the handler did and the observations of what it looked at.
 * The merge (`session_data.ts`, `conflict.ts`) reads both.
 *
 * @module
 */
import type { LockOptions, SessionLock } from "./lock.ts";
import type { SessionData, StoredSession } from "./store.ts";
import type { SessionSerializer } from "./serializer.ts";

/** The record key under which flash values are stored. `set` refuses it. */
export const FLASH_KEY = "__flash";

/** The record key under which session metadata is stored (see `metadata.ts`). `set` refuses it. */
export const META_KEY = "__meta";

/**
 * The record key naming the `serializer` format its values are in (absent: plain JSON). `set`
 * refuses it.
 */
export const SERIALIZER_KEY = "__serializer";

/**
 * Under this key a serializer made by `defineSerializer()` (`websession/serializer`) carries the
 * code the core runs with it, so an application without a serializer bundles none of it.
 */
export const kCodec: unique symbol = Symbol.for("websession.serializer");

/** What a `serializer` brings to the core (see {@linkcode kCodec}). */
export interface SerializerCodec {
  /** The format name records written with it carry under {@linkcode SERIALIZER_KEY}. */
  readonly format: string;
  /**
   * How stored values become held ones: `undefined` when `data` is in this format (as they are),
   * `serialize` for plain JSON written before it was set. Throws `SessionDataError` on another format.
   */
  converterOf(data: SessionData): ((value: unknown) => unknown) | undefined;
  /** `data` as a session under this serializer holds it, for comparing (see `observationsHold`). */
  heldForm(data: SessionData): SessionData;
  /** An `update` function on held (serialized) values, for the replay on a fresh record. */
  onHeld(fn: (value: unknown) => unknown): (held: unknown) => unknown;
}

/** The codec a checked `serializer` option carries. */
export function codecOf(serializer: SessionSerializer): SerializerCodec {
  return (serializer as unknown as { [kCodec]: SerializerCodec })[kCodec];
}

/**
 * The record key holding the log in's "remember me" choice (`true` or `false`; absent: none made),
 * set by `regenerate({ remember })`. `set` refuses it; `keys()`, `size` and `toJSON()` leave it out.
 */
export const REMEMBER_KEY = "__remember";

/**
 * The record key holding when the user last authenticated (milliseconds since the epoch), set by
 * `markAuthenticated()`. `set` refuses it; `keys()`, `size` and `toJSON()` leave it out.
 */
export const AUTH_AT_KEY = "__authAt";

/** Whether a data key is one the session keeps for the sign-in flow, not the handler's data. */
export function isSignInKey(key: string): boolean {
  return key === REMEMBER_KEY || key === AUTH_AT_KEY;
}

/** One recorded change. `update` keeps the function so that it can run again on fresh data. */
export type Operation =
  | { type: "set"; key: string; value: unknown }
  | { type: "delete"; key: string }
  | { type: "clear" }
  | { type: "update"; key: string; fn: (value: unknown) => unknown }
  | { type: "flash"; key: string; value: unknown }
  | { type: "consume"; key: string };

/**
 * What the request did to the record it loaded: kept going (`undefined`), or ended it with
 * `destroy()` or `regenerate()`.
 */
export type Ending = "destroy" | "regenerate";

/**
 * What a `Session` needs from whoever opened it (withSession, openSession): told of every change
 * and asked to save. One object per backend kind, shared by every request: no closures per
 * request.
 */
export interface SessionHost {
  /** A change was made (the host saves late changes after the response). */
  changed(state: SessionState): void;
  /** `session.save()`. */
  save(state: SessionState): Promise<void>;
  /** `session.lock()`. */
  lock(state: SessionState, options?: LockOptions): Promise<SessionLock>;
}

/** The state behind a `Session`. Internal; not part of the public API. */
export interface SessionState {
  host: SessionHost;
  id: string;
  isNew: boolean;
  version: number;
  createdAt: number;
  expiresAt: number;
  /** The record as loaded (or as last saved by this request); `undefined` for a new session. */
  base?: StoredSession;
  /** Storage key (server stores) of the record in `base`, once known. */
  key?: string;
  data: Map<string, unknown>;
  /** Flash values stored by earlier requests, not yet read. */
  flash: Map<string, unknown>;
  /** Flash values set by this request (readable from the next one), once there is one. */
  flashOut: Map<string, unknown> | undefined;
  /** Everything done to the data since `base`. */
  ops: Operation[];
  /** Data keys whose value the handler looked at, as loaded. */
  reads?: string[];
  /** Flash keys the handler looked at or consumed. */
  flashReads?: string[];
  /** The handler looked at every key (`keys()`, `size`, `toJSON()`, iteration). */
  readAll: boolean;
  /** Keys whose current value no longer depends on `base` (written blindly by `set`/`delete`). */
  blind?: Set<string>;
  /** `clear()` or `destroy()` ran: no current value depends on `base`. */
  cleared: boolean;
  /** The request destroyed or regenerated the record in `base`. */
  ending?: Ending;
  /**
   * The last of `regenerate()` (a log in: a new identity on purpose) and `destroy()` (a log out)
   * this request called, whether or not it loaded a record.
   */
  renewed?: Ending;
  touchRequested: boolean;
  /** Locks held (`lock()`), released at the end of the request. */
  locks?: SessionLock[];
  /** The id was signed ahead of time: its cookie value and storage key. */
  minted?: { id: string; value: string; key: string };
  /** The handler read `session.id` (a minted id that was read is never handed out again). */
  idRead: boolean;
  /** The clock, in milliseconds since the epoch. */
  now: () => number;
  /** Metadata the next write stores under `META_KEY` (server stores with `userKey`), not data. */
  meta?: SessionData;
  /** The `serializer` option: `data` and `flash` then hold values as it serialized them. */
  serializer?: SessionSerializer;
}

/** Symbol under which a `Session` exposes its state to the core. */
export const kState: unique symbol = Symbol("websession.state");

/**
 * The operation log of a session that has done nothing (yet, or since its last commit), shared:
 * a log is only ever added to through {@linkcode appended}, which never pushes onto an empty list.
 * Frozen, so that anything else that would is caught.
 */
export const NO_OPS: Operation[] = Object.freeze([]) as unknown as Operation[];

/**
 * `list` with `item` added. A list that is empty becomes `[item]`: an empty array's first
 * `push` reserves room for 17 items, and a request's logs mostly hold one or two.
 */
export function appended<T>(list: T[] | undefined, item: T): T[] {
  if (list === undefined || list.length === 0) return [item];
  list.push(item);
  return list;
}

export function observe(s: SessionState, key: string): void {
  if (s.cleared || s.readAll || s.blind?.has(key)) return;
  s.reads = appended(s.reads, key);
}

export function observeFlash(s: SessionState, key: string): void {
  if (s.cleared) return;
  s.flashReads = appended(s.flashReads, key);
}

export function record(s: SessionState, op: Operation): void {
  s.ops = appended(s.ops, op);
  s.host.changed(s);
}
