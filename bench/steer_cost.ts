// In-process CPU and bytes per request on the built package, with figures one can steer by:
// every ratio is a median over at least five separate process sets with its min–max, each
// process set's figure being the median of its rounds, and every round pairing a subject's batch
// with the bare handler's batch of the same round (run a fraction of a second apart, in rotating
// order). A second bare process ("bare (second process)") gives the bare-versus-bare row: how far
// two identical subjects drift apart on this machine, i.e. how much of any spread is the machine's.
// `bench/steer_child.mjs` is the child (plain JavaScript, no loader).
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { command, ROOT, type RuntimeName } from "./runtimes.ts";

export const SCENARIOS = ["read", "returning", "new"] as const;
export type Scenario = typeof SCENARIOS[number];
export const SUBJECTS = [
  "bare",
  "bare (second process)",
  "bare + copy",
  "floor",
  "floor, cookie in place",
  "websession",
] as const;
export type SubjectName = typeof SUBJECTS[number];

export interface Batch {
  set: number;
  round: number;
  cpuUs: number;
  wallUs: number;
}

export interface RuntimeCpu {
  runtime: RuntimeName;
  /** subject -> scenario -> batches */
  batches: Record<string, Record<string, Batch[]>>;
  errors: Record<string, string>;
}

export interface Alloc {
  runtime: RuntimeName;
  /** subject -> scenario -> bytes per request, one per batch (NaN dropped) */
  bytes: Record<string, Record<string, number[]>>;
  calibration?: { bytes: number; expected: number };
  dropped: number;
  errors: Record<string, string>;
}

class Child {
  readonly name: string;
  #process: ChildProcess;
  #waiting: Array<(line: string) => void> = [];
  #stderr = "";
  #exited: Promise<void>;
  constructor(runtime: RuntimeName, name: string, dist: string, v8Flags: string[] = []) {
    this.name = name;
    const [cmd, args] = runtime === "Node"
      ? [process.execPath, [...v8Flags, "bench/steer_child.mjs", name]] // no loader: plain JavaScript
      : command(runtime, "bench/steer_child.mjs", [name], { v8Flags });
    this.#process = spawn(cmd, args, {
      cwd: ROOT,
      env: { ...process.env, DIST_DIR: dist, NO_COLOR: "1" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    createInterface({ input: this.#process.stdout! }).on("line", (line) => {
      if (line.startsWith("{")) this.#waiting.shift()?.(line);
    });
    this.#process.stderr!.on("data", (c: Buffer) => void (this.#stderr = (this.#stderr + c).slice(-2000)));
    this.#exited = new Promise((resolve) =>
      this.#process.once("exit", (code) => {
        for (const w of this.#waiting.splice(0)) {
          w(JSON.stringify({ error: `exited with ${code}: ${this.#stderr.slice(-600)}` }));
        }
        resolve();
      })
    );
  }
  next(): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) =>
      this.#waiting.push((line) => {
        const m = JSON.parse(line) as Record<string, unknown>;
        if (typeof m.error === "string") reject(new Error(m.error));
        else resolve(m);
      })
    );
  }
  ask(message: Record<string, unknown>): Promise<Record<string, unknown>> {
    const answer = this.next();
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
  subjects: readonly string[],
  dist: string,
  errors: Record<string, string>,
  v8Flags: string[] = [],
): Promise<Child[]> {
  const children = subjects.filter((s) => !(s in errors)).map((s) => new Child(runtime, s, dist, v8Flags));
  const ok = await Promise.all(children.map((c) =>
    c.next().then(() => true, async (e) => {
      errors[c.name] = String((e as Error).message).slice(0, 300);
      await c.close();
      return false;
    })
  ));
  return children.filter((_, i) => ok[i]);
}

/** The CPU pass on one runtime. */
export async function runCpu(options: {
  runtime: RuntimeName;
  dist: string;
  sets: number;
  rounds: number;
  batchMs: number;
  warmMs: number;
  subjects?: readonly string[];
  log: (line: string) => void;
}): Promise<RuntimeCpu> {
  const subjects = options.subjects ?? SUBJECTS;
  const result: RuntimeCpu = { runtime: options.runtime, batches: {}, errors: {} };
  for (let set = 1; set <= options.sets; set++) {
    options.log(`  ${options.runtime} CPU: process set ${set}/${options.sets}`);
    const children = await openAll(options.runtime, subjects, options.dist, result.errors);
    try {
      // Warm-up side by side (the JIT needs no quiet machine), then batch sizes one at a time.
      await Promise.all(children.map((c) => c.ask({ op: "warm", ms: options.warmMs })));
      const sizes = new Map<Child, Record<Scenario, number>>();
      for (const c of children) sizes.set(c, (await c.ask({ op: "size", ms: options.batchMs })).n as never);
      for (const scenario of SCENARIOS) {
        // An unmeasured double batch takes over from the previous scenario's leftovers.
        for (const c of children) await c.ask({ op: "cpu", scenario, n: 2 * sizes.get(c)![scenario] });
        for (let round = 1; round <= options.rounds; round++) {
          const shift = (round - 1 + (set - 1) * options.rounds) % children.length;
          for (const c of [...children.slice(shift), ...children.slice(0, shift)]) {
            try {
              const a = await c.ask({ op: "cpu", scenario, n: sizes.get(c)![scenario] });
              ((result.batches[c.name] ??= {})[scenario] ??= []).push({
                set,
                round,
                cpuUs: a.cpuUs as number,
                wallUs: a.wallUs as number,
              });
            } catch (e) {
              result.errors[c.name] = `${scenario}: ${String((e as Error).message).slice(0, 300)}`;
            }
          }
        }
      }
    } finally {
      await Promise.all(children.map((c) => c.close()));
    }
  }
  return result;
}

/** The allocation pass (Node; Deno too): `batches` batches per subject and scenario. */
export async function runAlloc(options: {
  runtime: RuntimeName;
  dist: string;
  batches: number;
  warmMs: number;
  subjects?: readonly string[];
  log: (line: string) => void;
}): Promise<Alloc> {
  const subjects = options.subjects ?? SUBJECTS;
  const result: Alloc = { runtime: options.runtime, bytes: {}, dropped: 0, errors: {} };
  options.log(`  ${options.runtime} allocation: ${subjects.length} subjects x ${options.batches} batches`);
  const flags = ["--expose-gc", "--max-semi-space-size=256", "--min-semi-space-size=256"];
  const children = await openAll(options.runtime, subjects, options.dist, result.errors, flags);
  try {
    await Promise.all(children.map((c) => c.ask({ op: "warm", ms: options.warmMs })));
    const check = await children[0]?.ask({ op: "calibrate" }).catch(() => undefined);
    if (check) result.calibration = { bytes: check.bytes as number, expected: check.expected as number };
    for (const scenario of SCENARIOS) {
      for (let b = 0; b < options.batches; b++) {
        for (const c of children) {
          try {
            const a = await c.ask({ op: "alloc", scenario, n: 2000 });
            if (!Number.isFinite(a.bytes as number)) {
              result.dropped++;
              continue;
            }
            ((result.bytes[c.name] ??= {})[scenario] ??= []).push(a.bytes as number);
          } catch (e) {
            result.errors[c.name] = `alloc ${scenario}: ${String((e as Error).message).slice(0, 300)}`;
          }
        }
      }
    }
  } finally {
    await Promise.all(children.map((c) => c.close()));
  }
  return result;
}

export function median(values: number[]): number {
  const s = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** A figure per process set (the median of its rounds), then their median and range. */
export interface Spread {
  median: number;
  min: number;
  max: number;
  perSet: number[];
}

export function spreadOf(perSet: number[]): Spread {
  const v = perSet.filter(Number.isFinite);
  return { median: median(v), min: Math.min(...v), max: Math.max(...v), perSet: v };
}

/**
 * Pairs `subject` with `reference` round by round within each process set and reduces each pair
 * with `f` (e.g. reference / subject, or subject - reference); median per set, then spread.
 */
export function pairedSpread(
  cpu: RuntimeCpu,
  subject: string,
  reference: string,
  scenario: Scenario,
  f: (subject: Batch, reference: Batch) => number,
): Spread {
  const mine = cpu.batches[subject]?.[scenario] ?? [];
  const ref = cpu.batches[reference]?.[scenario] ?? [];
  const sets = [...new Set(mine.map((b) => b.set))];
  return spreadOf(sets.map((set) =>
    median(
      mine.filter((b) => b.set === set).flatMap((b) => {
        const r = ref.find((x) => x.set === set && x.round === b.round);
        return r === undefined ? [] : [f(b, r)];
      }),
    )
  ));
}

/** The same with three subjects in one round (e.g. points between bare/floor and bare/websession). */
export function tripleSpread(
  cpu: RuntimeCpu,
  names: [string, string, string],
  scenario: Scenario,
  f: (a: Batch, b: Batch, c: Batch) => number,
): Spread {
  const lists = names.map((n) => cpu.batches[n]?.[scenario] ?? []);
  const sets = [...new Set(lists[0]!.map((b) => b.set))];
  return spreadOf(sets.map((set) =>
    median(
      lists[0]!.filter((b) => b.set === set).flatMap((a) => {
        const b = lists[1]!.find((x) => x.set === set && x.round === a.round);
        const c = lists[2]!.find((x) => x.set === set && x.round === a.round);
        return b && c ? [f(a, b, c)] : [];
      }),
    )
  ));
}
