// The SvelteKit recipe (examples/sveltekit): withSession around the handle hook's resolve, the
// session in event.locals; built with `vite build` and @sveltejs/adapter-node, served by the
// built server (node build/index.js) on loopback and driven over HTTP (form posts carry Origin,
// which SvelteKit's CSRF check requires).
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

// Test-only endpoints for the conflict that needs the handler again.
const RW = `import { gate } from "../../../gate.js";

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
const RW_HELD = `import { gate } from "../../../gate.js";
export const GET = () => new Response(gate().held ? "yes" : "no");
`;
const RW_RELEASE = `import { gate } from "../../../gate.js";
export const POST = () => {
  gate().release();
  return new Response("released");
};
`;

let server: Running;
before(async () => {
  const { dir } = await prepare("sveltekit", {
    files: {
      "gate.js": GATE_SOURCE,
      "src/routes/rw/+server.js": RW,
      "src/routes/rw-held/+server.js": RW_HELD,
      "src/routes/rw-release/+server.js": RW_RELEASE,
    },
    build: (dir) => runCommand(bin("vite"), ["build"], { cwd: dir }),
  });
  server = await startServer(process.execPath, [join(dir, "build", "index.js")], { cwd: dir });
});
after(async () => await server?.stop());

walk(
  "sveltekit: withSession around resolve in the handle hook, adapter-node build",
  () => Promise.resolve({ driver: jsonDriver(server.base), stop: () => Promise.resolve() }),
);

describe("sveltekit: a conflict that needs the handler again", () => {
  it("resolves the held GET again on the fresh session: both increments land", async () => {
    const { held, n } = await rerunAfterConflict(server.base);
    assert.equal(held.status, 200, `${held.body}\n${server.output()}`);
    assert.equal(held.body, "3");
    assert.equal(n, 3);
  });
});
