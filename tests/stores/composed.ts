// What the tests of the composed stores (TieredStore, MigratingStore) share: temporary
// directories and Redis prefixes removed at the end, the app their fault cases drive, and an
// ioredis client for a private redis-server (tests/faults/servers.ts) that fails at once while
// the server is down.
import { after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis as IoRedis } from "ioredis";
import { getSession, withSession } from "../../src/with_session.ts";
import type { SessionError } from "../../src/errors.ts";
import type { SessionStore } from "../../src/store.ts";
import { sleep } from "../conformance/util.ts";

export const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
export const quiet = { warn() {}, error() {} };
const SECRET = "composed store test secret, at least 32 characters";

const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

/** A fresh temporary directory, removed when the tests end. */
export async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "websession-composed-"));
  dirs.push(dir);
  return dir;
}

/** Deletes every key under `prefix`. */
export async function dropPrefix(redis: IoRedis, prefix: string): Promise<void> {
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
    if (keys.length > 0) await redis.del(...keys);
    cursor = next;
  } while (cursor !== "0");
}

/** The app the fault cases drive: `/count` increments, `/read` reads, `/logout` ends. */
export function app(store: SessionStore): (request: Request) => Promise<Response> {
  return withSession(async (req: Request) => {
    const session = await getSession<{ visits?: number }>(req);
    const path = new URL(req.url).pathname;
    if (path === "/count") return new Response(String(session.update("visits", (v = 0) => v + 1)));
    if (path === "/logout") {
      session.destroy();
      return new Response("bye");
    }
    return new Response(String(session.get("visits") ?? "none"));
  }, {
    store,
    secrets: SECRET,
    logger: quiet,
    onError: (error: unknown) =>
      new Response((error as SessionError).name, { status: (error as SessionError).status }),
  });
}

/** An ioredis client that fails at once while its server is down, and reconnects by itself. */
export async function failFast(port: number): Promise<IoRedis> {
  const client = new IoRedis({
    port,
    host: "127.0.0.1",
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => 50,
  });
  await ready(client);
  return client;
}

/** Waits until the client is connected again. */
export async function ready(client: IoRedis): Promise<void> {
  for (let i = 0; i < 200 && client.status !== "ready"; i++) await sleep(20);
  assert.equal(client.status, "ready");
}
