// One subject in its own process, on Node, Deno or Bun: plain JavaScript that every runtime runs
// without a loader, websession coming from the built package (bench/subjects.mjs). bench/measure.ts
// starts one process per subject and drives them in turns over stdin (one JSON line in, one JSON
// line out), so that the subjects' batches are interleaved in time while none shares a heap, a JIT
// or a garbage collector with another.
//
// Usage: <runtime> bench/child.mjs <subject> (the names in bench/subjects.mjs)
// Scenarios: read (valid cookie, get, Response), returning (valid cookie, update, compare-and-set
// save), new (no cookie, update, save, Set-Cookie).
// Commands: {"op":"warm","ms":N} | {"op":"size","ms":N} -> {"n":{scenario:count}} |
// {"op":"cpu","scenario":S,"n":N} -> {"cpuUs","wallUs"} (process.cpuUsage: user + system of every
// thread) | {"op":"alloc","scenario":S,"n":N} -> {"bytes","gcs"} (needs --expose-gc and a young
// generation big enough for a batch; see allocated()) | {"op":"calibrate"} |
// {"op":"loop","scenario":S,"ms":N} -> {"requests"} (batches for N ms, for `node --cpu-prof`).
import process from "node:process";
import { createInterface } from "node:readline";
import v8 from "node:v8";
import { open } from "./subjects.mjs";

const SCENARIOS = ["read", "returning", "new"];
const READ_URL = "https://bench.example/read";
const COUNT_URL = "https://bench.example/count";
const [name] = process.argv.slice(2);
const runtime = "Deno" in globalThis ? "Deno" : "Bun" in globalThis ? "Bun" : "Node";

function send(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

const handlers = await open(name);

function fakeCookie() {
  const bytes = crypto.getRandomValues(new Uint8Array(48));
  const text = btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return `session=${text.slice(0, 22)}.${text.slice(22, 65)}`;
}

/** Cookies of 64 visitors, each from one new-visitor request. */
const cookies = [];
for (let i = 0; i < 64; i++) {
  const response = await handlers.count(new Request(COUNT_URL));
  if (response.status !== 200) throw new Error(`New visitor answered ${response.status}`);
  await response.arrayBuffer();
  const pairs = response.headers.getSetCookie().map((h) => h.split(";", 1)[0]).filter((p) =>
    !p.endsWith("=")
  );
  if (pairs.length === 0 && handlers.sets) throw new Error("New visitor got no cookie");
  cookies.push(handlers.sets ? pairs.join("; ") : fakeCookie());
}
let next = 0;

async function batch(scenario, n) {
  const handler = scenario === "read" ? handlers.read : handlers.count;
  const url = scenario === "read" ? READ_URL : COUNT_URL;
  for (let i = 0; i < n; i++) {
    const request = scenario === "new"
      ? new Request(url)
      : new Request(url, { headers: { cookie: cookies[next++ & 63] } });
    const response = await handler(request);
    if (response.status !== 200) throw new Error(`${scenario} answered ${response.status}`);
    response.headers.getSetCookie();
  }
}

let gcs = 0;
if (runtime === "Node" && typeof globalThis.gc === "function") {
  const { PerformanceObserver } = await import("node:perf_hooks");
  new PerformanceObserver((list) => void (gcs += list.getEntries().length)).observe({ entryTypes: ["gc"] });
}

function heap() {
  let used = 0;
  let young = 0;
  for (const space of v8.getHeapSpaceStatistics()) {
    if (space.space_name.startsWith("code")) continue; // the JIT's output, not the request's
    used += space.space_used_size;
    if (space.space_name === "new_space") young = space.space_used_size;
  }
  return { used, young, buffers: process.memoryUsage().arrayBuffers };
}

/**
 * Bytes allocated per call: Node 20's V8 has no allocation counter in getHeapStatistics() (no
 * total_allocated_bytes), so: a full GC settles the heap, the batch runs inside a young generation
 * big enough to hold it, and the growth of every heap space but code space (plus ArrayBuffer
 * backing stores) is what it allocated. A batch during which any collection ran is dropped (NaN).
 */
async function allocated(body, n) {
  globalThis.gc();
  await new Promise((resolve) => setTimeout(resolve, 20));
  const gcsBefore = gcs;
  const before = heap();
  await body();
  const after = heap();
  await new Promise((resolve) => setTimeout(resolve, 0));
  const seen = gcs - gcsBefore + (after.young < before.young ? 1 : 0);
  if (seen > 0) return { bytes: NaN, gcs: seen };
  return { bytes: (after.used - before.used + after.buffers - before.buffers) / n, gcs: 0 };
}

let sink;
async function handle(command) {
  switch (command.op) {
    case "warm": {
      for (const scenario of [...SCENARIOS].reverse()) {
        const start = process.cpuUsage();
        const spent = () => {
          const { user, system } = process.cpuUsage(start);
          return (user + system) / 1000;
        };
        let done = 0;
        while (spent() < command.ms || done < 20) {
          await batch(scenario, 5);
          done += 5;
        }
      }
      return { ok: true };
    }
    case "size": {
      const sizes = {};
      for (const scenario of [...SCENARIOS].reverse()) {
        const start = performance.now();
        let done = 0;
        while (performance.now() - start < 30 || done < 2) {
          await batch(scenario, 1);
          done++;
        }
        sizes[scenario] = Math.max(
          2,
          Math.min(50_000, Math.round(command.ms / ((performance.now() - start) / done))),
        );
      }
      return { n: sizes };
    }
    case "cpu": {
      const cpu = process.cpuUsage();
      const start = performance.now();
      await batch(command.scenario, command.n);
      const wall = performance.now() - start;
      const used = process.cpuUsage(cpu);
      return { cpuUs: (used.user + used.system) / command.n, wallUs: (1000 * wall) / command.n };
    }
    case "alloc": {
      if (typeof globalThis.gc !== "function") throw new Error("Allocation needs --expose-gc");
      const probe = await allocated(() => batch(command.scenario, 5), 5);
      const estimate = Number.isFinite(probe.bytes) ? Math.max(probe.bytes, 1000) : 200_000;
      const n = Math.max(10, Math.min(command.n, Math.floor(96 * 2 ** 20 / estimate)));
      return { ...(await allocated(() => batch(command.scenario, n), n)), n };
    }
    case "loop": {
      const end = performance.now() + command.ms;
      let requests = 0;
      for (; performance.now() < end; requests += 200) await batch(command.scenario, 200);
      return { requests };
    }
    case "calibrate": {
      const fill = () => {
        for (let i = 0; i < 20_000; i++) sink = new Array(1000).fill(0.5);
      };
      fill();
      return { ...(await allocated(fill, 20_000)), expected: 16 + 8 * 1000 + 32 };
    }
  }
  throw new Error(`Unknown op: "${command.op}"`);
}

send({ ready: true, runtime, sink: typeof sink });
for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() === "") continue;
  try {
    send(await handle(JSON.parse(line)));
  } catch (error) {
    send({ error: String(error?.stack ?? error).slice(0, 800) });
  }
}
process.exit(0);
