// The Worker that runs the test suites inside workerd. The runner bundles it together with the
// test files (whose `node:test` import is this collector); `GET /run` runs every registered test
// once and streams one JSON line per result, then a summary line.
import { run, type TestResult } from "./test_shim.ts";
import { type RunnerEnv, setEnv } from "./workerd_env.ts";

export { SessionDurableObject } from "../../src/stores/durable_object.ts";

let started = false;

function runAll(request: Request, env: RunnerEnv, ctx: { waitUntil(p: Promise<unknown>): void }): Response {
  if (new URL(request.url).pathname !== "/run") return new Response("Not found", { status: 404 });
  if (started) return new Response("The tests already ran in this Worker", { status: 409 });
  started = true;
  setEnv(env);
  const encoder = new TextEncoder();
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const writer = writable.getWriter();
  const line = (value: unknown) => writer.write(encoder.encode(`${JSON.stringify(value)}\n`));
  const done = (async () => {
    try {
      const totals = await run((result: TestResult) => void line({ type: "test", ...result }));
      await line({ type: "summary", ...totals });
    } catch (error) {
      await line({
        type: "crash",
        message: error instanceof Error ? (error.stack ?? error.message) : String(error),
      });
    } finally {
      await writer.close();
    }
  })();
  ctx.waitUntil(done);
  return new Response(readable, { headers: { "content-type": "application/x-ndjson" } });
}

export default { fetch: runAll };
