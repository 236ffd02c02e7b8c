// Deno.serve: a request the library runs again makes Deno print nothing about the request's
// abort signal ("request.signal aborts on successful responses (legacy behavior)"), which
// Request.clone() triggers: a library must not make the runtime warn at the application's users.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { start } from "../spawn.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

test("Deno.serve: a re-run request makes Deno print no warning", { timeout: 60_000 }, async () => {
  const deno = join(ROOT, "node_modules", ".bin", "deno");
  const child = await start(deno, [
    "run",
    "--allow-net",
    "--allow-env",
    "--allow-read",
    "tests/deploy/deno_rerun_server.ts",
  ], {
    cwd: ROOT,
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
    ready: /listening (\d+)/,
  });
  try {
    const base = `http://127.0.0.1:${child.match![1]}`;
    const first = await fetch(`${base}/`);
    const cookie = first.headers.get("set-cookie")!.split(";")[0]!;
    assert.equal(await first.text(), "1");
    // This request loses to a write made while it runs: merge runs the GET again.
    const again = await fetch(`${base}/arm`, { headers: { cookie } });
    assert.equal(again.status, 200);
    assert.equal(await again.text(), "101", "the re-run read what the other write left");
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.doesNotMatch(child.output(), /legacy behavior|request\.signal/i);
  } finally {
    await child.stop("SIGKILL");
  }
});
