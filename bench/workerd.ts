// workerd (Miniflare) in-process CPU per request: the Worker in bench/worker.mjs runs
// batches of requests inside the isolate; the CPU time of every thread of the workerd process is
// read from /proc/<pid>/task/*/schedstat (nanoseconds) around each batch. The bare handler,
// the floor and websession share one isolate (one Worker), their batches interleaved in rotating
// order; each process set is a fresh Miniflare (a fresh workerd process).
import { readdir, readFile } from "node:fs/promises";
import { build } from "esbuild";
import { Log, LogLevel, Miniflare } from "miniflare";
import { entryPath } from "./entry.mjs";
import { type Batch, ROOT, type RuntimeCpu } from "./measure.ts";

const SUBJECTS = ["bare", "floor", "websession"];
export const COMPATIBILITY_DATE = "2026-05-01";

/**
 * A Worker of the benchmark (`entry`, under the repository) as one ES module, bundled as a Worker
 * build would (workerd conditions), `websession` and its subpaths resolved to the package
 * measured at `pkg`, by its exports map.
 */
export async function bundleWorker(entry: string, pkg: string): Promise<string> {
  const bundled = await build({
    entryPoints: [`${ROOT}${entry}`],
    bundle: true,
    format: "esm",
    platform: "neutral",
    conditions: ["workerd", "worker", "browser"],
    write: false,
    minify: false,
    plugins: [{
      name: "websession-built",
      setup(b) {
        b.onResolve({ filter: /^websession(\/|$)/ }, (a) => ({ path: entryPath(pkg, a.path) }));
      },
    }],
    logLevel: "silent",
  });
  return bundled.outputFiles[0]!.text;
}

async function workerdPids(): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, "utf8");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (comm.startsWith("workerd") && ppid === process.pid) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

async function cpuNs(pid: number): Promise<number> {
  let total = 0;
  for (const tid of await readdir(`/proc/${pid}/task`)) {
    try {
      total += Number((await readFile(`/proc/${pid}/task/${tid}/schedstat`, "utf8")).split(" ")[0]);
    } catch {
      // thread ended
    }
  }
  return total;
}

export async function runWorkerd(options: {
  pkg: string;
  sets: number;
  rounds: number;
  batchMs: number;
  log: (line: string) => void;
}): Promise<RuntimeCpu> {
  const result: RuntimeCpu = { runtime: "workerd", batches: {}, errors: {}, version: "?" };
  const script = await bundleWorker("bench/worker.mjs", options.pkg);
  try {
    result.version = JSON.parse(await readFile(`${ROOT}node_modules/miniflare/package.json`, "utf8")).version;
  } catch { /* unknown */ }
  for (let set = 1; set <= options.sets; set++) {
    options.log(`  workerd CPU: process set ${set}/${options.sets}`);
    const mf = new Miniflare({
      modules: [{ type: "ESModule", path: "worker.js", contents: script }],
      compatibilityDate: COMPATIBILITY_DATE,
      log: new Log(LogLevel.WARN),
      cf: false,
    });
    try {
      await mf.ready;
      const pids = await workerdPids();
      if (pids.length !== 1) throw new Error(`expected one workerd process, found ${pids.length}`);
      const pid = pids[0]!;
      const run = async (subject: string, scenario: string, n: number) => {
        const before = await cpuNs(pid);
        const t0 = performance.now();
        const response = await mf.dispatchFetch(
          `http://bench.example/batch?subject=${encodeURIComponent(subject)}&scenario=${scenario}&n=${n}`,
        );
        const text = await response.text();
        const wall = performance.now() - t0;
        const after = await cpuNs(pid);
        if (text !== "ok") throw new Error(`${subject} ${scenario}: ${text.slice(0, 300)}`);
        return { cpuUs: (after - before) / 1000 / n, wallUs: (1000 * wall) / n };
      };
      for (const scenario of ["read", "returning", "new"]) {
        const sizes = new Map<string, number>();
        for (const subject of SUBJECTS) {
          await run(subject, scenario, 2000); // warm-up
          const probe = await run(subject, scenario, 500);
          sizes.set(
            subject,
            Math.max(50, Math.round((options.batchMs * 1000) / Math.max(probe.wallUs, 0.5))),
          );
        }
        for (let round = 1; round <= options.rounds; round++) {
          const shift = (round - 1 + set) % SUBJECTS.length;
          for (const subject of [...SUBJECTS.slice(shift), ...SUBJECTS.slice(0, shift)]) {
            const a = await run(subject, scenario, sizes.get(subject)!);
            ((result.batches[subject] ??= {})[scenario] ??= []).push({ set, round, ...a } as Batch);
          }
        }
      }
    } catch (e) {
      result.errors[`set ${set}`] = String((e as Error).message).slice(0, 300);
      options.log(`  workerd: ${String(e).slice(0, 300)}`);
    } finally {
      await mf.dispose();
    }
  }
  return result;
}
