// The bindings of the Worker that runs the suites inside workerd. Test files register their
// cases when the bundle loads, before any request; `open()` runs later, inside the request that
// runs the tests, when the bindings are known.
import type { KvNamespaceLike } from "../../src/stores/cloudflare_kv.ts";
import type { DurableObjectNamespaceLike } from "../../src/stores/durable_object.ts";

/** What the runner's Miniflare binds: a Workers KV namespace and the session Durable Object. */
export interface RunnerEnv {
  SESSIONS_KV: KvNamespaceLike;
  SESSIONS_DO: DurableObjectNamespaceLike;
}

let current: RunnerEnv | undefined;

/** Called by the Worker with its `env` before the tests run. */
export function setEnv(env: RunnerEnv): void {
  current = env;
}

/** The Worker's bindings; throws outside a test run. */
export function env(): RunnerEnv {
  if (current === undefined) throw new Error("No Worker env: the suites run inside the runner's fetch");
  return current;
}
