// Starts the test Worker (tests/workers/session_worker.ts, bundled with esbuild) in Miniflare,
// with a real Workers KV namespace and a real Durable Object binding, and bridges a SessionStore
// in Node to the stores running inside workerd. Node only (test infrastructure).
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { SessionDataError, SessionTooLargeError, StoreUnavailableError } from "../../src/errors.ts";
import type { DurableObjectNamespaceLike } from "../../src/stores/durable_object.ts";
import type { SaveResult, SessionStore, StoreCapabilities, StoredSession } from "../../src/store.ts";
import { sessionSuite } from "../conformance/session_suite.ts";
import { storeSuite, type StoreSuiteOptions } from "../conformance/store_suite.ts";

/** The newest date this Miniflare's workerd accepts is 2026-05-03. */
export const COMPATIBILITY_DATE = "2026-04-01";

let bundled: Promise<string> | undefined;

/** The test Worker as one ES module (built once per process). */
export function workerScript(): Promise<string> {
  bundled ??= build({
    entryPoints: [fileURLToPath(new URL("./session_worker.ts", import.meta.url))],
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    write: false,
    logLevel: "silent",
  }).then((result) => result.outputFiles[0]!.text);
  return bundled;
}

/**
 * A Miniflare running the test Worker: `SESSIONS_KV` (KV), `SESSIONS_DO` (the session Durable
 * Object) and `SESSIONS_DO_NO_DELAY` (the same with no alarm delay).
 */
export async function startMiniflare(): Promise<Miniflare> {
  const mf = new Miniflare({
    modules: true,
    script: await workerScript(),
    compatibilityDate: COMPATIBILITY_DATE,
    kvNamespaces: ["SESSIONS_KV"],
    durableObjects: {
      SESSIONS_DO: "TestSessionDurableObject",
      SESSIONS_DO_NO_DELAY: "NoDelaySessionDurableObject",
    },
  });
  await mf.ready;
  return mf;
}

/**
 * A Durable Object namespace of `mf`, reached from Node through Miniflare's binding proxy, whose
 * stubs stay referenced until their `fetch` settles. The proxy frees an object inside workerd
 * once its Node stand-in is garbage collected (in batches, 100 ms later); a stub dropped right
 * after `stub.fetch(...)` was called (as `namespace.get(id).fetch(...)` does) can be freed
 * while that call still waits for a connection, and the call then fails inside the proxy
 * ("false == true"). Seen with 200 calls at once on a current Node; a Worker's own binding
 * has no such proxy.
 */
export async function nodeNamespace(
  mf: Miniflare,
  binding: string,
  worker?: string,
): Promise<DurableObjectNamespaceLike> {
  const namespace = await mf.getDurableObjectNamespace(binding, worker);
  const inFlight = new Set<unknown>();
  return {
    idFromName: (name) => namespace.idFromName(name),
    get(id) {
      const stub = namespace.get(id as never);
      return {
        async fetch(url, init) {
          inFlight.add(stub);
          try {
            return await stub.fetch(url, init as never) as never;
          } finally {
            inFlight.delete(stub);
          }
        },
      };
    },
  };
}

interface Answer {
  value?: unknown;
  error?: { name: string; message: string; code?: string };
}

function revive(error: NonNullable<Answer["error"]>): Error {
  if (error.code === "ERR_SESSION_STORE_UNAVAILABLE") return new StoreUnavailableError(error.message);
  if (error.code === "ERR_SESSION_TOO_LARGE") return new SessionTooLargeError(error.message);
  if (error.code === "ERR_SESSION_DATA") return new SessionDataError(error.message);
  if (error.name === "TypeError") return new TypeError(error.message);
  if (error.name === "RangeError") return new RangeError(error.message);
  return new Error(`${error.name}: ${error.message}`);
}

/**
 * A SessionStore whose every call runs inside workerd: the store named `name` ("kv" or "do")
 * of the test Worker executes it against the Worker's own bindings. Errors come back as the
 * same classes (TypeError, RangeError, StoreUnavailableError, SessionTooLargeError,
 * SessionDataError); a refused save's `SaveConflict` comes back as it was answered. Locks and the
 * per-user index are bridged too, where the store offers them.
 */
export async function workerdStore(mf: Miniflare, name: "kv" | "do"): Promise<SessionStore> {
  const response = await mf.dispatchFetch(`http://worker/${name}/capabilities`);
  const { capabilities, optional } = (await response.json()) as {
    capabilities: StoreCapabilities;
    optional: string[];
  };
  async function call(method: string, args: unknown[]): Promise<unknown> {
    const reply = await mf.dispatchFetch(`http://worker/${name}/${method}`, {
      method: "POST",
      body: JSON.stringify(args),
    });
    if (!reply.ok) throw new Error(`Worker answered ${reply.status}: ${await reply.text()}`);
    const answer = (await reply.json()) as Answer;
    if (answer.error) throw revive(answer.error);
    return answer.value;
  }
  const store: SessionStore = {
    capabilities,
    load: async (key, minVersion) =>
      (await call("load", minVersion === undefined ? [key] : [key, minVersion])) as StoredSession | null,
    save: async (key, record, expectedVersion, index) =>
      (await call(
        "save",
        index === undefined ? [key, record, expectedVersion] : [key, record, expectedVersion, index],
      )) as SaveResult,
    destroy: async (key) => void (await call("destroy", [key])),
  };
  if (optional.includes("touch")) {
    store.touch = async (...args) => (await call("touch", args)) as boolean;
  }
  if (optional.includes("cleanup")) store.cleanup = async () => (await call("cleanup", [])) as number;
  if (optional.includes("count")) store.count = async () => (await call("count", [])) as number;
  if (optional.includes("lock")) {
    store.lock = async (key, owner, ttlMs) => (await call("lock", [key, owner, ttlMs])) as boolean;
  }
  if (optional.includes("unlock")) {
    store.unlock = async (key, owner) => void (await call("unlock", [key, owner]));
  }
  if (optional.includes("keysOfUser")) {
    store.keysOfUser = async (user) => (await call("keysOfUser", [user])) as string[];
  }
  return store;
}

/**
 * Runs both shared suites, each against its own Miniflare, with the store `open` builds;
 * `options` go to the store suite (`reportsCurrent`).
 */
export function miniflareSuites(
  name: string,
  open: (mf: Miniflare) => Promise<SessionStore>,
  options: Pick<StoreSuiteOptions, "reportsCurrent"> = {},
): void {
  let storeMf: Miniflare | undefined;
  storeSuite(name, {
    ...options,
    open: async () => await open(storeMf = await startMiniflare()),
    close: () => storeMf?.dispose(),
  });
  let sessionMf: Miniflare | undefined;
  sessionSuite(name, {
    open: async () => await open(sessionMf = await startMiniflare()),
    close: () => sessionMf?.dispose(),
  });
}
