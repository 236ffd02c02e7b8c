/**
 * Instrumentation as one wrapper around the store: {@linkcode instrument} returns a store that
 * does what the given one does and tells the `onEvent` hook about every call it makes, with its
 * latency and, on failure, the error. Every store call the library makes goes through it when a
 * hook is set, so the hook (and `websession/otel`) sees loads, saves, touches, tombstones,
 * locks and index reads alike, and no call site has to remember to time itself.
 *
 * @module
 */
import { emit, type EventHook, type StoreOperation } from "./events.ts";
import type { SealedSessionStore, SessionStore } from "./store.ts";

/**
 * The property under which an instrumented store keeps the store it wraps. State the core keeps
 * per store (the per-key queues of commits, say) is keyed by that store, never by a wrapper:
 * every request's wrapper is a new object. {@linkcode storeOf} reads it.
 */
export const kStore: unique symbol = Symbol("websession.instrumented");
const kHook: unique symbol = Symbol("websession.hook");
const kRequest: unique symbol = Symbol("websession.request");

type AnyStore = SessionStore | SealedSessionStore;

interface Instrumented {
  [kStore]: AnyStore;
  [kHook]: EventHook;
  [kRequest]: Request | undefined;
}

/** Every method of a server store's contract: a call of each is one `store` event. */
const SERVER_METHODS = [
  "load",
  "save",
  "destroy",
  "touch",
  "cleanup",
  "count",
  "lock",
  "unlock",
  "keysOfUser",
  "time",
] as const satisfies readonly (keyof SessionStore)[];

/** Every method of a sealed store's contract. */
const SEALED_METHODS = ["open", "seal", "revoke"] as const satisfies readonly (keyof SealedSessionStore)[];

type MethodsOf<T> = {
  [K in keyof T]-?: NonNullable<T[K]> extends (...args: never[]) => unknown ? K : never;
}[keyof T];
// A method added to either contract and missing above fails to compile here: the wrapper must
// report every call, and pass every method through.
const everyServerMethod: [Exclude<MethodsOf<SessionStore>, (typeof SERVER_METHODS)[number]>] extends [never]
  ? true
  : never = true;
const everySealedMethod: [Exclude<MethodsOf<SealedSessionStore>, (typeof SEALED_METHODS)[number]>] extends
  [never] ? true
  : never = true;
void everyServerMethod;
void everySealedMethod;
// Every method name is an operation of the `store` event.
const everyOperation: (typeof SERVER_METHODS)[number] | (typeof SEALED_METHODS)[number] extends StoreOperation
  ? true
  : never = true;
void everyOperation;

/**
 * One prototype per wrapped store, made at its first instrumented request: the methods the
 * store has (an optional one it lacks stays absent, so `typeof store.lock === "function"` and
 * `store.touch === undefined` answer as for the store itself), and its `capabilities` (and
 * `sealed`) read through. A request's wrapper is then one small object on it.
 */
const prototypes = new WeakMap<AnyStore, object>();

function prototypeOf(store: AnyStore): object {
  let proto = prototypes.get(store);
  if (proto !== undefined) return proto;
  proto = {};
  Object.defineProperty(proto, "capabilities", {
    get(this: Instrumented) {
      return this[kStore].capabilities;
    },
    enumerable: true,
  });
  const sealed = (store as SealedSessionStore).sealed === true;
  if (sealed) Object.defineProperty(proto, "sealed", { value: true, enumerable: true });
  const source = store as unknown as Record<string, unknown>;
  for (const name of sealed ? SEALED_METHODS : SERVER_METHODS) {
    if (typeof source[name] !== "function") continue;
    Object.defineProperty(proto, name, { value: reporting(name), writable: true, configurable: true });
  }
  prototypes.set(store, proto);
  return proto;
}

/** The wrapper's method `name`: calls the store's own, then tells the hook how it went. */
function reporting(operation: StoreOperation) {
  return async function (this: Instrumented, ...args: unknown[]): Promise<unknown> {
    const store = this[kStore] as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    const start = performance.now();
    try {
      const result = await store[operation]!(...args);
      emit(this[kHook], {
        type: "store",
        operation,
        durationMs: performance.now() - start,
        request: this[kRequest],
      });
      return result;
    } catch (error) {
      emit(this[kHook], {
        type: "store",
        operation,
        durationMs: performance.now() - start,
        error,
        request: this[kRequest],
      });
      throw error;
    }
  };
}

/**
 * Wraps a store so that every call of its contract's methods (`load`, `save`, `destroy`,
 * `touch`, `cleanup`, `count`, `lock`, `unlock`, `keysOfUser`, `time`; `open`, `seal`, `revoke` for a
 * sealed store) tells `hook` one `{ type: "store", operation, durationMs, error?, request? }`
 * event when it settles, `operation` being the method's name. Arguments, results and errors
 * pass through unchanged, as do `capabilities` (the same object) and which optional methods
 * exist. The hook's own failures never reach the caller.
 *
 * Cheap: without a hook it returns `store` itself, allocating nothing; with one, a wrapper is
 * one small object (the methods live on a prototype made once per store). A wrapper of a
 * wrapper wraps the store beneath, so no call is reported twice. {@linkcode storeOf} gives back
 * the wrapped store, for state kept per store.
 *
 * @param store The store to report on.
 * @param hook The `onEvent` hook; `undefined`: no wrapper.
 * @param request The request the calls are made for, given to the hook with each event.
 * @returns The store to call.
 * @example
 * ```ts
 * import { MemoryStore, type SessionEvent } from "websession";
 * import { instrument, storeOf } from "./instrument.ts";
 * import assert from "node:assert/strict";
 *
 * const store = new MemoryStore();
 * assert.equal(instrument(store, undefined), store); // no hook, no wrapper
 * const events: SessionEvent[] = [];
 * const seen = instrument(store, (event) => void events.push(event));
 * const now = Date.now();
 * await seen.save("k".repeat(43), { data: {}, version: 1, createdAt: now, expiresAt: now + 60_000 }, null);
 * await seen.load("k".repeat(43));
 * assert.deepEqual(events.map((e) => e.type === "store" && e.operation), ["save", "load"]);
 * assert.equal(seen.capabilities, store.capabilities);
 * assert.equal(storeOf(seen), store);
 * ```
 */
export function instrument<S extends AnyStore>(store: S, hook: EventHook | undefined, request?: Request): S {
  if (hook === undefined) return store;
  const target = storeOf(store);
  const wrapper = Object.create(prototypeOf(target)) as Instrumented;
  wrapper[kStore] = target;
  wrapper[kHook] = hook;
  wrapper[kRequest] = request;
  return wrapper as unknown as S;
}

/**
 * The store an {@linkcode instrument} wrapper wraps; any other store is returned as it is.
 *
 * @param store A store, instrumented or not.
 * @returns The store beneath every wrapper.
 * @example
 * ```ts
 * import { MemoryStore } from "websession";
 * import { instrument, storeOf } from "./instrument.ts";
 * import assert from "node:assert/strict";
 *
 * const store = new MemoryStore();
 * assert.equal(storeOf(store), store);
 * assert.equal(storeOf(instrument(store, () => {})), store);
 * ```
 */
export function storeOf<S extends AnyStore>(store: S): S {
  return ((store as unknown as Partial<Instrumented>)[kStore] as S | undefined) ?? store;
}
