// `npm run bench -- --legacy`: what a request costs with websession against a bare handler and the peers —
// CPU time and bytes allocated per request in-process on Node, Deno and Bun, server CPU per
// request over real HTTP at a fixed rate and at saturation, contention per store — plus the wall
// time tables (mitata), where the time goes, MemoryStore's footprint and the concurrency figures;
// computes the targets, profiles what is missed, and writes bench/RESULTS.md.
//
// Environment:
//   BENCH_QUICK=1          a smoke run of a minute or so (the cost, HTTP and contention parts at
//                          low precision), written to .tmp/RESULTS.quick.md
//   BENCH_SOURCE=<rev>     measure that git revision's mod.ts and src/ instead of the working tree
//                          (e.g. BENCH_SOURCE=HEAD while the working tree is being rewritten)
//   BENCH_RATE=<req/s>     the fixed request rate of the HTTP part (default 2000)
// Flags: --quick (= BENCH_QUICK=1), --all (every part), --out=<file>, --before=<file.json> (the
// figures to compare the targets with; default bench/BEFORE.json when it exists),
// --only=<parts> or --skip=<parts>, parts: cost,http,contention,memory,profiles (the default),
// inprocess,ablation,reliability (with --all).
//
// Next to the Markdown file it writes the targets as JSON (same name, .json), so that a later run
// can show them beside its own. The "before" figures were taken with
//   BENCH_SOURCE=<commit> npm run bench -- --only=cost,http,contention --out=bench/BEFORE.md
// and every later `npm run bench` shows bench/BEFORE.json's figures in its targets table.
// The default run is bench/steer.ts (the built package, spreads over process sets, the floor, the
// contention subject); `--legacy` runs the earlier harness below (peers, wall-time tables,
// MemoryStore footprint) on the TypeScript sources.
if (!process.argv.includes("--legacy")) {
  await import("./steer.ts"); // exits when done
}
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { cpus, release, tmpdir, totalmem, type } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { resolveSource } from "./source.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const args = process.argv.slice(2);
const quick = args.includes("--quick") || ["1", "true", "yes"].includes(process.env.BENCH_QUICK ?? "");
const ALL_PARTS = [
  "cost",
  "http",
  "contention",
  "memory",
  "profiles",
  "inprocess",
  "ablation",
  "reliability",
];
// The default run measures what the issue asks in about ten minutes on the 2-core machine; --all adds
// the wall-time tables of every library and store (mitata), "where the time goes" and the
// concurrency suite's figures (about six minutes more).
const DEFAULT_PARTS = ["cost", "http", "contention", "memory", "profiles"];
const QUICK_PARTS = ["cost", "http", "contention"];
const only = args.find((a) => a.startsWith("--only="))?.slice(7).split(",").filter(Boolean);
const skip = new Set((args.find((a) => a.startsWith("--skip="))?.slice(7) ?? "").split(",").filter(Boolean));
const parts = new Set(
  (only ?? (args.includes("--all") ? ALL_PARTS : quick ? QUICK_PARTS : DEFAULT_PARTS)).filter((part) =>
    !skip.has(part)
  ),
);
const outArg = args.find((a) => a.startsWith("--out="))?.slice(6);
const out = outArg
  ? resolve(outArg)
  : quick
  ? join(ROOT, ".tmp", "RESULTS.quick.md")
  : join(ROOT, "bench", "RESULTS.md");
const jsonOut = out.replace(/\.md$/, "") + ".json";
const beforeArg = args.find((a) => a.startsWith("--before="))?.slice(9);
const beforeFile = beforeArg
  ? resolve(beforeArg)
  : existsSync(join(ROOT, "bench", "BEFORE.json"))
  ? join(ROOT, "bench", "BEFORE.json")
  : undefined;

// The code under test is chosen before any bench module loads it (they import ./websession.ts).
const source = await resolveSource();
if (source.dir) process.env.BENCH_SOURCE_DIR = source.dir;

const { countCryptoCalls, runAblation, runJobCosts, runStoreParts } = await import("./ablation.ts");
const { runContention } = await import("./contention.ts");
const { runCost } = await import("./cost.ts");
const { runHttp } = await import("./http.ts");
const { runInProcess } = await import("./inprocess.ts");
const { phase, sample } = await import("./machine.ts");
const { summarize } = await import("./profile.ts");
const { render, targets } = await import("./report.ts");
const { subjects, versionOf, websessionVersion } = await import("./subjects.ts");
const { RUNTIMES } = await import("./runtimes.ts");
type Run = import("./report.ts").Run;
type HttpMode = import("./http.ts").HttpMode;
type RuntimeName = import("./runtimes.ts").RuntimeName;
type Step = import("./ablation.ts").Step;
type MemoryFigure = import("./report.ts").MemoryFigure;
type Reliability = import("./report.ts").Reliability;

const rate = Number(process.env.BENCH_RATE ?? 2000);
const settings = quick
  ? {
    cost: {
      processes: 1,
      rounds: 3,
      batchMs: 20,
      warmMs: 150,
      allocRounds: 1,
      allocRuntimes: ["Node"] as RuntimeName[],
      subjects: [
        "bare handler",
        "websession, session never asked for",
        "websession MemoryStore",
        "react-router memory",
      ],
    },
    http: {
      rate,
      seconds: 1.5,
      rounds: 1,
      saturationSeconds: 1,
      saturationRounds: 1,
      fixedModes: ["bare", "read", "returning"] as HttpMode[],
      saturationModes: ["bare", "returning"] as HttpMode[],
    },
    contention: { rounds: 1, budgetMs: 3000 },
    rounds: 1,
    budgetMs: 100,
    sessions: 100_000,
    profileMs: 1500,
  }
  : {
    cost: { processes: 3, rounds: 7, batchMs: 30, warmMs: 300, allocRounds: 3 } as {
      processes: number;
      rounds: number;
      batchMs: number;
      warmMs: number;
      allocRounds: number;
      allocRuntimes?: RuntimeName[];
      subjects?: string[];
    },
    http: { rate, seconds: 2.5, rounds: 3, saturationSeconds: 2, saturationRounds: 1 },
    contention: { rounds: 10, budgetMs: 5000 },
    rounds: 2,
    budgetMs: 250,
    sessions: 1_000_000,
    profileMs: 3000,
  };

const started = performance.now();
const log = (line: string) =>
  console.log(`[${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`);

function node(
  argv: string[],
  env: Record<string, string> = {},
): Promise<{ stdout: string; stderr: string; code: number }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, argv, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => void (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => void (stderr += chunk.toString()));
    child.once("exit", (code) => resolve({ stdout, stderr, code: code ?? 1 }));
  });
}

async function memory(): Promise<MemoryFigure> {
  const { stdout, stderr, code } = await node([
    "--expose-gc",
    "--import",
    "tsx",
    "bench/memory.ts",
    String(settings.sessions),
  ]);
  if (code !== 0) throw new Error(`memory run failed: ${stderr.slice(-500)}`);
  return JSON.parse(stdout.trim().split("\n").at(-1)!) as MemoryFigure;
}

async function reliability(): Promise<Reliability> {
  const begin = performance.now();
  const { stdout } = await node([
    "--import",
    "tsx",
    "--test",
    "--test-reporter=tap",
    "tests/concurrency_test.ts",
  ]);
  const lines = [...stdout.matchAll(/^\s*# ((?:MemoryStore|FileStore|RedisStore|PostgresStore).*)$/gm)].map((
    m,
  ) => m[1]!);
  const passed = Number(/^# pass (\d+)/m.exec(stdout)?.[1] ?? 0);
  const failed = Number(/^# fail (\d+)/m.exec(stdout)?.[1] ?? 0);
  return { lines, passed, failed, seconds: (performance.now() - begin) / 1000 };
}

/** The core's flow step by step under one runtime (`bench/steps.ts`). */
async function runtimeSteps(runtime: string): Promise<Step[]> {
  const bin = (name: string) => join(ROOT, "node_modules", ".bin", name);
  const [command, argv] = runtime === "Deno"
    ? [bin("deno"), ["run", "-A", "bench/steps.ts"]]
    : runtime === "Bun"
    ? [bin("bun"), ["bench/steps.ts"]]
    : [process.execPath, ["--import", "tsx", "bench/steps.ts"]];
  const { stdout } = await promisify(execFile)(command, argv, {
    cwd: ROOT,
    env: { ...process.env, NO_COLOR: "1" },
  });
  const steps = JSON.parse(stdout.trim().split("\n").at(-1)!) as Array<{ name: string; us: number }>;
  return steps.map((step) => ({ ...step, what: "" }));
}

async function profileScenario(subject: string, scenario: string, dir: string) {
  const file = join(dir, `${subject.replace(/\W+/g, "_")}_${scenario}.cpuprofile`);
  const { code, stderr } = await node([
    "--import",
    "tsx",
    "bench/profile.ts",
    subject,
    scenario,
    String(settings.profileMs),
  ], { PROFILE_OUT: file });
  if (code !== 0) throw new Error(`profile failed: ${stderr.slice(-300)}`);
  return await summarize(file);
}

/**
 * Profiles the Node server (`session` or `bare`) while autocannon loads it: steady state only,
 * the server's profiler started after a warm-up load (SIGUSR2) and stopped at SIGTERM.
 */
async function profileHttp(dir: string, mode: "session" | "bare") {
  const { createRequire } = await import("node:module");
  const autocannon = createRequire(import.meta.url)("autocannon") as (o: object) => Promise<unknown>;
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const file = join(dir, `${mode}.cpuprofile`);
  const child = spawn(process.execPath, ["--import", "tsx", "bench/servers/node.ts"], {
    cwd: ROOT,
    env: { ...process.env, MODE: mode, PORT: String(port), PROFILE_OUT: file },
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve) =>
    child.stdout!.on("data", (c: Buffer) => c.toString().includes("ready") && resolve())
  );
  const url = `http://127.0.0.1:${port}/`;
  const cookies: string[] = [];
  for (let i = 0; i < 16; i++) {
    const response = await fetch(url);
    await response.arrayBuffer();
    // The bare server sets no cookie: its requests carry one anyway, so both parse the same header.
    cookies.push(response.headers.getSetCookie()[0]?.split(";")[0] ?? "session=none");
  }
  const load = async (seconds: number) => {
    let next = 0;
    await autocannon({
      url,
      connections: 16,
      duration: seconds,
      setupClient: (client: { setHeaders(h: object): void }) =>
        client.setHeaders({ cookie: cookies[next++ % cookies.length] }),
    });
  };
  await load(1); // warm-up, not profiled
  child.kill("SIGUSR2");
  await new Promise((resolve) => setTimeout(resolve, 50));
  await load(Math.ceil(settings.profileMs / 1000));
  await new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
  });
  return await summarize(file, 40);
}

async function main(): Promise<void> {
  const list = subjects();
  const first = sample();
  const partial: Omit<Run, "targets" | "profiles"> = {
    date: new Date().toISOString().replace("T", " ").slice(0, 16) + " UTC",
    quick,
    source: source.label,
    command: [
      source.dir ? `BENCH_SOURCE=${process.env.BENCH_SOURCE}` : "",
      quick ? "BENCH_QUICK=1" : "",
      process.env.BENCH_RATE ? `BENCH_RATE=${rate}` : "",
      "npm run bench",
      args.length > 0 ? `-- ${args.join(" ")}` : "",
    ].filter(Boolean).join(" "),
    machine: {
      cpu: cpus()[0]?.model ?? "?",
      cores: cpus().length,
      memoryGiB: totalmem() / 2 ** 30,
      os: `${type()} ${release()}`,
      node: process.version.slice(1),
      load: [first.load, first.load],
    },
    phases: [],
    versions: [
      ["websession", websessionVersion],
      ...[
        "react-router",
        "@remix-run/session",
        "@remix-run/session-middleware",
        "@remix-run/fetch-router",
        "@remix-run/cookie",
        "iron-session",
        "h3",
        "hono",
        "hono-sessions",
        "@hono/session",
        "jose",
        "ioredis",
        "redis",
        "@upstash/redis",
        "pg",
        "postgres",
        "@neondatabase/serverless",
        "mitata",
        "autocannon",
        "deno",
        "bun",
      ]
        .map((name) => [name, versionOf(name)] as [string, string]),
    ],
    subjects: list,
    seconds: 0,
    settings: "",
  };
  const described: string[] = [];
  const timedPart = async (name: string, body: () => Promise<void>) => {
    const start = sample();
    try {
      await body();
    } catch (error) {
      log(`  ${name} failed: ${String((error as Error)?.stack ?? error).slice(0, 500)}`);
    }
    partial.phases.push(phase(name, start, sample()));
  };

  if (parts.has("cost")) {
    const c = settings.cost;
    described.push(
      `in-process cost: ${c.processes} process(es) x ${c.rounds} rounds of ~${c.batchMs} ms batches per subject and ` +
        `scenario, allocation ${c.allocRounds} batch(es)`,
    );
    log(`in-process CPU and allocation per request: Node, Deno, Bun`);
    await timedPart("In-process CPU and allocation", async () => {
      partial.cost = await runCost({ runtimes: RUNTIMES, ...c, log });
    });
  }
  if (parts.has("http")) {
    const h = settings.http;
    described.push(
      `HTTP ${h.rounds} round(s) of ${h.seconds} s at ${h.rate} req/s per server, saturation ${h.saturationRounds} x ` +
        `${h.saturationSeconds} s`,
    );
    log(`real HTTP on loopback at ${h.rate} req/s and at saturation: Node, Deno, Bun`);
    await timedPart("HTTP", async () => {
      partial.http = await runHttp({ runtimes: RUNTIMES, ...h, log });
    });
  }
  if (parts.has("contention")) {
    described.push(
      `contention up to ${settings.contention.rounds} rounds (${
        settings.contention.budgetMs / 1000
      } s) per store`,
    );
    log("contention: 100 writers on one session, per store");
    await timedPart("Contention", async () => {
      partial.contention = await runContention({ ...settings.contention, log });
    });
  }
  if (parts.has("inprocess")) {
    described.push(
      `wall time (mitata) ${settings.rounds} round(s) of ${settings.budgetMs} ms per library and scenario`,
    );
    log(
      `in-process wall time (mitata): ${list.length} libraries x 4 scenarios x ${settings.rounds} round(s)`,
    );
    await timedPart("In-process wall time (mitata)", async () => {
      partial.inProcess = await runInProcess(list, {
        rounds: settings.rounds,
        budgetMs: settings.budgetMs,
        log,
      });
    });
  }
  if (parts.has("ablation")) {
    log("where the time goes: the core step by step, crypto calls per library");
    await timedPart("Where the time goes", async () => {
      const timing = { rounds: settings.rounds + 1, budgetMs: settings.budgetMs };
      partial.ablation = await runAblation(timing);
      partial.ablation.store = await runStoreParts(timing);
      partial.ablation.jobs = await runJobCosts(timing);
      partial.ablation.runtimes = new Map();
      for (const runtime of RUNTIMES) {
        try {
          partial.ablation.runtimes.set(runtime, await runtimeSteps(runtime));
        } catch (error) {
          log(`  steps on ${runtime}: ${String(error).slice(0, 200)}`);
        }
      }
      partial.cryptoCalls = await countCryptoCalls(list.filter((s) => !/File|Redis|Postgres/.test(s.name)));
    });
  }
  if (parts.has("memory")) {
    described.push(`${settings.sessions.toLocaleString("en-US")} sessions for memory`);
    log(`memory: ${settings.sessions.toLocaleString("en-US")} sessions in MemoryStore`);
    await timedPart("MemoryStore footprint", async () => {
      partial.memory = await memory();
    });
  }
  if (parts.has("reliability")) {
    log("reliability: tests/concurrency_test.ts");
    await timedPart("Reliability (tests/concurrency_test.ts)", async () => {
      partial.reliability = await reliability();
    });
  }
  partial.settings = described.join("; ");

  const run: Run = { ...partial, targets: targets(partial), profiles: new Map() };
  if (parts.has("profiles")) {
    await timedPart("Profiles of missed targets", async () => {
      const dir = await mkdtemp(join(tmpdir(), "websession-profiles-"));
      try {
        const done = new Set<string>();
        for (const target of run.targets) {
          if (target.met !== false || target.profile === undefined) continue;
          if ("http" in target.profile && target.profile.http !== "Node") continue; // only Node's server can be profiled alike
          const key = "http" in target.profile
            ? `http:${target.profile.http}`
            : `${target.profile.subject}:${target.profile.scenario}`;
          if (done.has(key)) continue;
          done.add(key);
          log(`profiling ${key}`);
          try {
            if ("http" in target.profile) {
              // The bare server too, so that the difference can be split by area.
              run.profiles.set(key, await profileHttp(await mkdtemp(join(dir, "http-")), "session"));
              run.profiles.set(
                `${key}:bare`,
                await profileHttp(await mkdtemp(join(dir, "http-bare-")), "bare"),
              );
            } else {
              run.profiles.set(
                key,
                await profileScenario(target.profile.subject, target.profile.scenario, dir),
              );
            }
          } catch (error) {
            log(`  ${String(error)}`);
          }
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
  run.machine.load[1] = sample().load;
  run.seconds = (performance.now() - started) / 1000;
  if (beforeFile !== undefined && beforeFile !== jsonOut) {
    try {
      run.before = JSON.parse(await readFile(beforeFile, "utf8"));
    } catch (error) {
      log(`  could not read ${beforeFile}: ${String(error).slice(0, 200)}`);
    }
  }
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, render(run));
  await writeFile(
    jsonOut,
    JSON.stringify(
      {
        date: run.date,
        source: run.source,
        command: run.command,
        quick: run.quick,
        load: run.machine.load,
        targets: run.targets.map(({ id, text, measured, goal, met, value }) => ({
          id,
          text,
          measured,
          goal,
          met,
          value,
        })),
      },
      null,
      2,
    ) + "\n",
  );
  // The repository's formatter owns markdown and JSON under bench/: write what `deno fmt --check` accepts.
  await promisify(execFile)(join(ROOT, "node_modules", ".bin", "deno"), ["fmt", "--quiet", out, jsonOut], {
    cwd: ROOT,
  }).catch((error) => log(`  deno fmt: ${String(error).slice(0, 200)}`));
  log(`wrote ${out} and ${jsonOut}`);
  for (const t of run.targets) {
    log(
      `${
        t.met === undefined ? "n/a   " : t.met ? "met   " : "MISSED"
      } ${t.text}: ${t.measured} (goal ${t.goal})`,
    );
  }
}

await main();
process.exit(0);
