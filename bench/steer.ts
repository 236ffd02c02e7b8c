// The default `npm run bench`: figures one can steer by, on the BUILT package (dist/ of one
// commit, built by the repository's own build script; see bench/dist.ts), never TypeScript
// through a loader.
//
// - In-process CPU per request on Node, Deno and Bun (bench/steer_cost.ts), and on workerd through
//   Miniflare (bench/steer_workerd.ts): the bare handler, a second bare process (bare vs bare:
//   the machine's own spread), the floor (bench/floor.mjs: the least code doing the same
//   observable work), websession, and two subjects that price the copy rule (`bare + copy`,
//   `floor, cookie in place`). Every figure is the median over >= 5 process sets of each set's
//   median of paired rounds, with the min–max over the sets.
// - Bytes allocated per request (Node): heap growth over large batches with no GC inside.
// - Node HTTP at a fixed rate: server CPU per request, returning visitor vs bare, fresh server
//   processes per set.
// - Contention: 30 in flight on one session per store, websession vs a plain per-session lock
//   (bench/lock_subject.mjs), one process, and 3 processes sharing Redis / PostgreSQL.
// - A CPU profile (`node --cpu-prof`) of the returning visitor on the built package.
//
// Writes bench/RESULTS.md and bench/RESULTS.json (or --out=<file.md>).
// Environment: BENCH_SOURCE=<rev> (default HEAD: the commit measured), BENCH_QUICK=1 (a smoke run),
// BENCH_SETS=<n> (process sets, default 5), BENCH_RATE=<req/s> (default 2000).
// Flags: --only=<parts> / --skip=<parts>, parts: node,deno,bun,workerd,alloc,http,contention,profile.
import { execFile, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { cpus, loadavg, release, tmpdir, totalmem, type } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { buildRevision } from "./dist.ts";
import { ROOT, versionOf } from "./runtimes.ts";
import {
  type Alloc,
  median,
  pairedSpread,
  runAlloc,
  runCpu,
  type RuntimeCpu,
  type Scenario,
  type Spread,
  spreadOf,
  tripleSpread,
} from "./steer_cost.ts";
import { runWorkerd } from "./steer_workerd.ts";
import { type ContentionRow, IN_FLIGHT, type Load, runSteerContention } from "./steer_contention.ts";
import { type ProfileFigures, summarizeDir } from "./steer_profile_summary.ts";

const args = process.argv.slice(2);
const quick = args.includes("--quick") || process.env.BENCH_QUICK === "1";
const ALL = ["node", "deno", "bun", "workerd", "alloc", "http", "contention", "profile"];
const only = args.find((a) => a.startsWith("--only="))?.slice(7).split(",");
const skip = new Set(args.find((a) => a.startsWith("--skip="))?.slice(7).split(",") ?? []);
const parts = new Set((only ?? ALL).filter((p) => !skip.has(p)));
const outArg = args.find((a) => a.startsWith("--out="))?.slice(6);
const out = outArg
  ? resolve(outArg)
  : quick
  ? join(ROOT, ".tmp", "RESULTS.quick.md")
  : join(ROOT, "bench", "RESULTS.md");
const sets = Number(process.env.BENCH_SETS ?? (quick ? 2 : 5));
const rate = Number(process.env.BENCH_RATE ?? 2000);
const S = quick
  ? {
    rounds: 3,
    batchMs: 20,
    warmMs: 150,
    alloc: 2,
    wSets: 1,
    wRounds: 2,
    wBatch: 80,
    httpSec: 1,
    httpRounds: 1,
    cRounds: 3,
    cBudget: 1000,
    mRounds: 2,
    profMs: 1500,
  }
  : {
    rounds: 5,
    batchMs: 30,
    warmMs: 300,
    alloc: 5,
    wSets: sets,
    wRounds: 3,
    wBatch: 150,
    httpSec: 2,
    httpRounds: 2,
    cRounds: 10,
    cBudget: 4000,
    mRounds: 5,
    profMs: 4000,
  };

const started = performance.now();
const log = (line: string) =>
  console.log(`[${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`);

interface HttpFigures {
  /** Per set: server CPU µs per request, bare and returning, median of the set's rounds. */
  bare: number[];
  returning: number[];
  ratio: Spread;
  added: Spread;
  achieved: number[];
}

async function runHttp(dist: string): Promise<HttpFigures> {
  const autocannon = createRequire(import.meta.url)("autocannon") as (
    o: object,
  ) => Promise<{ requests: { total: number }; non2xx: number }>;
  const start = async (mode: string) => {
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const child = spawn(process.execPath, ["bench/steer_server.mjs"], {
      cwd: ROOT,
      env: { ...process.env, MODE: mode, PORT: String(port), DIST_DIR: dist },
      stdio: ["ignore", "pipe", "inherit"],
    });
    await new Promise<void>((r) =>
      child.stdout!.on("data", (c: Buffer) => c.toString().includes("ready") && r())
    );
    return { child, url: `http://127.0.0.1:${port}/` };
  };
  const cpuOf = async (url: string) => Number(await (await fetch(`${url}__cpu`)).text());
  const result: HttpFigures = {
    bare: [],
    returning: [],
    ratio: spreadOf([]),
    added: spreadOf([]),
    achieved: [],
  };
  const ratios: number[] = [];
  const added: number[] = [];
  for (let set = 1; set <= sets; set++) {
    log(`  HTTP set ${set}/${sets}`);
    const servers = { bare: await start("bare"), returning: await start("returning") };
    try {
      const cookies: string[] = [];
      for (let i = 0; i < 16; i++) {
        const r = await fetch(servers.returning.url);
        await r.arrayBuffer();
        cookies.push(r.headers.getSetCookie()[0]!.split(";")[0]!);
      }
      const load = async (url: string, seconds: number, fixed: boolean) => {
        let next = 0;
        return await autocannon({
          url,
          connections: 16,
          duration: seconds,
          ...(fixed ? { overallRate: rate } : {}),
          setupClient: (c: { setHeaders(h: object): void }) => c.setHeaders({ cookie: cookies[next++ % 16] }),
        });
      };
      for (const s of Object.values(servers)) await load(s.url, 1, false); // warm-up
      const per: Record<"bare" | "returning", number[]> = { bare: [], returning: [] };
      for (let round = 0; round < S.httpRounds; round++) {
        const order = (round + set) % 2 ? (["bare", "returning"] as const) : (["returning", "bare"] as const);
        for (const mode of order) {
          const before = await cpuOf(servers[mode].url);
          const r = await load(servers[mode].url, S.httpSec, true);
          const after = await cpuOf(servers[mode].url);
          if (r.non2xx > 0) throw new Error(`${mode}: ${r.non2xx} non-2xx answers`);
          per[mode].push((after - before) / r.requests.total);
          if (mode === "returning") result.achieved.push(r.requests.total / S.httpSec);
        }
      }
      const b = median(per.bare);
      const w = median(per.returning);
      result.bare.push(b);
      result.returning.push(w);
      ratios.push(b / w);
      added.push(w - b);
    } finally {
      for (const s of Object.values(servers)) s.child.kill("SIGTERM");
    }
  }
  result.ratio = spreadOf(ratios);
  result.added = spreadOf(added);
  return result;
}

async function runProfile(dist: string, scenario: string): Promise<ProfileFigures> {
  const dir = await mkdtemp(join(tmpdir(), "websession-prof-"));
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [
      "--cpu-prof",
      `--cpu-prof-dir=${dir}`,
      "--cpu-prof-interval",
      "200",
      "bench/steer_profile.mjs",
      String(S.profMs),
      scenario,
    ], { cwd: ROOT, env: { ...process.env, DIST_DIR: dist } });
    const requests = JSON.parse(stdout.trim().split("\n").at(-1)!).requests as number;
    return await summarizeDir(dir, requests);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// ---------- rendering ----------
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "-");
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "-");
const pc = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(0)}%` : "-");
const sp = (s: Spread, fmt: (x: number) => string, unit = "") =>
  s.perSet.length === 0 ? "-" : `${fmt(s.median)}${unit} [${fmt(s.min)}–${fmt(s.max)}]`;
const pts = (s: Spread) => (s.perSet.length === 0 ? NaN : 100 * (s.max - s.min));
const table = (head: string[], rows: string[][]) =>
  [
    `| ${head.join(" | ")} |`,
    `| ${head.map(() => "---").join(" | ")} |`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");

interface Target {
  text: string;
  measured: string;
  goal: string;
  met: boolean | undefined;
  value: number;
}

async function main(): Promise<void> {
  const load0 = loadavg();
  log("building the package (dist/) of the commit measured");
  const built = await buildRevision();
  log(`  ${built.commit.slice(0, 7)} built in ${built.buildSeconds.toFixed(1)} s: ${built.dist}`);
  const cpu = new Map<string, RuntimeCpu & { version?: string }>();
  let alloc: Alloc | undefined;
  let http: HttpFigures | undefined;
  let contention: ContentionRow[] = [];
  const profiles = new Map<string, ProfileFigures>();
  const phases: string[][] = [];
  const part = async (name: string, body: () => Promise<void>) => {
    const t0 = performance.now();
    const l0 = loadavg()[0]!;
    try {
      await body();
    } catch (e) {
      log(`  ${name} failed: ${String((e as Error)?.stack ?? e).slice(0, 600)}`);
    }
    phases.push([
      name,
      ((performance.now() - t0) / 1000).toFixed(0),
      l0.toFixed(2),
      loadavg()[0]!.toFixed(2),
    ]);
  };
  for (const runtime of ["Node", "Deno", "Bun"] as const) {
    if (!parts.has(runtime.toLowerCase())) continue;
    await part(`${runtime} in-process CPU`, async () => {
      cpu.set(
        runtime,
        await runCpu({
          runtime,
          dist: built.dist,
          sets,
          rounds: S.rounds,
          batchMs: S.batchMs,
          warmMs: S.warmMs,
          log,
        }),
      );
    });
  }
  if (parts.has("workerd")) {
    await part("workerd in-process CPU", async () => {
      cpu.set(
        "workerd",
        await runWorkerd({ dist: built.dist, sets: S.wSets, rounds: S.wRounds, batchMs: S.wBatch, log }),
      );
    });
  }
  if (parts.has("alloc")) {
    await part("Node allocation", async () => {
      alloc = await runAlloc({ runtime: "Node", dist: built.dist, batches: S.alloc, warmMs: S.warmMs, log });
    });
  }
  if (parts.has("http")) {
    await part(`Node HTTP at ${rate} req/s`, async () => void (http = await runHttp(built.dist)));
  }
  if (parts.has("contention")) {
    await part("Contention", async () => {
      contention = await runSteerContention({
        dist: built.dist,
        rounds: S.cRounds,
        budgetMs: S.cBudget,
        multiRounds: S.mRounds,
        log,
      });
    });
  }
  if (parts.has("profile")) {
    await part("Profiles", async () => {
      for (const scenario of ["returning", "read"]) {
        log(`  profile: ${scenario}`);
        profiles.set(scenario, await runProfile(built.dist, scenario));
      }
    });
  }
  const load1 = loadavg();

  // ---------- figures and targets ----------
  const targets: Target[] = [];
  const ratio = (c: RuntimeCpu, s: string, ref: string, sc: Scenario) =>
    pairedSpread(c, s, ref, sc, (m, r) => r.cpuUs / m.cpuUs);
  const addedOf = (c: RuntimeCpu, s: string, ref: string, sc: Scenario) =>
    pairedSpread(c, s, ref, sc, (m, r) => m.cpuUs - r.cpuUs);
  const floorPts = (c: RuntimeCpu, sc: Scenario) =>
    tripleSpread(
      c,
      ["websession", "floor", "bare"],
      sc,
      (w, fl, b) => 100 * (b.cpuUs / fl.cpuUs - b.cpuUs / w.cpuUs),
    );
  const node = cpu.get("Node");
  const bareBare = (c: RuntimeCpu, sc: Scenario) => ratio(c, "bare (second process)", "bare", sc);
  if (node) {
    for (
      const [sc, goal, label] of [["read", 0.8, "read-only"], [
        "returning",
        0.75,
        "returning visitor",
      ]] as const
    ) {
      const r = ratio(node, "websession", "bare", sc);
      const fp = floorPts(node, sc);
      const bb = bareBare(node, sc);
      targets.push({
        text: `Node in-process, ${label}: CPU per request, bare / websession`,
        measured: sp(r, pc),
        goal: `>= ${goal * 100}%`,
        met: r.median >= goal,
        value: r.median,
      });
      targets.push({
        text: `Node in-process, ${label}: points below the floor (bare/floor - bare/websession)`,
        measured: sp(fp, f1, " pts"),
        goal: "<= 8 pts",
        met: fp.median <= 8,
        value: fp.median,
      });
      targets.push({
        text:
          `Node in-process, ${label}: spread of bare / websession over ${sets} process sets (bare vs bare: ${
            f1(pts(bb))
          } pts)`,
        measured: `${f1(pts(r))} pts`,
        goal: "<= 10 pts and <= bare vs bare",
        met: pts(r) <= 10 && pts(r) <= pts(bb),
        value: pts(r),
      });
    }
  }
  if (http) {
    targets.push({
      text: `Node HTTP at ${rate} req/s, returning visitor: server CPU per request, bare / websession`,
      measured: sp(http.ratio, pc),
      goal: ">= 90%",
      met: http.ratio.median >= 0.9,
      value: http.ratio.median,
    });
  }
  for (const rt of ["Deno", "Bun", "workerd"]) {
    const c = cpu.get(rt);
    if (!c) continue;
    for (
      const [sc, goal, label] of [["read", 2, "read-only"], ["returning", 3, "returning visitor"]] as const
    ) {
      if (rt === "workerd" && sc === "read") continue;
      const a = addedOf(c, "websession", "bare", sc);
      targets.push({
        text: `${rt} in-process, ${label}: CPU added over the bare handler`,
        measured: sp(a, f1, " µs"),
        goal: `<= ${goal} µs`,
        met: a.median <= goal,
        value: a.median,
      });
    }
  }
  const allocMed = (s: string, sc: Scenario) => median(alloc?.bytes[s]?.[sc] ?? []);
  const allocRange = (s: string, sc: Scenario) => {
    const v = (alloc?.bytes[s]?.[sc] ?? []).filter(Number.isFinite);
    return v.length ? [Math.min(...v), Math.max(...v)] : [NaN, NaN];
  };
  if (alloc) {
    for (
      const [sc, goal, label] of [["read", 1.5, "read-only"], [
        "returning",
        2.5,
        "returning visitor",
      ]] as const
    ) {
      const over = (allocMed("websession", sc) - allocMed("bare", sc)) / 1024;
      const [lo, hi] = allocRange("websession", sc);
      targets.push({
        text: `Node in-process, ${label}: bytes allocated per request over the bare handler`,
        measured: `${f2(over)} KB (${allocMed("bare", sc).toFixed(0)} -> ${
          allocMed("websession", sc).toFixed(0)
        } B; websession batches ${lo!.toFixed(0)}–${hi!.toFixed(0)})`,
        goal: `<= ${goal} KB`,
        met: over <= goal,
        value: over,
      });
    }
  }
  for (const row of contention) {
    if (row.error || !row.websession) continue;
    const w = row.websession;
    if (row.processes === 1 && row.lock) {
      const ratioGet = w.get.p99 / row.lock.get.p99;
      const ratioPost = w.post.p99 / row.lock.post.p99;
      targets.push({
        text:
          `${IN_FLIGHT} in flight on one session, ${row.store}: GET refused, handler runs/request, p99 vs lock`,
        measured: `${w.get.refused} of ${w.get.requests}, ${f2(w.get.runs)}, ${f2(ratioGet)}x`,
        goal: "0, <= 1.2, <= 1.5x",
        met: w.get.refused === 0 && w.get.runs <= 1.2 && ratioGet <= 1.5,
        value: ratioGet,
      });
      targets.push({
        text: `${IN_FLIGHT} in flight on one session, ${row.store}: POST get+set refused, p99 vs lock`,
        measured: `${pc(w.post.refused / w.post.requests)} (${w.post.refused} of ${w.post.requests}), ${
          f2(ratioPost)
        }x`,
        goal: "<= 1%, <= 1.5x",
        met: w.post.refused / w.post.requests <= 0.01 && ratioPost <= 1.5,
        value: ratioPost,
      });
    }
  }

  // ---------- the document ----------
  const date = new Date().toISOString().replace("T", " ").slice(0, 16) + " UTC";
  const command = ["npm run bench", args.length ? `-- ${args.join(" ")}` : ""].filter(Boolean).join(" ");
  const md: string[] = [];
  md.push(`# Benchmarks`);
  md.push(
    `Generated by \`${command}\` (\`bench/steer.ts\`) on ${date}, in ${
      ((performance.now() - started) / 60000).toFixed(1)
    } minutes, measuring commit \`${built.commit.slice(0, 7)}\` (${
      built.subject.length > 100 ? `${built.subject.slice(0, 100)}…` : built.subject
    }) **as built** by the repository's build script (\`dist/\`, plain JavaScript loaded without a loader on Node, Deno and Bun; bundled with esbuild for workerd).`,
  );
  md.push(
    `Machine: ${cpus()[0]?.model ?? "?"}, ${cpus().length} cores, ${
      (totalmem() / 2 ** 30).toFixed(0)
    } GiB, ${type()} ${release()}; Node ${process.version.slice(1)}, Deno ${versionOf("Deno")}, Bun ${
      versionOf("Bun")
    }, Miniflare ${cpu.get("workerd")?.version ?? "-"}. Load average at start ${
      load0.map((x) => x.toFixed(2)).join(" / ")
    }, at end ${
      load1.map((x) => x.toFixed(2)).join(" / ")
    }. The machine is shared with other engineers' test runs.`,
  );
  md.push(
    `**How to read the figures.** In-process figures are the median over ${sets} process sets (each a fresh process per subject) of each set's median over ${S.rounds} rounds; within a round each subject runs one batch of about ${S.batchMs} ms, the order rotated, and a ratio pairs a subject's batch with the bare handler's batch of the same round. Brackets give the min–max over the process sets. *bare vs bare* is a second, identical bare process measured the same way: its spread is the machine's, and a spread no larger than it is as steady as this machine allows. *The floor* (\`bench/floor.mjs\`) does the same observable work as websession's MemoryStore path (verified-cookie cache hit, in-memory load with a version, \`Vary: Cookie\`, compare-and-set save) and nothing else; "points below the floor" is bare/floor − bare/websession in percentage points, paired by round.`,
  );
  md.push(`## Targets`);
  md.push(table(
    ["Target", "Measured: median [min–max over sets]", "Goal", "Status"],
    targets.map((t) => [
      t.text,
      t.measured,
      t.goal,
      t.met === undefined ? "n/a" : t.met ? "met" : "**missed**",
    ]),
  ));

  const TITLES: Record<Scenario, string> = {
    read: "read-only (valid cookie, get, Response)",
    returning: "returning visitor (valid cookie, update, compare-and-set save)",
    new: "new visitor / login (no cookie, update, save, Set-Cookie on a copy of the Response)",
  };
  for (const [rt, c] of cpu) {
    md.push(`## ${rt}${rt === "workerd" ? " (Miniflare)" : ""}: CPU per request in-process`);
    if (rt === "workerd") {
      md.push(
        `CPU of every workerd thread (\`/proc/<pid>/task/*/schedstat\`) around a batch that the Worker runs inside its isolate (inside a Worker the clocks stand still while code runs); the three subjects share one isolate. ${S.wRounds} rounds of ~${S.wBatch} ms batches per set, ${S.wSets} sets (a fresh Miniflare each).`,
      );
    }
    const rows: string[][] = [];
    for (const sc of ["read", "returning", "new"] as const) {
      for (const subject of Object.keys(c.batches)) {
        if (!c.batches[subject]?.[sc]) continue;
        const own = spreadOf(
          [...new Set(c.batches[subject]![sc]!.map((b) => b.set))].map((set) =>
            median(c.batches[subject]![sc]!.filter((b) => b.set === set).map((b) => b.cpuUs))
          ),
        );
        const r = subject === "bare" ? undefined : ratio(c, subject, "bare", sc);
        const a = subject === "bare" ? undefined : addedOf(c, subject, "bare", sc);
        const vsFloor = subject === "websession" ? floorPts(c, sc) : undefined;
        rows.push([
          sc,
          subject,
          sp(own, f1),
          r ? sp(r, pc) : "",
          r ? `${f1(pts(r))}` : "",
          a ? sp(a, f1) : "",
          vsFloor ? sp(vsFloor, f1) : "",
        ]);
      }
    }
    md.push(
      table([
        "Scenario",
        "Subject",
        "CPU µs / request",
        "bare / subject",
        "spread (pts)",
        "added over bare (µs)",
        "pts below the floor",
      ], rows),
    );
    if (Object.keys(c.errors).length > 0) {
      md.push(`Errors: ${Object.entries(c.errors).map(([k, v]) => `${k}: ${v}`).join("; ")}`);
    }
  }
  md.push(`Scenarios: ${Object.entries(TITLES).map(([k, v]) => `**${k}**: ${v}`).join("; ")}.`);

  if (alloc) {
    md.push(`## Node: bytes allocated per request`);
    md.push(
      `Node 20's \`v8.getHeapStatistics()\` has no allocation counter (no \`total_allocated_bytes\`; checked on ${process.version}), so: a forced full GC, then a batch of up to 2,000 requests inside a 256 MiB young generation, and the growth of every heap space but code space plus ArrayBuffer backing stores; a batch during which any collection ran is dropped (${alloc.dropped} dropped). Calibration on a known allocation: ${
        alloc.calibration
          ? `${alloc.calibration.bytes.toFixed(0)} bytes measured for ${alloc.calibration.expected} expected`
          : "-"
      }. ${S.alloc} batches per subject and scenario, median [min–max].`,
    );
    const rows: string[][] = [];
    for (const sc of ["read", "returning", "new"] as const) {
      for (const subject of Object.keys(alloc.bytes)) {
        const [lo, hi] = allocRange(subject, sc);
        rows.push([
          sc,
          subject,
          `${allocMed(subject, sc).toFixed(0)} [${lo!.toFixed(0)}–${hi!.toFixed(0)}]`,
          subject === "bare" ? "" : (allocMed(subject, sc) - allocMed("bare", sc)).toFixed(0),
        ]);
      }
    }
    md.push(table(["Scenario", "Subject", "bytes / request", "over bare"], rows));
  }

  if (node) {
    md.push(`## The copy rule: \`Set-Cookie\` on a copy of the handler's Response`);
    const copyCpu = addedOf(node, "bare + copy", "bare", "new");
    const floorCopy = pairedSpread(
      node,
      "floor",
      "floor, cookie in place",
      "new",
      (m, r) => m.cpuUs - r.cpuUs,
    );
    const lines = [
      `- Node, the copy alone (\`new Response(body, response)\` + Set-Cookie, Vary, Cache-Control on the copy, against the bare handler's Response): +${
        sp(copyCpu, f1, " µs")
      } CPU per request` +
      (alloc ? `, +${(allocMed("bare + copy", "new") - allocMed("bare", "new")).toFixed(0)} bytes.` : "."),
      `- Node, within a new-visitor flow (floor with the copy vs the same floor adding the cookie on the handler's own Response): ${
        sp(floorCopy, f1, " µs")
      }` +
      (alloc
        ? `, ${(allocMed("floor", "new") - allocMed("floor, cookie in place", "new")).toFixed(0)} bytes.`
        : "."),
    ];
    for (const rt of ["Deno", "Bun"]) {
      const c = cpu.get(rt);
      if (c) {
        lines.push(
          `- ${rt}, the copy alone: +${
            sp(addedOf(c, "bare + copy", "bare", "new"), f1, " µs")
          } CPU per request.`,
        );
      }
    }
    lines.push(
      `- Only requests that set a cookie pay it (new visitor, login, regenerate, destroy, a persistent cookie's refresh); read-only and returning requests add \`Vary\` in place. Against the new visitor's whole cost (websession ${
        sp(addedOf(node, "websession", "bare", "new"), f1, " µs")
      } over bare, mostly Web Crypto's thread-pool hop for the signature and the storage key), the copy is a small share.`,
    );
    md.push(lines.join("\n"));
  }

  if (http) {
    md.push(`## Node HTTP at a fixed rate: server CPU per request, returning visitor`);
    md.push(
      `node:http with the same small fetch adapter for both (\`bench/steer_server.mjs\`), autocannon at ${rate} req/s over 16 connections, ${S.httpRounds} rounds of ${S.httpSec} s per server per set, ${sets} sets of fresh server processes; server CPU from the server's own \`process.cpuUsage()\` around each round. Achieved rate (returning): ${
        median(http.achieved).toFixed(0)
      } req/s.`,
    );
    md.push(table(["", "median [min–max over sets]"], [
      ["bare server, µs CPU / request", sp(spreadOf(http.bare), f1)],
      ["websession returning, µs CPU / request", sp(spreadOf(http.returning), f1)],
      ["bare / websession", sp(http.ratio, pc)],
      ["added µs / request", sp(http.added, f1)],
    ]));
  }

  if (contention.length > 0) {
    md.push(`## Contention: ${IN_FLIGHT} requests in flight on one session`);
    md.push(
      `Each round creates a session, then fires ${IN_FLIGHT} concurrent requests at it; up to ${S.cRounds} rounds per store and load (fewer once ${
        S.cBudget / 1000
      } s are spent, 3 at least). **GET**: the README's first example (\`update("visits", n => n + 1)\`), safe to re-run. **POST**: \`set("visits", get("visits") + 1)\`, an observed key on a request that may not be re-run, so a lost compare-and-set must be refused. **lock**: \`bench/lock_subject.mjs\`, a per-session lock taken before loading (CherryPy's implicit locking) over the same store object. *runs/req* counts handler runs per request, *lost* acknowledged increments missing at the end. Latency from building the Request to reading the body, ms. Deno KV and Durable Objects are not reached by this harness (it runs on Node; the DO and Deno KV stores are exercised by the test suites).`,
    );
    const rows: string[][] = [];
    for (const row of contention) {
      if (row.error || !row.websession) {
        rows.push([row.store, String(row.processes), `error: ${row.error}`, "", "", "", "", "", "", ""]);
        continue;
      }
      const w = row.websession;
      const l = row.lock;
      const cell = (x: Load) => `${x.refused} / ${x.requests}${x.errors ? ` (+${x.errors} errors)` : ""}`;
      rows.push([
        row.store,
        String(row.processes),
        cell(w.get),
        f2(w.get.runs),
        String(w.get.lost),
        `${f1(w.get.p99)}${l ? ` / ${f1(l.get.p99)} = ${f2(w.get.p99 / l.get.p99)}x` : ""}`,
        `${cell(w.post)} (${pc(w.post.refused / w.post.requests)})`,
        String(w.post.lost),
        `${f1(w.post.p99)}${l ? ` / ${f1(l.post.p99)} = ${f2(w.post.p99 / l.post.p99)}x` : ""}`,
        `${f1(w.get.p50)} / ${f1(w.post.p50)}`,
      ]);
    }
    md.push(table([
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
    ], rows));
  }

  for (const [scenario, p] of profiles) {
    md.push(`## Profile: ${scenario} visitor on the built package (\`node --cpu-prof\`)`);
    md.push(
      `\`DIST_DIR=<dist>/ node --cpu-prof --cpu-prof-interval 200 bench/steer_profile.mjs ${S.profMs} ${scenario}\`: ${
        p.requests.toLocaleString("en-US")
      } requests in ${p.seconds.toFixed(1)} s (${
        f1(p.usPerRequest)
      } µs of sampled time per request, harness loop and warm-up included).`,
    );
    md.push(`Self time by area: ${p.areas.map((a) => `${a.name} ${a.percent.toFixed(1)}%`).join("; ")}.`);
    md.push(
      table(
        ["websession function (dist path)", "inclusive %", "self %", "inclusive µs / request"],
        p.functions.slice(0, 24).map((
          fn,
        ) => [`\`${fn.name}\``, f1(fn.total), f1(fn.self), f2((fn.total / 100) * p.usPerRequest)]),
      ),
    );
    md.push(`Top self time: ${p.topSelf.map((t) => `\`${t.name}\` ${t.percent.toFixed(1)}%`).join("; ")}.`);
  }

  md.push(`## Run`);
  md.push(table(["Part", "seconds", "load (1 min) at start", "at end"], phases));
  md.push(
    `Commands: \`npm run build\` (the build itself; the run builds the measured commit in a copy of its own with the same script), \`npm run bench\` (this file; \`BENCH_SETS\`, \`BENCH_RATE\`, \`--only=\`/\`--skip=\` parts ${
      ALL.join(",")
    }), \`npm run bench -- --legacy\` (the earlier harness: peers, wall-time tables, MemoryStore footprint, on the TypeScript sources).`,
  );
  // A section written by hand after a run (from the marker on) is kept, flagged with the commit it was
  // written against, so that a later run does not silently drop the analysis.
  const MARK = "<!-- written by hand below this line -->";
  const previous = await readFile(out, "utf8").catch(() => "");
  const kept = previous.includes(MARK) ? previous.slice(previous.indexOf(MARK)) : "";
  const text = md.join("\n\n") + "\n" + (kept ? `\n${kept}` : "");
  await writeFile(out, text);
  await writeFile(
    out.replace(/\.md$/, ".json"),
    JSON.stringify({ date, commit: built.commit, command, sets, targets, contention, http, alloc }, null, 2) +
      "\n",
  );
  await promisify(execFile)(join(ROOT, "node_modules", ".bin", "deno"), [
    "fmt",
    "--quiet",
    out,
    out.replace(/\.md$/, ".json"),
  ], { cwd: ROOT })
    .catch((e) => log(`  deno fmt: ${String(e).slice(0, 200)}`));
  log(`wrote ${out}`);
  for (const t of targets) {
    log(
      `${
        t.met === undefined ? "n/a   " : t.met ? "met   " : "MISSED"
      } ${t.text}: ${t.measured} (goal ${t.goal})`,
    );
  }
}

await main();
process.exit(0);
