// Targets and the RESULTS.md writer.
import type { Ablation, CryptoCalls } from "./ablation.ts";
import { type ContentionRow, WRITERS } from "./contention.ts";
import {
  type AllocationSite,
  allocOf,
  COST_SCENARIO_TITLES,
  COST_SCENARIOS,
  type CostResults,
  type CostScenario,
  cpuOf,
  median,
  paired,
  type RuntimeCost,
} from "./cost.ts";
import { HTTP_MODE_TITLES, type HttpLoad, type HttpMode, type HttpRun } from "./http.ts";
import { type InProcessResults, SCENARIO_TITLES, SCENARIOS } from "./inprocess.ts";
import type { Phase } from "./machine.ts";
import { groupOf, type ProfileSummary } from "./profile.ts";
import type { Subject } from "./subjects.ts";

/** MemoryStore's footprint, measured in its own process. */
export interface MemoryFigure {
  sessions: number;
  heapBytes: number;
  perSession: number;
  dataPerSession: number;
  beyondData: number;
}

/** The concurrency suite's figures, as its tests reported them. */
export interface Reliability {
  lines: string[];
  passed: number;
  failed: number;
  seconds: number;
}

/** One target of the issue, computed from this run. */
export interface Target {
  id: string;
  text: string;
  measured: string;
  goal: string;
  met: boolean | undefined;
  /** The measured figure as a number, for the JSON a later run compares with. */
  value?: number;
  /** What to profile when it is missed. */
  profile?: { subject: string; scenario: string } | { http: string };
}

/** Everything one run produced. */
export interface Run {
  date: string;
  /** A smoke run (BENCH_QUICK=1). */
  quick: boolean;
  /** The websession code measured. */
  source: string;
  /** The command that reproduces the run. */
  command: string;
  /** The parts of the run, and how busy the machine was during each. */
  phases: Phase[];
  machine: {
    cpu: string;
    cores: number;
    memoryGiB: number;
    os: string;
    node: string;
    load: [number[], number[]];
  };
  versions: Array<[string, string]>;
  subjects: Subject[];
  cost?: CostResults;
  inProcess?: InProcessResults;
  http?: HttpRun[];
  contention?: ContentionRow[];
  memory?: MemoryFigure;
  reliability?: Reliability;
  ablation?: Ablation;
  cryptoCalls?: CryptoCalls;
  targets: Target[];
  profiles: Map<string, ProfileSummary>;
  seconds: number;
  settings: string;
  /** The targets of an earlier run (its JSON), shown beside this run's. */
  before?: { date: string; source: string; command?: string; targets: Target[] };
}

const fmt = (n: number, digits = 0) =>
  Number.isFinite(n)
    ? n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : "-";
const us = (ns: number) => fmt(ns / 1000, ns < 100_000 ? 1 : 0);
const signed = (n: number, digits = 0) => `${n >= 0 ? "+" : "-"}${fmt(Math.abs(n), digits)}`;
const ratio = (r: number) => (Number.isFinite(r) ? `${r >= 10 ? fmt(r, 1) : fmt(r, 2)}x` : "-");

function ops(run: Run, subject: string, scenario: string): number {
  return run.inProcess?.timings.get(subject)?.get(scenario as never)?.ops ?? NaN;
}

const BARE = "bare handler";
const WS = "websession MemoryStore";
const WRAPPER = "websession, session never asked for";

/** Median server CPU µs per request of a mode at the fixed rate. */
function httpCpu(h: HttpRun, mode: HttpMode): number {
  return median((h.fixed.get(mode) ?? []).map((l) => l.cpuUs));
}

/** Bare / mode server CPU per request at the fixed rate, paired round by round, median. */
function httpPaired(h: HttpRun, mode: HttpMode): { ratio: number; addedUs: number } {
  const bare = h.fixed.get("bare") ?? [];
  const ratios: number[] = [];
  const added: number[] = [];
  for (const load of h.fixed.get(mode) ?? []) {
    const match = bare.find((b) => b.round === load.round);
    if (match === undefined) continue;
    ratios.push(match.cpuUs / load.cpuUs);
    added.push(load.cpuUs - match.cpuUs);
  }
  return { ratio: median(ratios), addedUs: median(added) };
}

/** Computes every target of the issue from the run's figures. */
export function targets(run: Omit<Run, "targets" | "profiles">): Target[] {
  const r = run as Run;
  const out: Target[] = [];
  const mem = "websession MemoryStore";
  const rrMem = "react-router memory";
  const node = run.cost?.runtimes.find((c) => c.runtime === "Node");
  if (node) {
    for (
      const [scenario, goal, label] of [["read", 0.8, "read-only"], [
        "returning",
        0.75,
        "returning visitor",
      ]] as const
    ) {
      const share = paired(node, WS, scenario).ratio;
      out.push({
        id: `cpu-node-${scenario}`,
        text: `Node in-process, ${label}: CPU per request, bare / websession`,
        measured: `${fmt(100 * share, 0)}% (${fmt(cpuOf(node, BARE, scenario), 1)} / ${
          fmt(cpuOf(node, WS, scenario), 1)
        } µs)`,
        goal: `>= ${fmt(100 * goal, 0)}%`,
        met: Number.isFinite(share) ? share >= goal : undefined,
        value: share,
        profile: { subject: "websession MemoryStore", scenario },
      });
    }
  }
  for (const h of run.http ?? []) {
    if (h.runtime !== "Node") continue;
    for (const [mode, label] of [["read", "read-only"], ["returning", "returning visitor"]] as const) {
      const share = httpPaired(h, mode).ratio;
      out.push({
        id: `http-node-${mode}`,
        text: `Node HTTP at ${fmt(h.rate)} req/s, ${label}: server CPU per request, bare / websession`,
        measured: h.error
          ? `error: ${h.error.slice(0, 80)}`
          : `${fmt(100 * share, 0)}% (${fmt(httpCpu(h, "bare"), 1)} / ${fmt(httpCpu(h, mode), 1)} µs)`,
        goal: ">= 85%",
        met: Number.isFinite(share) ? share >= 0.85 : undefined,
        value: share,
        profile: { http: "Node" },
      });
    }
  }
  for (const cost of run.cost?.runtimes ?? []) {
    if (cost.runtime === "Node") continue;
    for (
      const [scenario, goal, label] of [["read", 2, "read-only"], [
        "returning",
        3,
        "returning visitor",
      ]] as const
    ) {
      const { addedUs } = paired(cost, WS, scenario);
      out.push({
        id: `cpu-${cost.runtime.toLowerCase()}-${scenario}`,
        text: `${cost.runtime} in-process, ${label}: CPU added over the bare handler`,
        measured: `${fmt(addedUs, 1)} µs (${fmt(cpuOf(cost, BARE, scenario), 1)} -> ${
          fmt(cpuOf(cost, WS, scenario), 1)
        } µs)`,
        goal: `<= ${goal} µs`,
        met: Number.isFinite(addedUs) ? addedUs <= goal : undefined,
        value: addedUs,
      });
    }
  }
  if (node) {
    for (
      const [scenario, goal, label] of [["read", 1.5, "read-only"], [
        "returning",
        2.5,
        "returning visitor",
      ]] as const
    ) {
      const added = allocOf(node, WS, scenario) - allocOf(node, BARE, scenario);
      out.push({
        id: `alloc-node-${scenario}`,
        text: `Node in-process, ${label}: bytes allocated per request over the bare handler`,
        measured: `${fmt(added / 1024, 2)} KB (${fmt(allocOf(node, BARE, scenario))} -> ${
          fmt(allocOf(node, WS, scenario))
        } bytes)`,
        goal: `<= ${goal} KB`,
        met: Number.isFinite(added) ? added <= goal * 1024 : undefined,
        value: added,
      });
    }
  }
  for (const row of (run.contention ?? []).filter((r) => r.policy === "merge")) {
    const x = row.contended ? row.contended.p99 / row.spread.p99 : NaN;
    out.push({
      id: `contention-${row.store}`,
      text:
        `${WRITERS} update() writers on one session, ${row.store}: refused, p99 vs ${WRITERS} writers on ${WRITERS} sessions`,
      measured: row.error
        ? `error: ${row.error.slice(0, 80)}`
        : `${fmt(row.conflicts)} refused of ${fmt(row.rounds * row.writers)}, ${ratio(x)}`,
      goal: "0 refused, <= 5x",
      met: row.error ? undefined : row.conflicts === 0 && x <= 5,
      value: x,
    });
  }
  if (run.inProcess) {
    const returning = ops(r, mem, "returning");
    const a = returning / ops(r, rrMem, "returning");
    out.push({
      id: "returning-vs-rr",
      text: "Returning visitor, MemoryStore vs react-router memory storage",
      measured: ratio(a),
      goal: ">= 10x",
      met: a >= 10,
      profile: { subject: mem, scenario: "returning" },
    });
    const b = returning / ops(r, "bare handler", "returning");
    out.push({
      id: "returning-vs-bare",
      text: "Returning visitor, MemoryStore vs the bare handler",
      measured: `${fmt(100 * b, 1)}%`,
      goal: ">= 40%",
      met: b >= 0.4,
      profile: { subject: mem, scenario: "returning" },
    });
    const c = ops(r, mem, "read") / ops(r, "bare handler", "read");
    out.push({
      id: "read-vs-bare",
      text: "Read-only visitor, MemoryStore vs the bare handler",
      measured: `${fmt(100 * c, 1)}%`,
      goal: ">= 60%",
      met: c >= 0.6,
      profile: { subject: mem, scenario: "read" },
    });
    const f = run.inProcess.footprints.get(mem)?.get("read");
    out.push({
      id: "read-writes",
      text: "Read-only visitor: store writes and Set-Cookie headers per request",
      measured: f ? `${fmt(f.writes ?? NaN, 2)} writes, ${fmt(f.setCookies, 2)} Set-Cookie` : "-",
      goal: "0 and 0",
      met: f ? f.writes === 0 && f.setCookies === 0 : undefined,
    });
    const d = ops(r, mem, "new") / ops(r, rrMem, "new");
    out.push({
      id: "new-vs-rr",
      text: "New visitor, MemoryStore vs react-router memory storage",
      measured: ratio(d),
      goal: ">= 1.5x",
      met: d >= 1.5,
      profile: { subject: mem, scenario: "new" },
    });
    const cookie = ops(r, "websession CookieStore", "returning");
    const e = cookie / ops(r, "iron-session", "returning");
    out.push({
      id: "cookie-vs-iron",
      text: "Returning visitor, CookieStore (encrypted) vs iron-session v8",
      measured: ratio(e),
      goal: ">= 2x",
      met: e >= 2,
      profile: { subject: "websession CookieStore", scenario: "returning" },
    });
    const g = cookie / ops(r, "react-router cookie", "returning");
    out.push({
      id: "cookie-vs-rr",
      text: "Returning visitor, CookieStore (encrypted) vs react-router cookie storage (signed only)",
      measured: ratio(g),
      goal: ">= 1x",
      met: g >= 1,
      profile: { subject: "websession CookieStore", scenario: "returning" },
    });
  }
  if (run.memory) {
    out.push({
      id: "memory",
      text: `MemoryStore bytes per session beyond its data (${fmt(run.memory.sessions)} small sessions)`,
      measured: `${fmt(run.memory.beyondData, 0)} bytes`,
      goal: "<= 300 bytes",
      met: run.memory.beyondData <= 300,
    });
  }
  return out;
}

/** Where a profile's self time went, in three shares a reader can check against the table. */
function shares(summary: ProfileSummary | undefined): string {
  if (summary === undefined) return "";
  const sum = (test: (name: string) => boolean) =>
    summary.groups.filter((g) => test(g.name)).reduce((n, g) => n + g.percent, 0);
  const node = sum((name) =>
    name.startsWith("undici") || /^node internals \((worker|abort_controller|webstreams)\)$/.test(name)
  );
  const gc = sum((name) => name === "garbage collection");
  const own = sum((name) => name.startsWith("websession "));
  return `In the profile below, ${
    fmt(node, 0)
  }% of the time is Node's own \`Request\`/\`Response\` machinery ` +
    "(undici, `makeTransferable` and `createAbortSignal` for each Request's signal, web streams), " +
    `${fmt(gc, 0)}% garbage collection and ${fmt(own, 0)}% websession's own files. `;
}

/**
 * Splits the extra CPU per request of the session server by area: each server's CPU per request
 * spread over its own profile (idle samples left out), then the difference per area.
 */
function split(session: ProfileSummary, sessionUs: number, bare: ProfileSummary, bareUs: number): string {
  const perRequest = (summary: ProfileSummary, cpuUs: number) => {
    const idle = summary.groups.filter((g) => g.name.startsWith("idle")).reduce((n, g) => n + g.percent, 0);
    return new Map(
      summary.groups.filter((g) => !g.name.startsWith("idle")).map((
        g,
      ) => [g.name, (g.percent / (100 - idle)) * cpuUs]),
    );
  };
  const s = perRequest(session, sessionUs);
  const b = perRequest(bare, bareUs);
  const deltas = [...new Set([...s.keys(), ...b.keys()])]
    .map((name) => [name, (s.get(name) ?? 0) - (b.get(name) ?? 0)] as const)
    .sort((x, y) => y[1] - x[1]);
  const top = deltas.filter(([, us]) => us >= 0.5).slice(0, 7);
  const own = deltas.filter(([name]) => name.startsWith("websession ")).reduce((n, [, us]) => n + us, 0);
  return "Profiling the bare server the same way and spreading each server's CPU per request over its own " +
    "profile (idle left out), the largest differences are " +
    top.map(([name, us]) => `+${fmt(us, 1)} µs ${name}`).join(", ") +
    `; websession's own files account for ${fmt(own, 1)} µs in all, the rest is work the session adds to ` +
    "Node and the garbage collector (these are estimates: the profiler sees the main thread only). ";
}

/** Why a target is missed, from this run's own figures and the mechanisms profiled. */
function why(id: string, run: Run, summary: ProfileSummary | undefined): string | undefined {
  const a = run.ablation;
  const step = (name: string) => a?.core.find((s) => s.name.startsWith(name))?.us ?? NaN;
  const bareUs = step("bare handler");
  const wrapper = step("withSession, session never asked for");
  const readOnly = step("withSession, read-only");
  const returning = step("withSession, returning visitor");
  const mech = (name: string) => a?.mechanisms.find((s) => s.name.startsWith(name))?.us ?? NaN;
  const local = mech("context in a local only");
  const part = (name: string) => a?.store?.find((s) => s.name === name)?.us ?? NaN;
  const job = (name: string) => a?.jobs?.find((s) => s.name === name);
  const wsBare = ops(run, "websession MemoryStore", "returning") / ops(run, "bare handler", "returning");
  const held = run.inProcess?.held.get("websession MemoryStore");

  const steps = a
    ? `In "Where the time goes" below: the wrapper alone adds ${fmt(wrapper - bareUs, 1)} µs, reading the ` +
      `session ${fmt(readOnly - wrapper, 1)} µs more, changing and writing it ${
        fmt(returning - readOnly, 1)
      } µs more, over a bare handler of ${fmt(bareUs, 1)} µs. `
    : "";
  const context = a
    ? "The wrapper keeps the request's context under a symbol-keyed property of the Request: the harness-only " +
      `experiment puts that shape at ${
        fmt(mech("symbol-keyed") - local, 1)
      } µs over a local variable, against ` +
      `${
        fmt(mech("WeakMap(request -> context), context references") - local, 1)
      } µs for a WeakMap entry that ` +
      "references the Request. "
    : "";
  const save64 = part("MemoryStore.save, 64 sessions");
  const save20k = part("MemoryStore.save, 20,064 sessions");
  const store = a?.store
    ? `The store's own calls, alone: a MemoryStore load (\`JSON.parse\` and \`parseStoredSession\` of the record) ` +
      `takes ${fmt(part("MemoryStore.load, 64 sessions"), 1)} µs; a compare-and-set save ${
        fmt(save64, 1)
      } µs ` +
      `on a store of 64 sessions and ${fmt(save20k, 1)} µs on one of 20,064 (a load there: ${
        fmt(part("MemoryStore.load, 20,064 sessions"), 1)
      } µs)` +
      (save20k > 1.3 * save64 ? ": in this run a save into the larger table cost more." : ".") +
      (held === undefined
        ? " "
        : ` The in-process scenarios share one MemoryStore, which the new-visitor rounds left holding ${
          fmt(held)
        } sessions. `)
    : "";
  const budget = (goal: number, flowUs: number, label: string) =>
    a
      ? `${fmt(100 * goal, 0)}% of the bare handler's rate leaves ${
        fmt(bareUs / goal - bareUs, 1)
      } µs per request over the bare handler's ${fmt(bareUs, 1)} µs in the step-by-step harness; the ` +
        `${label} flow adds ${fmt(flowUs - bareUs, 1)} µs there (the wrapper ${
          fmt(wrapper - bareUs, 1)
        } µs, ` +
        `reading the session ${fmt(readOnly - wrapper, 1)} µs${
          label === "returning" ? `, changing and writing it ${fmt(returning - readOnly, 1)} µs` : ""
        }). `
      : "";
  const rest =
    "Besides the store calls, reading the session is finding the one cookie in the header, the cached " +
    "signature lookup, the `Session` state (three Maps, an operation log, closures) and `Vary: Cookie` on the " +
    "response, and the garbage of all of it. On Node 20 the bare handler itself is mostly `new Request()` (an " +
    "`AbortSignal` made transferable) and `new Response()` (a `ReadableStream` for the body).";
  switch (id) {
    case "returning-vs-rr": {
      const rrBare = ops(run, "react-router memory", "returning") / ops(run, "bare handler", "returning");
      const sign = job("`sign` HMAC-SHA-256");
      const verify = job("`verify` HMAC-SHA-256");
      return "websession serves a returning visitor with no `crypto.subtle` call (see the `crypto.subtle` " +
        "table), while react-router verifies and re-signs its cookie on every request (two thread-pool jobs plus " +
        "two `importKey`). So the ratio is capped by the bare handler: react-router runs at " +
        `${fmt(100 * rrBare, 1)}% of the bare handler in this run, so 10x needs websession at ${
          fmt(1000 * rrBare, 0)
        }% of it` +
        (rrBare >= 0.1
          ? ", more than the bare handler itself: no wrapper reaches it in this run. "
          : `, where it is at ${fmt(100 * wsBare, 0)}%. `) +
        "The gap is the core's own per-request cost. " + steps + store + context + shares(summary) +
        "react-router's own cost is mostly waiting for thread-pool jobs" +
        (sign && verify
          ? ` (alone, a \`verify\` takes ${fmt(verify.us, 1)} µs and a \`sign\` ${fmt(sign.us, 1)} µs here)`
          : "") +
        ", whose latency on this shared machine changes with what the other core is doing, so this is the " +
        "least stable ratio of the table.";
    }
    case "returning-vs-bare":
      return budget(0.4, returning, "returning") + store + rest + " " + shares(summary);
    case "read-vs-bare":
      return budget(0.6, readOnly, "read-only") + store + rest + " " + context + shares(summary);
    case "new-vs-rr":
      return "New visitors take ids signed ahead of time: `sign` for the cookie and `digest` for the storage key " +
        "run in small background batches (counted per request in the `crypto.subtle` table), and a request " +
        "waits for neither when an id is ready; react-router signs on the request (one `sign`; its `importKey` " +
        "runs on the main thread). Issuing a job still costs the main thread " +
        `${fmt(job("`sign` HMAC-SHA-256")?.syncUs ?? NaN, 1)} µs (a \`sign\`) before it reaches the pool, ` +
        "paid inside whichever request starts a batch. The profile below shows what is left on the request path.";
    case "cookie-vs-iron":
      return "CookieStore makes one `encrypt` per returning visit (the presented token opens from its cache of " +
        "tokens it sealed or opened); iron-session derives keys with PBKDF2 (`deriveBits`) and signs with HMAC " +
        "on every request (see the `crypto.subtle` table).";
    case "cookie-vs-rr": {
      const seal = job("CookieStore.seal");
      const encrypt = job("`encrypt` AES-256-GCM");
      const sign = job("`sign` HMAC-SHA-256");
      const verify = job("`verify` HMAC-SHA-256");
      const cached = job("CookieStore.open, cached token");
      const decrypting = job("CookieStore.open, decrypting");
      const mean = (name: string) => (run.inProcess?.timings.get(name)?.get("returning")?.mean ?? NaN) / 1000;
      const pair = (sign?.us ?? NaN) + (verify?.us ?? NaN);
      return "A returning visit costs CookieStore one thread-pool job (`encrypt`, for the new seal) and " +
        "react-router two (`verify`, `sign`); the presented token opens from CookieStore's cache of tokens it " +
        `sealed or opened (${fmt(cached?.us ?? NaN, 1)} µs, against ${
          fmt(decrypting?.us ?? NaN, 1)
        } µs to decrypt it). ` +
        'One job is not half the price of two on Node 20: in "One Web Crypto job" below, an AES-256-GCM ' +
        `\`encrypt\` takes ${fmt(encrypt?.us ?? NaN, 1)} µs (${
          fmt(encrypt?.syncUs ?? NaN, 1)
        } µs of it on the main thread, converting its arguments and setting up the job, before the pool ` +
        `runs it), an HMAC \`sign\` ${fmt(sign?.us ?? NaN, 1)} µs and a \`verify\` ${
          fmt(verify?.us ?? NaN, 1)
        } µs (${fmt(sign?.syncUs ?? NaN, 1)} and ${fmt(verify?.syncUs ?? NaN, 1)} µs on the main thread). ` +
        `So react-router's pair is ${
          fmt(pair, 1)
        } µs and CookieStore's whole seal (JSON, the one \`encrypt\`, ` +
        `the compact JWE's base64url) ${fmt(seal?.us ?? NaN, 1)} µs: ${
          (seal?.us ?? NaN) <= pair ? "cheaper, but only by" : "dearer by"
        } ${fmt(Math.abs(pair - (seal?.us ?? NaN)), 1)} µs. ` +
        `Whole requests in the in-process scenario: ${fmt(mean("websession CookieStore"), 1)} µs against ${
          fmt(mean("react-router cookie"), 1)
        } µs. ` + shares(summary) +
        "The rest of the profile is the wait for the pool (`idle`) and the native dispatch to it (`run`).";
    }
    case "memory":
      return "Each session holds its 43-character key (64 bytes), an entry object with the version and expiry " +
        "beside the record's JSON text, the JSON envelope (`version`, `createdAt`, `expiresAt` as text), and a " +
        "Map entry with the table's growth slack.";
  }
  if (id.startsWith("cpu-") || id.startsWith("alloc-")) return whyCost(id, run, summary);
  if (id.startsWith("http-")) return whyHttp(id, run, summary);
  if (id.startsWith("contention-")) return whyContention(id, run);
  return undefined;
}

/** The CPU and allocation steps of one runtime: bare, the wrapper alone, read-only, returning. */
function costSteps(cost: RuntimeCost, scenario: CostScenario): string {
  const wrapper = paired(cost, WRAPPER, scenario).addedUs;
  const mine = paired(cost, WS, scenario).addedUs;
  const parts = [
    `the wrapper alone (a handler that never calls \`getSession\`) adds ${fmt(wrapper, 1)} µs${
      wrapper < 0 ? " (nothing measurable: below this run's batch-to-batch noise)" : ""
    }`,
    scenario === "read"
      ? `reading the session ${fmt(mine - wrapper, 1)} µs more`
      : `reading, changing and saving the session ${fmt(mine - wrapper, 1)} µs more`,
  ];
  return parts.join(", ");
}

function allocSteps(cost: RuntimeCost, scenario: CostScenario): string {
  const bare = allocOf(cost, BARE, scenario);
  const wrapper = allocOf(cost, WRAPPER, scenario);
  const mine = allocOf(cost, WS, scenario);
  if (!Number.isFinite(bare) || !Number.isFinite(mine)) return "";
  const buffers = allocOf(cost, WS, scenario, "buffers") - allocOf(cost, BARE, scenario, "buffers");
  return `On ${cost.runtime} a request allocates ${
    fmt(bare)
  } bytes with the bare handler (the Request, the ` +
    `Response and what they make), ${fmt(wrapper)} with the wrapper alone (${signed(wrapper - bare)}) and ` +
    `${fmt(mine)} with websession (${signed(mine - bare)}` +
    (Math.abs(buffers) >= 50
      ? `, of which ${fmt(buffers)} in ArrayBuffer backing stores outside the V8 heap`
      : "") +
    "). ";
}

/** Sampled bytes per request by area (websession file, undici, a part of Node...). */
function byArea(sites: AllocationSite[] | undefined): Map<string, number> {
  const areas = new Map<string, number>();
  for (const site of sites ?? []) {
    const area = groupOf(site.url.replace(/^file:\/\//, ""), site.name);
    areas.set(area, (areas.get(area) ?? 0) + site.bytes);
  }
  return areas;
}

/** websession's own allocating functions, most bytes first. */
function ownSites(sites: AllocationSite[] | undefined, top: number): string {
  return (sites ?? [])
    .filter((site) => groupOf(site.url.replace(/^file:\/\//, ""), site.name).startsWith("websession "))
    .slice(0, top)
    .map((site) => {
      const file = site.url.slice(site.url.lastIndexOf("/src/") + 1);
      return `\`${site.name || "(anonymous)"}\` (${file}) ${fmt(site.bytes)} B`;
    })
    .join(", ");
}

/** Why a CPU or allocation target is missed, from the cost tables of this run. */
function whyCost(id: string, run: Run, summary: ProfileSummary | undefined): string | undefined {
  const [, runtime, scenario] = id.split("-") as [string, string, CostScenario];
  const cost = run.cost?.runtimes.find((c) => c.runtime.toLowerCase() === runtime);
  if (cost === undefined) return undefined;
  const bare = cpuOf(cost, BARE, scenario);
  const mine = cpuOf(cost, WS, scenario);
  const added = paired(cost, WS, scenario).addedUs;
  const wallAdded = paired(cost, WS, scenario, "wallUs").addedUs;
  const label = scenario === "read" ? "read-only" : "returning-visitor";
  if (id.startsWith("alloc-")) {
    const goal = scenario === "read" ? 1.5 : 2.5;
    const sites = cost.sites.get(WS)?.get(scenario);
    const areas = [...byArea(sites)].map(([area, bytes]) =>
      [area, bytes - (byArea(cost.sites.get(BARE)?.get(scenario)).get(area) ?? 0)] as const
    )
      .filter(([, bytes]) => bytes >= 100).sort((x, y) => y[1] - x[1]).slice(0, 6);
    return allocSteps(cost, scenario) +
      `The goal allows ${fmt(goal * 1024)} bytes over the bare handler. ` +
      (sites
        ? 'By allocating function ("Where the bytes come from" below), the largest differences from the bare ' +
          `handler are ${
            areas.map(([area, bytes]) => `+${fmt(bytes)} B ${area}`).join(", ")
          }; websession's own ` +
          `functions that allocate most: ${ownSites(sites, 8)}. `
        : "") +
      (run.cost!.runtimes.find((c) => c.runtime === "Deno" && c.alloc.size > 0)
        ? `On Deno the same request allocates ${
          fmt(
            allocOf(run.cost!.runtimes.find((c) => c.runtime === "Deno")!, WS, scenario) -
              allocOf(
                run.cost!.runtimes.find((c) => c.runtime === "Deno")!,
                BARE,
                scenario,
              ),
          )
        } bytes over its bare handler. `
        : "") +
      `Every allocated byte is later garbage-collector work: here the ${label} request costs ${
        fmt(added, 1)
      } µs of CPU more than the bare handler's ${fmt(bare, 1)} µs.`;
  }
  const goalShare = scenario === "read" ? 0.8 : 0.75;
  const budget = cost.runtime === "Node" ? bare / goalShare - bare : scenario === "read" ? 2 : 3;
  return `The ${label} request costs ${fmt(mine, 1)} µs of CPU against the bare handler's ${
    fmt(bare, 1)
  } µs ` +
    `(+${fmt(added, 1)} µs, the median of the batch-by-batch differences; wall time +${
      fmt(wallAdded, 1)
    } µs), ` +
    `where the goal leaves ${fmt(budget, 1)} µs. Of that, ${costSteps(cost, scenario)}. ` +
    allocSteps(cost, scenario) +
    (cost.runtime === "Node" && summary ? shares(summary) : "");
}

/** Why an HTTP target is missed, from the HTTP and cost tables of this run. */
function whyHttp(id: string, run: Run, summary: ProfileSummary | undefined): string | undefined {
  const mode = id.endsWith("-read") ? "read" : "returning";
  const h = run.http?.find((r) => r.runtime === "Node");
  if (h === undefined || h.error) return undefined;
  const bare = httpCpu(h, "bare");
  const mine = httpCpu(h, mode);
  const { addedUs } = httpPaired(h, mode);
  const node = run.cost?.runtimes.find((c) => c.runtime === "Node");
  const inProcess = node ? paired(node, WS, mode).addedUs : NaN;
  const bareSummary = run.profiles.get("http:Node:bare");
  const cores = median((h.fixed.get(mode) ?? []).map((l) => l.cores));
  return `At ${fmt(h.rate)} req/s the bare server spends ${fmt(bare, 1)} µs of CPU per request and the ` +
    `websession server ${fmt(mine, 1)} µs (+${
      fmt(addedUs, 1)
    } µs, paired by round; the session server kept ` +
    `${fmt(cores, 2)} of a core busy), where 85% of the bare server's CPU leaves ${
      fmt(bare / 0.85 - bare, 1)
    } µs. ` +
    (Number.isFinite(inProcess)
      ? `In-process on Node the same flow adds ${fmt(inProcess, 1)} µs per request (the CPU table above)` +
        (addedUs > inProcess
          ? `; the other ${
            fmt(addedUs - inProcess, 1)
          } µs show only when it is served over a socket at this ` +
            "rate (or are the difference between the two ways of measuring). "
          : ". Over HTTP the bare server's own cost per request is larger, so the same added work is a smaller " +
            "share of it. ")
      : "") +
    (summary && bareSummary ? split(summary, mine, bareSummary, bare) : "") +
    "The profiles are taken at saturation (autocannon), where the split by area is steadier than at a low rate.";
}

/** Why a contention target is missed, from the contention table of this run. */
function whyContention(id: string, run: Run): string | undefined {
  const row = run.contention?.find((r) => `contention-${r.store}` === id && r.policy === "merge");
  if (row === undefined || row.error) return undefined;
  const requests = row.rounds * row.writers;
  const memory = run.contention?.find((r) => r.store === "MemoryStore" && r.policy === "merge");
  const refused = row.conflicts > 0
    ? `${fmt(row.conflicts)} of ${fmt(requests)} requests were refused (409): they ran out of attempts. `
    : "No request was refused. ";
  return refused +
    `The store refused ${fmt(row.contendedCalls.refused)} of ${fmt(row.contendedCalls.saves)} saves: ` +
    `${fmt(row.savesPerRequest, 2)} saves per request where 1 means no retry` +
    (memory && memory !== row ? ` (MemoryStore: ${fmt(memory.savesPerRequest, 2)})` : "") +
    `, and each refused save cost ${fmt(row.roundTripsPerConflict, 2)} store round trips beyond the ` +
    `${
      fmt((row.spreadCalls.loads + row.spreadCalls.saves + row.spreadCalls.other) / requests, 2)
    } per request ` +
    `of the same writers on separate sessions (${
      row.roundTripsPerConflict >= 1.9
        ? "a reload and a new save: the refused save's answer did not spare the reload"
        : "the new save, with fewer reloads: the refused save reported the current record"
    }). Tail: p99 ${fmt(row.contended.p99, 1)} ms on one session against ${fmt(row.spread.p99, 1)} ms on ` +
    `${WRITERS} sessions and ${fmt(row.alone.p99, 2)} ms for one writer alone; the slowest writer waited ` +
    `${fmt(row.contended.max, 0)} ms.`;
}

function table(head: string[], rows: string[][], left = 2): string {
  const align = head.map((_, i) => (i < left ? "---" : "---:"));
  return [
    `| ${head.join(" | ")} |`,
    `| ${align.join(" | ")} |`,
    ...rows.map((row) => `| ${row.join(" | ")} |`),
  ].join("\n");
}

function profileTable(summary: ProfileSummary): string {
  const groups = summary.groups.slice(0, 8).map((g) => `${fmt(g.percent, 1)}% ${g.name}`);
  const functions = summary.functions.slice(0, 10).map((f) => `${fmt(f.percent, 1)}% \`${f.name}\``);
  return `Self time by area: ${groups.join("; ")}.\n\nTop functions: ${functions.join("; ")}.`;
}

const kb = (bytes: number) => (Number.isFinite(bytes) ? fmt(bytes / 1024, 1) : "-");
const pct = (r: number) => (Number.isFinite(r) ? `${fmt(100 * r, 0)}%` : "-");

function renderCost(out: string[], cost: CostResults): void {
  out.push("## CPU and allocation per request, in-process", "");
  const node = cost.runtimes.find((c) => c.runtime === "Node");
  const batches = cost.processes * cost.rounds;
  out.push(
    `Each subject runs in its own process (Node through tsx, Deno, Bun): ${cost.processes} set(s) of processes per ` +
      `runtime, one set after another, every subject's process of a set alive at once. After a warm-up, one ` +
      `scenario after another, ${cost.rounds} rounds in which ` +
      `every subject runs one batch (about ${cost.batchMs} ms of requests, one after another, each on a freshly ` +
      "built `Request`) in turn, the subjects' order rotated from round to round, after an unmeasured batch at " +
      "each change of scenario. **CPU** is `process.cpuUsage()` " +
      "over the batch (user + system time of every thread of the process: garbage-collector helper threads and " +
      `the thread pool count) divided by its requests; each figure is the median of ${batches} batches. ` +
      "**vs bare** is the bare handler's CPU per request over the subject's, taken batch by batch within a round " +
      "(the median of those ratios): 80% means the subject costs 1.25x the bare handler. **+µs** is likewise the " +
      'median of the batch-by-batch differences. The bare handler is `req => new Response("ok")` given the same ' +
      'Request (with a cookie of the same shape); websession\'s handlers return the same `new Response("ok")` ' +
      "after their session work; the peers run the handlers of the wall-time tables below (`bench/subjects.ts`). " +
      "**Wall** is the batch's wall time per request.",
    "",
  );
  const calibrations = cost.runtimes.filter((c) => c.calibration).map((c) =>
    `${c.runtime} measured ${fmt(c.calibration!.bytes, 0)} bytes for an array of 1,000 8-byte numbers ` +
    `(expected ${fmt(c.calibration!.expected)}: 8,000 of elements, a 16-byte header, a 32-byte array object)`
  );
  out.push(
    "**Bytes** allocated per request: Node and Deno run the subject in a second process with a young generation " +
      "large enough for a whole batch (`--min-semi-space-size` = `--max-semi-space-size` = 256 MiB, " +
      "`--expose-gc`); after a full collection, the batch runs, and the growth of every V8 heap space but code " +
      "space, plus ArrayBuffer backing stores, divided by the requests, is what a request allocated. A batch with a " +
      "collection in it does not count (a `gc` PerformanceObserver on Node; the young generation shrinking on " +
      `either). Median of ${cost.allocRounds} batch(es). Node 20 has no allocation counter in ` +
      "`v8.getHeapStatistics()`, heap sampling is statistical, and `GCProfiler` reports only at collections: this " +
      `is the exact method there is. Checked on a known allocation: ${calibrations.join("; ") || "-"}. ` +
      "Bun (JavaScriptCore) exposes no heap-space statistics: no allocation figures for it." +
      (cost.runtimes.some((c) => c.allocDropped > 0)
        ? ` Batches dropped because a collection ran: ${
          cost.runtimes.map((c) => `${c.runtime} ${c.allocDropped}`).join(", ")
        }.`
        : ""),
    "",
  );
  for (const scenario of COST_SCENARIOS) {
    out.push(`### The ${COST_SCENARIO_TITLES[scenario]}`, "");
    const subjects = [...new Set(cost.runtimes.flatMap((c) => [...c.cpu.keys()]))];
    const head = ["Subject"];
    for (const c of cost.runtimes) {
      head.push(`${c.runtime} CPU µs`, `${c.runtime} vs bare`, `${c.runtime} +µs`);
      if (c.runtime === "Node") head.push("Node wall µs");
      if (c.alloc.size > 0) head.push(`${c.runtime} KB alloc`);
    }
    const rows = subjects.map((subject) => {
      const row = [subject.startsWith("websession") ? `**${subject}**` : subject];
      for (const c of cost.runtimes) {
        const { ratio: share, addedUs } = paired(c, subject, scenario);
        const cpu = cpuOf(c, subject, scenario);
        row.push(
          Number.isFinite(cpu) ? fmt(cpu, cpu < 100 ? 1 : 0) : (c.errors.has(subject) ? "error" : "-"),
          subject === BARE ? "" : pct(share),
          subject === BARE ? "" : fmt(addedUs, addedUs < 100 ? 1 : 0),
        );
        if (c.runtime === "Node") {
          const wall = cpuOf(c, subject, scenario, "wallUs");
          row.push(fmt(wall, wall < 100 ? 1 : 0));
        }
        if (c.alloc.size > 0) row.push(kb(allocOf(c, subject, scenario)));
      }
      return row;
    });
    out.push(table(head, rows, 1), "");
  }
  if (node && node.sites.size > 0) {
    out.push(
      "### Where the bytes come from (Node)",
      "",
      "V8's sampling heap profiler over 2,000 requests per subject and scenario, told to keep the samples of " +
        "objects that garbage collections freed, so that it counts what a request allocates, not what survives " +
        "(`HeapProfiler.startSampling` with `includeObjectsCollectedByMinorGC` and `...MajorGC`, a sample every " +
        "128 bytes on average: estimates). It sees the V8 heap only, not ArrayBuffer backing stores. Bytes per " +
        "request by area, the areas where websession's requests differ from the bare handler's most. " +
        "\"benchmark harness\" is the caller's `await` of the handler: an async handler's promise costs the " +
        "caller more than the bare handler's plain Response.",
      "",
    );
    for (const scenario of ["read", "returning"] as const) {
      const bare = byArea(node.sites.get(BARE)?.get(scenario));
      const wrapper = byArea(node.sites.get(WRAPPER)?.get(scenario));
      const mine = byArea(node.sites.get(WS)?.get(scenario));
      const areas = [...new Set([...bare.keys(), ...mine.keys()])]
        .map((area) => [area, (mine.get(area) ?? 0) - (bare.get(area) ?? 0)] as const)
        .filter(([, d]) => Math.abs(d) >= 50)
        .sort((x, y) => Math.abs(y[1]) - Math.abs(x[1]))
        .slice(0, 10);
      const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
      out.push(
        table(
          [
            `${scenario === "read" ? "Read-only" : "Returning"} visitor: area`,
            "bare B",
            "wrapper alone B",
            "websession B",
            "websession - bare B",
          ],
          [
            ...areas.map(([area, d]) => [
              area,
              fmt(bare.get(area) ?? 0),
              fmt(wrapper.get(area) ?? 0),
              fmt(mine.get(area) ?? 0),
              `${d >= 0 ? "+" : ""}${fmt(d)}`,
            ]),
            [
              "all areas",
              fmt(total(bare)),
              fmt(total(wrapper)),
              fmt(total(mine)),
              `+${fmt(total(mine) - total(bare))}`,
            ],
          ],
          1,
        ),
        "",
        `websession's own functions that allocate most (bytes per request): ${
          ownSites(node.sites.get(WS)?.get(scenario), 10) || "-"
        }. Sampled totals against the exact V8-heap figures of the table above (ArrayBuffer backing stores left ` +
          `out): bare ${fmt(total(bare))} / ${
            fmt(allocOf(node, BARE, scenario) - allocOf(node, BARE, scenario, "buffers"))
          }, websession ${fmt(total(mine))} / ${
            fmt(allocOf(node, WS, scenario) - allocOf(node, WS, scenario, "buffers"))
          } bytes.`,
        "",
      );
    }
  }
  const errors = cost.runtimes.flatMap((c) => [...c.errors].map(([s, e]) => `${c.runtime} ${s}: ${e}`));
  if (errors.length > 0) {
    out.push("Errors: " + errors.map((e) => `\`${e.replace(/\s+/g, " ").slice(0, 200)}\``).join("; "), "");
  }
  if (node) {
    const spread = (subject: string) => {
      const list = (node.cpu.get(subject)?.get("read") ?? []).map((s) => s.cpuUs).sort((a, b) => a - b);
      return list.length > 1 ? `${fmt(list[0]!, 1)}–${fmt(list.at(-1)!, 1)} µs` : "-";
    };
    out.push(
      `How much single batches moved on Node, read-only: the bare handler ${spread(BARE)}, websession ${
        spread(WS)
      } (lowest–highest of ${batches}).`,
      "",
    );
  }
}

function loadRow(loads: HttpLoad[] | undefined, pick: "median" | "best"): HttpLoad | undefined {
  if (!loads || loads.length === 0) return undefined;
  if (pick === "best") return [...loads].sort((a, b) => b.rps - a.rps)[0];
  const m = (f: (l: HttpLoad) => number) => median(loads.map(f));
  return {
    round: 0,
    rps: m((l) => l.rps),
    cpuUs: m((l) => l.cpuUs),
    cores: m((l) => l.cores),
    p50Ms: m((l) => l.p50Ms),
    p99Ms: m((l) => l.p99Ms),
    non2xx: loads.reduce((n, l) => n + l.non2xx, 0),
    errors: loads.reduce((n, l) => n + l.errors, 0),
  };
}

function renderHttp(out: string[], runs: HttpRun[]): void {
  out.push("## Real HTTP on loopback", "");
  const rate = runs[0]?.rate ?? NaN;
  out.push(
    "One server process per app (`bench/servers/`: a node:http adapter on Node, `Deno.serve`, `Bun.serve`), all " +
      "started and warmed up before the measured runs; the load generator (`bench/load.ts`, raw keep-alive " +
      "sockets, 16 connections, each a visitor with its own cookie) runs in the benchmark process on the same 2 " +
      "cores. **Server CPU** is the server process's `process.cpuUsage()` (user + system, every thread), read " +
      "through a control port of its own before and after each run, divided by the responses.",
    "",
    `### At a fixed rate: ${fmt(rate)} requests per second`,
    "",
    "Requests go out evenly spaced (open loop: the generator wakes about every millisecond and sends what has " +
      "come due, on an idle connection; latency is from writing a request to reading its whole response). " +
      "autocannon's `overallRate` would not do: each connection sends its " +
      "per-second quota back to back at the start of every second. Servers take turns, the order rotated from " +
      "round to round; figures are medians over the rounds, and **vs bare** is the bare server's CPU per request " +
      "over this server's, paired by round (median).",
    "",
  );
  const fixedRows: string[][] = [];
  for (const h of runs) {
    if (h.error) {
      fixedRows.push([h.runtime, `error: ${h.error.slice(0, 100)}`, "", "", "", "", "", "", ""]);
      continue;
    }
    for (const [mode, loads] of h.fixed) {
      const row = loadRow(loads, "median")!;
      fixedRows.push([
        `${h.runtime} ${h.version}`,
        HTTP_MODE_TITLES[mode],
        fmt(row.rps),
        fmt(row.cpuUs, 1),
        mode === "bare" ? "" : pct(httpPaired(h, mode).ratio),
        fmt(row.cores, 2),
        fmt(row.p50Ms, 2),
        fmt(row.p99Ms, 1),
        `${row.errors} / ${row.non2xx}`,
      ]);
    }
  }
  out.push(
    table(
      [
        "Runtime",
        "Server",
        "req/s",
        "server CPU µs / req",
        "vs bare",
        "cores busy",
        "p50 ms",
        "p99 ms",
        "errors / non-2xx",
      ],
      fixedRows,
    ),
    "",
  );
  out.push(
    "### At saturation",
    "",
    "Closed loop: every connection sends its next request when the answer arrives. The best round of each server " +
      "(most req/s). The generator shares the 2 cores: when a server keeps less than a whole core busy, it was " +
      "waiting for the generator (or for other jobs on the machine), and its req/s is not its capacity; its CPU per " +
      "request still holds.",
    "",
  );
  const satRows: string[][] = [];
  for (const h of runs) {
    if (h.error) continue;
    const bare = loadRow(h.saturation.get("bare"), "best");
    for (const [mode, loads] of h.saturation) {
      const row = loadRow(loads, "best")!;
      satRows.push([
        `${h.runtime} ${h.version}`,
        HTTP_MODE_TITLES[mode],
        fmt(row.rps),
        mode === "bare" || !bare ? "" : pct(row.rps / bare.rps),
        fmt(row.cpuUs, 1),
        mode === "bare" || !bare ? "" : pct(bare.cpuUs / row.cpuUs),
        fmt(row.cores, 2),
        fmt(row.p99Ms, 1),
        `${row.errors} / ${row.non2xx}`,
      ]);
    }
  }
  out.push(
    table(
      [
        "Runtime",
        "Server",
        "req/s",
        "req/s vs bare",
        "server CPU µs / req",
        "CPU vs bare",
        "cores busy",
        "p99 ms",
        "errors / non-2xx",
      ],
      satRows,
    ),
    "",
  );
}

function renderContention(out: string[], rows: ContentionRow[]): void {
  out.push(`## Contention: ${WRITERS} concurrent writers on one session`, "");
  out.push(
    `Each round starts a session and fires ${WRITERS} concurrent \`update()\` increments at it, then the same ` +
      `${WRITERS} writers each on its own session (the same load, no contention), then 10 writers one at a time. ` +
      "**refused** counts 409 answers; **lost** counts acknowledged increments missing from the final value. " +
      "Every store call the core makes is counted (on Redis and PostgreSQL each is one round trip: one script, one " +
      "statement): **round trips / conflict** is the calls the contended writers made beyond what the same writers " +
      "made on separate sessions, divided by the saves the store refused. Latency is from building the Request to " +
      "the response. Rounds stop early (two at least) once a store has had its time budget.",
    "",
  );
  out.push(
    table(
      [
        "Store",
        "Policy",
        "rounds",
        "requests",
        "refused (409)",
        "lost",
        "saves / req",
        "refused saves",
        "round trips / conflict",
        "p50 ms",
        "p99 ms",
        "max ms",
        `${WRITERS} sessions p99 ms`,
        "alone p99 ms",
        "p99 ratio",
      ],
      rows.map((row) =>
        row.error
          ? [
            row.store,
            row.policy,
            `error: ${row.error.slice(0, 100)}`,
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
          ]
          : [
            row.store,
            row.policy,
            fmt(row.rounds),
            fmt(row.rounds * row.writers),
            fmt(row.conflicts),
            fmt(row.lost),
            fmt(row.savesPerRequest, 2),
            fmt(row.contendedCalls.refused),
            fmt(row.roundTripsPerConflict, 2),
            fmt(row.contended.p50, 1),
            fmt(row.contended.p99, 1),
            fmt(row.contended.max, 0),
            fmt(row.spread.p99, 1),
            fmt(row.alone.p99, 2),
            ratio(row.contended.p99 / row.spread.p99),
          ]
      ),
    ),
    "",
  );
  out.push(
    "`merge` replays each request's operation log on the fresh record, so every increment lands; `retry` re-runs " +
      "the whole handler; `reject` answers 409 to every request that lost its compare-and-set (nothing is lost: " +
      "the refused increments were never acknowledged).",
    "",
  );
}

/** Renders RESULTS.md. */
export function render(run: Run): string {
  const out: string[] = [];
  const m = run.machine;
  out.push(run.quick ? "# Benchmarks (quick smoke run: low precision)" : "# Benchmarks", "");
  out.push(
    `Generated by \`${run.command}\` (\`bench/run.ts\`) on ${run.date}, in ${
      fmt(run.seconds / 60, 1)
    } minutes, ` +
      `measuring ${run.source}. Settings: ${run.settings}.`,
    "",
    `Machine: ${m.cpu}, ${m.cores} cores, ${fmt(m.memoryGiB, 0)} GiB, ${m.os}; Node ${m.node}. ` +
      `Load average (\`uptime\`) at start ${m.load[0].map((n) => fmt(n, 2)).join(" / ")}, at end ${
        m.load[1].map((n) => fmt(n, 2)).join(" / ")
      }. The machine is shared: other jobs ran beside this one (see "Machine load" at the end, per part of the run).`,
    "",
    "**Read the ratios, not the absolute numbers.** Absolute figures move from run to run with what else the 2 " +
      "cores are doing. Every subject's batches are interleaved with the others' over several rounds, and the " +
      "figures are medians (the cost and HTTP tables) or best rounds (the wall-time tables), so a burst of outside " +
      "load hits one batch of one subject, not a whole column.",
    "",
    "Every library is used through its documented public API on Web `Request`s built the same way for all " +
      "(the harness builds the `Request` and reads the `Set-Cookie` headers; in-process, bodies are not read). " +
      "websession runs from its TypeScript sources (through tsx on Node); the other libraries run their published " +
      "JavaScript.",
    "",
  );

  out.push("## Targets", "");
  const before = run.before;
  const beforeOf = (t: Target) => before?.targets.find((b) => b.id === t.id);
  out.push(
    table(
      ["Target", ...(before ? ["Before"] : []), "Measured", "Goal", "Status"],
      run.targets.map((t) => [
        t.text,
        ...(before ? [beforeOf(t)?.measured ?? "-"] : []),
        t.measured,
        t.goal,
        t.met === undefined ? "n/a" : t.met ? "met" : "**missed**",
      ]),
    ),
    "",
  );
  if (before) {
    out.push(
      `"Before" is the run of ${before.date} that measured ${before.source}` +
        (before.command ? ` (\`${before.command}\`)` : "") + ", from its JSON file.",
      "",
    );
  }

  const missed = run.targets.filter((t) => t.met === false);
  if (missed.length > 0) {
    out.push("### Why the missed targets are missed", "");
    for (const t of missed) {
      out.push(`**${t.text}** (${t.measured}, goal ${t.goal}).`, "");
      const key = t.profile
        ? ("http" in t.profile ? `http:${t.profile.http}` : `${t.profile.subject}:${t.profile.scenario}`)
        : "";
      const summary = run.profiles.get(key);
      const text = why(t.id, run, summary);
      if (text) out.push(text.trim(), "");
      if (summary) {
        out.push(
          `Profile of this run (${
            "http" in t.profile! ? "the Node server under load" : "a focused loop of the scenario"
          }, steady state): ${profileTable(summary)}`,
          "",
        );
      }
    }
  }

  if (run.cost) renderCost(out, run.cost);
  if (run.http) renderHttp(out, run.http);
  if (run.contention) renderContention(out, run.contention);

  if (run.ablation) {
    out.push("## Where the time goes", "");
    out.push(
      "The core's request flow on MemoryStore, one step at a time (same harness, mean µs per request, best of the " +
        "rounds). Each row adds to the one above it.",
      "",
    );
    const bare = run.ablation.core[0]!.us;
    out.push(
      table(
        ["Step", "What it adds", "µs / request", "+ µs", "% of bare ops/s"],
        run.ablation.core.map((step, i) => [
          step.name,
          step.what,
          fmt(step.us, 2),
          i === 0 ? "" : `+${fmt(step.us - run.ablation!.core[i - 1]!.us, 2)}`,
          `${fmt((100 * bare) / step.us, 0)}%`,
        ]),
      ),
      "",
    );
    if (run.ablation.store) {
      out.push(
        "The store's calls alone, as the core makes them for a returning visitor (same harness, µs per call, best " +
          "round): a load, and a compare-and-set save of the next version.",
        "",
        table(
          ["Call", "What it does", "µs / call"],
          run.ablation.store.map((step) => [step.name, step.what, fmt(step.us, 2)]),
        ),
        "",
      );
    }
    if (run.ablation.runtimes && run.ablation.runtimes.size > 0) {
      const names = [...run.ablation.runtimes.keys()];
      const first = run.ablation.runtimes.get(names[0]!)!;
      out.push(
        "### The core's flow on each runtime",
        "",
        "The same four steps under each runtime (`bench/steps.ts`: a plain serial loop instead of mitata, so the " +
          "Node column differs a little from the table above), mean µs per request, best of 4 rounds.",
        "",
        table(
          ["Step", ...names.map((n) => `${n} µs`), ...names.map((n) => `${n} + µs`)],
          first.map((step, i) => [
            step.name,
            ...names.map((n) => fmt(run.ablation!.runtimes!.get(n)?.[i]?.us ?? NaN, 2)),
            ...names.map((n) => {
              const list = run.ablation!.runtimes!.get(n);
              return i === 0 || !list ? "" : `+${fmt(list[i]!.us - list[i - 1]!.us, 2)}`;
            }),
          ]),
          1,
        ),
        "",
      );
    }
    out.push(
      "Harness-only experiments (not websession code): an async handler that keeps a small per-request context " +
        "(the request, a Map, a Promise) in four ways.",
      "",
    );
    const base = run.ablation.mechanisms[0]!.us;
    out.push(
      table(
        ["Context kept in", "Note", "µs / request", "+ µs"],
        run.ablation.mechanisms.map((
          step,
          i,
        ) => [step.name, step.what, fmt(step.us, 2), i === 0 ? "" : `+${fmt(step.us - base, 2)}`]),
      ),
      "",
    );
  }
  if (run.ablation?.jobs) {
    out.push(
      "One Web Crypto job alone on this runtime (Node " + run.machine.node +
        "), and CookieStore's calls: a serial " +
        "loop, each call awaited before the next; wall µs per call, and the part of it the call itself takes on the " +
        "main thread before returning its promise (argument conversion, setting up the job).",
      "",
      table(
        ["Call", "What it is", "µs / call", "main thread µs"],
        run.ablation.jobs.map((job) => [job.name, job.what, fmt(job.us, 1), fmt(job.syncUs, 1)]),
      ),
      "",
    );
  }
  if (run.cryptoCalls) {
    out.push(
      "`crypto.subtle` calls per request. On Node every `sign`, `verify`, `digest`, `encrypt`, `decrypt` and " +
        "`deriveBits` is a job for libuv's thread pool, and the request waits for it; `importKey` of a raw key is " +
        "done on the main thread. websession's new-visitor `sign` and `digest` are made ahead of time, in small " +
        "background batches of ids, and show here spread over the requests that use them.",
      "",
    );
    const show = (calls: Record<string, number>) =>
      Object.entries(calls).filter(([, n]) => n > 0).map(([op, n]) => `${op} ${fmt(n, n % 1 === 0 ? 0 : 2)}`)
        .join(", ") || "none";
    out.push(
      table(
        ["Library", "returning visitor", "new visitor", "read-only visitor"],
        [...run.cryptoCalls].map(([name, row]) => [name, show(row.returning), show(row.new), show(row.read)]),
      ),
      "",
    );
  }

  if (run.inProcess) {
    const ip = run.inProcess;
    const peers = run.subjects.filter((s) => s.kind === "peer").map((s) => s.name);
    out.push("## In-process scenarios", "");
    out.push(
      `mitata, one request per sample (one batch of 16 for the in-flight scenario), ${ip.rounds} interleaved rounds, ` +
        "best round kept. `x bare` is ops/s over the bare fetch handler's; `x fastest peer` is over the fastest " +
        "other library in the same scenario.",
      "",
    );
    for (const scenario of SCENARIOS) {
      const bare = ops(run, "bare handler", scenario);
      const fastestPeer = Math.max(...peers.map((p) => ops(run, p, scenario)).filter(Number.isFinite));
      const rows = run.subjects.map((s) => {
        const t = ip.timings.get(s.name)?.get(scenario);
        const f = ip.footprints.get(s.name)?.get(scenario);
        const error = ip.errors.get(s.name);
        if (!t) {
          return [
            s.name,
            s.storage,
            error ? `error: ${error.slice(0, 60)}` : "-",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
          ];
        }
        return [
          s.kind === "websession" ? `**${s.name}**` : s.name,
          s.storage,
          fmt(t.ops),
          us(t.mean),
          us(t.p99),
          ratio(t.ops / bare),
          s.kind === "baseline" ? "" : ratio(t.ops / fastestPeer),
          f ? fmt(f.cookieBytes) : "",
          f ? fmt(f.setCookies, 2) : "",
          f ? (f.writes === undefined ? "-" : fmt(f.writes, 2)) : "",
        ];
      });
      out.push(`### ${SCENARIO_TITLES[scenario]}`, "");
      out.push(
        table(
          [
            "Library",
            "Storage",
            "ops/s",
            scenario === "inflight16" ? "mean µs / batch" : "mean µs",
            scenario === "inflight16" ? "p99 µs / batch" : "p99 µs",
            "x bare",
            "x fastest peer",
            "cookie bytes",
            "Set-Cookie / req",
            "writes / req",
          ],
          rows,
        ),
        "",
      );
    }
  }

  if (run.memory) {
    const mf = run.memory;
    out.push("## MemoryStore memory per session", "");
    out.push(
      `${
        fmt(mf.sessions)
      } sessions saved through the store API, keys built by the core's own encoder, data ` +
        `\`{ visits: n }\` (${
          fmt(mf.dataPerSession, 1)
        } bytes of JSON). Heap growth after full garbage collections ` +
        `(\`--expose-gc\`): ${fmt(mf.heapBytes / 2 ** 20, 1)} MiB, **${
          fmt(mf.perSession, 0)
        } bytes per session, ` +
        `${
          fmt(mf.beyondData, 0)
        } beyond its data** (the 43-character key, the record's JSON envelope with its ` +
        "version and timestamps, and the Map entry).",
      "",
    );
  }

  if (run.reliability) {
    const rel = run.reliability;
    out.push("## Reliability figures", "");
    out.push(
      `From \`tests/concurrency_test.ts\` (run by this benchmark: ${rel.passed} passed, ${rel.failed} failed, ` +
        `${fmt(rel.seconds, 0)} s, on the working tree's sources whatever BENCH_SOURCE names), through ` +
        "withSession with plain Requests on the real stores:",
      "",
      ...rel.lines.map((line) => `- ${line}`),
      "",
      "The attack checklist (`tests/security_test.ts`), the fuzz suite (`tests/fuzz_test.ts`, `npm run fuzz` for " +
        "100,000 cases) and the Redis/PostgreSQL outage tests (`tests/faults/`) run in `npm test`.",
      "",
    );
  }

  if (run.phases.length > 0) {
    out.push("## Machine load", "");
    out.push(
      "How busy the 2 cores were during each part of the run, this benchmark included: the load average " +
        "(`uptime`) at the start and end of the part, and the cores kept busy by every process on the machine, " +
        "on average (`/proc/stat`). The in-process CPU part runs one batch at a time, so it keeps about one core " +
        "busy by itself; anything above that was other work.",
      "",
      table(
        ["Part", "seconds", "load at start", "load at end", "busy cores (all processes)"],
        run.phases.map((p) => [
          p.name,
          fmt(p.seconds, 0),
          p.loadStart.map((n) => fmt(n, 2)).join(" / "),
          p.loadEnd.map((n) => fmt(n, 2)).join(" / "),
          p.busyCores === undefined ? "-" : fmt(p.busyCores, 2),
        ]),
        1,
      ),
      "",
    );
  }

  out.push("## Versions", "");
  out.push(table(["Package", "Version"], run.versions), "");
  return out.join("\n");
}
