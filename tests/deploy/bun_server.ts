// The deployment app served by Bun.serve, as examples/bun does, on a free loopback port; prints
// `listening <port>` once it accepts connections.
//
//   bun tests/deploy/bun_server.ts
//
// DEPLOY_STORE: `file` (FileStore in DEPLOY_DIR) or `redis` (RedisStore over ioredis at
// DEPLOY_REDIS_URL, keys under DEPLOY_PREFIX). DEPLOY_SECRET signs the cookies.
import { Redis } from "ioredis";
import type { SessionStore } from "../../mod.ts";
import { FileStore } from "../../src/stores/file.ts";
import { RedisStore } from "../../src/stores/redis.ts";
import { createDeployApp } from "./app.ts";

/** The little of Bun's global API this server uses. */
interface BunLike {
  serve(options: { port: number; hostname: string; fetch: (request: Request) => Promise<Response> }): {
    port: number;
  };
}
const bun = (globalThis as unknown as { Bun: BunLike }).Bun;

function store(): SessionStore {
  if (process.env.DEPLOY_STORE === "redis") {
    return new RedisStore({
      client: new Redis(process.env.DEPLOY_REDIS_URL!),
      prefix: process.env.DEPLOY_PREFIX!,
    });
  }
  if (process.env.DEPLOY_STORE === "file") return new FileStore({ dir: process.env.DEPLOY_DIR! });
  throw new Error(`Unknown DEPLOY_STORE: "${process.env.DEPLOY_STORE}"`);
}

const app = createDeployApp({
  store: store(),
  secrets: process.env.DEPLOY_SECRET!,
  cookie: { secure: false }, // plain http on loopback
});
const server = bun.serve({ port: 0, hostname: "127.0.0.1", fetch: (request) => app(request) });
console.log(`listening ${server.port}`);
