// In-process scenarios: every library handles Web Requests built the same way, timed by mitata
// one request (or one batch of 16 in flight) per sample, so p99 is a per-request tail.
import { measure } from "mitata";
import type { Handler, Instance, Subject } from "./subjects.ts";

export const SCENARIOS = ["returning", "new", "read", "inflight16"] as const;
export type Scenario = typeof SCENARIOS[number];

export const SCENARIO_TITLES: Record<Scenario, string> = {
  returning: "Returning visitor (valid cookie, load, +1, save)",
  new: "New visitor (no cookie, +1, save, Set-Cookie)",
  read: "Read-only visitor (valid cookie, load, read)",
  inflight16: "16 requests in flight (returning visitors, 16 sessions)",
};

const BASE = "https://bench.example";
const COUNT_URL = `${BASE}/count`;
const READ_URL = `${BASE}/read`;
const POOL = 64;

/** Timing of one subject in one scenario. */
export interface Timing {
  /** Requests per second. */
  ops: number;
  /** Mean and p99 in nanoseconds, per request (per batch of 16 for `inflight16`). */
  mean: number;
  p99: number;
  samples: number;
}

/** What one request of a scenario costs besides time. */
export interface Footprint {
  /** Bytes of the session cookie(s) the browser holds afterwards (`name=value; ...`). */
  cookieBytes: number;
  /** Set-Cookie headers per response. */
  setCookies: number;
  /** Store writes per request; `undefined` when the library keeps no server-side state. */
  writes: number | undefined;
  /** Status of the last response. */
  status: number;
}

/** A cookie jar: keeps the last value per name, drops cleared cookies. */
export class Jar {
  #cookies = new Map<string, string>();
  absorb(response: Response): void {
    for (const header of response.headers.getSetCookie()) {
      const pair = header.split(";", 1)[0]!;
      const eq = pair.indexOf("=");
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (value === "" || /;\s*max-age=0\s*(;|$)/i.test(header)) this.#cookies.delete(name);
      else this.#cookies.set(name, value);
    }
  }
  get header(): string {
    return [...this.#cookies].map(([name, value]) => `${name}=${value}`).join("; ");
  }
}

/** Cookies of `n` visitors who each made one counting request. */
export async function cookiePool(instance: Instance, n = POOL, allowEmpty = false): Promise<string[]> {
  const pool: string[] = [];
  for (let i = 0; i < n; i++) {
    const response = await instance.count(new Request(COUNT_URL));
    if (response.status !== 200) throw new Error(`new visitor answered ${response.status}`);
    await response.arrayBuffer();
    const jar = new Jar();
    jar.absorb(response);
    if (jar.header === "" && !allowEmpty) throw new Error("new visitor got no cookie");
    // A handler without sessions still gets a Cookie header, so every Request is built alike.
    pool.push(jar.header || "session=none");
  }
  return pool;
}

/** The function one sample runs. */
function workload(scenario: Scenario, instance: Instance, pool: string[]): () => Promise<unknown> {
  let i = 0;
  const one = (handler: Handler, url: string, cookie?: string) =>
    handler(cookie === undefined ? new Request(url) : new Request(url, { headers: { cookie } })).then(
      function seen(response) {
        response.headers.getSetCookie();
        return response;
      },
    );
  switch (scenario) {
    case "returning":
      return () => one(instance.count, COUNT_URL, pool[i++ % pool.length]);
    case "new":
      return () => one(instance.count, COUNT_URL);
    case "read":
      return () => one(instance.read, READ_URL, pool[i++ % pool.length]);
    case "inflight16":
      return () => {
        const batch: Promise<Response>[] = [];
        for (let k = 0; k < 16; k++) batch.push(one(instance.count, COUNT_URL, pool[i++ % pool.length]));
        return Promise.all(batch);
      };
  }
}

/**
 * Times one scenario.
 *
 * @param budgetMs Wall time to keep sampling after warm-up.
 */
export async function time(
  scenario: Scenario,
  instance: Instance,
  pool: string[],
  budgetMs: number,
): Promise<Timing> {
  const fn = workload(scenario, instance, pool);
  for (let i = 0; i < 20; i++) await fn(); // JIT warm-up outside the measurement
  const stats = await measure(fn, {
    batch_threshold: 0, // one request per sample: p99 is a per-request tail
    min_cpu_time: budgetMs * 1e6,
    min_samples: 12,
    max_samples: 200_000,
  });
  const perSample = scenario === "inflight16" ? 16 : 1;
  return {
    ops: (perSample * 1e9) / stats.avg,
    mean: stats.avg,
    p99: stats.p99,
    samples: stats.samples.length,
  };
}

/** Runs a few requests of a scenario on a counting instance and averages what they cost. */
export async function footprint(scenario: Scenario, instance: Instance, pool: string[]): Promise<Footprint> {
  const n = scenario === "inflight16" ? 16 : 20;
  const before = instance.writes();
  let setCookies = 0;
  let last: Response | undefined;
  let lastCookie = "";
  const run = async (k: number) => {
    const cookie = scenario === "new" ? undefined : pool[k % pool.length]!;
    const handler = scenario === "read" ? instance.read : instance.count;
    const response = await handler(
      new Request(
        scenario === "read" ? READ_URL : COUNT_URL,
        cookie === undefined ? {} : { headers: { cookie } },
      ),
    );
    await response.arrayBuffer();
    setCookies += response.headers.getSetCookie().length;
    const jar = new Jar();
    if (cookie !== undefined) {
      for (const pair of cookie.split("; ")) {
        const eq = pair.indexOf("=");
        jar.absorb(
          new Response(null, { headers: { "set-cookie": `${pair.slice(0, eq)}=${pair.slice(eq + 1)}` } }),
        );
      }
    }
    jar.absorb(response);
    last = response;
    lastCookie = jar.header;
  };
  if (scenario === "inflight16") await Promise.all(Array.from({ length: n }, (_, k) => run(k)));
  else for (let k = 0; k < n; k++) await run(k);
  const after = instance.writes();
  return {
    cookieBytes: new TextEncoder().encode(lastCookie).length,
    setCookies: setCookies / n,
    writes: before === undefined || after === undefined ? undefined : (after - before) / n,
    status: last!.status,
  };
}

/** Results of the in-process part, by subject name then scenario. */
export interface InProcessResults {
  timings: Map<string, Map<Scenario, Timing>>;
  footprints: Map<string, Map<Scenario, Footprint>>;
  errors: Map<string, string>;
  rounds: number;
  /** Sessions each server store held at the end of the timed rounds, where it can count. */
  held: Map<string, number>;
}

/**
 * Runs every scenario for every subject, `rounds` times interleaved, keeping each pair's best
 * round (the one least disturbed by anything else running on the machine).
 */
export async function runInProcess(
  list: Subject[],
  options: { rounds: number; budgetMs: number; log: (line: string) => void },
): Promise<InProcessResults> {
  const results: InProcessResults = {
    timings: new Map(),
    footprints: new Map(),
    errors: new Map(),
    rounds: options.rounds,
    held: new Map(),
  };
  const opened: Array<{ subject: Subject; instance: Instance; pool: string[] }> = [];
  for (const subject of list) {
    try {
      const instance = await subject.open(false);
      opened.push({ subject, instance, pool: await cookiePool(instance, POOL, subject.kind === "baseline") });
    } catch (error) {
      results.errors.set(subject.name, String((error as Error)?.message ?? error));
      options.log(`  ${subject.name}: failed to open: ${String(error)}`);
    }
  }
  for (let round = 1; round <= options.rounds; round++) {
    for (const scenario of SCENARIOS) {
      options.log(`  round ${round}/${options.rounds}: ${scenario}`);
      for (const { subject, instance, pool } of opened) {
        if (results.errors.has(subject.name)) continue;
        try {
          const timing = await time(scenario, instance, pool, options.budgetMs);
          const bySubject = results.timings.get(subject.name) ?? new Map<Scenario, Timing>();
          results.timings.set(subject.name, bySubject);
          const best = bySubject.get(scenario);
          if (best === undefined || timing.ops > best.ops) bySubject.set(scenario, timing);
        } catch (error) {
          results.errors.set(subject.name, `${scenario}: ${String((error as Error)?.message ?? error)}`);
          options.log(`  ${subject.name} ${scenario}: ${String(error)}`);
        }
      }
    }
  }
  for (const { subject, instance } of opened) {
    const held = await instance.sessions?.().catch(() => undefined);
    if (held !== undefined) results.held.set(subject.name, held);
    await instance.close();
  }

  options.log("  counting cookies, Set-Cookie headers and store writes");
  for (const subject of list) {
    if (results.errors.has(subject.name)) continue;
    const instance = await subject.open(true);
    try {
      const pool = await cookiePool(instance, 16, subject.kind === "baseline");
      const bySubject = new Map<Scenario, Footprint>();
      for (const scenario of SCENARIOS) bySubject.set(scenario, await footprint(scenario, instance, pool));
      results.footprints.set(subject.name, bySubject);
    } finally {
      await instance.close();
    }
  }
  return results;
}
