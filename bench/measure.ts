// The measuring helpers every part of the benchmark shares:
// - `Child`: a process on Node, Deno or Bun that answers one JSON line per JSON line sent (the
//   subjects of bench/child.mjs, the HTTP servers of bench/server.mjs, the contention processes);
// - the in-process CPU pass and the allocation pass over bench/child.mjs;
// - the figures one can steer by: every ratio a median over >= 5 separate process sets with its
//   min–max, each set's figure the median of its rounds, each round pairing a subject's batch with
//   the bare handler's batch of the same round (a fraction of a second apart, in rotating order).
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const ROOT: string = fileURLToPath(new URL("..", import.meta.url));
const BIN = `${ROOT}node_modules/.bin/`;

export type RuntimeName = "Node" | "Deno" | "Bun";
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
/** The peers of bench/subjects.mjs, measured beside the subjects on Node. */
export const PEERS = [
  "react-router memory",
  "@remix-run/session memory",
  "hono-sessions MemoryStore",
  "@hono/session",
  "iron-session",
  "h3 useSession",
] as const;

export interface Batch {
  set: number;
  round: number;
  cpuUs: number;
  wallUs: number;
}

export interface RuntimeCpu {
  runtime: string;
  /** subject -> scenario -> batches */
  batches: Record<string, Record<string, Batch[]>>;
  errors: Record<string, string>;
  version?: string;
}

export interface Alloc {
  /** subject -> scenario -> bytes per request, one per batch (NaN dropped) */
  bytes: Record<string, Record<string, number[]>>;
  calibration?: { bytes: number; expected: number };
  dropped: number;
  errors: Record<string, string>;
}

/** A runtime's version, or "?" when it does not start. */
export function versionOf(runtime: RuntimeName): string {
  try {
    if (runtime === "Node") return process.version.slice(1);
    const out = execFileSync(`${BIN}${runtime.toLowerCase()}`, ["--version"], { encoding: "utf8" });
    return /(\d+\.\d+\.\d+)/.exec(out)?.[1] ?? "?";
  } catch {
    return "?";
  }
}

/** A process speaking one JSON line per JSON line; its first line says it is ready. */
export class Child {
  readonly name: string;
  #process: ChildProcess;
  #waiting: Array<(line: string) => void> = [];
  #stderr = "";
  /** Why it is gone, once it has exited. */
  #gone: string | undefined;
  #exited: Promise<void>;
  readonly ready: Promise<Record<string, unknown>>;

  /**
   * @param file A plain JavaScript file under the repository, run without a loader.
   * @param options `env`: added to the environment (BENCH_PKG names the package measured);
   *   `flags`: V8 flags (Node and Deno) or, on Node, any flag before the file; `runtimeArgs`:
   *   arguments of the runtime before the file (e.g. Deno's `--unstable-kv`).
   */
  constructor(
    name: string,
    file: string,
    args: string[],
    options: {
      runtime?: RuntimeName;
      env?: Record<string, string>;
      flags?: string[];
      runtimeArgs?: string[];
    } = {},
  ) {
    this.name = name;
    const flags = options.flags ?? [];
    const before = options.runtimeArgs ?? [];
    const [cmd, argv] = options.runtime === "Deno"
      ? [`${BIN}deno`, [
        "run",
        "-A",
        ...(flags.length ? [`--v8-flags=${flags.join(",")}`] : []),
        ...before,
        file,
        ...args,
      ]]
      : options.runtime === "Bun"
      ? [`${BIN}bun`, [...before, file, ...args]]
      : [process.execPath, [...flags, ...before, file, ...args]];
    this.#process = spawn(cmd, argv, {
      cwd: ROOT,
      env: { ...process.env, ...options.env, NO_COLOR: "1" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    createInterface({ input: this.#process.stdout! }).on("line", (line) => {
      if (line.startsWith("{")) this.#waiting.shift()?.(line); // not a library's own output
    });
    this.#process.stderr!.on("data", (c: Buffer) => void (this.#stderr = (this.#stderr + c).slice(-2000)));
    // A runtime that does not start (ENOENT) emits "error" and "close", never "exit".
    this.#process.on("error", (e) => void (this.#stderr += `${e.message}\n`));
    this.#process.stdin!.on("error", () => {}); // EPIPE once it is gone: "close" reports it
    this.#exited = new Promise((resolve) =>
      this.#process.once("close", (code) => {
        this.#gone = `exited with ${code}: ${this.#stderr.slice(-600)}`;
        for (const w of this.#waiting.splice(0)) w(JSON.stringify({ error: this.#gone }));
        resolve();
      })
    );
    this.ready = this.#next();
  }

  #next(): Promise<Record<string, unknown>> {
    if (this.#gone !== undefined) return Promise.reject(new Error(this.#gone));
    return new Promise((resolve, reject) =>
      this.#waiting.push((line) => {
        const m = JSON.parse(line) as Record<string, unknown>;
        if (typeof m.error === "string") reject(new Error(m.error));
        else resolve(m);
      })
    );
  }

  ask(message: Record<string, unknown>): Promise<Record<string, unknown>> {
    const answer = this.#next();
    this.#process.stdin!.write(`${JSON.stringify(message)}\n`);
    return answer;
  }

  /** Ends its stdin (it exits), SIGKILL after 5 s. */
  async close(): Promise<void> {
    this.#process.stdin!.end();
    const timer = setTimeout(() => this.#process.kill("SIGKILL"), 5000);
    await this.#exited;
    clearTimeout(timer);
  }
}

/** Starts one bench/child.mjs per subject; the ones that fail to start land in `errors`. */
async function openAll(
  runtime: RuntimeName,
  subjects: readonly string[],
  pkg: string,
  errors: Record<string, string>,
  flags: string[] = [],
): Promise<Child[]> {
  const children = subjects.filter((s) => !(s in errors)).map((s) =>
    new Child(s, "bench/child.mjs", [s], { runtime, env: { BENCH_PKG: pkg }, flags })
  );
  const ok = await Promise.all(children.map((c) =>
    c.ready.then(() => true, async (e) => {
      errors[c.name] = String((e as Error).message).slice(0, 300);
      await c.close();
      return false;
    })
  ));
  return children.filter((_, i) => ok[i]);
}

/** The CPU pass on one runtime: `sets` process sets, `rounds` rotated rounds per scenario. */
export async function runCpu(options: {
  runtime: RuntimeName;
  pkg: string;
  sets: number;
  rounds: number;
  batchMs: number;
  warmMs: number;
  subjects: readonly string[];
  log: (line: string) => void;
}): Promise<RuntimeCpu> {
  const result: RuntimeCpu = { runtime: options.runtime, batches: {}, errors: {} };
  for (let set = 1; set <= options.sets; set++) {
    options.log(`  ${options.runtime} CPU: process set ${set}/${options.sets}`);
    const children = await openAll(options.runtime, options.subjects, options.pkg, result.errors);
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

/** The allocation pass (Node): `batches` batches per subject and scenario. */
export async function runAlloc(options: {
  pkg: string;
  batches: number;
  warmMs: number;
  subjects: readonly string[];
  log: (line: string) => void;
}): Promise<Alloc> {
  const result: Alloc = { bytes: {}, dropped: 0, errors: {} };
  options.log(`  Node allocation: ${options.subjects.length} subjects x ${options.batches} batches`);
  const flags = ["--expose-gc", "--max-semi-space-size=256", "--min-semi-space-size=256"];
  const children = await openAll("Node", options.subjects, options.pkg, result.errors, flags);
  try {
    await Promise.all(children.map((c) => c.ask({ op: "warm", ms: options.warmMs })));
    const check = await children[0]?.ask({ op: "calibrate" }).catch(() => undefined);
    if (check) result.calibration = { bytes: check.bytes as number, expected: check.expected as number };
    for (const scenario of SCENARIOS) {
      for (let b = 0; b < options.batches; b++) {
        for (const c of children) {
          try {
            const a = await c.ask({ op: "alloc", scenario, n: 2000 });
            if (!Number.isFinite(a.bytes as number)) result.dropped++;
            else ((result.bytes[c.name] ??= {})[scenario] ??= []).push(a.bytes as number);
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
 * Pairs the batches of `names` round by round within each process set and reduces each tuple with
 * `f` (e.g. bare / subject, or subject - bare); the median per set, then the spread over sets.
 */
export function pairedSpread(
  cpu: RuntimeCpu,
  names: string[],
  scenario: Scenario,
  f: (...batches: Batch[]) => number,
): Spread {
  const lists = names.map((n) => cpu.batches[n]?.[scenario] ?? []);
  const sets = [...new Set(lists[0]!.map((b) => b.set))];
  return spreadOf(sets.map((set) =>
    median(
      lists[0]!.filter((b) => b.set === set).flatMap((first) => {
        const tuple = lists.map((list) => list.find((x) => x.set === set && x.round === first.round));
        return tuple.every((b) => b !== undefined) ? [f(...tuple)] : [];
      }),
    )
  ));
}

/** bare / subject, paired by round. */
export const ratioOf = (cpu: RuntimeCpu, subject: string, scenario: Scenario, ref = "bare"): Spread =>
  pairedSpread(cpu, [subject, ref], scenario, (s, r) => r!.cpuUs / s!.cpuUs);
/** subject − bare in µs, paired by round. */
export const addedOf = (cpu: RuntimeCpu, subject: string, scenario: Scenario, ref = "bare"): Spread =>
  pairedSpread(cpu, [subject, ref], scenario, (s, r) => s!.cpuUs - r!.cpuUs);
/** Points below the floor: 100 × (bare/floor − bare/websession), paired by round. */
export const floorPoints = (cpu: RuntimeCpu, scenario: Scenario): Spread =>
  pairedSpread(
    cpu,
    ["websession", "floor", "bare"],
    scenario,
    (w, fl, b) => 100 * (b!.cpuUs / fl!.cpuUs - b!.cpuUs / w!.cpuUs),
  );
