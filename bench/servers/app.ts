// The app every HTTP server runs: a bare handler, or the same handler under withSession with a
// MemoryStore (load, +1, save). Web standards only, so Node, Deno and Bun import the same file.
import { getSession, MemoryStore, withSession } from "../../mod.ts";

const SECRET = "benchmark secret: at least thirty-two characters";
const headers = { "content-type": "text/plain;charset=UTF-8" };

/**
 * The fetch handler for a mode.
 *
 * @param mode `"bare"` or `"session"`.
 * @returns The handler.
 */
export function handlerFor(mode: string): (request: Request) => Response | Promise<Response> {
  if (mode === "bare") return () => new Response("visit 1", { headers });
  if (mode !== "session") throw new TypeError(`Unknown mode: "${mode}"`);
  return withSession(async (request: Request) => {
    const session = await getSession<{ visits?: number }>(request);
    return new Response(`visit ${session.update("visits", (n = 0) => n + 1)}`, { headers });
  }, { store: new MemoryStore(), secrets: SECRET });
}
