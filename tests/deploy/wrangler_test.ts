// The deployment Worker served by `wrangler dev` (its own workerd, local Durable Objects), driven
// from Node over HTTP with concurrent requests of one session: the same scenario and assertions
// as the Miniflare cells. `wrangler` is not a dependency of the library: CI installs it in a
// package of its own (`npm ci --prefix tests/deploy/wrangler`), and it runs on the current Node of
// tests/runtime/current-node (wrangler needs Node 22.12 or later). Elsewhere the cell says how to
// install it and skips; under CI=true a missing wrangler fails it.
//
//   node --import tsx --test tests/deploy/wrangler_test.ts
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import type { Stats } from "./app.ts";
import { assertCell, HUNG } from "./cell.ts";
import { runScenario, scenarioSize } from "./driver.ts";
import { COMPATIBILITY_DATE, SECRET, workerScript } from "./workerd.ts";
import { freePort, start } from "../spawn.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** wrangler's own script (`WRANGLER=/path/to/wrangler.js` overrides). */
const WRANGLER = process.env.WRANGLER ??
  join(ROOT, "tests", "deploy", "wrangler", "node_modules", "wrangler", "bin", "wrangler.js");
/** The Node to run it on: the current Node the matrix installs, when there, else this one. */
const CURRENT_NODE = join(
  ROOT,
  "tests",
  "runtime",
  "current-node",
  "node_modules",
  `node-${process.platform}-${process.arch}`,
  "bin",
  "node",
);
const NODE = process.env.CURRENT_NODE ?? (existsSync(CURRENT_NODE) ? CURRENT_NODE : process.execPath);

const WRANGLER_TOML = `name = "websession-deploy"
main = "worker.js"
compatibility_date = "${COMPATIBILITY_DATE}"
no_bundle = true

[vars]
STORE = "do"

[[durable_objects.bindings]]
name = "SESSIONS_DO"
class_name = "SessionDurableObject"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["SessionDurableObject"]
`;

/** Starts `wrangler dev` on a free port in `dir`; resolves once it says it is ready (60 s at most). */
async function wranglerDev(dir: string, state: string): Promise<{ base: string; stop(): Promise<void> }> {
  const port = await freePort();
  const child = await start(NODE, [
    WRANGLER,
    "dev",
    "--port",
    String(port),
    "--ip",
    "127.0.0.1",
    "--persist-to",
    state,
  ], {
    cwd: dir,
    // Output goes to pipes, never into `dir`: wrangler reloads on any change there.
    env: { CI: "1", WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" },
    group: true, // wrangler and the workerd it started
    ready: /Ready on http/,
    timeoutMs: 60_000,
    echo: process.env.DEPLOY_VERBOSE === "1",
  });
  return { base: `http://127.0.0.1:${port}`, stop: () => child.stop() };
}

test(
  "wrangler dev: DurableObjectStore, concurrent requests of one session",
  existsSync(WRANGLER) || process.env.CI ? { todo: HUNG } : {
    skip: "wrangler is not installed (not a dependency): npm ci --prefix tests/deploy/wrangler to run it",
  },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "websession-deploy-wrangler-"));
    const state = mkdtempSync(join(tmpdir(), "websession-deploy-wrangler-state-"));
    try {
      writeFileSync(join(dir, "worker.js"), await workerScript());
      writeFileSync(join(dir, "wrangler.toml"), WRANGLER_TOML);
      writeFileSync(join(dir, ".dev.vars"), `SESSION_SECRET="${SECRET}"\n`);
      const server = await wranglerDev(dir, state);
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
        assertCell(t, { name: "wrangler dev do", outcome, notes: [] });
      } finally {
        await server.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
      rmSync(state, { recursive: true, force: true });
    }
  },
);
