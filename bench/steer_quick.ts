// The quick steering figures while changing the code: bytes allocated per request on Node and CPU
// µs added over the bare handler on Deno and Bun, for the bare handler, the floor and websession
// only, on a `dist/` directory (default: this checkout's, after `npm run build`). A few minutes
// instead of `npm run bench`'s ten; the same children and measurements (bench/steer_cost.ts).
//
// Usage: npm run build && node --import tsx bench/steer_quick.ts [dist-dir] [--sets=N] [--runtimes=Deno,Bun]
import { resolve } from "node:path";
import { median, pairedSpread, runAlloc, runCpu, type Scenario } from "./steer_cost.ts";
import { ROOT, type RuntimeName } from "./runtimes.ts";

const args = process.argv.slice(2);
const dist = resolve(args.find((a) => !a.startsWith("--")) ?? `${ROOT}dist`) + "/";
const sets = Number(args.find((a) => a.startsWith("--sets="))?.slice(7) ?? 3);
const runtimes = (args.find((a) => a.startsWith("--runtimes="))?.slice(11) ?? "Deno,Bun")
  .split(",").filter(Boolean) as RuntimeName[];
const subjects = ["bare", "floor", "websession"];
const scenarios: Scenario[] = ["read", "returning"];
const log = (line: string) => console.error(line);

const alloc = await runAlloc({ runtime: "Node", dist, batches: 5, warmMs: 300, subjects, log });
for (const scenario of scenarios) {
  const bare = median(alloc.bytes.bare?.[scenario] ?? []);
  const row = subjects.slice(1).map((s) => {
    const b = alloc.bytes[s]?.[scenario] ?? [];
    return `${s} +${(median(b) - bare).toFixed(0)} B [${Math.min(...b) - bare}–${Math.max(...b) - bare}]`;
  });
  console.log(`Node bytes/request over bare, ${scenario}: ${row.join(", ")}`);
}
if (Object.keys(alloc.errors).length > 0) console.log(alloc.errors);

for (const runtime of runtimes) {
  const cpu = await runCpu({ runtime, dist, sets, rounds: 5, batchMs: 30, warmMs: 300, subjects, log });
  for (const scenario of scenarios) {
    const row = subjects.slice(1).map((s) => {
      const d = pairedSpread(cpu, s, "bare", scenario, (a, b) => (a.cpuUs - b.cpuUs));
      return `${s} +${d.median.toFixed(1)} µs [${d.min.toFixed(1)}–${d.max.toFixed(1)}]`;
    });
    console.log(`${runtime} CPU added over bare, ${scenario}: ${row.join(", ")}`);
  }
  if (Object.keys(cpu.errors).length > 0) console.log(cpu.errors);
}
