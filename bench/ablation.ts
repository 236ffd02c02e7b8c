// Where the time goes: the core's request flow taken apart step by step on MemoryStore, a few
// harness-only experiments that isolate one mechanism each, and the Web Crypto calls every
// library makes per request (on Node each `crypto.subtle` operation that does work is a
// thread-pool job: the request waits for another thread to pick it up).
import { measure } from "mitata";
import { getSession, MemoryStore, withSession } from "../mod.ts";
import { cookiePool } from "./inprocess.ts";
import { SECRET, type Subject } from "./subjects.ts";

/** One measured variant. */
export interface Step {
  name: string;
  what: string;
  /** Mean microseconds per request, best round. */
  us: number;
}

const headers = { "content-type": "text/plain;charset=UTF-8" };
type Handler = (request: Request) => Response | Promise<Response>;

async function timeHandler(handler: Handler, cookie: string, budgetMs: number): Promise<number> {
  const fn = async () => {
    const response = await handler(new Request("https://bench.example/", { headers: { cookie } }));
    response.headers.getSetCookie();
  };
  for (let i = 0; i < 50; i++) await fn();
  const stats = await measure(fn, { batch_threshold: 0, min_cpu_time: budgetMs * 1e6, min_samples: 12 });
  return stats.avg / 1000;
}

/** The core's flow, one step at a time, and the isolated mechanisms. */
export async function runAblation(
  options: { rounds: number; budgetMs: number },
): Promise<{ core: Step[]; mechanisms: Step[] }> {
  const store = new MemoryStore();
  const session = { store, secrets: SECRET };
  const returning = withSession(async (req: Request) => {
    const s = await getSession<{ visits?: number }>(req);
    return new Response(`visit ${s.update("visits", (n = 0) => n + 1)}`, { headers });
  }, session);
  const first = await returning(new Request("https://bench.example/"));
  const cookie = first.headers.getSetCookie()[0]!.split(";")[0]!;

  const core: Array<[string, string, Handler]> = [
    [
      "bare handler",
      "`new Response()`; the harness builds the Request",
      () => new Response("visit 1", { headers }),
    ],
    [
      "withSession, session never asked for",
      "the wrapper alone: per-request context, WeakMap entry, async frames",
      withSession(() => new Response("visit 1", { headers }), session),
    ],
    [
      "withSession, read-only",
      "+ cookie lookup, cached signature, store read and parse, Session, `Vary`",
      withSession(async (req: Request) => {
        const s = await getSession<{ visits?: number }>(req);
        return new Response(`visit ${s.get("visits") ?? 0}`, { headers });
      }, session),
    ],
    [
      "withSession, returning visitor (+1)",
      "+ operation log, compare-and-set write (`JSON.stringify`)",
      returning,
    ],
  ];

  // Harness-only experiments: the same async handler shape, storing a per-request context in
  // four ways (the core's is the second).
  const table = new WeakMap<object, object>();
  const other = new WeakMap<object, object>(); // its own table: entries of the first one linger until a GC
  const symbol = Symbol("context");
  const shaped =
    (store: (request: Request, ctx: object) => void, drop?: (request: Request) => void): Handler =>
    async (request: Request) => {
      const ctx = { request, setCookies: new Map(), chain: Promise.resolve() };
      store(request, ctx);
      const response = await Promise.resolve(new Response("visit 1", { headers }));
      drop?.(request);
      return response;
    };
  const mechanisms: Array<[string, string, Handler]> = [
    ["context in a local only", "no lookup table", shaped(() => {})],
    [
      "WeakMap(request -> context), context references the request",
      "what `withSession` does: an ephemeron cycle the garbage collector must trace",
      shaped((request, ctx) => void table.set(request, ctx)),
    ],
    [
      "WeakMap(request -> context), entry deleted at the end",
      "same table, entry removed when the response is done",
      shaped((request, ctx) => void other.set(request, ctx), (request) => void other.delete(request)),
    ],
    [
      "symbol-keyed property on the request",
      "no table at all",
      shaped((request, ctx) => void ((request as unknown as Record<symbol, object>)[symbol] = ctx)),
    ],
  ];

  const best = new Map<string, number>();
  for (let round = 0; round < options.rounds; round++) {
    for (const [name, , handler] of [...core, ...mechanisms]) {
      const us = await timeHandler(handler, cookie, options.budgetMs);
      best.set(name, Math.min(best.get(name) ?? Infinity, us));
    }
  }
  const steps = (list: Array<[string, string, Handler]>) =>
    list.map(([name, what]) => ({ name, what, us: best.get(name)! }));
  return { core: steps(core), mechanisms: steps(mechanisms) };
}

const OPERATIONS = [
  "sign",
  "verify",
  "encrypt",
  "decrypt",
  "digest",
  "importKey",
  "deriveBits",
  "deriveKey",
] as const;

/** `crypto.subtle` calls per request, by library and scenario. */
export type CryptoCalls = Map<string, Record<"returning" | "new" | "read", Record<string, number>>>;

/** Counts each library's `crypto.subtle` calls over a few requests of each scenario. */
export async function countCryptoCalls(list: Subject[]): Promise<CryptoCalls> {
  const counts: Record<string, number> = {};
  const subtle = crypto.subtle as unknown as Record<string, (...args: unknown[]) => unknown>;
  for (const operation of OPERATIONS) {
    const original = subtle[operation]!;
    Object.defineProperty(subtle, operation, {
      configurable: true,
      writable: true,
      value: function counted(this: unknown, ...args: unknown[]) {
        counts[operation] = (counts[operation] ?? 0) + 1;
        return original.apply(this, args);
      },
    });
  }
  const result: CryptoCalls = new Map();
  try {
    for (const subject of list) {
      if (subject.kind === "baseline") continue;
      const instance = await subject.open(false);
      try {
        const pool = await cookiePool(instance, 4);
        const row = {} as Record<"returning" | "new" | "read", Record<string, number>>;
        for (const scenario of ["returning", "new", "read"] as const) {
          const run = async (i: number) => {
            const cookie = pool[i % pool.length]!;
            const response = scenario === "new"
              ? await instance.count(new Request("https://bench.example/count"))
              : scenario === "read"
              ? await instance.read(new Request("https://bench.example/read", { headers: { cookie } }))
              : await instance.count(new Request("https://bench.example/count", { headers: { cookie } }));
            await response.arrayBuffer();
          };
          await run(0);
          for (const key in counts) delete counts[key];
          for (let i = 0; i < 8; i++) await run(i);
          row[scenario] = Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, v / 8]));
        }
        result.set(subject.name, row);
      } finally {
        await instance.close();
      }
    }
  } finally {
    for (const operation of OPERATIONS) delete subtle[operation];
  }
  return result;
}
