// `npm run bench`: every library side by side in one process and one run, real HTTP on loopback
// on Node, Deno and Bun, contention, MemoryStore's footprint and the concurrency figures; computes
// the targets, profiles what is missed, and writes bench/RESULTS.md.
//
// Flags: --quick (a smoke run of a minute or so, written to .tmp/RESULTS.quick.md),
// --skip=inprocess,ablation,http,contention,memory,reliability,profiles, --out=<file>.
import { execFile, spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { cpus, loadavg, release, tmpdir, totalmem, type } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { countCryptoCalls, runAblation, runJobCosts, runStoreParts, type Step } from "./ablation.ts";
import { runContention } from "./contention.ts";
import { runHttp } from "./http.ts";
import { runInProcess } from "./inprocess.ts";
import { summarize } from "./profile.ts";
import { type MemoryFigure, type Reliability, render, type Run, targets } from "./report.ts";
import { subjects, versionOf, websessionVersion } from "./subjects.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const args = process.argv.slice(2);
const quick = args.includes("--quick");
const skip = new Set((args.find((a) => a.startsWith("--skip="))?.slice(7) ?? "").split(",").filter(Boolean));
const out = args.find((a) => a.startsWith("--out="))?.slice(6) ??
  (quick ? join(ROOT, ".tmp", "RESULTS.quick.md") : join(ROOT, "bench", "RESULTS.md"));

const settings = quick
  ? {
    rounds: 1,
    budgetMs: 100,
    httpRounds: 1,
    httpSeconds: 1,
    contentionRounds: 3,
    sessions: 100_000,
    profileMs: 1500,
  }
  : {
    rounds: 3,
    budgetMs: 400,
    httpRounds: 2,
    httpSeconds: 4,
    contentionRounds: 20,
    sessions: 1_000_000,
    profileMs: 4000,
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
    ? [bin("deno"), ["run", "--allow-env", "--allow-read", "bench/steps.ts"]]
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
  const loadStart = loadavg();
  const partial: Omit<Run, "targets" | "profiles"> = {
    date: new Date().toISOString().replace("T", " ").slice(0, 16) + " UTC",
    machine: {
      cpu: cpus()[0]?.model ?? "?",
      cores: cpus().length,
      memoryGiB: totalmem() / 2 ** 30,
      os: `${type()} ${release()}`,
      node: process.version.slice(1),
      load: [loadStart, loadStart],
    },
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
        "pg",
        "mitata",
        "autocannon",
        "deno",
        "bun",
      ]
        .map((name) => [name, versionOf(name)] as [string, string]),
    ],
    subjects: list,
    seconds: 0,
    settings:
      `${settings.rounds} round(s) of ${settings.budgetMs} ms per library and scenario; HTTP ${settings.httpRounds} x ${settings.httpSeconds} s per server; ` +
      `contention ${settings.contentionRounds} rounds; ${
        settings.sessions.toLocaleString("en-US")
      } sessions for memory`,
  };

  if (!skip.has("inprocess")) {
    log(`in-process: ${list.length} libraries x 4 scenarios x ${settings.rounds} round(s)`);
    partial.inProcess = await runInProcess(list, {
      rounds: settings.rounds,
      budgetMs: settings.budgetMs,
      log,
    });
  }
  if (!skip.has("ablation")) {
    log("where the time goes: the core step by step, crypto calls per library");
    const timing = { rounds: settings.rounds + 1, budgetMs: settings.budgetMs };
    partial.ablation = await runAblation(timing);
    partial.ablation.store = await runStoreParts(timing);
    partial.ablation.jobs = await runJobCosts(timing);
    partial.ablation.runtimes = new Map();
    for (const runtime of ["Node", "Deno", "Bun"]) {
      try {
        partial.ablation.runtimes.set(runtime, await runtimeSteps(runtime));
      } catch (error) {
        log(`  steps on ${runtime}: ${String(error).slice(0, 200)}`);
      }
    }
    partial.cryptoCalls = await countCryptoCalls(list.filter((s) => !/File|Redis|Postgres/.test(s.name)));
  }
  if (!skip.has("contention")) {
    log("contention: 50 writers on one session");
    partial.contention = await runContention({ rounds: settings.contentionRounds, log });
  }
  if (!skip.has("memory")) {
    log(`memory: ${settings.sessions.toLocaleString("en-US")} sessions in MemoryStore`);
    partial.memory = await memory();
  }
  if (!skip.has("http")) {
    log("real HTTP on loopback: Node, Deno, Bun");
    partial.http = await runHttp({
      rounds: settings.httpRounds,
      seconds: settings.httpSeconds,
      connections: 16,
      log,
    });
  }
  if (!skip.has("reliability")) {
    log("reliability: tests/concurrency_test.ts");
    partial.reliability = await reliability();
  }

  const run: Run = { ...partial, targets: targets(partial), profiles: new Map() };
  if (!skip.has("profiles")) {
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
            // Only the Node server can be profiled the same way; Deno and Bun share its app code.
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
  }
  run.machine.load[1] = loadavg();
  run.seconds = (performance.now() - started) / 1000;
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, render(run));
  // The repository's formatter owns markdown under bench/: write what `deno fmt --check` accepts.
  await promisify(execFile)(join(ROOT, "node_modules", ".bin", "deno"), ["fmt", "--quiet", out], {
    cwd: ROOT,
  }).catch((error) => log(`  deno fmt: ${String(error).slice(0, 200)}`));
  log(`wrote ${out}`);
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
