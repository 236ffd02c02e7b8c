// A real Redis Cluster for tests: masters and replicas started from the machine's redis-server,
// each in a temporary directory of its own, listening on 127.0.0.1 only, joined with
// `redis-cli --cluster create`. Nothing is kept on disk but the nodes' cluster config. `stop()`
// ends every node this helper started (by the child process it spawned) and removes the
// directories; a process that exits without calling it still kills its nodes.
import { execFile } from "node:child_process";
import { rmSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { answers, type Child, start } from "../spawn.ts";

/** A node of the cluster as `CLUSTER NODES` describes it. */
export interface ClusterNode {
  id: string;
  port: number;
  role: "master" | "replica";
  /** The master's id, for a replica. */
  masterId?: string;
}

/** A running cluster. */
export interface RedisCluster {
  /** Where a cluster client starts: every node, as `{ host, port }`. */
  rootNodes: { host: string; port: number }[];
  /** The nodes as the node on `port` (default: the first) sees them now. */
  nodes(port?: number): Promise<ClusterNode[]>;
  /** Runs one command on one node with redis-cli and returns its raw output. */
  command(port: number, ...args: string[]): Promise<string>;
  /**
   * Makes the replica of the master on `masterPort` take over with a manual, coordinated
   * `CLUSTER FAILOVER` (the master stops taking writes, the replica catches up, then switches),
   * and waits until every node agrees on the new roles and the cluster is ok.
   * @returns The new master's port.
   */
  failover(masterPort: number): Promise<number>;
  /** Stops every node and removes the temporary directories. Safe to call twice. */
  stop(): Promise<void>;
}

/** Options of {@linkcode startRedisCluster}. */
export interface RedisClusterOptions {
  /** @default 3 */
  masters?: number;
  /** Replicas per master. @default 1 */
  replicas?: number;
  /** `redis-server` to run. @default "redis-server" on PATH */
  server?: string;
  /** `redis-cli` to run. @default "redis-cli" on PATH */
  cli?: string;
}

const HOST = "127.0.0.1";
/** How long any one wait for the cluster may take before the helper gives up. */
const WAIT_MS = 30_000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function listenable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, HOST, () => server.close(() => resolve(true)));
  });
}

/** `count` consecutive ports that are free, with their cluster bus ports (port + 10000). */
async function freePorts(count: number): Promise<number[]> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * (30_000 - 20_000 - count));
    const ports = Array.from({ length: count }, (_, i) => base + i);
    let free = true;
    for (const port of ports) {
      if (!(await listenable(port)) || !(await listenable(port + 10_000))) {
        free = false;
        break;
      }
    }
    if (free) return ports;
  }
  throw new Error(`No ${count} free consecutive ports (and bus ports) found on ${HOST}`);
}

function run(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: WAIT_MS }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(" ")} failed: ${stderr || error.message}`));
      else resolve(stdout);
    });
  });
}

/** Polls `check` until it returns true (bounded); `what` names the wait in the error. */
async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const start = Date.now();
  let last: unknown;
  while (Date.now() - start < WAIT_MS) {
    try {
      if (await check()) return;
    } catch (error) {
      last = error;
    }
    await sleep(50);
  }
  throw new Error(`Redis Cluster: gave up waiting for ${what}${last ? `: ${String(last)}` : ""}`);
}

function parseNodes(text: string): ClusterNode[] {
  return text.trim().split("\n").filter(Boolean).map((line) => {
    const [id, address, flags, master] = line.split(" ");
    const port = Number(address!.split("@")[0]!.split(":").pop());
    const replica = flags!.split(",").includes("slave");
    return replica
      ? { id: id!, port, role: "replica" as const, masterId: master! }
      : { id: id!, port, role: "master" as const };
  });
}

const directories = new Set<string>();
process.once("exit", () => {
  for (const dir of directories) rmSync(dir, { recursive: true, force: true });
});

/**
 * Starts a Redis Cluster of `masters` masters with `replicas` replicas each on free loopback
 * ports, and waits until every node says the cluster is ok and every replica is in sync.
 */
export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisCluster> {
  const masters = options.masters ?? 3;
  const replicas = options.replicas ?? 1;
  const server = options.server ?? "redis-server";
  const cli = options.cli ?? "redis-cli";
  const count = masters * (1 + replicas);
  const ports = await freePorts(count);
  const dir = await mkdtemp(join(tmpdir(), "websession-redis-cluster-"));
  directories.add(dir);
  const children: Child[] = [];
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await Promise.all(children.map((child) => child.stop()));
    await rm(dir, { recursive: true, force: true });
    directories.delete(dir);
  };
  const command = (port: number, ...args: string[]) => run(cli, ["-h", HOST, "-p", String(port), ...args]);
  const nodes = async (port = ports[0]!) => parseNodes(await command(port, "CLUSTER", "NODES"));
  const info = async (port: number, section: string[]) => {
    const text = await command(port, ...section);
    return new Map(
      text.split(/\r?\n/).filter((line) => line.includes(":")).map((line) => {
        const at = line.indexOf(":");
        return [line.slice(0, at), line.slice(at + 1).trim()] as [string, string];
      }),
    );
  };
  // Every node sees `count` nodes, the cluster ok, the same masters, and every replica's link up.
  const settled = async () => {
    let view: string | undefined;
    for (const port of ports) {
      const state = await info(port, ["CLUSTER", "INFO"]);
      if (state.get("cluster_state") !== "ok" || state.get("cluster_known_nodes") !== String(count)) {
        return false;
      }
      const seen = (await nodes(port)).map((n) => `${n.port}:${n.role}:${n.masterId ?? ""}`).sort().join(",");
      if (view !== undefined && seen !== view) return false;
      view = seen;
      const replication = await info(port, ["INFO", "replication"]);
      if (replication.get("role") === "slave") {
        if (replication.get("master_link_status") !== "up") return false;
        if (replication.get("master_sync_in_progress") !== "0") return false;
      }
    }
    return true;
  };
  try {
    for (const port of ports) {
      const home = join(dir, String(port));
      await mkdir(home);
      const child = await start(server, [
        "--port",
        String(port),
        "--bind",
        HOST,
        "--dir",
        home,
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        "2000",
        "--save",
        "",
        "--appendonly",
        "no",
        "--repl-diskless-sync",
        "yes",
        "--repl-diskless-sync-delay",
        "0",
        "--daemonize",
        "no",
        "--logfile",
        join(home, "redis.log"),
      ], { ready: () => answers(port, "PING\r\n", "+PONG") });
      children.push(child);
    }
    await run(cli, [
      "--cluster",
      "create",
      ...ports.map((port) => `${HOST}:${port}`),
      "--cluster-replicas",
      String(replicas),
      "--cluster-yes",
    ]);
    await until("the cluster to settle", settled);
  } catch (error) {
    await stop();
    throw error;
  }

  return {
    rootNodes: ports.map((port) => ({ host: HOST, port })),
    nodes,
    command,
    async failover(masterPort) {
      const all = await nodes(masterPort);
      const master = all.find((n) => n.port === masterPort && n.role === "master");
      const replica = all.find((n) => n.role === "replica" && n.masterId === master?.id);
      if (master === undefined || replica === undefined) {
        throw new Error(`Redis Cluster: no replica of a master on port ${masterPort}`);
      }
      const reply = (await command(replica.port, "CLUSTER", "FAILOVER")).trim();
      if (reply !== "OK") throw new Error(`Redis Cluster: CLUSTER FAILOVER answered "${reply}"`);
      await until(`port ${replica.port} to take over from ${masterPort}`, async () => {
        const view = await nodes(replica.port);
        return view.find((n) => n.port === replica.port)?.role === "master" &&
          view.find((n) => n.port === masterPort)?.role === "replica";
      });
      await until("the cluster to settle after the failover", settled);
      return replica.port;
    },
    stop,
  };
}
