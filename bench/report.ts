// Targets and the RESULTS.md writer.
import type { Ablation, CryptoCalls } from "./ablation.ts";
import type { ContentionRow } from "./contention.ts";
import type { HttpRun } from "./http.ts";
import { type InProcessResults, SCENARIO_TITLES, SCENARIOS } from "./inprocess.ts";
import type { ProfileSummary } from "./profile.ts";
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
  /** What to profile when it is missed. */
  profile?: { subject: string; scenario: string } | { http: string };
}

/** Everything one run produced. */
export interface Run {
  date: string;
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
}

const fmt = (n: number, digits = 0) =>
  Number.isFinite(n)
    ? n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : "-";
const us = (ns: number) => fmt(ns / 1000, ns < 100_000 ? 1 : 0);
const ratio = (r: number) => (Number.isFinite(r) ? `${r >= 10 ? fmt(r, 1) : fmt(r, 2)}x` : "-");

function ops(run: Run, subject: string, scenario: string): number {
  return run.inProcess?.timings.get(subject)?.get(scenario as never)?.ops ?? NaN;
}

/** Computes every target of the issue from the run's figures. */
export function targets(run: Omit<Run, "targets" | "profiles">): Target[] {
  const r = run as Run;
  const out: Target[] = [];
  const mem = "websession MemoryStore";
  const rrMem = "react-router memory";
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
  for (const h of run.http ?? []) {
    if (h.error || !h.bare || !h.session) {
      out.push({
        id: `http-${h.runtime.toLowerCase()}`,
        text: `Real HTTP on loopback, ${h.runtime}: withSession(MemoryStore) vs a bare server`,
        measured: `error: ${(h.error ?? "no result").slice(0, 80)}`,
        goal: ">= 80%",
        met: undefined,
      });
      continue;
    }
    const rps = h.session.rps / h.bare.rps;
    const cpu = h.bare.cpuUs / h.session.cpuUs;
    // Cores the bare server kept busy: below ~0.85 it was waiting for the load generator, and its
    // req/s is the generator's ceiling, not the server's.
    const saturated = (h.bare.rps * h.bare.cpuUs) / 1e6 >= 0.85;
    out.push({
      id: `http-${h.runtime.toLowerCase()}`,
      text: `Real HTTP on loopback, ${h.runtime}: withSession(MemoryStore) vs a bare server`,
      measured: saturated
        ? `${fmt(100 * rps, 0)}% of req/s (CPU per request: ${fmt(100 * cpu, 0)}%)`
        : `${fmt(100 * rps, 0)}% of req/s, bare server not saturated; CPU per request: ${fmt(100 * cpu, 0)}%`,
      goal: ">= 80%",
      met: (saturated ? rps : cpu) >= 0.8,
      profile: { http: h.runtime },
    });
  }
  if (run.contention) {
    const merge = run.contention.filter((row) => row.policy === "merge");
    const lost = merge.reduce((n, row) => n + row.lost, 0);
    const failed = merge.reduce((n, row) => n + row.conflicts, 0);
    out.push({
      id: "contention-lost",
      text: "50 concurrent writers on one session under merge: updates lost, requests refused",
      measured: `${lost} lost, ${failed} refused (of ${
        merge.reduce((n, row) => n + row.rounds * row.writers, 0)
      })`,
      goal: "0 lost, 0 refused",
      met: lost === 0 && failed === 0,
    });
    for (const row of merge) {
      const x = row.contended.p99 / row.spread.p99;
      out.push({
        id: `contention-p99-${row.store}`,
        text: `50 writers on one session under merge, ${row.store}: p99 vs 50 writers on 50 sessions`,
        measured: ratio(x),
        goal: "<= 5x",
        met: x <= 5,
      });
    }
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
  const inProcessOn = (runtime: string, budgetUs: number) => {
    const list = a?.runtimes?.get(runtime);
    if (list === undefined) return "";
    const at = (name: string) => list.find((s) => s.name.startsWith(name))?.us ?? NaN;
    const [b, w, r, c] = [
      at("bare handler"),
      at("withSession, session never asked for"),
      at("withSession, read-only"),
      at("withSession, returning visitor"),
    ];
    return `In-process on ${runtime} ("The core's flow on each runtime" below), the returning-visitor flow adds ` +
      `${fmt(c - b, 1)} µs to a bare handler of ${fmt(b, 1)} µs: the wrapper ${
        fmt(w - b, 1)
      } µs, reading the ` +
      `session ${fmt(r - w, 1)} µs, changing and writing it ${fmt(c - r, 1)} µs${
        c - b > budgetUs ? `, over the ${fmt(budgetUs, 1)} µs by itself` : ""
      }. `;
  };
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
    case "contention-p99-RedisStore (ioredis)": {
      const row = run.contention?.find((r) => r.store.startsWith("RedisStore") && r.policy === "merge");
      const memory = run.contention?.find((r) => r.store.startsWith("MemoryStore") && r.policy === "merge");
      return "50 writers on one session need 50 compare-and-sets in a row; each round has one winner, and every " +
        "loser waits a jittered backoff (`backoff()` in `src/with_session.ts`: a random wait of up to " +
        "`min(16, 0.5 * 2^attempt)` ms), reloads and tries again. On MemoryStore the reload and the save happen " +
        `in one tick, so losers rarely collide twice (${fmt(memory?.savesPerRequest ?? NaN, 2)} saves per ` +
        "request); on Redis a reload and a save are two network round trips, other saves land in between, and losers collide " +
        `again (${
          fmt(row?.savesPerRequest ?? NaN, 2)
        } saves per request here) and the last writers sit through ` +
        `many rounds: p99 ${fmt(row?.contended.p99 ?? NaN, 1)} ms against ${
          fmt(row?.spread.p99 ?? NaN, 1)
        } ms for the same 50 writers on 50 sessions and ${fmt(row?.alone.p99 ?? NaN, 2)} ms for one writer ` +
        "alone. A backoff scaled to the store's round trip, and a save that returns the current record when it " +
        "loses (dropping the reload round trip), would shorten the tail; nothing is lost either way.";
    }
    case "memory":
      return "Each session holds its 43-character key (64 bytes), an entry object with the version and expiry " +
        "beside the record's JSON text, the JSON envelope (`version`, `createdAt`, `expiresAt` as text), and a " +
        "Map entry with the table's growth slack.";
  }
  if (id.startsWith("http-")) {
    const h = run.http?.find((r) => `http-${r.runtime.toLowerCase()}` === id);
    if (!h?.bare || !h.session) return undefined;
    const saturated = (h.bare.rps * h.bare.cpuUs) / 1e6 >= 0.85;
    const bareSummary = run.profiles.get(`http:${h.runtime}:bare`);
    return `The session server spends ${
      fmt(h.session.cpuUs - h.bare.cpuUs, 1)
    } µs more CPU per request than the ` +
      `bare one (${fmt(h.bare.cpuUs, 1)} -> ${fmt(h.session.cpuUs, 1)} µs), where 80% of the bare server's ` +
      `CPU per request leaves ${fmt(h.bare.cpuUs / 0.8 - h.bare.cpuUs, 1)} µs for the session. ` +
      inProcessOn(h.runtime, h.bare.cpuUs / 0.8 - h.bare.cpuUs) +
      (summary && bareSummary ? split(summary, h.session.cpuUs, bareSummary, h.bare.cpuUs) : "") +
      (saturated
        ? ""
        : `The bare server kept only ${fmt((h.bare.rps * h.bare.cpuUs) / 1e6, 2)} of a core busy: the load ` +
          "generator (autocannon, on the same 2 cores) or other jobs left it waiting, so its req/s is not its " +
          "capacity and the CPU ratio is the fair measure here. ") +
      (h.runtime === "Node"
        ? "The profile of the Node session server under load is below; `writev` is the socket writes both " +
          "servers make."
        : "The harness profiles only Node's server; Deno and Bun run the same app code.");
  }
  return undefined;
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

/** Renders RESULTS.md. */
export function render(run: Run): string {
  const out: string[] = [];
  const m = run.machine;
  out.push("# Benchmarks", "");
  out.push(
    `Generated by \`npm run bench\` (\`bench/run.ts\`) on ${run.date}, in ${
      fmt(run.seconds / 60, 1)
    } minutes. ` +
      `Settings: ${run.settings}.`,
    "",
    `Machine: ${m.cpu}, ${m.cores} cores, ${fmt(m.memoryGiB, 0)} GiB, ${m.os}; Node ${m.node}. ` +
      `Load average at start ${m.load[0].map((n) => fmt(n, 2)).join(" / ")}, at end ${
        m.load[1].map((n) => fmt(n, 2)).join(" / ")
      }.`,
    "",
    "**Read the ratios, not the absolute numbers.** This machine has 2 cores and may run other jobs " +
      "at the same time, so absolute throughput moves from run to run. " +
      "Every figure here comes from one process and one run; each library's scenarios are interleaved with the " +
      "others' over several rounds and the best round is kept, so a burst of outside load hits one round of " +
      "one library, not a whole column.",
    "",
    "Every library is used through its documented public API on Web `Request`s built the same way for all " +
      "(the harness builds the `Request` and reads the `Set-Cookie` headers; bodies are not read). " +
      "websession runs from its TypeScript sources through tsx (which keeps function names with small " +
      "`__name` wrappers, about 1-2% of a request in the profiles); the other libraries run their published " +
      "JavaScript. " +
      "Cookie bytes are the session cookies the browser holds after the request (`name=value; ...`); writes are " +
      "server-side store writes per request (`-` where the session lives only in the cookie).",
    "",
  );

  out.push("## Targets", "");
  out.push(
    table(
      ["Target", "Measured", "Goal", "Status"],
      run.targets.map((
        t,
      ) => [t.text, t.measured, t.goal, t.met === undefined ? "n/a" : t.met ? "met" : "**missed**"]),
    ),
    "",
  );

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

  if (run.http) {
    out.push("## Real HTTP on loopback", "");
    out.push(
      "autocannon (in the benchmark process) against a server process; 16 connections, each a returning visitor " +
        "with its own valid cookie (load, +1, save). Each runtime's bare and session servers alternate; the best " +
        "run of each is kept. The bare server is the same server with a handler that returns the same body.",
      "",
    );
    out.push(
      table(
        [
          "Runtime",
          "Version",
          "bare req/s",
          "session req/s",
          "session / bare",
          "server CPU µs/req, bare",
          "server CPU µs/req, session",
          "CPU bare / session",
          "p99 ms bare / session",
          "errors / non-2xx",
        ],
        run.http.map((h) => [
          h.runtime,
          h.version,
          h.bare ? fmt(h.bare.rps) : "-",
          h.session ? fmt(h.session.rps) : "-",
          h.bare && h.session ? `${fmt((100 * h.session.rps) / h.bare.rps, 0)}%` : h.error ?? "-",
          h.bare ? fmt(h.bare.cpuUs, 1) : "-",
          h.session ? fmt(h.session.cpuUs, 1) : "-",
          h.bare && h.session ? `${fmt((100 * h.bare.cpuUs) / h.session.cpuUs, 0)}%` : "-",
          h.bare && h.session ? `${fmt(h.bare.p99Ms, 0)} / ${fmt(h.session.p99Ms, 0)}` : "-",
          `${(h.bare?.errors ?? 0) + (h.session?.errors ?? 0)} / ${
            (h.bare?.non2xx ?? 0) + (h.session?.non2xx ?? 0)
          }`,
        ]),
      ),
      "",
    );
    out.push(
      "Server CPU is the server process's user + system time over the measured run (`/proc`), divided by the " +
        "requests it answered: unlike req/s it does not depend on whether the load generator, which shares the 2 " +
        "cores, kept up. When the bare server is faster than autocannon can drive it (Deno and Bun usually are), " +
        "its req/s is the generator's ceiling and `session / bare` overstates the session's share; the CPU column " +
        "shows the cost itself.",
      "",
    );
  }

  if (run.contention) {
    out.push("## Contention: 50 concurrent writers on one session", "");
    out.push(
      "Each round creates a session and fires 50 concurrent increments at it; `lost` counts successful increments " +
        "missing from the final value. The same 50 writers on 50 different sessions (same load, no contention) " +
        "and one writer at a time are the baselines. Latency is from building the Request to the response.",
      "",
    );
    out.push(
      table(
        [
          "Store",
          "Policy",
          "requests",
          "200",
          "409",
          "lost",
          "saves / req",
          "p50 ms",
          "p99 ms",
          "max ms",
          "spread p99 ms",
          "alone p99 ms",
          "p99 / spread p99",
        ],
        run.contention.map((row) => [
          row.store,
          row.policy,
          fmt(row.rounds * row.writers),
          fmt(row.ok),
          fmt(row.conflicts),
          fmt(row.lost),
          fmt(row.savesPerRequest, 2),
          fmt(row.contended.p50, 2),
          fmt(row.contended.p99, 2),
          fmt(row.contended.max, 2),
          fmt(row.spread.p99, 2),
          fmt(row.alone.p99, 2),
          ratio(row.contended.p99 / row.spread.p99),
        ]),
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
        `${fmt(rel.seconds, 0)} s), through withSession with plain Requests on the real stores:`,
      "",
      ...rel.lines.map((line) => `- ${line}`),
      "",
      "The attack checklist (`tests/security_test.ts`), the fuzz suite (`tests/fuzz_test.ts`, `npm run fuzz` for " +
        "100,000 cases) and the Redis/PostgreSQL outage tests (`tests/faults/`) run in `npm test`.",
      "",
    );
  }

  out.push("## Versions", "");
  out.push(table(["Package", "Version"], run.versions), "");
  return out.join("\n");
}
