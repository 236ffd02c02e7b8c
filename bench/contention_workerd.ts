// The Durable Objects row of the contention benchmark: the Worker of bench/contention_worker.mjs,
// bundled from the built package, in Miniflare (one workerd process, one isolate), sessions in
// `DurableObjectStore`. The rounds are bench/contention_rounds.mjs's, run here on Node: each of a
// round's requests is its own `dispatchFetch` into the Worker (30 in flight from outside the
// isolate, as requests reach a deployed Worker), timed around `dispatchFetch` and reading the body.
import { Log, LogLevel, Miniflare } from "miniflare";
import { measurePair, type Subject, type Tally } from "./contention_rounds.mjs";
import { bundleWorker, COMPATIBILITY_DATE } from "./workerd.ts";

/** A subject whose handlers are requests into the Worker under `/<name>/`. */
function remoteSubject(mf: Miniflare, name: "ws" | "lock"): Subject {
  const send = (handler: string) => async (request: Request): Promise<Response> => {
    const cookie = request.headers.get("cookie");
    const response = await mf.dispatchFetch(`https://bench.example/${name}/${handler}`, {
      method: request.method,
      headers: cookie === null ? {} : { cookie },
      ...(request.method === "POST" ? { body: await request.text() } : {}),
    });
    return response as unknown as Response;
  };
  return {
    get: send("get"),
    post: send("post"),
    read: send("read"),
    async runs() {
      const response = await mf.dispatchFetch("https://bench.example/runs");
      return ((await response.json()) as Record<string, number>)[name]!;
    },
  };
}

/** A Miniflare serving the contention Worker; `measure` runs both subjects under one load. */
export async function openDurableObjects(pkg: string): Promise<{
  measure(method: "GET" | "POST", rounds: number, budgetMs: number): Promise<[Tally, Tally]>;
  close(): Promise<void>;
}> {
  const script = await bundleWorker("bench/contention_worker.mjs", pkg);
  const mf = new Miniflare({
    modules: [{ type: "ESModule", path: "worker.js", contents: script }],
    compatibilityDate: COMPATIBILITY_DATE,
    durableObjects: { SESSIONS: "SessionDurableObject" },
    log: new Log(LogLevel.WARN),
    cf: false,
  });
  try {
    await mf.ready;
  } catch (error) {
    await mf.dispose().catch(() => {});
    throw error;
  }
  const subjects: [Subject, Subject] = [remoteSubject(mf, "ws"), remoteSubject(mf, "lock")];
  return {
    measure: (method, rounds, budgetMs) => measurePair(subjects, method, rounds, budgetMs),
    close: () => mf.dispose(),
  };
}
