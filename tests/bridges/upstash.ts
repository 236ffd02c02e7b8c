// A test bridge that speaks the Upstash Redis REST protocol, as `@upstash/redis` uses it, and
// forwards every command to a real Redis with ioredis `callBuffer`. It implements the protocol,
// not Redis: every reply comes from the real server.
//
// - POST /            body [cmd, ...args]          -> {result} | 400 {error}
// - POST /pipeline    body [[cmd, ...args], ...]   -> [{result} | {error}, ...]
// - POST /multi-exec  body [[cmd, ...args], ...]   -> [{result} | {error}, ...] (MULTI/EXEC)
// - `Authorization: Bearer <token>` is required.
// - `Upstash-Encoding: base64`: every string in a result, nested arrays included, is base64 of
//   its bytes, except the status reply "OK".
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Redis, type RedisOptions } from "ioredis";
import { readBody, send } from "./http.ts";

/** A running bridge. */
export interface UpstashBridge {
  /** The REST URL to give `new Redis({ url, token })` from `@upstash/redis`. */
  url: string;
  /** The token the bridge accepts. */
  token: string;
  /** HTTP requests answered so far (a pipeline counts once). */
  readonly requests: number;
  /** Stops the server and disconnects from Redis. */
  close(): Promise<void>;
}

type Reply = null | number | Buffer | Reply[] | string;
type Entry = { result: unknown } | { error: string };

function encodeReply(reply: Reply, base64: boolean): unknown {
  if (reply === null || typeof reply === "number") return reply;
  if (Array.isArray(reply)) return reply.map((item) => encodeReply(item, base64));
  const bytes = typeof reply === "string" ? Buffer.from(reply) : reply;
  const text = bytes.toString("utf8");
  if (!base64 || text === "OK") return text;
  return bytes.toString("base64");
}

function isCommand(value: unknown): value is (string | number | boolean)[] {
  return Array.isArray(value) && value.length > 0 &&
    value.every((part) => typeof part === "string" || typeof part === "number" || typeof part === "boolean");
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Starts a bridge on a free loopback port.
 *
 * @param options `redisUrl`: the real Redis (default `redis://127.0.0.1:6379`); `token`;
 *   `redisOptions` for the bridge's own ioredis connection.
 */
export async function startUpstashBridge(
  options: { redisUrl?: string; token?: string; redisOptions?: RedisOptions } = {},
): Promise<UpstashBridge> {
  const token = options.token ?? "test-token";
  const redis = new Redis(options.redisUrl ?? "redis://127.0.0.1:6379", {
    maxRetriesPerRequest: 1,
    ...options.redisOptions,
    lazyConnect: true,
  });
  redis.on("error", () => {}); // a lost connection is reported to the command that needed it
  // Connected before the first request, even when the options forbid queueing commands.
  await redis.connect();
  let requests = 0;

  async function one(command: (string | number | boolean)[], base64: boolean): Promise<Entry> {
    const [name, ...args] = command.map(String);
    try {
      return { result: encodeReply((await redis.callBuffer(name!, ...args)) as Reply, base64) };
    } catch (error) {
      return { error: message(error) };
    }
  }

  async function transaction(commands: (string | number | boolean)[][], base64: boolean): Promise<Entry[]> {
    const multi = redis.multi();
    for (const command of commands) {
      const [name, ...args] = command.map(String);
      multi.callBuffer(name!, ...args);
    }
    const results = await multi.exec();
    if (results === null) throw new Error("EXECABORT Transaction discarded");
    return results.map(([error, result]) =>
      error ? { error: message(error) } : { result: encodeReply(result as Reply, base64) }
    );
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    requests++;
    if (req.method !== "POST") return send(res, 405, { error: "ERR only POST is supported by this bridge" });
    if (req.headers.authorization !== `Bearer ${token}`) return send(res, 401, { error: "Unauthorized" });
    const base64 = String(req.headers["upstash-encoding"] ?? "").toLowerCase() === "base64";
    let body: unknown;
    try {
      body = JSON.parse(await readBody(req));
    } catch {
      return send(res, 400, { error: "ERR failed to parse the request body" });
    }
    const path = new URL(req.url ?? "/", "http://bridge").pathname.replace(/\/+$/, "");
    if (path === "") {
      if (!isCommand(body)) return send(res, 400, { error: "ERR expected a command array" });
      const entry = await one(body, base64);
      return send(res, "error" in entry ? 400 : 200, entry);
    }
    if (path === "/pipeline" || path === "/multi-exec") {
      if (!Array.isArray(body) || !body.every(isCommand)) {
        return send(res, 400, { error: "ERR expected an array of command arrays" });
      }
      if (path === "/pipeline") {
        // Sent back to back on one connection: ioredis pipelines them, as Upstash does.
        return send(res, 200, await Promise.all(body.map((command) => one(command, base64))));
      }
      return send(res, 200, await transaction(body, base64));
    }
    return send(res, 404, { error: `ERR unknown path "${path}"` });
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error) => {
      if (!res.headersSent) send(res, 500, { error: message(error) });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    token,
    get requests() {
      return requests;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      redis.disconnect();
    },
  };
}
