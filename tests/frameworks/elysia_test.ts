// The Elysia recipe (examples/elysia): app.handle wrapped with withSession, served by srvx as
// examples/elysia/main.ts serves it, under Bun (Bun.serve) and under Node, driven over HTTP.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  bin,
  GATE_SOURCE,
  jsonDriver,
  prepare,
  rerunAfterConflict,
  type Running,
  startServer,
  walk,
} from "./harness.ts";

const SERVER = `// The Elysia example plus the routes of the conflict test, served as main.ts serves it.
import { getSession } from "../../mod.ts";
import { app } from "./app.ts";
import { gate } from "./gate.js";

app
  .get("/rw", async ({ request }) => {
    const session = await getSession(request);
    const n = session.get("n") ?? 0;
    if (new URL(request.url).searchParams.has("hold")) {
      gate().held = true;
      await gate().released;
    }
    session.set("n", n + 1);
    return new Response(String(n + 1));
  })
  .get("/rw-held", () => new Response(gate().held ? "yes" : "no"))
  .post("/rw-release", () => {
    gate().release();
    return new Response("released");
  });

await import("./main.ts");
`;

async function serverFile(): Promise<string> {
  const { dir } = await prepare("elysia", { files: { "server.ts": SERVER, "gate.js": GATE_SOURCE } });
  return join(dir, "server.ts");
}

describe("elysia under Bun", () => {
  let server: Running;
  before(async () => {
    const file = await serverFile();
    server = await startServer(bin("bun"), [file], { cwd: join(file, "..") });
  });
  after(async () => await server?.stop());

  walk(
    "elysia: withSession around app.handle, Bun.serve through srvx",
    () => Promise.resolve({ driver: jsonDriver(server.base), stop: () => Promise.resolve() }),
  );

  it("runs a held GET again on the fresh session after a conflict: both increments land", async () => {
    const { held, n } = await rerunAfterConflict(server.base);
    assert.equal(held.status, 200, `${held.body}\n${server.output()}`);
    assert.equal(held.body, "3");
    assert.equal(n, 3);
  });
});

describe("elysia under Node", () => {
  let server: Running;
  before(async () => {
    const file = await serverFile();
    server = await startServer(process.execPath, ["--import", "tsx", file], { cwd: join(file, "..") });
  });
  after(async () => await server?.stop());

  walk(
    "elysia: withSession around app.handle, node:http through srvx",
    () => Promise.resolve({ driver: jsonDriver(server.base), stop: () => Promise.resolve() }),
  );
});
