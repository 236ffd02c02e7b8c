// Throwaway Redis and PostgreSQL servers for outage tests: each on its own free port and temp
// directory, stopped and restarted at will, removed at the end. The shared servers on the usual
// ports are never touched. Data survives a stop (Redis: append-only file synced on every write;
// PostgreSQL: its WAL), so "every session intact after a restart" is a real claim; a Redis started
// as a cache (`persist: false`) keeps nothing.
import { execFileSync } from "node:child_process";
import { chownSync, existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { answers, type Child, freePort, start as startChild } from "../spawn.ts";

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
  let child: Child | undefined;

  async function start(): Promise<void> {
    child = await startChild("redis-server", args, { ready: () => answers(port) });
  }
  async function stop(): Promise<void> {
    await child?.stop("SIGKILL");
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
  let child: Child | undefined;

  async function start(): Promise<void> {
    child = await startChild(postgres.file, postgres.args, {
      ready: async () => await answers(port) && ready(),
    });
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
    await child?.stop(signal); // SIGQUIT: immediate shutdown, as abrupt as PostgreSQL allows
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
