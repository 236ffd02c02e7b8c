// The Workers KV namespace CloudflareKvStore's tests run on (Miniflare's, started once per test
// process and reached from Node through its binding proxy), and what they read behind the
// store's back: every key under a prefix, the writes a store sends, a location that falls behind.
import type { Miniflare } from "miniflare";
import { ENDED_KEY, type StoredSession } from "../../../src/store.ts";
import type { KvNamespaceLike } from "../../../src/stores/cloudflare_kv.ts";
import { startMiniflare } from "../../workers/miniflare.ts";
import { record } from "../remote_cases.ts";

let running: { mf: Miniflare; namespace: KvNamespaceLike } | undefined;

/** The test Worker's `SESSIONS_KV`, in a Miniflare started on first use. */
export async function namespace(): Promise<KvNamespaceLike> {
  if (!running) {
    const mf = await startMiniflare();
    running = { mf, namespace: await mf.getKVNamespace("SESSIONS_KV") };
  }
  return running.namespace;
}

/** The namespace `namespace` has started (for a constructor, which cannot wait). */
export function started(): KvNamespaceLike {
  if (!running) throw new Error("namespace() has not been called yet");
  return running.namespace;
}

/** Stops the Miniflare `namespace` started, if any. */
export async function dispose(): Promise<void> {
  await running?.mf.dispose();
  running = undefined;
}

/** A tombstone (an ended session's record) at `version`. */
export function tombstone(version: number, ttl = 60_000, now = Date.now()): StoredSession {
  return record({ [ENDED_KEY]: true }, version, ttl, now);
}

/** The parsed JSON under `key`, or `undefined` when the namespace holds none. */
export async function rawAt(key: string): Promise<Record<string, unknown> | undefined> {
  const text = await (await namespace()).get(key, "text");
  return text === null ? undefined : JSON.parse(text);
}

/** Every key under `prefix`, paged. */
export async function keysUnder(prefix: string): Promise<string[]> {
  const kv = await namespace();
  const names: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await kv.list(cursor === undefined ? { prefix } : { prefix, cursor });
    names.push(...page.keys.map((key) => key.name));
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor !== undefined);
  return names;
}

/** Every key under `prefix`, by what follows the prefix. */
export async function keysAfter(prefix: string): Promise<string[]> {
  return (await keysUnder(prefix)).map((name) => name.slice(prefix.length));
}

/** Forwards to `namespace`, noting in `puts` each key written, by the name `nameOf` gives it. */
export function recordingPuts(
  namespace: KvNamespaceLike,
  nameOf: (key: string) => string = (key) => key,
): { namespace: KvNamespaceLike; puts: string[] } {
  const puts: string[] = [];
  return {
    namespace: {
      get: (key, type) => namespace.get(key, type),
      put(key, value, options) {
        puts.push(nameOf(key));
        return namespace.put(key, value, options);
      },
      delete: (key) => namespace.delete(key),
      list: (options) => namespace.list(options),
    },
    puts,
  };
}

/** Forwards to `namespace`, failing as an unreachable binding does on every key `down` picks. */
export function failingOn(namespace: KvNamespaceLike, down: (key: string) => boolean): KvNamespaceLike {
  const fail = (): Promise<never> => Promise.reject(new TypeError("fetch failed"));
  return {
    get: (key, type) => down(key) ? fail() : namespace.get(key, type),
    put: (key, value, options) => down(key) ? fail() : namespace.put(key, value, options),
    delete: (key) => down(key) ? fail() : namespace.delete(key),
    list: (options) => down(options?.prefix ?? "") ? fail() : namespace.list(options),
  };
}

/**
 * A location of the same namespace that can fall behind: `lag()` freezes what it reads under
 * `prefix` as the namespace holds it then (its cache), while writes still go through to the
 * namespace (and this location sees its own); `converge()` lets it read the namespace again.
 */
export function location(
  namespace: KvNamespaceLike,
  prefix: string,
): { namespace: KvNamespaceLike; lag(): Promise<void>; converge(): void } {
  let cached: Map<string, string> | undefined;
  return {
    namespace: {
      get: async (key, type) =>
        cached === undefined ? await namespace.get(key, type) : cached.get(key) ?? null,
      async put(key, value, options) {
        await namespace.put(key, value, options);
        cached?.set(key, value);
      },
      async delete(key) {
        await namespace.delete(key);
        cached?.delete(key);
      },
      list: (options) => namespace.list(options),
    },
    async lag() {
      const frozen = new Map<string, string>();
      for (const { name } of (await namespace.list({ prefix })).keys) {
        frozen.set(name, (await namespace.get(name, "text"))!);
      }
      cached = frozen;
    },
    converge() {
      cached = undefined;
    },
  };
}
