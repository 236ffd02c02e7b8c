// The h3 recipe (examples/h3): the app's fetch handler wrapped with withSession, served by srvx
// as examples/h3/main.ts serves it, in its own Node process, driven over HTTP.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  GATE_SOURCE,
  jsonDriver,
  prepare,
  rerunAfterConflict,
  type Running,
  startServer,
  walk,
} from "./harness.ts";

const SERVER = `// The h3 example plus the routes of the conflict test, served as main.ts serves it.
import { getSession } from "../../mod.ts";
import { app } from "./app.ts";
import { gate } from "./gate.js";

app.get("/rw", async (event) => {
  const session = await getSession(event.req);
  const n = session.get("n") ?? 0;
  if (new URL(event.req.url).searchParams.has("hold")) {
    gate().held = true;
    await gate().released;
  }
  session.set("n", n + 1);
  return new Response(String(n + 1));
});
app.get("/rw-held", () => new Response(gate().held ? "yes" : "no"));
app.post("/rw-release", () => {
  gate().release();
  return new Response("released");
});

await import("./main.ts");
`;

async function start(): Promise<Running> {
  const { dir } = await prepare("h3", { files: { "server.ts": SERVER, "gate.js": GATE_SOURCE } });
  return await startServer(process.execPath, ["--import", "tsx", join(dir, "server.ts")], { cwd: dir });
}

let server: Running;
before(async () => (server = await start()));
after(async () => await server?.stop());

walk(
  "h3: withSession around app.fetch, served by srvx on Node",
  () => Promise.resolve({ driver: jsonDriver(server.base), stop: () => Promise.resolve() }),
);

describe("h3: a conflict that needs the handler again", () => {
  it("runs the held GET again on the fresh session: both increments land", async () => {
    const { held, n } = await rerunAfterConflict(server.base);
    assert.equal(held.status, 200, `${held.body}\n${server.output()}`);
    assert.equal(held.body, "3");
    assert.equal(n, 3);
  });
});
