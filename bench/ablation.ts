// Where the time goes: the core's request flow taken apart step by step on MemoryStore, the
// store's own calls alone, a few harness-only experiments that isolate one mechanism each, the
// cost of one Web Crypto job, and the Web Crypto calls every library makes per request (on Node
// each `crypto.subtle` operation that does work is a thread-pool job: the request waits for
// another thread to pick it up).
import { measure } from "mitata";
import {
  CookieStore,
  createSessionId,
  getSession,
  MemoryStore,
  storageKeyOf,
  withSession,
} from "./websession.ts";
import { cookiePool } from "./inprocess.ts";
import { SECRET, type Subject } from "./subjects.ts";

/** One measured variant. */
export interface Step {
  name: string;
  what: string;
  /** Mean microseconds per request, best round. */
  us: number;
}

/** Everything "Where the time goes" shows. */
export interface Ablation {
  /** The core's flow, step by step. */
  core: Step[];
  /** Harness-only experiments: where a per-request context is kept. */
  mechanisms: Step[];
  /** MemoryStore's calls alone. */
  store?: Step[];
  /** One Web Crypto job alone, and CookieStore's calls. */
  jobs?: JobCost[];
  /** The core's flow step by step on each runtime (`bench/steps.ts`), by runtime name. */
  runtimes?: Map<string, Step[]>;
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
): Promise<Ablation> {
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
      "the wrapper alone: per-request context (a symbol-keyed property on the Request), async frames",
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
      "an ephemeron cycle the garbage collector must trace (`withSession` keeps one only for a Request that refuses a new property)",
      shaped((request, ctx) => void table.set(request, ctx)),
    ],
    [
      "WeakMap(request -> context), entry deleted at the end",
      "same table, entry removed when the response is done",
      shaped((request, ctx) => void other.set(request, ctx), (request) => void other.delete(request)),
    ],
    [
      "symbol-keyed property on the request",
      "what `withSession` does: no table at all",
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

/** Best mean over `rounds` of a serial loop: microseconds per call, and of its synchronous part. */
async function timeCalls(
  fn: () => Promise<unknown>,
  rounds: number,
  budgetMs: number,
): Promise<{ us: number; syncUs: number }> {
  for (let i = 0; i < 200; i++) await fn();
  let best = { us: Infinity, syncUs: Infinity };
  for (let round = 0; round < rounds; round++) {
    let calls = 0;
    let sync = 0;
    const start = performance.now();
    const end = start + budgetMs;
    while (performance.now() < end) {
      for (let i = 0; i < 50; i++) {
        const before = performance.now();
        const pending = fn();
        sync += performance.now() - before;
        await pending;
      }
      calls += 50;
    }
    const us = ((performance.now() - start) * 1000) / calls;
    if (us < best.us) best = { us, syncUs: (sync * 1000) / calls };
  }
  return best;
}

/**
 * The store's calls alone, as the core makes them for a returning visitor: a load, and a
 * compare-and-set save of the next version, on a store holding only the 64 sessions being
 * visited and on one also holding 20,000 others (about what the in-process run leaves in it).
 */
export async function runStoreParts(options: { rounds: number; budgetMs: number }): Promise<Step[]> {
  const now = Date.now();
  const record = (visits: number, version: number) => ({
    data: { visits },
    version,
    createdAt: now,
    expiresAt: now + 3_600_000,
  });
  const variant = async (others: number) => {
    const store = new MemoryStore();
    for (let i = 0; i < others; i++) {
      await store.save(await storageKeyOf(createSessionId()), record(1, 1), null);
    }
    const keys = await Promise.all(Array.from({ length: 64 }, () => storageKeyOf(createSessionId())));
    for (const key of keys) await store.save(key, record(1, 1), null);
    const versions = keys.map(() => 1);
    let i = 0;
    const load = () => store.load(keys[i++ & 63]!);
    const save = () => {
      const k = i++ & 63;
      const version = versions[k]!;
      versions[k] = version + 1;
      return store.save(keys[k]!, record(version, version + 1), version);
    };
    return { load, save };
  };
  const small = await variant(0);
  const large = await variant(20_000);
  const list: Array<[string, string, () => Promise<unknown>]> = [
    [
      "MemoryStore.load, 64 sessions",
      "`Map` lookup, `JSON.parse` and `parseStoredSession` of the record",
      small.load,
    ],
    [
      "MemoryStore.save, 64 sessions",
      "compare-and-set: version check, `JSON.stringify`, the entry replaced",
      small.save,
    ],
    ["MemoryStore.load, 20,064 sessions", "the same lookup in a larger `Map`", large.load],
    ["MemoryStore.save, 20,064 sessions", "the same save in a larger `Map`", large.save],
  ];
  const out: Step[] = [];
  for (const [name, what, fn] of list) {
    out.push({ name, what, us: (await timeCalls(fn, options.rounds, options.budgetMs)).us });
  }
  return out;
}

/** One `crypto.subtle` job (or one CookieStore call) alone: wall time and its synchronous part. */
export interface JobCost extends Step {
  /** Microseconds the call itself takes before it returns its promise (main thread). */
  syncUs: number;
}

/**
 * What one Web Crypto job costs on this runtime, called in a serial loop: the jobs the
 * libraries here make (AES-GCM as CookieStore seals, HMAC as signed cookies), and CookieStore's
 * seal and open as a whole.
 */
export async function runJobCosts(options: { rounds: number; budgetMs: number }): Promise<JobCost[]> {
  const encoder = new TextEncoder();
  const payload = encoder.encode(JSON.stringify({
    id: createSessionId(),
    record: { data: { visits: 3 }, version: 3, createdAt: Date.now(), expiresAt: Date.now() + 3_600_000 },
  }));
  const aad = encoder.encode("eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIiwia2lkIjoiQUJDREVGR0gifQ");
  const aes = await crypto.subtle.importKey(
    "raw",
    crypto.getRandomValues(new Uint8Array(32)),
    "AES-GCM",
    false,
    [
      "encrypt",
    ],
  );
  const hmac = await crypto.subtle.importKey(
    "raw",
    encoder.encode(SECRET),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign", "verify"],
  );
  const id = encoder.encode(createSessionId());
  const mac = await crypto.subtle.sign("HMAC", hmac, id);
  const sealer = new CookieStore({ secrets: SECRET });
  const uncached = new CookieStore({ secrets: SECRET, cacheSize: 0 });
  const now = Date.now();
  const record = { data: { visits: 3 }, version: 3, createdAt: now, expiresAt: now + 3_600_000 };
  const sealed = new Map(
    (await sealer.seal(createSessionId(), record, "session")).map((c) => [c.name, c.value]),
  );
  const get = (name: string) => sealed.get(name);
  const list: Array<[string, string, () => Promise<unknown>]> = [
    [
      "`encrypt` AES-256-GCM",
      "one seal's job (a 12-byte iv, the header as additional data)",
      () =>
        crypto.subtle.encrypt(
          {
            name: "AES-GCM",
            iv: crypto.getRandomValues(new Uint8Array(12)),
            additionalData: aad,
            tagLength: 128,
          },
          aes,
          payload,
        ),
    ],
    ["`sign` HMAC-SHA-256", "a signed cookie's job", () => crypto.subtle.sign("HMAC", hmac, id)],
    ["`verify` HMAC-SHA-256", "a signed cookie's job", () => crypto.subtle.verify("HMAC", hmac, mac, id)],
    ["`digest` SHA-256", "a storage key", () => crypto.subtle.digest("SHA-256", id)],
    [
      "CookieStore.seal",
      "JSON, one `encrypt`, the compact JWE, chunking",
      () => sealer.seal("x".repeat(32), record, "session"),
    ],
    [
      "CookieStore.open, decrypting",
      "jose's `compactDecrypt` (one `decrypt`), JSON, checks",
      () => uncached.open(get, "session"),
    ],
    [
      "CookieStore.open, cached token",
      "a cache hit: JSON and the same checks, no job",
      () => sealer.open(get, "session"),
    ],
  ];
  const out: JobCost[] = [];
  for (const [name, what, fn] of list) {
    const { us, syncUs } = await timeCalls(fn, options.rounds, options.budgetMs);
    out.push({ name, what, us, syncUs: name.startsWith("`") ? syncUs : NaN });
  }
  return out;
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

const COUNTED = 32;

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
          // Warm up first (keys imported, websession's pool of ids signed ahead of time filled),
          // then count over 32 requests: the pool is refilled in batches of 32 ids, so a batch's
          // calls are spread over the requests that use its ids.
          for (let i = 0; i < 8; i++) await run(i);
          await new Promise((resolve) => setTimeout(resolve, 20));
          for (const key in counts) delete counts[key];
          for (let i = 0; i < COUNTED; i++) await run(i);
          row[scenario] = Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, v / COUNTED]));
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
