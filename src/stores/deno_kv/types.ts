/**
 * The shapes `DenoKvStore` takes: its options and the part of `Deno.Kv` it uses, so that the
 * store never imports Deno's own types. Exported from `websession/deno-kv`.
 *
 * @module
 */
/**
 * One part of a Deno KV key (the same union as `Deno.KvKeyPart`).
 *
 * @example
 * ```ts
 * import { type DenoKvKeyPart, DenoKvStore } from "websession/deno-kv";
 * import assert from "node:assert/strict";
 *
 * // A prefix per tenant: strings, numbers, bigints, booleans and bytes all work as key parts.
 * const tenant: DenoKvKeyPart[] = ["sessions", "tenant", 42];
 * const kv = await Deno.openKv(":memory:");
 * const store = new DenoKvStore({ kv, prefix: tenant });
 * const now = Date.now();
 * await store.save("k".repeat(43), { data: {}, version: 1, createdAt: now, expiresAt: now + 60_000 }, null);
 * const keys = [];
 * for await (const entry of kv.list({ prefix: tenant })) keys.push(entry.key);
 * assert.deepEqual(keys, [[...tenant, "k".repeat(43)]]);
 * kv.close();
 * ```
 */
export type DenoKvKeyPart = Uint8Array | string | number | bigint | boolean | symbol;

/**
 * A Deno KV key (the same shape as `Deno.KvKey`).
 *
 * @example
 * ```ts
 * import { type DenoKvKey, DenoKvStore } from "websession/deno-kv";
 * import assert from "node:assert/strict";
 *
 * const kv = await Deno.openKv(":memory:");
 * const store = new DenoKvStore({ kv }); // default prefix: ["websession"]
 * const storageKey = "k".repeat(43);
 * const now = Date.now();
 * await store.save(storageKey, { data: {}, version: 1, createdAt: now, expiresAt: now + 60_000 }, null);
 * const key: DenoKvKey = ["websession", storageKey];
 * assert.notEqual((await kv.get(key)).versionstamp, null);
 * kv.close();
 * ```
 */
export type DenoKvKey = readonly DenoKvKeyPart[];

/**
 * An entry read from Deno KV; `versionstamp` is `null` when the key is absent.
 *
 * @example
 * ```ts
 * import { type DenoKvEntryLike, DenoKvStore } from "websession/deno-kv";
 * import assert from "node:assert/strict";
 *
 * const kv = await Deno.openKv(":memory:");
 * const store = new DenoKvStore({ kv });
 * const key = "k".repeat(43);
 * const now = Date.now();
 * const absent: DenoKvEntryLike = await kv.get(["websession", key]);
 * assert.equal(absent.versionstamp, null);
 * await store.save(key, { data: { a: 1 }, version: 1, createdAt: now, expiresAt: now + 60_000 }, null);
 * const entry: DenoKvEntryLike = await kv.get(["websession", key]);
 * assert.equal(typeof entry.value, "string"); // the record's JSON text
 * assert.equal(JSON.parse(entry.value as string).data.a, 1);
 * kv.close();
 * ```
 */
export interface DenoKvEntryLike {
  /** The entry's key. */
  readonly key: DenoKvKey;
  /** The stored value, `null` when absent. */
  readonly value: unknown;
  /** The versionstamp of the last write, `null` when absent. */
  readonly versionstamp: string | null;
}

/**
 * The part of `Deno.AtomicOperation` this store uses.
 *
 * @example
 * ```ts
 * import type { DenoKvAtomicLike } from "websession/deno-kv";
 * import assert from "node:assert/strict";
 *
 * // The compare-and-set the store builds on: commit only if the key is still as it was read.
 * const kv = await Deno.openKv(":memory:");
 * const create = (): DenoKvAtomicLike =>
 *   kv.atomic().check({ key: ["k"], versionstamp: null }).set(["k"], "v1");
 * assert.equal((await create().commit()).ok, true);
 * assert.equal((await create().commit()).ok, false); // no longer absent
 * kv.close();
 * ```
 */
export interface DenoKvAtomicLike {
  /** Adds a condition: the key's versionstamp must equal `versionstamp` (`null`: absent). */
  check(...checks: { key: DenoKvKey; versionstamp: string | null }[]): DenoKvAtomicLike;
  /** Adds a write. */
  set(key: DenoKvKey, value: unknown, options?: { expireIn?: number }): DenoKvAtomicLike;
  /** Adds a deletion. */
  delete(key: DenoKvKey): DenoKvAtomicLike;
  /** Commits when every check holds: `{ ok: true, versionstamp }`, else `{ ok: false }`. */
  commit(): Promise<{ ok: boolean; versionstamp?: string }>;
}

/**
 * The part of `Deno.Kv` this store uses, so that the store never imports Deno's own types and a
 * `Deno.Kv` (from `Deno.openKv()`) fits as is.
 *
 * @example
 * ```ts
 * import { type DenoKvLike, DenoKvStore } from "websession/deno-kv";
 * import assert from "node:assert/strict";
 *
 * const denoKv = await Deno.openKv(":memory:"); // or a file path, or Deno Deploy's KV
 * const kv: DenoKvLike = denoKv; // a Deno.Kv fits as is
 * const store = new DenoKvStore({ kv });
 * assert.equal(store.capabilities.compareAndSet, true);
 * const key = "k".repeat(43);
 * const now = Date.now();
 * assert.equal(
 *   await store.save(key, { data: {}, version: 1, createdAt: now, expiresAt: now + 60_000 }, null),
 *   true,
 * );
 * assert.equal((await store.load(key))?.version, 1);
 * denoKv.close();
 * ```
 */
export interface DenoKvLike {
  /** Reads one entry (strongly consistent by default). */
  get(key: DenoKvKey): Promise<DenoKvEntryLike>;
  /** Starts an atomic operation. */
  atomic(): DenoKvAtomicLike;
  /** Deletes one key. */
  delete(key: DenoKvKey): Promise<void>;
  /** Lists the entries under a prefix. */
  list(selector: { prefix: DenoKvKey }): AsyncIterable<DenoKvEntryLike>;
}

/**
 * Options of {@linkcode DenoKvStore}; docs/stores/deno-kv.md has the table.
 *
 * @example
 * ```ts
 * import { DenoKvStore, type DenoKvStoreOptions } from "websession/deno-kv";
 * import assert from "node:assert/strict";
 *
 * let clock = Date.now();
 * const kv = await Deno.openKv(":memory:");
 * const options: DenoKvStoreOptions = { kv, prefix: ["app", "sessions"], now: () => clock };
 * const store = new DenoKvStore(options);
 * const key = "k".repeat(43);
 * await store.save(key, { data: {}, version: 1, createdAt: clock, expiresAt: clock + 1000 }, null);
 * assert.equal((await store.load(key))?.version, 1);
 * clock += 1000; // past expiresAt: never returned, even before Deno KV drops the key
 * assert.equal(await store.load(key), null);
 * kv.close();
 * ```
 */
export interface DenoKvStoreOptions {
  /** The application's open KV database, e.g. `await Deno.openKv()` (required). */
  kv: DenoKvLike;
  /**
   * The key prefix: a session lives at `[...prefix, storageKey]`, its lock (`session.lock()`)
   * at `[...prefix, "lease", storageKey]` and its entry in a user's index at
   * `[...prefix, "users", userTag(user), storageKey]` (the user's tag, never the id). Key parts
   * are strings, numbers, bigints, booleans or `Uint8Array`s; encoded, the prefix may take at
   * most 1,996 bytes, so that a lock's key stays within Deno KV's 2,048-byte limit (a string
   * part takes its UTF-8 length plus 2), and at most 1,951 where sessions are indexed per user.
   * Give each store a prefix that is not the start of another store's prefix followed by
   * `"lease"`, `"users"` or `"user"`.
   * @default ["websession"]
   */
  prefix?: DenoKvKey;
  /**
   * The clock that decides whether a record has expired, in milliseconds since the epoch. Give
   * it the same clock as `withSession`'s `now`, which computes `expiresAt`: expiry is one
   * comparison against one clock (Deno KV's own `expireIn` only removes leftovers, later).
   * @default Date.now
   */
  now?: () => number;
}
