// Throwaway Redis and PostgreSQL servers for outage tests: each on its own free port and temp
// directory, stopped and restarted at will, removed at the end. The shared servers on the usual
// ports are never touched. Data survives a stop (Redis: append-only file synced on every write;
// PostgreSQL: its WAL), so "every session intact after a restart" is a real claim; a Redis started
// as a cache (`persist: false`) keeps nothing.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chownSync, existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A server the test controls. */
export interface Throwaway {
  /** The loopback port it listens on. */
  port: number;
  /** Stops it abruptly (SIGKILL for Redis, immediate shutdown for PostgreSQL). */
  stop(): Promise<void>;
  /** Starts it again on the same port with the same data, and waits until it accepts connections. */
  start(): Promise<void>;
  /** Stops it and removes its directory. */
  destroy(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
    socket.connect(port, "127.0.0.1");
  });
}

async function waitFor(check: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once("exit", () => children.delete(child));
  // Keep its output out of the test report, but drain it so the pipe never blocks the server.
  child.stdout?.resume();
  child.stderr?.resume();
  return child;
}

/**
 * Starts a throwaway `redis-server` that keeps its data across restarts; with `persist: false`,
 * one that keeps nothing (a cache, empty after a restart).
 */
export async function throwawayRedis({ persist = true }: { persist?: boolean } = {}): Promise<Throwaway> {
  const dir = await mkdtemp(join(tmpdir(), "websession-redis-"));
  const port = await freePort();
  const args = [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    persist ? "yes" : "no",
    "--appendfsync",
    "always",
    "--dir",
    dir,
    "--daemonize",
    "no",
    "--protected-mode",
    "no",
  ];
  let child: ChildProcess | undefined;

  async function start(): Promise<void> {
    child = track(spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] }));
    await waitFor(() => canConnect(port), `redis-server on port ${port}`);
  }
  async function stop(): Promise<void> {
    if (!child) return;
    child.kill("SIGKILL");
    await exited(child);
    child = undefined;
  }
  await start();
  return {
    port,
    start,
    stop,
    async destroy() {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const PG_BIN = process.env.PG_BIN ?? "/usr/lib/postgresql/15/bin";

/**
 * Starts a throwaway PostgreSQL cluster (initdb in a temp directory). PostgreSQL refuses to run
 * as root; as root, it runs as the `postgres` user through `setpriv`, which execs in place so the
 * child is the postmaster itself.
 */
export async function throwawayPostgres(): Promise<Throwaway> {
  if (!existsSync(join(PG_BIN, "initdb"))) throw new Error(`PostgreSQL binaries not found in "${PG_BIN}"`);
  const dir = await mkdtemp(join(tmpdir(), "websession-pg-"));
  const data = join(dir, "data");
  const port = await freePort();
  const asUser: string[] = [];
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
    chownSync(dir, uid, gid);
    asUser.push("setpriv", `--reuid=${uid}`, `--regid=${gid}`, "--clear-groups", "--");
  }
  const run = (command: string[]) => ({ file: command[0]!, args: command.slice(1) });
  const initdb = run([
    ...asUser,
    join(PG_BIN, "initdb"),
    "-D",
    data,
    "-A",
    "trust",
    "-U",
    "postgres",
    "--no-sync",
    "-E",
    "UTF8",
  ]);
  execFileSync(initdb.file, initdb.args, { stdio: "ignore" });
  const postgres = run([
    ...asUser,
    join(PG_BIN, "postgres"),
    "-D",
    data,
    "-p",
    String(port),
    "-k",
    dir,
    "-c",
    "listen_addresses=127.0.0.1",
    "-c",
    "fsync=off",
    "-c",
    "max_connections=50",
  ]);
  let child: ChildProcess | undefined;

  async function start(): Promise<void> {
    child = track(spawn(postgres.file, postgres.args, { stdio: ["ignore", "pipe", "pipe"] }));
    const started = child;
    await waitFor(async () => {
      if (started.exitCode !== null) throw new Error(`postgres exited with code ${started.exitCode}`);
      return await canConnect(port) && ready();
    }, `postgres on port ${port}`);
  }
  function ready(): boolean {
    try {
      execFileSync(join(PG_BIN, "pg_isready"), ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres"], {
        stdio: "ignore",
      });
      return true;
    } catch {
      return false;
    }
  }
  async function stop(signal: NodeJS.Signals = "SIGQUIT"): Promise<void> {
    if (!child) return;
    child.kill(signal); // SIGQUIT: immediate shutdown, as abrupt as PostgreSQL allows
    await exited(child);
    child = undefined;
  }
  await start();
  return {
    port,
    start,
    stop: () => stop(),
    async destroy() {
      await stop("SIGINT");
      await rm(dir, { recursive: true, force: true });
    },
  };
}
