// What a request costs: CPU time and bytes allocated per request, in-process, for the bare
// handler, websession and the peers, on Node, Deno and Bun (`bench/cost_child.ts` does the
// measuring, one process per subject).
//
// CPU: for each runtime, `processes` times: one process per subject, all started and warmed
// up; then, one scenario after another, `rounds` rounds in which every subject runs one batch
// (about `batchMs` of requests) in turn, the subjects' order rotated from round to round. A
// burst of outside load therefore lands on one batch of one subject, and the median over the
// processes x rounds batches leaves it out. Ratios are taken within a round (the bare batch and
// the websession batch of the same round and process, a fraction of a second apart), then the
// median of those.
//
// Allocation: Node and Deno, one process per subject with a young generation big enough for a
// batch; `allocRounds` batches per scenario, median.
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { command, ROOT, type RuntimeName, versionOf } from "./runtimes.ts";

export const COST_SCENARIOS = ["read", "returning", "new"] as const;
export type CostScenario = typeof COST_SCENARIOS[number];

export const COST_SCENARIO_TITLES: Record<CostScenario, string> = {
  read: "read-only visitor (valid cookie, get, Response)",
  returning: "returning visitor (valid cookie, update, compare-and-set save)",
  new: "new visitor (no cookie, update, save, Set-Cookie)",
};

/** The subjects, bare handler first; the others' code is in `bench/subjects.ts`. */
export const COST_SUBJECTS = [
  "bare handler",
  "websession, session never asked for",
  "websession MemoryStore",
  "react-router memory",
  "@remix-run/session memory",
  "hono-sessions MemoryStore",
  "@hono/session",
  "iron-session",
  "h3 useSession",
];

/** The subjects whose allocation sites are profiled on Node. */
const SITE_SUBJECTS = ["bare handler", "websession, session never asked for", "websession MemoryStore"];

/** One batch. */
export interface CpuSample {
  process: number;
  round: number;
  /** CPU time per request, µs (user + system, every thread of the process). */
  cpuUs: number;
  /** Wall time per request, µs. */
  wallUs: number;
}

/** One runtime's figures. */
export interface RuntimeCost {
  runtime: RuntimeName;
  version: string;
  /** By subject, then scenario. */
  cpu: Map<string, Map<CostScenario, CpuSample[]>>;
  /** Bytes allocated per request, one figure per batch; absent where not measured. */
  alloc: Map<string, Map<CostScenario, number[]>>;
  /** Of those, bytes of ArrayBuffer backing stores (outside the V8 heap), one figure per batch. */
  buffers: Map<string, Map<CostScenario, number[]>>;
  /** The allocation method on a known allocation: measured and expected bytes. */
  calibration?: { bytes: number; expected: number };
  /**
   * Bytes per request by allocating function (sampling heap profiler), for the bare handler and
   * websession on Node: by subject, then scenario.
   */
  sites: Map<string, Map<CostScenario, AllocationSite[]>>;
  /** Batches of the allocation pass dropped because a garbage collection ran during them. */
  allocDropped: number;
  errors: Map<string, string>;
}

/** One allocating function. */
export interface AllocationSite {
  name: string;
  url: string;
  line: number;
  /** Bytes per request, estimated from the samples. */
  bytes: number;
}

/** Everything the cost pass measured. */
export interface CostResults {
  runtimes: RuntimeCost[];
  processes: number;
  rounds: number;
  batchMs: number;
  allocRounds: number;
}

const V8_ALLOC_FLAGS = ["--expose-gc", "--max-semi-space-size=256", "--min-semi-space-size=256"];

/** A child process that answers one JSON line per JSON line sent. */
class Child {
  readonly name: string;
  #process: ChildProcess;
  #waiting: Array<(line: string) => void> = [];
  #stderr = "";
  #exited: Promise<void>;
  constructor(runtime: RuntimeName, name: string, mode: "cpu" | "alloc", batchMs: number) {
    this.name = name;
    const [cmd, args] = command(runtime, "bench/cost_child.ts", [name, mode], {
      v8Flags: mode === "alloc" && runtime !== "Bun" ? V8_ALLOC_FLAGS : [],
    });
    this.#process = spawn(cmd, args, {
      cwd: ROOT,
      env: { ...process.env, BATCH_MS: String(batchMs), NO_COLOR: "1" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    createInterface({ input: this.#process.stdout! }).on("line", (line) => {
      if (!line.startsWith("{")) return; // a library's own console output
      this.#waiting.shift()?.(line);
    });
    this.#process.stderr!.on(
      "data",
      (chunk: Buffer) => void (this.#stderr = (this.#stderr + chunk).slice(-2000)),
    );
    this.#exited = new Promise((resolve) => {
      this.#process.once("exit", (code) => {
        for (const waiter of this.#waiting.splice(0)) {
          waiter(JSON.stringify({ error: `exited with ${code}: ${this.#stderr.slice(-600)}` }));
        }
        resolve();
      });
    });
  }
  /** The first line, sent when the subject is open. */
  ready(): Promise<Record<string, unknown>> {
    return this.#next();
  }
  #next(): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      this.#waiting.push((line) => {
        const message = JSON.parse(line) as Record<string, unknown>;
        if (typeof message.error === "string") reject(new Error(message.error));
        else resolve(message);
      });
    });
  }
  ask(message: Record<string, unknown>): Promise<Record<string, unknown>> {
    const answer = this.#next();
    this.#process.stdin!.write(`${JSON.stringify(message)}\n`);
    return answer;
  }
  async close(): Promise<void> {
    this.#process.stdin!.end();
    const timer = setTimeout(() => this.#process.kill("SIGKILL"), 5000);
    await this.#exited;
    clearTimeout(timer);
  }
}

async function openAll(
  runtime: RuntimeName,
  subjects: string[],
  mode: "cpu" | "alloc",
  batchMs: number,
  errors: Map<string, string>,
): Promise<Child[]> {
  const children = subjects.filter((name) => !errors.has(name)).map((name) =>
    new Child(runtime, name, mode, batchMs)
  );
  const opened: Child[] = [];
  await Promise.all(children.map(async (child) => {
    try {
      await child.ready();
      opened.push(child);
    } catch (error) {
      errors.set(child.name, String((error as Error).message).slice(0, 300));
      await child.close();
    }
  }));
  return subjects.flatMap((name) => opened.filter((child) => child.name === name));
}

/**
 * Warms every child up at once (the JIT's warm-up needs no quiet machine), then asks each in turn
 * for its batch sizes (that needs one).
 */
async function prepare(
  children: Child[],
  warmMs: number,
  errors: Map<string, string>,
): Promise<Map<Child, Record<CostScenario, number>>> {
  const sizes = new Map<Child, Record<CostScenario, number>>();
  const fail = (child: Child, error: unknown) =>
    errors.set(child.name, String((error as Error).message).slice(0, 300));
  const warmed = await Promise.all(
    children.map((child) =>
      child.ask({ op: "warm", ms: warmMs }).then(() => true, (error) => fail(child, error))
    ),
  );
  for (const [i, child] of children.entries()) {
    if (warmed[i] !== true) continue;
    try {
      sizes.set(child, (await child.ask({ op: "size" })).n as Record<CostScenario, number>);
    } catch (error) {
      fail(child, error);
    }
  }
  return sizes;
}

/**
 * Runs the CPU pass (every runtime) and the allocation pass (Node and Deno).
 */
export async function runCost(options: {
  runtimes: RuntimeName[];
  subjects?: string[];
  processes: number;
  rounds: number;
  batchMs: number;
  warmMs: number;
  allocRounds: number;
  /** Where allocation is measured (Node and Deno by default; Bun cannot be). */
  allocRuntimes?: RuntimeName[];
  log: (line: string) => void;
}): Promise<CostResults> {
  const subjects = options.subjects ?? COST_SUBJECTS;
  const results: CostResults = {
    runtimes: [],
    processes: options.processes,
    rounds: options.rounds,
    batchMs: options.batchMs,
    allocRounds: options.allocRounds,
  };
  for (const runtime of options.runtimes) {
    const cost: RuntimeCost = {
      runtime,
      version: versionOf(runtime),
      cpu: new Map(),
      alloc: new Map(),
      buffers: new Map(),
      sites: new Map(),
      allocDropped: 0,
      errors: new Map(),
    };
    results.runtimes.push(cost);
    for (let p = 1; p <= options.processes; p++) {
      options.log(`  ${runtime} CPU: process set ${p}/${options.processes}, ${subjects.length} subjects`);
      const children = await openAll(runtime, subjects, "cpu", options.batchMs, cost.errors);
      try {
        const sizes = await prepare(children, options.warmMs, cost.errors);
        for (const scenario of COST_SCENARIOS) {
          // One scenario at a time in every process: what a batch leaves behind (garbage not yet
          // collected, background work) is then its own scenario's, paid by the next batch like
          // it would be under a steady load. A first, unmeasured double batch takes over from the
          // last scenario's leftovers.
          const live = () => children.filter((child) => sizes.has(child) && !cost.errors.has(child.name));
          for (const child of live()) {
            await child.ask({ op: "cpu", scenario, n: 2 * sizes.get(child)![scenario] }).catch((error) =>
              cost.errors.set(child.name, `${scenario}: ${String((error as Error).message).slice(0, 300)}`)
            );
          }
          for (let round = 1; round <= options.rounds; round++) {
            const list = live();
            const shift = (round - 1 + (p - 1) * options.rounds) % Math.max(1, list.length);
            for (const child of [...list.slice(shift), ...list.slice(0, shift)]) {
              try {
                const answer = await child.ask({ op: "cpu", scenario, n: sizes.get(child)![scenario] });
                const bySubject = cost.cpu.get(child.name) ?? new Map<CostScenario, CpuSample[]>();
                cost.cpu.set(child.name, bySubject);
                const samples = bySubject.get(scenario) ?? [];
                bySubject.set(scenario, samples);
                samples.push({
                  process: p,
                  round,
                  cpuUs: answer.cpuUs as number,
                  wallUs: answer.wallUs as number,
                });
              } catch (error) {
                cost.errors.set(child.name, `${scenario}: ${String((error as Error).message).slice(0, 300)}`);
              }
            }
          }
        }
      } finally {
        await Promise.all(children.map((child) => child.close()));
      }
    }
    const allocRuntimes = options.allocRuntimes ?? ["Node", "Deno"];
    if (runtime === "Bun" || options.allocRounds === 0 || !allocRuntimes.includes(runtime)) continue;
    options.log(`  ${runtime} allocation: ${subjects.length} subjects x ${options.allocRounds} batches`);
    const children = await openAll(runtime, subjects, "alloc", options.batchMs, cost.errors);
    try {
      const sizes = await prepare(children, options.warmMs, cost.errors);
      if (children[0] !== undefined) {
        const check = await children[0].ask({ op: "calibrate" }).catch(() => undefined);
        if (check) cost.calibration = { bytes: check.bytes as number, expected: check.expected as number };
      }
      for (const scenario of COST_SCENARIOS) {
        for (let round = 1; round <= options.allocRounds; round++) {
          for (const child of children) {
            if (cost.errors.has(child.name) || !sizes.has(child)) continue;
            try {
              const answer = await child.ask({ op: "alloc", scenario, n: 500 });
              if (!Number.isFinite(answer.bytes as number)) {
                cost.allocDropped++;
                continue;
              }
              for (
                const [map, value] of [[cost.alloc, answer.bytes], [cost.buffers, answer.buffers]] as const
              ) {
                const bySubject = map.get(child.name) ?? new Map<CostScenario, number[]>();
                map.set(child.name, bySubject);
                const list = bySubject.get(scenario) ?? [];
                bySubject.set(scenario, list);
                list.push(value as number);
              }
            } catch (error) {
              cost.errors.set(
                child.name,
                `allocation ${scenario}: ${String((error as Error).message).slice(0, 300)}`,
              );
            }
          }
        }
      }
      if (runtime === "Node") {
        for (const child of children) {
          if (!SITE_SUBJECTS.includes(child.name) || cost.errors.has(child.name)) continue;
          const bySubject = new Map<CostScenario, AllocationSite[]>();
          cost.sites.set(child.name, bySubject);
          for (const scenario of ["read", "returning"] as const) {
            const answer = await child.ask({ op: "sites", scenario, n: 2000 }).catch(() => undefined);
            if (answer) bySubject.set(scenario, answer.sites as AllocationSite[]);
          }
        }
      }
    } finally {
      await Promise.all(children.map((child) => child.close()));
    }
  }
  return results;
}

/** The median of a list (NaN when empty). */
export function median(values: number[]): number {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Median CPU (or wall) µs per request of a subject in a scenario. */
export function cpuOf(
  cost: RuntimeCost,
  subject: string,
  scenario: CostScenario,
  field: "cpuUs" | "wallUs" = "cpuUs",
): number {
  return median((cost.cpu.get(subject)?.get(scenario) ?? []).map((s) => s[field]));
}

/**
 * The subject's figure against the bare handler's, paired batch by batch (same process set,
 * same round): `ratio` is the median of bare / subject, `addedUs` the median of subject - bare.
 */
export function paired(
  cost: RuntimeCost,
  subject: string,
  scenario: CostScenario,
  field: "cpuUs" | "wallUs" = "cpuUs",
): { ratio: number; addedUs: number } {
  const bare = cost.cpu.get("bare handler")?.get(scenario) ?? [];
  const mine = cost.cpu.get(subject)?.get(scenario) ?? [];
  const ratios: number[] = [];
  const added: number[] = [];
  for (const sample of mine) {
    const match = bare.find((b) => b.process === sample.process && b.round === sample.round);
    if (match === undefined) continue;
    ratios.push(match[field] / sample[field]);
    added.push(sample[field] - match[field]);
  }
  return { ratio: median(ratios), addedUs: median(added) };
}

/** Median bytes allocated per request (`buffers`: of those, in ArrayBuffer backing stores). */
export function allocOf(
  cost: RuntimeCost,
  subject: string,
  scenario: CostScenario,
  field: "alloc" | "buffers" = "alloc",
): number {
  return median(cost[field].get(subject)?.get(scenario) ?? []);
}
