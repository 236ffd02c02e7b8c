// Profiling support. `node --cpu-prof --import tsx bench/profile.ts <subject> <scenario> <ms>`
// runs one subject's scenario in a tight loop (what the benchmark times, without mitata). With
// PROFILE_OUT=<file>, it profiles only the steady state after a warm-up (the same V8 CPU profiler,
// started and stopped through node:inspector) and writes the .cpuprofile there. `summarize()`
// turns a .cpuprofile into self-time tables.
import { readFile, writeFile } from "node:fs/promises";
import { Session } from "node:inspector/promises";
import { fileURLToPath } from "node:url";
import { cookiePool, type Scenario } from "./inprocess.ts";
import { subjects } from "./subjects.ts";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

/** Self time of one function, or of one group of files. */
export interface ProfileEntry {
  name: string;
  percent: number;
}

/** A profile reduced to what a reader needs. */
export interface ProfileSummary {
  functions: ProfileEntry[];
  groups: ProfileEntry[];
}

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** The area a function belongs to: a websession file, undici, a part of Node, a package. */
export function groupOf(url: string, name: string): string {
  if (name === "(garbage collector)") return "garbage collection";
  if (name === "(idle)") return "idle (waiting: thread pool, I/O)";
  if (name === "(program)") return "V8/native (program)";
  if (url.includes("/src/stores/")) return `websession ${url.slice(url.indexOf("/src/") + 1)}`;
  if (url.includes(`${ROOT}src/`) || url.includes("/.tmp/source-") || url.endsWith("/mod.ts")) {
    return `websession ${url.slice(url.indexOf("/src/") + 1)}`;
  }
  if (url.includes("/bench/")) return "benchmark harness";
  if (url.includes("node:internal/deps/undici") || url.includes("undici")) {
    return "undici (Request/Response/Headers)";
  }
  if (url.includes("node_modules/tsx") || url.includes("esbuild")) return "tsx loader";
  if (url.includes("node_modules/mitata")) return "benchmark harness";
  if (url.startsWith("node:internal/crypto") || url.includes("webcrypto")) return "node:crypto (Web Crypto)";
  if (url.startsWith("node:")) return `node internals (${url.split("/")[1] ?? url})`;
  if (url === "") return `native: ${name || "(anonymous)"}`;
  const modules = url.lastIndexOf("node_modules/");
  if (modules >= 0) {
    return url.slice(modules + 13).split("/").slice(0, url.includes("node_modules/@") ? 2 : 1).join("/");
  }
  return url;
}

/**
 * Self time by function and by group (websession file, undici, GC, idle...), in percent of the
 * profile's samples.
 */
export async function summarize(path: string, top = 12): Promise<ProfileSummary> {
  const profile = JSON.parse(await readFile(path, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<number, number>();
  if (profile.samples && profile.timeDeltas) {
    for (let i = 0; i < profile.samples.length; i++) {
      const id = profile.samples[i]!;
      self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i + 1] ?? profile.timeDeltas[i] ?? 0));
    }
  } else {
    for (const node of profile.nodes) self.set(node.id, node.hitCount ?? 0);
  }
  let total = 0;
  for (const value of self.values()) total += value;
  const functions = new Map<string, number>();
  const groups = new Map<string, number>();
  for (const [id, time] of self) {
    const frame = byId.get(id)!.callFrame;
    const file = frame.url.replace(`file://${ROOT}`, "").replace(/^file:\/\//, "");
    const fname = `${frame.functionName || "(anonymous)"} ${
      file ? `${file.split("/").slice(-2).join("/")}:${frame.lineNumber + 1}` : ""
    }`.trim();
    functions.set(fname, (functions.get(fname) ?? 0) + time);
    const group = groupOf(frame.url, frame.functionName);
    groups.set(group, (groups.get(group) ?? 0) + time);
  }
  const rank = (map: Map<string, number>, n: number) =>
    [...map].sort((a, b) => b[1] - a[1]).slice(0, n).map(([name, time]) => ({
      name,
      percent: (100 * time) / total,
    }));
  return { functions: rank(functions, top), groups: rank(groups, top) };
}

async function main(): Promise<void> {
  const [name, scenario, ms] = process.argv.slice(2) as [string, Scenario, string];
  const subject = subjects().find((s) => s.name === name);
  if (subject === undefined) throw new Error(`No subject "${name}"`);
  const instance = await subject.open(false);
  const pool = await cookiePool(instance, 64, subject.kind === "baseline");
  const url = `https://bench.example/${scenario === "read" ? "read" : "count"}`;
  const handler = scenario === "read" ? instance.read : instance.count;
  let i = 0;
  const loop = async (duration: number) => {
    const end = performance.now() + duration;
    while (performance.now() < end) {
      if (scenario === "inflight16") {
        const batch: Promise<Response>[] = [];
        for (let k = 0; k < 16; k++) {
          batch.push(handler(new Request(url, { headers: { cookie: pool[i++ % pool.length]! } })));
        }
        await Promise.all(batch);
      } else {
        const request = scenario === "new"
          ? new Request(url)
          : new Request(url, { headers: { cookie: pool[i++ % pool.length]! } });
        (await handler(request)).headers.getSetCookie();
      }
    }
  };
  const out = process.env.PROFILE_OUT;
  if (out === undefined) {
    await loop(Number(ms));
  } else {
    await loop(Math.min(1000, Number(ms) / 4)); // warm-up, not profiled
    const session = new Session();
    session.connect();
    await session.post("Profiler.enable");
    await session.post("Profiler.setSamplingInterval", { interval: 100 });
    await session.post("Profiler.start");
    await loop(Number(ms));
    const { profile } = await session.post("Profiler.stop");
    session.disconnect();
    await writeFile(out, JSON.stringify(profile));
  }
  await instance.close();
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
