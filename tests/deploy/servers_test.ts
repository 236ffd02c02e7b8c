// Deno and Bun as servers: the deployment app served by Deno.serve (DenoKvStore over a temporary
// KV file) and by Bun.serve (FileStore; RedisStore over ioredis to the real Redis), each in its
// own process with the runtime from node_modules, driven from Node over HTTP on loopback with
// concurrent requests of one session. The same scenario and assertions as the Workers cells.
//
//   node --import tsx --test tests/deploy/servers_test.ts      (DEPLOY_LONG=1: more rounds)
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";
import type { Stats } from "./app.ts";
import { assertCell } from "./cell.ts";
import { runScenario, scenarioSize } from "./driver.ts";
import { dropPrefix, SECRET } from "./workerd.ts";
import { start as startChild } from "../spawn.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const bin = (name: string) => join(ROOT, "node_modules", ".bin", name);
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

/** A server process on loopback, once it said `listening <port>`. */
interface Server {
  base: string;
  stop(): Promise<void>;
}

/** Starts `command args` and waits (at most 60 s) for its `listening <port>` line. */
async function start(command: string, args: string[], env: Record<string, string>): Promise<Server> {
  const child = await startChild(command, args, {
    cwd: ROOT,
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", DEPLOY_SECRET: SECRET, ...env },
    ready: /listening (\d+)/,
    timeoutMs: 60_000,
    echo: process.env.DEPLOY_VERBOSE === "1",
  });
  return { base: `http://127.0.0.1:${child.match![1]}`, stop: () => child.stop() };
}

async function cell(t: import("node:test").TestContext, name: string, server: Server): Promise<void> {
  try {
    const outcome = await runScenario(
      (path, init) =>
        fetch(`${server.base}${path}`, {
          method: init.method,
          headers: init.cookie ? { cookie: `session=${init.cookie}` } : {},
        }),
      async () => (await (await fetch(`${server.base}/stats`)).json()) as Stats,
      scenarioSize(),
    );
    assertCell(t, { name, outcome, notes: [] });
  } finally {
    await server.stop();
  }
}

describe("Deno and Bun as servers: concurrent requests of one session over loopback HTTP", () => {
  test("Deno.serve with DenoKvStore (a KV file)", async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "websession-deploy-deno-"));
    try {
      const server = await start(bin("deno"), [
        "run",
        "--unstable-kv",
        "--allow-net",
        "--allow-env",
        "--allow-read",
        "--allow-write",
        "tests/deploy/deno_server.ts",
      ], { DEPLOY_KV_PATH: join(dir, "sessions.kv") });
      await cell(t, "Deno.serve DenoKvStore", server);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("Bun.serve with FileStore", async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "websession-deploy-bun-"));
    try {
      const server = await start(bin("bun"), ["tests/deploy/bun_server.ts"], {
        DEPLOY_STORE: "file",
        DEPLOY_DIR: dir,
      });
      await cell(t, "Bun.serve FileStore", server);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("Bun.serve with RedisStore over ioredis (the real Redis)", async (t) => {
    const prefix = `websession-test:deploy-bun-${crypto.randomUUID().slice(0, 8)}:`;
    try {
      const server = await start(bin("bun"), ["tests/deploy/bun_server.ts"], {
        DEPLOY_STORE: "redis",
        DEPLOY_REDIS_URL: REDIS_URL,
        DEPLOY_PREFIX: prefix,
      });
      await cell(t, "Bun.serve RedisStore (ioredis)", server);
    } finally {
      await dropPrefix(prefix);
    }
  });
});
