// The core's request flow on MemoryStore, step by step, on whichever runtime runs this file
// (Node through tsx, Deno, Bun): the same four handlers as "Where the time goes", timed with a
// plain serial loop so that no runtime-specific harness is needed. Prints one JSON line:
// `[{ name, us }, ...]`, the best mean of several interleaved rounds per step.
import { getSession, MemoryStore, withSession } from "./websession.ts";

const SECRET = "benchmark secret: at least thirty-two characters";
const ROUNDS = 4;
const BUDGET_MS = 400;
const headers = { "content-type": "text/plain;charset=UTF-8" };
type Handler = (request: Request) => Response | Promise<Response>;

const session = { store: new MemoryStore(), secrets: SECRET };
const returning = withSession(async (req: Request) => {
  const s = await getSession<{ visits?: number }>(req);
  return new Response(`visit ${s.update("visits", (n = 0) => n + 1)}`, { headers });
}, session);
const steps: Array<[string, Handler]> = [
  ["bare handler", () => new Response("visit 1", { headers })],
  ["withSession, session never asked for", withSession(() => new Response("visit 1", { headers }), session)],
  [
    "withSession, read-only",
    withSession(async (req: Request) => {
      const s = await getSession<{ visits?: number }>(req);
      return new Response(`visit ${s.get("visits") ?? 0}`, { headers });
    }, session),
  ],
  ["withSession, returning visitor (+1)", returning],
];

const first = await returning(new Request("https://bench.example/"));
const cookie = first.headers.getSetCookie()[0]!.split(";")[0]!;

async function round(handler: Handler): Promise<number> {
  let calls = 0;
  const start = performance.now();
  while (performance.now() - start < BUDGET_MS) {
    for (let i = 0; i < 100; i++) {
      const response = await handler(new Request("https://bench.example/", { headers: { cookie } }));
      response.headers.getSetCookie();
    }
    calls += 100;
  }
  return ((performance.now() - start) * 1000) / calls;
}

const best = new Map<string, number>();
for (const [, handler] of steps) await round(handler); // warm-up
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, handler] of steps) {
    best.set(name, Math.min(best.get(name) ?? Infinity, await round(handler)));
  }
}
console.log(JSON.stringify(steps.map(([name]) => ({ name, us: best.get(name)! }))));
