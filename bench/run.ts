// `npm run bench`: what websession costs a request, on the BUILT package (the dist/ of one commit,
// built by the repository's own build script, bench/dist.ts), reached only through its public entry
// points (bench/entry.mjs), never TypeScript through a loader.
//
// - In-process CPU per request on Node, Deno and Bun (bench/measure.ts over bench/child.mjs), and on
//   workerd through Miniflare (bench/workerd.ts): the bare handler, a second bare process (bare vs
//   bare: the machine's own spread), the floor (bench/floor.mjs: the least code doing the same
//   observable work), websession, two subjects that price the copy rule, and on Node the peers
//   (bench/subjects.mjs). Every figure is the median over >= 5 process sets of each set's median of
//   paired rounds, with the min–max over the sets.
// - Bytes allocated per request (Node): heap growth over large batches with no GC inside.
// - Node HTTP at a fixed rate: server CPU per request, returning visitor, websession and a peer vs
//   bare, fresh server processes (bench/server.mjs) per set.
// - Contention: 30 in flight on one session per store, websession vs a plain per-session lock
//   (bench/lock_subject.mjs), one process, and 3 processes sharing Redis / PostgreSQL.
// - CPU profiles (`node --cpu-prof`) of the returning and the read-only visitor.
//
// Writes bench/RESULTS.md and bench/RESULTS.json (or --out=<file.md>; BENCH_QUICK writes
// .tmp/RESULTS.quick.md). Environment: BENCH_SOURCE=<rev> (default HEAD: the commit built and
// measured), BENCH_QUICK=1 (a smoke run of every part at low precision), BENCH_SETS=<n> (process
// sets, default 5), BENCH_RATE=<req/s> (default 2000). Flags: --only=<parts> / --skip=<parts>
// (parts below), --dist=<dir> (measure a dist/ already built, e.g. this checkout's after
// `npm run build`, instead of building a commit: quick steering figures with --only=alloc,deno,bun).
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { loadavg } from "node:os";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { buildRevision } from "./dist.ts";
import { runContention } from "./contention.ts";
import { Child, median, PEERS, ROOT, runAlloc, runCpu, type RuntimeCpu, SUBJECTS } from "./measure.ts";
import { type ProfileFigures, runProfile } from "./profile.ts";
import { type HttpFigures, render, type Results, targets } from "./report.ts";
import { runWorkerd } from "./workerd.ts";

export const PARTS = ["node", "peers", "deno", "bun", "workerd", "alloc", "http", "contention", "profile"];
const args = process.argv.slice(2);
const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const quick = args.includes("--quick") || process.env.BENCH_QUICK === "1";
const skip = new Set(flag("skip")?.split(",") ?? []);
const parts = new Set((flag("only")?.split(",") ?? PARTS).filter((p) => !skip.has(p)));
const out = flag("out")
  ? resolve(flag("out")!)
  : join(ROOT, quick ? ".tmp/RESULTS.quick.md" : "bench/RESULTS.md");
const sets = Number(process.env.BENCH_SETS ?? (quick ? 2 : 5));
const rate = Number(process.env.BENCH_RATE ?? 2000);
/** Rounds, batch lengths and budgets of every part. */
export const SETTINGS = quick
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
const S = SETTINGS;

const started = performance.now();
const log = (line: string) =>
  console.log(`[${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`);

/** Server CPU per request at a fixed rate, per set: bare, websession and (with peers) react-router. */
async function runHttp(pkg: string, modes: string[]): Promise<HttpFigures> {
  const autocannon = createRequire(import.meta.url)("autocannon") as (
    o: object,
  ) => Promise<{ requests: { total: number }; non2xx: number }>;
  const result: HttpFigures = { rate, modes, cpu: {}, achieved: {} };
  for (let set = 1; set <= sets; set++) {
    log(`  HTTP set ${set}/${sets}`);
    const servers = modes.map((mode) =>
      new Child(mode, "bench/server.mjs", [mode], { env: { BENCH_PKG: pkg } })
    );
    try {
      const urls = (await Promise.all(servers.map((s) => s.ready))).map((r) =>
        `http://127.0.0.1:${r.port}/count`
      );
      // 16 visitors per server, each with the cookie of its first request (the bare server sets
      // none: its requests carry websession's, so that every server reads a cookie alike).
      const cookies = await Promise.all(urls.map(async (url) => {
        const jar: string[] = [];
        for (let i = 0; i < 16; i++) {
          const r = await fetch(url);
          await r.arrayBuffer();
          jar.push(r.headers.getSetCookie().map((c) => c.split(";", 1)[0]).join("; "));
        }
        return jar;
      }));
      const load = async (i: number, seconds: number, fixed: boolean) => {
        const jar = cookies[i]![0] ? cookies[i]! : cookies[modes.indexOf("websession")]!;
        let next = 0;
        return await autocannon({
          url: urls[i],
          connections: 16,
          duration: seconds,
          ...(fixed ? { overallRate: rate } : {}),
          setupClient: (c: { setHeaders(h: object): void }) => c.setHeaders({ cookie: jar[next++ % 16] }),
        });
      };
      for (let i = 0; i < modes.length; i++) await load(i, 1, false); // warm-up
      const per: number[][] = modes.map(() => []);
      for (let round = 0; round < S.httpRounds; round++) {
        const shift = (round + set) % modes.length;
        for (const i of [...modes.keys()].map((k) => (k + shift) % modes.length)) {
          const before = (await servers[i]!.ask({ op: "cpu" })).us as number;
          const r = await load(i, S.httpSec, true);
          const after = (await servers[i]!.ask({ op: "cpu" })).us as number;
          if (r.non2xx > 0) throw new Error(`${modes[i]}: ${r.non2xx} non-2xx answers`);
          per[i]!.push((after - before) / r.requests.total);
          (result.achieved[modes[i]!] ??= []).push(r.requests.total / S.httpSec);
        }
      }
      modes.forEach((mode, i) => (result.cpu[mode] ??= []).push(median(per[i]!)));
    } finally {
      await Promise.all(servers.map((s) => s.close()));
    }
  }
  return result;
}

async function main(): Promise<void> {
  const load0 = loadavg();
  const dist = flag("dist");
  let built: { commit: string; subject: string; dir: string };
  if (dist) {
    const dir = dirname(resolve(dist)) + "/";
    const head = await promisify(execFile)("git", ["log", "-1", "--format=%H %s"], { cwd: ROOT });
    built = {
      commit: `${resolve(dist)}/`,
      subject: `built from the working tree at ${head.stdout.trim()}`,
      dir,
    };
  } else {
    log("building the package (dist/) of the commit measured");
    const b = await buildRevision();
    log(`  ${b.commit.slice(0, 7)} built in ${b.buildSeconds.toFixed(1)} s: ${b.dist}`);
    built = { ...b, dir: b.dir + "/" };
  }
  const pkg = built.dir;
  const results: Results = {
    quick,
    sets,
    settings: S,
    parts: PARTS,
    command: ["npm run bench", args.length ? `-- ${args.join(" ")}` : ""].filter(Boolean).join(" "),
    commit: built.commit,
    subject: built.subject,
    load: [load0, load0],
    minutes: 0,
    cpu: new Map<string, RuntimeCpu>(),
    contention: [],
    profiles: new Map<string, ProfileFigures>(),
    phases: [],
  };
  const part = async (name: string, body: () => Promise<void>) => {
    const t0 = performance.now();
    const l0 = loadavg()[0]!;
    try {
      await body();
    } catch (e) {
      log(`  ${name} failed: ${String((e as Error)?.stack ?? e).slice(0, 600)}`);
    }
    const seconds = ((performance.now() - t0) / 1000).toFixed(0);
    results.phases.push([name, seconds, l0.toFixed(2), loadavg()[0]!.toFixed(2)]);
  };
  const common = { pkg, sets, rounds: S.rounds, batchMs: S.batchMs, warmMs: S.warmMs, log };
  for (const runtime of ["Node", "Deno", "Bun"] as const) {
    if (!parts.has(runtime.toLowerCase())) continue;
    const subjects = runtime === "Node" && parts.has("peers") ? [...SUBJECTS, ...PEERS] : SUBJECTS;
    await part(`${runtime} in-process CPU`, async () => {
      results.cpu.set(runtime, await runCpu({ ...common, runtime, subjects }));
    });
  }
  if (parts.has("workerd")) {
    await part("workerd in-process CPU", async () => {
      results.cpu.set(
        "workerd",
        await runWorkerd({ pkg, sets: S.wSets, rounds: S.wRounds, batchMs: S.wBatch, log }),
      );
    });
  }
  if (parts.has("alloc")) {
    await part("Node allocation", async () => {
      results.alloc = await runAlloc({ pkg, batches: S.alloc, warmMs: S.warmMs, subjects: SUBJECTS, log });
    });
  }
  if (parts.has("http")) {
    const modes = ["bare", "websession", ...(parts.has("peers") ? ["react-router memory"] : [])];
    await part(`Node HTTP at ${rate} req/s`, async () => void (results.http = await runHttp(pkg, modes)));
  }
  if (parts.has("contention")) {
    await part("Contention", async () => {
      results.contention = await runContention({
        pkg,
        rounds: S.cRounds,
        budgetMs: S.cBudget,
        multiRounds: S.mRounds,
        log,
      });
    });
  }
  if (parts.has("profile")) {
    await part("Profiles", async () => {
      for (const scenario of ["returning", "read"] as const) {
        log(`  profile: ${scenario}`);
        results.profiles.set(scenario, await runProfile(pkg, scenario, S.profMs));
      }
    });
  }
  results.load[1] = loadavg();
  results.minutes = (performance.now() - started) / 60000;

  // A section written by hand after a run (from the marker on) is kept, so that a later run does
  // not silently drop the analysis.
  const MARK = "<!-- written by hand below this line -->";
  const previous = await readFile(out, "utf8").catch(() => "");
  const kept = previous.includes(MARK) ? `\n${previous.slice(previous.indexOf(MARK))}` : "";
  const list = targets(results);
  await writeFile(out, render(results, list) + kept);
  const json = out.replace(/\.md$/, ".json");
  const { commit, command, contention, http, alloc } = results;
  const date = new Date().toISOString();
  await writeFile(
    json,
    JSON.stringify({ date, commit, command, sets, targets: list, contention, http, alloc }, null, 2),
  );
  // The repository's formatter owns markdown and JSON under bench/: write what `deno fmt --check` accepts.
  await promisify(execFile)(join(ROOT, "node_modules", ".bin", "deno"), ["fmt", "--quiet", out, json], {
    cwd: ROOT,
  })
    .catch((e) => log(`  deno fmt: ${String(e).slice(0, 200)}`));
  log(`wrote ${out}`);
  for (const t of list) log(`${t.met ? "met   " : "MISSED"} ${t.text}: ${t.measured} (goal ${t.goal})`);
}

await main();
process.exit(0);
