// bench/RESULTS.md from the figures of one run of bench/run.ts: the targets, then one section per
// part. Every table goes through `table`, every "median [min–max]" through `sp`.
import { cpus, release, totalmem, type } from "node:os";
import type { ContentionRow, Load } from "./contention.ts";
import { IN_FLIGHT } from "./contention.ts";
import {
  addedOf,
  type Alloc,
  floorPoints,
  median,
  PEERS,
  ratioOf,
  type RuntimeCpu,
  type Scenario,
  SCENARIOS,
  type Spread,
  spreadOf,
  versionOf,
} from "./measure.ts";
import type { ProfileFigures } from "./profile.ts";

/** Node HTTP at a fixed rate: server CPU µs per request, one figure per set and mode. */
export interface HttpFigures {
  rate: number;
  modes: string[];
  cpu: Record<string, number[]>;
  achieved: Record<string, number[]>;
}

/** Everything a run measured. */
export interface Results {
  quick: boolean;
  sets: number;
  settings: typeof import("./run.ts").SETTINGS;
  parts: string[];
  command: string;
  commit: string;
  subject: string;
  /** Load average at the start and at the end. */
  load: number[][];
  minutes: number;
  cpu: Map<string, RuntimeCpu>;
  alloc?: Alloc;
  http?: HttpFigures;
  contention: ContentionRow[];
  profiles: Map<string, ProfileFigures>;
  /** Part, seconds, load at start, at end. */
  phases: string[][];
}

export interface Target {
  text: string;
  measured: string;
  goal: string;
  met: boolean;
  value: number;
}

const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "-");
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "-");
const f0 = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : "-");
const pc = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(0)}%` : "-");
/** "median [min–max]" of a spread. */
const sp = (s: Spread, fmt: (x: number) => string, unit = "") =>
  s.perSet.length === 0 ? "-" : `${fmt(s.median)}${unit} [${fmt(s.min)}–${fmt(s.max)}]`;
/** The spread's width in percentage points. */
const pts = (s: Spread) => (s.perSet.length === 0 ? NaN : 100 * (s.max - s.min));
const table = (head: string[], rows: string[][]) =>
  [head, head.map(() => "---"), ...rows].map((r) => `| ${r.join(" | ")} |`).join("\n");
const LABEL: Record<string, string> = { read: "read-only", returning: "returning visitor" };
/** The two scenarios that have targets, with each target's goal for them. */
const goals = <T>(read: T, returning: T) =>
  [["read", read], ["returning", returning]] as Array<[Scenario, T]>;

/** Bytes per request: median and range of a subject's batches. */
function bytes(
  alloc: Alloc,
  subject: string,
  scenario: Scenario,
): { median: number; min: number; max: number } {
  const v = (alloc.bytes[subject]?.[scenario] ?? []).filter(Number.isFinite);
  return { median: median(v), min: v.length ? Math.min(...v) : NaN, max: v.length ? Math.max(...v) : NaN };
}

/** The targets of the issue, from what was measured. */
export function targets(r: Results): Target[] {
  const list: Target[] = [];
  const add = (text: string, measured: string, goal: string, met: boolean, value: number) =>
    list.push({ text, measured, goal, met, value });
  const node = r.cpu.get("Node");
  if (node) {
    for (const [sc, goal] of goals(0.8, 0.75)) {
      const ratio = ratioOf(node, "websession", sc);
      const floor = floorPoints(node, sc);
      const bb = pts(ratioOf(node, "bare (second process)", sc));
      const label = `Node in-process, ${LABEL[sc]}`;
      add(
        `${label}: CPU per request, bare / websession`,
        sp(ratio, pc),
        `>= ${goal * 100}%`,
        ratio.median >= goal,
        ratio.median,
      );
      add(
        `${label}: points below the floor (bare/floor - bare/websession)`,
        sp(floor, f1, " pts"),
        "<= 8 pts",
        floor.median <= 8,
        floor.median,
      );
      add(
        `${label}: spread of bare / websession over ${r.sets} process sets (bare vs bare: ${f1(bb)} pts)`,
        `${f1(pts(ratio))} pts`,
        "<= 10 pts and <= bare vs bare",
        pts(ratio) <= 10 && pts(ratio) <= bb,
        pts(ratio),
      );
    }
  }
  if (r.http) {
    const ratio = httpRatio(r.http, "websession");
    add(
      `Node HTTP at ${r.http.rate} req/s, returning visitor: server CPU per request, bare / websession`,
      sp(ratio, pc),
      ">= 90%",
      ratio.median >= 0.9,
      ratio.median,
    );
  }
  for (const rt of ["Deno", "Bun", "workerd"]) {
    const c = r.cpu.get(rt);
    for (const [sc, goal] of c ? goals(2, 3) : []) {
      if (rt === "workerd" && sc === "read") continue;
      const a = addedOf(c!, "websession", sc);
      add(
        `${rt} in-process, ${LABEL[sc]}: CPU added over the bare handler`,
        sp(a, f1, " µs"),
        `<= ${goal} µs`,
        a.median <= goal,
        a.median,
      );
    }
  }
  for (const [sc, goal] of r.alloc ? goals(1.5, 2.5) : []) {
    const [b, w] = [bytes(r.alloc!, "bare", sc), bytes(r.alloc!, "websession", sc)];
    const over = (w.median - b.median) / 1024;
    add(
      `Node in-process, ${LABEL[sc]}: bytes allocated per request over the bare handler`,
      `${f2(over)} KB (${f0(b.median)} -> ${f0(w.median)} B; websession batches ${f0(w.min)}–${f0(w.max)})`,
      `<= ${goal} KB`,
      over <= goal,
      over,
    );
  }
  for (const row of r.contention) {
    if (row.processes !== 1) continue;
    const what = `${IN_FLIGHT} in flight on one session, ${row.store}`;
    if (row.error || !row.websession || !row.lock) {
      // A store the run did not reach is a target not shown to be met, not one left out.
      add(
        `${what}: GET and POST against the lock`,
        `error: ${row.error ?? "no figures"}`,
        "measured",
        false,
        NaN,
      );
      continue;
    }
    const [w, l] = [row.websession, row.lock];
    const [get, post] = [w.get.p99 / l.get.p99, w.post.p99 / l.post.p99];
    add(
      `${what}: GET refused, handler runs/request, p99 vs lock`,
      `${w.get.refused} of ${w.get.requests}, ${f2(w.get.runs)}, ${f2(get)}x`,
      "0, <= 1.2, <= 1.5x",
      w.get.refused === 0 && w.get.runs <= 1.2 && get <= 1.5,
      get,
    );
    add(
      `${what}: POST get+set refused, p99 vs lock`,
      `${pc(w.post.refused / w.post.requests)} (${w.post.refused} of ${w.post.requests}), ${f2(post)}x`,
      "<= 1%, <= 1.5x",
      w.post.refused / w.post.requests <= 0.01 && post <= 1.5,
      post,
    );
  }
  return list;
}

/** bare / mode per set. */
const httpRatio = (h: HttpFigures, mode: string) =>
  spreadOf((h.cpu[mode] ?? []).map((us, i) => h.cpu.bare![i]! / us));

function cpuSection(rt: string, c: RuntimeCpu, S: Results["settings"]): string[] {
  const md = [`## ${rt}${rt === "workerd" ? " (Miniflare)" : ""}: CPU per request in-process`];
  if (rt === "workerd") {
    md.push(
      `CPU of every workerd thread (\`/proc/<pid>/task/*/schedstat\`) around a batch that the Worker runs inside its isolate (inside a Worker the clocks stand still while code runs); the three subjects share one isolate. ${S.wRounds} rounds of ~${S.wBatch} ms batches per set, ${S.wSets} sets (a fresh Miniflare each).`,
    );
  }
  const rows: string[][] = [];
  for (const sc of SCENARIOS) {
    for (const subject of Object.keys(c.batches)) {
      const batches = c.batches[subject]?.[sc];
      if (!batches) continue;
      const own = spreadOf(
        [...new Set(batches.map((b) => b.set))].map((set) =>
          median(batches.filter((b) => b.set === set).map((b) => b.cpuUs))
        ),
      );
      const bare = subject === "bare";
      const ratio = ratioOf(c, subject, sc);
      rows.push([
        sc,
        (PEERS as readonly string[]).includes(subject) ? `${subject} (peer)` : subject,
        sp(own, f1),
        bare ? "" : sp(ratio, pc),
        bare ? "" : f1(pts(ratio)),
        bare ? "" : sp(addedOf(c, subject, sc), f1),
        subject === "websession" ? sp(floorPoints(c, sc), f1) : "",
      ]);
    }
  }
  const head = [
    "Scenario",
    "Subject",
    "CPU µs / request",
    "bare / subject",
    "spread (pts)",
    "added over bare (µs)",
  ];
  md.push(table([...head, "pts below the floor"], rows));
  if (Object.keys(c.errors).length > 0) {
    md.push(`Errors: ${Object.entries(c.errors).map(([k, v]) => `${k}: ${v}`).join("; ")}`);
  }
  return md;
}

function contentionRow(row: ContentionRow): string[] {
  if (row.error || !row.websession) {
    return [row.store, String(row.processes), `error: ${row.error}`, ...Array(7).fill("")];
  }
  const [w, l] = [row.websession, row.lock];
  const cell = (x: Load) => `${x.refused} / ${x.requests}${x.errors ? ` (+${x.errors} errors)` : ""}`;
  const p99 = (m: "get" | "post") =>
    `${f1(w[m].p99)}${l ? ` / ${f1(l[m].p99)} = ${f2(w[m].p99 / l[m].p99)}x` : ""}`;
  return [
    row.store,
    String(row.processes),
    cell(w.get),
    f2(w.get.runs),
    String(w.get.lost),
    p99("get"),
    `${cell(w.post)} (${pc(w.post.refused / w.post.requests)})`,
    String(w.post.lost),
    p99("post"),
    `${f1(w.get.p50)} / ${f1(w.post.p50)}`,
  ];
}

/** The document. */
export function render(r: Results, list: Target[]): string {
  const S = r.settings;
  const date = new Date().toISOString().replace("T", " ").slice(0, 16) + " UTC";
  const loads = r.load.map((l) => l.map((x) => x.toFixed(2)).join(" / "));
  const md: string[] = [
    `# Benchmarks`,
    `Generated by \`${r.command}\` (\`bench/run.ts\`) on ${date}, in ${
      r.minutes.toFixed(1)
    } minutes, measuring ${
      /^[0-9a-f]{40}$/.test(r.commit) ? `commit \`${r.commit.slice(0, 7)}\`` : `\`${r.commit}\``
    } (${
      r.subject.length > 100 ? `${r.subject.slice(0, 100)}…` : r.subject
    }) **as built** by the repository's build script (\`dist/\`, plain JavaScript loaded without a loader on Node, Deno and Bun, through the package's public entry points; bundled with esbuild for workerd).${
      r.quick ? " **A quick run (BENCH_QUICK): a smoke test, not figures to read.**" : ""
    }`,
    `Machine: ${cpus()[0]?.model ?? "?"}, ${cpus().length} cores, ${
      (totalmem() / 2 ** 30).toFixed(0)
    } GiB, ${type()} ${release()}; Node ${versionOf("Node")}, Deno ${versionOf("Deno")}, Bun ${
      versionOf("Bun")
    }, Miniflare ${r.cpu.get("workerd")?.version ?? "-"}. Load average at start ${loads[0]}, at end ${
      loads[1]
    }. The machine is shared with other engineers' test runs.`,
    `**How to read the figures.** In-process figures are the median over ${r.sets} process sets (each a fresh process per subject) of each set's median over ${S.rounds} rounds; within a round each subject runs one batch of about ${S.batchMs} ms, the order rotated, and a ratio pairs a subject's batch with the bare handler's batch of the same round. Brackets give the min–max over the process sets. *bare vs bare* is a second, identical bare process measured the same way: its spread is the machine's, and a spread no larger than it is as steady as this machine allows. *The floor* (\`bench/floor.mjs\`) does the same observable work as websession's MemoryStore path (verified-cookie cache hit, in-memory load with a version, \`Vary: Cookie\`, compare-and-set save) and nothing else; "points below the floor" is bare/floor − bare/websession in percentage points, paired by round. *Peers* (Node) run the same scenarios through their documented APIs (\`bench/subjects.mjs\`), measured in the same rounds.`,
    `## Targets`,
    table(
      ["Target", "Measured: median [min–max over sets]", "Goal", "Status"],
      list.map((t) => [t.text, t.measured, t.goal, t.met ? "met" : "**missed**"]),
    ),
  ];
  for (const [rt, c] of r.cpu) md.push(...cpuSection(rt, c, S));
  md.push(
    `Scenarios: **read**: read-only (valid cookie, get, Response); **returning**: returning visitor (valid cookie, update, compare-and-set save); **new**: new visitor / login (no cookie, update, save, Set-Cookie on a copy of the Response).`,
  );

  const alloc = r.alloc;
  const over = (a: string, b: string, sc: Scenario) =>
    bytes(alloc!, a, sc).median - bytes(alloc!, b, sc).median;
  if (alloc) {
    md.push(
      `## Node: bytes allocated per request`,
      `Node 20's \`v8.getHeapStatistics()\` has no allocation counter (no \`total_allocated_bytes\`; checked on v${
        versionOf("Node")
      }), so: a forced full GC, then a batch of up to 2,000 requests inside a 256 MiB young generation, and the growth of every heap space but code space plus ArrayBuffer backing stores; a batch during which any collection ran is dropped (${alloc.dropped} dropped). Calibration on a known allocation: ${
        alloc.calibration
          ? `${f0(alloc.calibration.bytes)} bytes measured for ${alloc.calibration.expected} expected`
          : "-"
      }. ${S.alloc} batches per subject and scenario, median [min–max].`,
      table(
        ["Scenario", "Subject", "bytes / request", "over bare"],
        SCENARIOS.flatMap((sc) =>
          Object.keys(alloc.bytes).map((subject) => {
            const b = bytes(alloc, subject, sc);
            return [
              sc,
              subject,
              `${f0(b.median)} [${f0(b.min)}–${f0(b.max)}]`,
              subject === "bare" ? "" : f0(over(subject, "bare", sc)),
            ];
          })
        ),
      ),
    );
  }

  const node = r.cpu.get("Node");
  if (node) {
    const floorCopy = addedOf(node, "floor", "new", "floor, cookie in place");
    const lines = [
      `- Node, the copy alone (\`new Response(body, response)\` + Set-Cookie, Vary, Cache-Control on the copy, against the bare handler's Response): +${
        sp(addedOf(node, "bare + copy", "new"), f1, " µs")
      } CPU per request${alloc ? `, +${f0(over("bare + copy", "bare", "new"))} bytes` : ""}.`,
      `- Node, within a new-visitor flow (floor with the copy vs the same floor adding the cookie on the handler's own Response): ${
        sp(floorCopy, f1, " µs")
      }${alloc ? `, ${f0(over("floor", "floor, cookie in place", "new"))} bytes` : ""}.`,
      ...["Deno", "Bun"].filter((rt) => r.cpu.has(rt)).map((rt) =>
        `- ${rt}, the copy alone: +${
          sp(addedOf(r.cpu.get(rt)!, "bare + copy", "new"), f1, " µs")
        } CPU per request.`
      ),
      `- Only requests that set a cookie pay it (new visitor, login, regenerate, destroy, a persistent cookie's refresh); read-only and returning requests add \`Vary\` in place. Against the new visitor's whole cost (websession ${
        sp(addedOf(node, "websession", "new"), f1, " µs")
      } over bare, mostly Web Crypto's thread-pool hop for the signature and the storage key), the copy is a small share.`,
    ];
    md.push(`## The copy rule: \`Set-Cookie\` on a copy of the handler's Response`, lines.join("\n"));
  }

  const h = r.http;
  if (h) {
    md.push(
      `## Node HTTP at a fixed rate: server CPU per request, returning visitor`,
      `node:http with the same small fetch adapter for every server (\`bench/server.mjs\`), autocannon at ${h.rate} req/s over 16 connections, ${S.httpRounds} rounds of ${S.httpSec} s per server per set, ${r.sets} sets of fresh server processes, the servers' order rotated; server CPU from the server's own \`process.cpuUsage()\` around each round. A server that cannot keep up still gives its CPU per request.`,
      table(
        ["Server", "µs CPU / request", "bare / server", "added µs / request", "achieved req/s"],
        h.modes.map((mode) => [
          (PEERS as readonly string[]).includes(mode) ? `${mode} (peer)` : mode,
          sp(spreadOf(h.cpu[mode] ?? []), f1),
          mode === "bare" ? "" : sp(httpRatio(h, mode), pc),
          mode === "bare" ? "" : sp(spreadOf((h.cpu[mode] ?? []).map((us, i) => us - h.cpu.bare![i]!)), f1),
          f0(median(h.achieved[mode] ?? [])),
        ]),
      ),
    );
  }

  if (r.contention.length > 0) {
    md.push(
      `## Contention: ${IN_FLIGHT} requests in flight on one session`,
      `Each round creates a session, then fires ${IN_FLIGHT} concurrent requests at it; up to ${S.cRounds} rounds per store and load (fewer once ${
        S.cBudget / 1000
      } s are spent, 3 at least; where rounds are quick, more while a quarter of that budget lasts, up to 150, so that a p99 of a millisecond is the workload's and not one garbage collection's), after 3 unmeasured rounds per subject (quick ones for 0.5 s, up to 100), websession's and the lock's rounds alternating. **GET**: the README's first example (\`update("visits", n => n + 1)\`), safe to re-run. **POST**: \`set("visits", get("visits") + 1)\`, an observed key on a request that may not be re-run, so a lost compare-and-set must be refused. **lock**: \`bench/lock_subject.mjs\`, a per-session lock taken before loading (CherryPy's implicit locking) over the same store object. *runs/req* counts handler runs per request, *lost* acknowledged increments missing at the end. Latency from building the Request to reading the body, ms. Where they run: in the benchmark's Node process for the stores Node reaches; **DenoKvStore** in a Deno process (\`bench/contention_deno.mjs\`, a Deno KV database in a temporary file), both subjects in process as on Node; **DurableObjectStore** in a Worker in Miniflare (\`bench/contention_worker.mjs\`, one isolate, each session in its \`SessionDurableObject\`), each of a round's ${IN_FLIGHT} requests a separate \`dispatchFetch\` from Node into the Worker (never a loop inside one request), timed on the Node side around \`dispatchFetch\` and reading the body, so its figures include Miniflare's loopback hop. There the lock subject serves from the same Worker over the same store object, so its per-session lock lives in the isolate's memory: within one isolate that is what a lock can do (it does not reach a second isolate, as the lock does not reach a second process).`,
      table(
        [
          "Store",
          "processes",
          "GET refused",
          "GET runs/req",
          "GET lost",
          "GET p99 ms: websession / lock",
          "POST refused",
          "POST lost",
          "POST p99 ms: websession / lock",
          "p50 ms GET / POST",
        ],
        r.contention.map(contentionRow),
      ),
    );
  }

  for (const [scenario, p] of r.profiles) {
    md.push(
      `## Profile: ${scenario} visitor on the built package (\`node --cpu-prof\`)`,
      `\`node --cpu-prof --cpu-prof-interval 200 bench/child.mjs websession\`, batches of the ${scenario} visitor for ${S.profMs} ms: ${
        p.requests.toLocaleString("en-US")
      } requests in ${p.seconds.toFixed(1)} s (${
        f1(p.usPerRequest)
      } µs of sampled time per request, harness loop and warm-up included).`,
      `Self time by area: ${p.areas.map((a) => `${a.name} ${a.percent.toFixed(1)}%`).join("; ")}.`,
      table(
        ["websession function (dist path)", "inclusive %", "self %", "inclusive µs / request"],
        p.functions.slice(0, 24).map((
          fn,
        ) => [`\`${fn.name}\``, f1(fn.total), f1(fn.self), f2((fn.total / 100) * p.usPerRequest)]),
      ),
      `Top self time: ${p.topSelf.map((t) => `\`${t.name}\` ${t.percent.toFixed(1)}%`).join("; ")}.`,
    );
  }

  md.push(
    `## Run`,
    table(["Part", "seconds", "load (1 min) at start", "at end"], r.phases),
    `Commands: \`npm run build\` (the build itself; the run builds the measured commit in a copy of its own with the same script), \`npm run bench\` (this file; \`BENCH_SETS\`, \`BENCH_RATE\`, \`BENCH_SOURCE\`, \`--only=\`/\`--skip=\` parts ${
      r.parts.join(",")
    }, \`--dist=<dir>\` to measure a \`dist/\` already built), \`npm run bench:quick\` (every part at low precision, to .tmp/RESULTS.quick.md).`,
  );
  return md.join("\n\n") + "\n";
}
