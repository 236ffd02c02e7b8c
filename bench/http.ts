// Real HTTP on loopback: a bare server against the same server under withSession(MemoryStore), on
// Node (node:http adapter), Deno (Deno.serve) and Bun (Bun.serve), loaded by autocannon with a
// valid session cookie per connection (returning visitors: load, +1, save).
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { Jar } from "./inprocess.ts";

interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { average: number; p99: number };
  non2xx: number;
  errors: number;
}
interface AutocannonClient {
  setHeaders(headers: Record<string, string>): void;
}
type Autocannon = (options: {
  url: string;
  connections: number;
  duration: number;
  setupClient?: (client: AutocannonClient) => void;
}) => Promise<AutocannonResult>;

const require = createRequire(import.meta.url);
const TICK_MS = 1000 / Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim() || 100);
const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

/** CPU time a process has used so far (user + system, all threads), in milliseconds. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS; // utime, stime
}
const autocannon = require("autocannon") as Autocannon;
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BIN = `${ROOT}node_modules/.bin/`;

/** One runtime's figures. */
export interface HttpRun {
  runtime: string;
  version: string;
  bare?: Load;
  session?: Load;
  error?: string;
}

/** One load run. */
export interface Load {
  rps: number;
  /** Server CPU time (all its threads) per request, in microseconds. */
  cpuUs: number;
  meanMs: number;
  p99Ms: number;
  non2xx: number;
  errors: number;
}

interface Runtime {
  name: string;
  version(): string;
  command(): [string, string[]];
}

const RUNTIMES: Runtime[] = [
  {
    name: "Node",
    version: () => process.version.slice(1),
    command: () => [process.execPath, ["--import", "tsx", "bench/servers/node.ts"]],
  },
  {
    name: "Deno",
    version: () =>
      /deno (\S+)/.exec(execFileSync(`${BIN}deno`, ["--version"], { encoding: "utf8" }))?.[1] ?? "?",
    command: () => [`${BIN}deno`, ["run", "--allow-net", "--allow-env", "bench/servers/deno.ts"]],
  },
  {
    name: "Bun",
    version: () => execFileSync(`${BIN}bun`, ["--version"], { encoding: "utf8" }).trim(),
    command: () => [`${BIN}bun`, ["bench/servers/bun.ts"]],
  },
];

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function start(runtime: Runtime, mode: string, port: number): Promise<ChildProcess> {
  const [command, args] = runtime.command();
  const child = spawn(command, args, {
    cwd: ROOT,
    env: { ...process.env, MODE: mode, PORT: String(port), NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  child.once("exit", () => children.delete(child));
  return new Promise((resolve, reject) => {
    let output = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${runtime.name} server did not start: ${output.slice(-500)}`));
    }, 30_000);
    const listen = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes(`ready ${port}`)) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout!.on("data", listen);
    child.stderr!.on("data", (chunk: Buffer) => void (output += chunk.toString()));
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${runtime.name} server exited with ${code}: ${output.slice(-500)}`));
    });
  });
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}

async function measureOnce(
  runtime: Runtime,
  mode: string,
  seconds: number,
  connections: number,
): Promise<Load> {
  const port = await freePort();
  const child = await start(runtime, mode, port);
  try {
    const url = `http://127.0.0.1:${port}/`;
    // One returning visitor per connection.
    const pool: string[] = [];
    for (let i = 0; i < connections; i++) {
      const response = await fetch(url);
      await response.arrayBuffer();
      const jar = new Jar();
      jar.absorb(response);
      pool.push(jar.header || "visitor=1");
    }
    let next = 0;
    const setupClient = (client: AutocannonClient) =>
      client.setHeaders({ cookie: pool[next++ % pool.length]! });
    await autocannon({ url, connections, duration: 1, setupClient }); // warm-up
    const cpuBefore = cpuMs(child.pid!);
    const result = await autocannon({ url, connections, duration: seconds, setupClient });
    const cpu = cpuMs(child.pid!) - cpuBefore;
    return {
      rps: result.requests.total / seconds,
      cpuUs: (1000 * cpu) / result.requests.total,
      meanMs: result.latency.average,
      p99Ms: result.latency.p99,
      non2xx: result.non2xx,
      errors: result.errors,
    };
  } finally {
    await stop(child);
  }
}

/**
 * Loads each runtime's bare and session servers, alternating, `rounds` times; keeps each mode's
 * best run.
 */
export async function runHttp(
  options: { rounds: number; seconds: number; connections: number; log: (line: string) => void },
): Promise<HttpRun[]> {
  const runs: HttpRun[] = [];
  for (const runtime of RUNTIMES) {
    const run: HttpRun = { runtime: runtime.name, version: "?" };
    runs.push(run);
    try {
      run.version = runtime.version();
      for (let round = 1; round <= options.rounds; round++) {
        for (const mode of ["bare", "session"] as const) {
          options.log(`  ${runtime.name} ${mode} (round ${round}/${options.rounds})`);
          const load = await measureOnce(runtime, mode, options.seconds, options.connections);
          if (run[mode] === undefined || load.rps > run[mode]!.rps) run[mode] = load;
        }
      }
    } catch (error) {
      run.error = String((error as Error)?.message ?? error);
      options.log(`  ${runtime.name}: ${run.error}`);
    }
  }
  return runs;
}
