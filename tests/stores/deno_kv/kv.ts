// What DenoKvStore's test files share: a real Deno KV in memory (under Deno only: elsewhere
// `deno` is undefined and each file says so with one skipped test), a KV that counts the calls
// reaching it, and the cases' shared KV, which notes each write's expireIn.
import { it } from "node:test";
import { type DenoKvLike, DenoKvStore, type DenoKvStoreOptions } from "../../../src/stores/deno_kv.ts";

export interface DenoKvHandle extends DenoKvLike {
  close(): void;
}
/** Deno's namespace, where there is one. */
export const deno =
  (globalThis as unknown as { Deno?: { openKv(path: string): Promise<DenoKvHandle> } }).Deno;

/** Where there is no Deno KV, one skipped test that says so; `true` then. */
export function skippedWithoutDeno(name: string): boolean {
  if (deno !== undefined) return false;
  it(`${name}: runs under Deno only`, (t) => {
    t.skip("no Deno KV in this runtime: run `deno test --unstable-kv -A tests/stores/deno_kv_test.ts`");
  });
  return true;
}

/** A new KV in memory. */
export const openKv = (): Promise<DenoKvHandle> => deno!.openKv(":memory:");

/** Forwards every call to the real KV and counts the calls that reach it. */
export function counted(kv: DenoKvLike): { kv: DenoKvLike; calls: { get: number; commit: number } } {
  const calls = { get: 0, commit: 0 };
  const wrapper: DenoKvLike = {
    get(key) {
      calls.get++;
      return kv.get(key);
    },
    atomic() {
      const operation = kv.atomic();
      const original = operation.commit.bind(operation);
      operation.commit = () => {
        calls.commit++;
        return original();
      };
      return operation;
    },
    delete: (key) => kv.delete(key),
    list: (selector) => kv.list(selector),
  };
  return { kv: wrapper, calls };
}

let casesKv: DenoKvHandle | undefined;
/** The KV the shared cases use, opened on first use. */
export const sharedKv = async (): Promise<DenoKvHandle> => (casesKv ??= await openKv());
/** The KV the shared cases use, once open. */
export const openedSharedKv = (): DenoKvHandle => casesKv!;
/** Closes the cases' KV, if open. */
export const closeSharedKv = (): void => casesKv?.close();

/** Every key under `prefix` in the cases' KV, as its parts after the prefix. */
export async function keysUnder(prefix: string[]): Promise<unknown[][]> {
  const keys: unknown[][] = [];
  for await (const entry of (await sharedKv()).list({ prefix })) keys.push(entry.key.slice(prefix.length));
  return keys;
}

/** The expireIn each key was last written with (by a commit that held): Deno KV does not tell it. */
const expireIns = new Map<string, number | undefined>();
/** The expireIn `key` was last written with through {@link noting}. */
export const expireIn = (key: unknown[]) => Promise.resolve(expireIns.get(JSON.stringify(key)));

/** The cases' KV, noting each write's expireIn and, in `sent`, each get and commit. */
export async function noting(sent?: string[]): Promise<DenoKvLike> {
  const kv = await sharedKv();
  return {
    get(key) {
      sent?.push("get");
      return kv.get(key);
    },
    atomic() {
      const operation = kv.atomic();
      const [set, commit] = [operation.set.bind(operation), operation.commit.bind(operation)];
      const written: [string, number | undefined][] = [];
      operation.set = (key, value, options) => {
        written.push([JSON.stringify(key), options?.expireIn]);
        return set(key, value, options);
      };
      operation.commit = async () => {
        sent?.push("commit");
        const result = await commit();
        for (const [key, expireIn] of result.ok ? written : []) expireIns.set(key, expireIn);
        return result;
      };
      return operation;
    },
    delete: (key) => kv.delete(key),
    list: (selector) => kv.list(selector),
  };
}

/** The record at `key` in the cases' KV, parsed, or `undefined`. */
export async function rawAt(key: string[]): Promise<Record<string, unknown> | undefined> {
  const { value } = await (await sharedKv()).get(key);
  return typeof value === "string" ? JSON.parse(value) : undefined;
}

/** The value at `key` in the cases' KV, or `undefined`. */
export async function valueAt(key: string[]): Promise<unknown> {
  return (await (await sharedKv()).get(key)).value ?? undefined;
}

/** A store on the cases' KV with `options`, and each get and commit it sends. */
export async function sending(
  options: Omit<DenoKvStoreOptions, "kv">,
): Promise<{ store: DenoKvStore; sent: string[] }> {
  const sent: string[] = [];
  return { store: new DenoKvStore({ kv: await noting(sent), ...options }), sent };
}
