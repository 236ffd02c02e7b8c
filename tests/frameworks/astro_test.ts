// The Astro recipe (examples/astro): withSession around the middleware's next(), the session in
// context.locals; built with `astro build` and @astrojs/node (standalone), the built server
// (node dist/server/entry.mjs) on loopback, driven over HTTP (form posts carry Origin, which
// Astro's origin check requires). Astro 5: Astro 6 and 7 need Node 22.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  bin,
  GATE_SOURCE,
  jsonDriver,
  prepare,
  rerunAfterConflict,
  runCommand,
  type Running,
  startServer,
  walk,
} from "./harness.ts";

const ENV = { ASTRO_TELEMETRY_DISABLED: "1" };

// Test-only endpoints for the conflict that needs the handler again.
const RW = `import { gate } from "../../gate.js";

export async function GET({ locals, url }) {
  const session = await locals.session();
  const n = session.get("n") ?? 0;
  if (url.searchParams.has("hold")) {
    gate().held = true;
    await gate().released;
  }
  session.set("n", n + 1);
  return new Response(String(n + 1));
}
`;
const RW_HELD = `import { gate } from "../../gate.js";
export const GET = () => new Response(gate().held ? "yes" : "no");
`;
const RW_RELEASE = `import { gate } from "../../gate.js";
export const POST = () => {
  gate().release();
  return new Response("released");
};
`;

let server: Running;
before(async () => {
  const { dir } = await prepare("astro", {
    files: {
      "gate.js": GATE_SOURCE,
      "src/pages/rw.js": RW,
      "src/pages/rw-held.js": RW_HELD,
      "src/pages/rw-release.js": RW_RELEASE,
    },
    build: (dir) => runCommand(bin("astro"), ["build"], { cwd: dir, env: ENV }),
  });
  server = await startServer(process.execPath, [join(dir, "dist", "server", "entry.mjs")], {
    cwd: dir,
    env: ENV,
  });
});
after(async () => await server?.stop());

walk(
  "astro: withSession around next() in middleware, @astrojs/node build",
  () => Promise.resolve({ driver: jsonDriver(server.base), stop: () => Promise.resolve() }),
);

describe("astro: a conflict that needs the handler again", () => {
  it("runs the held GET's middleware again on the fresh session: both increments land", async () => {
    const { held, n } = await rerunAfterConflict(server.base);
    assert.equal(held.status, 200, `${held.body}\n${server.output()}`);
    assert.equal(held.body, "3");
    assert.equal(n, 3);
  });
});
