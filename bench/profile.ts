// A CPU profile of one scenario on the built package: websession's subject of bench/child.mjs
// under `node --cpu-prof` running batches for a while (its `loop` command); then self time by area
// and, for websession's own functions, self and inclusive time (the share of samples whose stack
// holds the function).
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Child, type Scenario } from "./measure.ts";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
export interface ProfileFigures {
  requests: number;
  seconds: number;
  /** µs of sampled time per request. */
  usPerRequest: number;
  areas: Array<{ name: string; percent: number }>;
  functions: Array<{ name: string; self: number; total: number }>;
  topSelf: Array<{ name: string; percent: number }>;
}

function area(url: string, name: string): string {
  if (name === "(garbage collector)") return "garbage collection";
  if (name === "(program)" || name === "(idle)") return `V8/native ${name}`;
  const d = url.indexOf("/dist/");
  if (d >= 0) return `websession ${url.slice(d + 6)}`;
  if (url.includes("/bench/")) return "benchmark loop";
  if (url.includes("undici")) return "undici (Request/Response/Headers)";
  if (url.startsWith("node:")) return `node internals (${url.split("/")[1] ?? url})`;
  if (url === "") return `native: ${name || "(anonymous)"}`;
  return url;
}

/** Profiles `scenario` for about `ms` of batches (harness loop and warm-up included). */
export async function runProfile(pkg: string, scenario: Scenario, ms: number): Promise<ProfileFigures> {
  const dir = await mkdtemp(join(tmpdir(), "websession-prof-"));
  try {
    const child = new Child("websession", "bench/child.mjs", ["websession"], {
      env: { BENCH_PKG: pkg },
      flags: ["--cpu-prof", `--cpu-prof-dir=${dir}`, "--cpu-prof-interval", "200"],
    });
    await child.ready;
    const { requests } = await child.ask({ op: "loop", scenario, ms });
    await child.close(); // the profile is written as the process exits
    return await summarize(dir, requests as number);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function summarize(dir: string, requests: number): Promise<ProfileFigures> {
  const file = (await readdir(dir)).find((f) => f.endsWith(".cpuprofile"))!;
  const profile = JSON.parse(await readFile(join(dir, file), "utf8")) as {
    nodes: Node[];
    samples: number[];
    timeDeltas: number[];
    startTime: number;
    endTime: number;
  };
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const label = (n: Node) => {
    const f = n.callFrame;
    const d = f.url.indexOf("/dist/");
    const where = d >= 0 ? f.url.slice(d + 6) : f.url.split("/").slice(-2).join("/");
    return `${f.functionName || "(anonymous)"} ${where ? `${where}:${f.lineNumber + 1}` : ""}`.trim();
  };
  let total = 0;
  const areas = new Map<string, number>();
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const t = profile.timeDeltas[i + 1] ?? profile.timeDeltas[i] ?? 0;
    const node = byId.get(profile.samples[i]!)!;
    if (node.callFrame.functionName === "(idle)") continue; // waiting for the harness's next command
    total += t;
    const a = area(node.callFrame.url, node.callFrame.functionName);
    areas.set(a, (areas.get(a) ?? 0) + t);
    self.set(label(node), (self.get(label(node)) ?? 0) + t);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const n = byId.get(id)!;
      if (!n.callFrame.url.includes("/dist/")) continue;
      const l = label(n);
      if (seen.has(l)) continue;
      seen.add(l);
      inclusive.set(l, (inclusive.get(l) ?? 0) + t);
    }
  }
  const pct = (x: number) => (100 * x) / total;
  return {
    requests,
    seconds: (profile.endTime - profile.startTime) / 1e6,
    usPerRequest: total / requests,
    areas: [...areas].sort((a, b) => b[1] - a[1]).slice(0, 14).map(([name, t]) => ({
      name,
      percent: pct(t),
    })),
    functions: [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, 30).map(([name, t]) => ({
      name,
      self: pct(self.get(name) ?? 0),
      total: pct(t),
    })),
    topSelf: [...self].sort((a, b) => b[1] - a[1]).slice(0, 15).map(([name, t]) => ({
      name,
      percent: pct(t),
    })),
  };
}
