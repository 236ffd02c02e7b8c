// Real HTTP on loopback, on Node (a node:http adapter), Deno (Deno.serve) and Bun (Bun.serve):
// the bare server (`new Response("ok")`), the same server under withSession(MemoryStore) for a
// read-only and for a returning visitor, and react-router's memory session storage, each in its
// own server process (bench/servers/). Two loads from bench/load.ts:
//
// - a fixed request rate (open loop, evenly spaced), well under what any of the servers can
//   take: what a server costs per request when it is not saturated, the way most servers run;
// - saturation (closed loop, 16 connections): the most it answers on this machine.
//
// The figure that matters is the server process's own CPU time per request (user + system, every
// thread), read from process.cpuUsage() through a control port before and after each run: unlike
// req/s it does not depend on whether the load generator, which shares the 2 cores, kept up.
import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { load, requestFor } from "./load.ts";
import { command, ROOT, type RuntimeName, versionOf } from "./runtimes.ts";

/** A server's app (bench/servers/app.ts). */
export type HttpMode = "bare" | "read" | "returning" | "react-router";

export const HTTP_MODE_TITLES: Record<HttpMode, string> = {
  bare: 'bare server (`new Response("ok")`)',
  read: "websession, read-only visitor",
  returning: "websession, returning visitor",
  "react-router": "react-router memory storage, returning visitor",
};

/** One load run against one server. */
export interface HttpLoad {
  round: number;
  /** Responses per second. */
  rps: number;
  /** Server CPU time per response, µs (user + system, every thread of the server process). */
  cpuUs: number;
  /** Cores the server kept busy: its CPU time over the run's wall time. */
  cores: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  errors: number;
}

/** One runtime's figures. */
export interface HttpRun {
  runtime: RuntimeName;
  version: string;
  /** Requests per second of the fixed-rate load. */
  rate: number;
  fixed: Map<HttpMode, HttpLoad[]>;
  saturation: Map<HttpMode, HttpLoad[]>;
  error?: string;
}

// react-router's storage signs on every request (thread-pool jobs): on Node it cannot keep up
// with the fixed rate on this machine, so it is loaded at saturation only.
export const FIXED_MODES: HttpMode[] = ["bare", "read", "returning"];
export const SATURATION_MODES: HttpMode[] = ["bare", "read", "returning", "react-router"];
const CONNECTIONS = 16;

const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

interface Server {
  mode: HttpMode;
  port: number;
  control: number;
  child: ChildProcess;
  requests: Buffer[];
}

const SERVER_FILES: Record<RuntimeName, string> = {
  Node: "bench/servers/node.ts",
  Deno: "bench/servers/deno.ts",
  Bun: "bench/servers/bun.ts",
};

async function start(runtime: RuntimeName, mode: HttpMode): Promise<Server> {
  const port = await freePort();
  const control = await freePort();
  const [cmd, args] = command(runtime, SERVER_FILES[runtime]);
  const child = spawn(cmd, args, {
    cwd: ROOT,
    env: { ...process.env, MODE: mode, PORT: String(port), CONTROL_PORT: String(control), NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  child.once("exit", () => children.delete(child));
  await new Promise<void>((resolve, reject) => {
    let output = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${runtime} ${mode} server did not start: ${output.slice(-500)}`));
    }, 30_000);
    const listen = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes(`ready ${port}`)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on("data", listen);
    child.stderr!.on("data", (chunk: Buffer) => void (output += chunk.toString()));
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${runtime} ${mode} server exited with ${code}: ${output.slice(-500)}`));
    });
  });
  // One visitor per connection: the cookie its first (new-visitor) request got. The bare server
  // sets none; its requests carry a cookie of the same shape, so that every server reads alike.
  const requests: Buffer[] = [];
  for (let i = 0; i < CONNECTIONS; i++) {
    const response = await fetch(`http://127.0.0.1:${port}/`);
    await response.arrayBuffer();
    if (response.status !== 200) throw new Error(`${runtime} ${mode} server answered ${response.status}`);
    const pairs = response.headers.getSetCookie().map((header) => header.split(";", 1)[0]!);
    if (pairs.length === 0 && mode !== "bare") throw new Error(`${runtime} ${mode} server set no cookie`);
    const cookie = pairs.length > 0
      ? pairs.join("; ")
      : `session=${"A".repeat(22)}.${
        Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url")
      }`;
    requests.push(requestFor(port, "/", cookie));
  }
  return { mode, port, control, child, requests };
}

async function stop(server: Server): Promise<void> {
  const child = server.child;
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}

async function cpuOf(server: Server): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${server.control}/`);
  const { user, system } = await response.json() as { user: number; system: number };
  return user + system;
}

async function measure(
  server: Server,
  round: number,
  seconds: number,
  rate: number | undefined,
): Promise<HttpLoad> {
  const before = await cpuOf(server);
  const result = await load({ port: server.port, requests: server.requests, seconds, rate });
  const cpu = (await cpuOf(server)) - before;
  return {
    round,
    rps: result.rps,
    cpuUs: cpu / result.completed,
    cores: cpu / 1e6 / result.seconds,
    p50Ms: result.p50Ms,
    p99Ms: result.p99Ms,
    non2xx: result.non2xx,
    errors: result.errors,
  };
}

/**
 * For each runtime: starts one server per mode, warms each up, then `rounds` rounds of the
 * fixed-rate load over every server in turn (the order rotated from round to round), then
 * `saturationRounds` rounds at saturation.
 */
export async function runHttp(options: {
  runtimes: RuntimeName[];
  /** The servers loaded at the fixed rate, and at saturation (FIXED_MODES, SATURATION_MODES by default). */
  fixedModes?: HttpMode[];
  saturationModes?: HttpMode[];
  rate: number;
  seconds: number;
  rounds: number;
  saturationSeconds: number;
  saturationRounds: number;
  log: (line: string) => void;
}): Promise<HttpRun[]> {
  const runs: HttpRun[] = [];
  for (const runtime of options.runtimes) {
    const run: HttpRun = {
      runtime,
      version: versionOf(runtime),
      rate: options.rate,
      fixed: new Map(),
      saturation: new Map(),
    };
    runs.push(run);
    const fixedModes = options.fixedModes ?? FIXED_MODES;
    const saturationModes = options.saturationModes ?? SATURATION_MODES;
    const modes = [...new Set([...fixedModes, ...saturationModes])];
    const servers: Server[] = [];
    try {
      options.log(`  ${runtime}: starting ${modes.length} servers`);
      const started = await Promise.allSettled(modes.map((mode) => start(runtime, mode)));
      for (const outcome of started) if (outcome.status === "fulfilled") servers.push(outcome.value);
      const failed = started.find((outcome) => outcome.status === "rejected");
      if (failed) throw failed.reason;
      for (const server of servers) {
        await load({ port: server.port, requests: server.requests, seconds: 1, rate: options.rate });
      }
      const byMode = (mode: HttpMode) => servers.find((s) => s.mode === mode)!;
      for (let round = 1; round <= options.rounds; round++) {
        const shift = (round - 1) % fixedModes.length;
        const order = [...fixedModes.slice(shift), ...fixedModes.slice(0, shift)];
        options.log(`  ${runtime} at ${options.rate} req/s, round ${round}/${options.rounds}`);
        for (const mode of order) {
          const list = run.fixed.get(mode) ?? [];
          run.fixed.set(mode, list);
          list.push(await measure(byMode(mode), round, options.seconds, options.rate));
        }
      }
      for (let round = 1; round <= options.saturationRounds; round++) {
        options.log(`  ${runtime} at saturation, round ${round}/${options.saturationRounds}`);
        for (const mode of saturationModes) {
          const list = run.saturation.get(mode) ?? [];
          run.saturation.set(mode, list);
          list.push(await measure(byMode(mode), round, options.saturationSeconds, undefined));
        }
      }
    } catch (error) {
      run.error = String((error as Error)?.message ?? error);
      options.log(`  ${runtime}: ${run.error}`);
    } finally {
      await Promise.all(servers.map(stop));
    }
  }
  return runs;
}
