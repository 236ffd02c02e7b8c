// The deployment app served by Deno.serve over DenoKvStore, as examples/deno does, on a free
// loopback port; prints `listening <port>` once it accepts connections.
//
//   deno run --unstable-kv --allow-net --allow-env --allow-read --allow-write tests/deploy/deno_server.ts
//
// DEPLOY_KV_PATH: the Deno KV file (a temporary one, made by the test).
import type { DenoKvLike } from "../../src/stores/deno_kv.ts";
import { DenoKvStore } from "../../src/stores/deno_kv.ts";
import { createDeployApp } from "./app.ts";

/** The little of Deno's global API this server uses (Deno checks it against its own). */
interface DenoLike {
  env: { get(name: string): string | undefined };
  openKv(path?: string): Promise<DenoKvLike>;
  serve(
    options: { port: number; hostname: string; onListen: (address: { port: number }) => void },
    handler: (request: Request) => Promise<Response>,
  ): unknown;
}
const deno = (globalThis as unknown as { Deno: DenoLike }).Deno;

const kv = await deno.openKv(deno.env.get("DEPLOY_KV_PATH"));
const app = createDeployApp({
  store: new DenoKvStore({ kv }),
  secrets: deno.env.get("DEPLOY_SECRET")!,
  cookie: { secure: false }, // plain http on loopback
});
deno.serve({
  port: 0,
  hostname: "127.0.0.1",
  onListen: ({ port }) => console.log(`listening ${port}`),
}, (request) => app(request));
