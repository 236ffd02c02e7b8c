// One subject in its own process, on Node (through tsx), Deno or Bun: what a request costs it in
// CPU time and in bytes allocated. `bench/cost.ts` starts one such process per subject and drives
// them in turns over stdin, so that every subject's batches are interleaved with the others' in
// time while no subject shares a heap, a JIT or a garbage collector with another.
//
// Usage: <runtime> bench/cost_child.ts <subject> <cpu|alloc>
//
// Commands (one JSON line each on stdin, one JSON line answered on stdout):
// - {"op":"warm","ms":N}  runs every scenario for N ms of CPU time (the JIT's warm-up):
//                         {"ok":true}
// - {"op":"size"}         each scenario's batch size, about BATCH_MS of wall time:
//                         {"n":{scenario:count}}
// - {"op":"cpu","scenario":S,"n":N}    N requests one after another:
//                         {"cpuUs":µs per request,"wallUs":µs per request}
// - {"op":"alloc","scenario":S,"n":N}  N requests between two heap readings with no garbage
//                         collection in between: {"bytes":per request,"gcs":collections seen}
// - {"op":"calibrate"}    the allocation method checked against a known allocation
// - {"op":"sites","scenario":S,"n":N}  bytes per request by allocating function (Node only)
//
// CPU is process.cpuUsage() (getrusage: user + system time of every thread of the process,
// so garbage-collector helper threads and the thread pool count). Deno and Bun implement it in
// node:process the same way (checked: a worker thread's busy loop shows in the main thread's
// reading on all three).
//
// Bytes allocated: the process runs with a young generation large enough to hold a whole batch
// (`--min-semi-space-size` = `--max-semi-space-size` = 256 MiB) and `--expose-gc`. A full GC
// settles the heap, then the batch runs, and the growth of every V8 heap space but code space,
// plus the growth of ArrayBuffer backing stores (`process.memoryUsage().arrayBuffers`), is what
// the batch allocated. A batch is only counted when no GC ran during it: on Node a `gc`
// PerformanceObserver counts collections; on every runtime a collection shows as the young
// generation's used size going down. Node 20 has no allocation counter in
// `v8.getHeapStatistics()`; the sampling heap profiler is statistical and sees only what
// survives unless told otherwise, and `GCProfiler` needs a collection to report anything, so
// this is the exact method available. The "calibrate" command checks it on a known allocation
// (an array of 1,000 8-byte numbers: 8,000 bytes of elements, a 16-byte header and a 32-byte
// array object). Bun (JavaScriptCore) exposes no such space statistics: no allocation figures.
import process from "node:process";
import { createInterface } from "node:readline";
import v8 from "node:v8";

type Handler = (request: Request) => Promise<Response> | Response;
type Scenario = "read" | "returning" | "new";
const SCENARIOS: Scenario[] = ["read", "returning", "new"];
const READ_URL = "https://bench.example/read";
const COUNT_URL = "https://bench.example/count";
const SECRET = "benchmark secret: at least thirty-two characters";

const [name, mode = "cpu"] = process.argv.slice(2);
const batchMs = Number(process.env.BATCH_MS ?? 50);
const runtime = "Deno" in globalThis ? "Deno" : "Bun" in globalThis ? "Bun" : "Node";
declare const gc: undefined | (() => void);

function send(message: unknown): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

/** A cookie shaped like a signed session id, for handlers that set none. */
function fakeCookie(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(48));
  const text = btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return `session=${text.slice(0, 22)}.${text.slice(22, 65)}`;
}

async function open(): Promise<{ read: Handler; count: Handler; sets: boolean }> {
  if (name === "bare handler") {
    // The bare handler: no session, the same freshly built Request.
    const bare = (_req: Request) => new Response("ok");
    return { read: bare, count: bare, sets: false };
  }
  if (name === "websession, session never asked for") {
    // The wrapper alone: withSession around a handler that never calls getSession.
    const { MemoryStore, withSession } = await import("./websession.ts");
    const wrapped = withSession((_req: Request) => new Response("ok"), {
      store: new MemoryStore(),
      secrets: SECRET,
    });
    return { read: wrapped, count: wrapped, sets: false };
  }
  if (name === "websession MemoryStore") {
    const { getSession, MemoryStore, withSession } = await import("./websession.ts");
    const options = { store: new MemoryStore(), secrets: SECRET };
    return {
      read: withSession(async (req: Request) => {
        const session = await getSession<{ visits?: number }>(req);
        session.get("visits");
        return new Response("ok");
      }, options),
      count: withSession(async (req: Request) => {
        const session = await getSession<{ visits?: number }>(req);
        session.update("visits", (n = 0) => n + 1);
        return new Response("ok");
      }, options),
      sets: true,
    };
  }
  const { subjects } = await import("./subjects.ts");
  const subject = subjects().find((s) => s.name === name);
  if (subject === undefined) throw new Error(`Unknown subject: "${name}"`);
  const instance = await subject.open(false);
  return { read: instance.read, count: instance.count, sets: subject.kind !== "baseline" };
}

const handlers = await open();

/** Cookies of 64 visitors, each from one new-visitor request. */
async function pool(): Promise<string[]> {
  const cookies: string[] = [];
  for (let i = 0; i < 64; i++) {
    const response = await handlers.count(new Request(COUNT_URL));
    if (response.status !== 200) throw new Error(`New visitor answered ${response.status}`);
    await response.arrayBuffer();
    const pairs = response.headers.getSetCookie().map((header) => header.split(";", 1)[0]!)
      .filter((pair) => !pair.endsWith("="));
    if (pairs.length === 0 && handlers.sets) throw new Error("New visitor got no cookie");
    cookies.push(pairs.length > 0 ? pairs.join("; ") : fakeCookie());
  }
  return cookies;
}
const cookies = await pool();
let next = 0;

/** Runs `n` requests of a scenario one after another, each on a freshly built Request. */
async function batch(scenario: Scenario, n: number): Promise<void> {
  const handler = scenario === "read" ? handlers.read : handlers.count;
  const url = scenario === "read" ? READ_URL : COUNT_URL;
  for (let i = 0; i < n; i++) {
    const request = scenario === "new"
      ? new Request(url)
      : new Request(url, { headers: { cookie: cookies[next++ & 63]! } });
    const response = await handler(request);
    if (response.status !== 200) throw new Error(`${scenario} answered ${response.status}`);
    response.headers.getSetCookie();
  }
}

let gcs = 0;
if (mode === "alloc" && runtime === "Node") {
  const { PerformanceObserver } = await import("node:perf_hooks");
  new PerformanceObserver((list) => void (gcs += list.getEntries().length)).observe({ entryTypes: ["gc"] });
}

function heap(): { used: number; young: number; buffers: number } {
  let used = 0;
  let young = 0;
  for (const space of v8.getHeapSpaceStatistics()) {
    if (space.space_name.startsWith("code")) continue; // the JIT's output, not the request's
    used += space.space_used_size;
    if (space.space_name === "new_space") young = space.space_used_size;
  }
  return { used, young, buffers: process.memoryUsage().arrayBuffers };
}

const settle = async () => {
  gc!();
  await new Promise((resolve) => setTimeout(resolve, 20)); // let concurrent sweeping finish
};

/**
 * Bytes allocated per call of `body` (of which `buffers` in ArrayBuffer backing stores), or NaN
 * with the collections seen when one ran.
 */
async function allocated(
  body: () => Promise<void> | void,
  n: number,
): Promise<{ bytes: number; buffers: number; gcs: number }> {
  await settle();
  const gcsBefore = gcs;
  const before = heap();
  await body();
  const after = heap();
  // The observer is told of a collection in a later task.
  await new Promise((resolve) => setTimeout(resolve, 0));
  const seen = gcs - gcsBefore + (after.young < before.young ? 1 : 0);
  if (seen > 0) return { bytes: NaN, buffers: NaN, gcs: seen };
  const buffers = (after.buffers - before.buffers) / n;
  return { bytes: (after.used - before.used) / n + buffers, buffers, gcs: 0 };
}

let sink: unknown;
async function handle(
  command: { op: string; scenario?: Scenario; n?: number; ms?: number },
): Promise<unknown> {
  switch (command.op) {
    case "warm": {
      // By this process's own CPU time, not wall time: the children warm up side by side. The
      // scenario measured first is warmed last: what the others leave behind (the new visitors'
      // garbage and background id minting) is then paid before the measurement starts.
      for (const scenario of [...SCENARIOS].reverse()) {
        const start = process.cpuUsage();
        const spent = () => {
          const { user, system } = process.cpuUsage(start);
          return (user + system) / 1000;
        };
        let done = 0;
        while (spent() < command.ms! || done < 20) {
          await batch(scenario, 5);
          done += 5;
        }
      }
      return { ok: true };
    }
    case "size": {
      // Each scenario's batch size: about `batchMs` of requests, timed once the JIT has settled
      // (in the warm-up's order, for the same reason).
      const sizes: Record<string, number> = {};
      for (const scenario of [...SCENARIOS].reverse()) {
        const start = performance.now();
        let done = 0;
        while (performance.now() - start < 30 || done < 2) {
          await batch(scenario, 1);
          done += 1;
        }
        const perRequest = (performance.now() - start) / done;
        sizes[scenario] = Math.max(2, Math.min(50_000, Math.round(batchMs / perRequest)));
      }
      return { n: sizes };
    }
    case "cpu": {
      const cpu = process.cpuUsage();
      const start = performance.now();
      await batch(command.scenario!, command.n!);
      const wall = performance.now() - start;
      const used = process.cpuUsage(cpu);
      return { cpuUs: (used.user + used.system) / command.n!, wallUs: (1000 * wall) / command.n! };
    }
    case "alloc": {
      if (typeof gc !== "function") throw new Error("Allocation needs --expose-gc");
      // A first small batch estimates the bytes and the CPU time of a request: the batch is then
      // as large as `n` allows, small enough to fit in the young generation, and at most about
      // 250 ms of CPU (slow peers). Its size does not depend on wall time, which a busy machine
      // stretches: a batch's fixed cost (a few kilobytes) must spread over many requests.
      const cpu = process.cpuUsage();
      await batch(command.scenario!, 5);
      const used = process.cpuUsage(cpu);
      const cpuMs = (used.user + used.system) / 1000 / 5;
      const probe = await allocated(() => batch(command.scenario!, 5), 5);
      const estimate = Number.isFinite(probe.bytes) ? Math.max(probe.bytes, 1000) : 200_000;
      const n = Math.max(
        10,
        Math.min(command.n!, Math.floor(96 * 2 ** 20 / estimate), Math.floor(250 / Math.max(cpuMs, 0.001))),
      );
      return { ...(await allocated(() => batch(command.scenario!, n), n)), n };
    }
    case "sites": {
      // Where the bytes come from: V8's sampling heap profiler, told to keep the samples of
      // objects that the young and the old generation's collections freed (Node only).
      const { Session } = await import("node:inspector/promises");
      const inspector = new Session();
      inspector.connect();
      await inspector.post("HeapProfiler.enable");
      await inspector.post("HeapProfiler.startSampling", {
        samplingInterval: 128,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true,
      });
      await batch(command.scenario!, command.n!);
      const { profile } = await inspector.post("HeapProfiler.stopSampling");
      inspector.disconnect();
      const sites = new Map<string, { name: string; url: string; line: number; bytes: number }>();
      const walk = (node: typeof profile.head) => {
        const { functionName, url, lineNumber } = node.callFrame;
        const key = `${functionName}|${url}|${lineNumber}`;
        const site = sites.get(key) ?? { name: functionName, url, line: lineNumber + 1, bytes: 0 };
        site.bytes += node.selfSize / command.n!;
        sites.set(key, site);
        for (const child of node.children) walk(child);
      };
      walk(profile.head);
      return {
        sites: [...sites.values()].filter((site) => site.bytes >= 1).sort((x, y) => y.bytes - x.bytes),
      };
    }
    case "calibrate": {
      if (typeof gc !== "function") throw new Error("Allocation needs --expose-gc");
      const fill = () => {
        for (let i = 0; i < 20_000; i++) sink = new Array(1000).fill(0.5);
      };
      fill(); // optimized before it is measured
      return { ...(await allocated(fill, 20_000)), expected: 16 + 8 * 1000 + 32 };
    }
  }
  throw new Error(`Unknown op: "${command.op}"`);
}

send({ ready: true, runtime, sink: typeof sink });
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (line.trim() === "") continue;
  try {
    send(await handle(JSON.parse(line)));
  } catch (error) {
    send({ error: String((error as Error)?.stack ?? error).slice(0, 800) });
  }
}
process.exit(0);
