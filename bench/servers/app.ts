// The app every HTTP server runs, by MODE. Web standards only, so Node, Deno and Bun import the
// same file, and every mode answers the same body:
// - `bare`: `new Response("ok")`, no session (the bare handler);
// - `read`: withSession(MemoryStore), the handler reads the session (a read-only visitor; its
//   first request, with no cookie, starts the session);
// - `returning` (or `session`): withSession(MemoryStore), the handler updates a counter (load,
//   +1, compare-and-set save);
// - `react-router`: react-router's memory session storage, the same counter (a peer).
import process from "node:process";
import { createMemorySessionStorage } from "react-router";
import { getSession, MemoryStore, withSession } from "../websession.ts";

const SECRET = "benchmark secret: at least thirty-two characters";

/**
 * The fetch handler for a mode.
 *
 * @param mode `"bare"`, `"read"`, `"returning"` (`"session"`) or `"react-router"`.
 * @returns The handler.
 * @throws TypeError for an unknown mode.
 */
export function handlerFor(mode: string): (request: Request) => Response | Promise<Response> {
  const options = { store: new MemoryStore(), secrets: SECRET };
  switch (mode) {
    case "bare":
      return () => new Response("ok");
    case "read":
      return withSession(async (request: Request) => {
        const session = await getSession<{ visits?: number }>(request);
        // A visitor's first request starts the session; every later one only reads it.
        if (session.get("visits") === undefined) session.set("visits", 1);
        return new Response("ok");
      }, options);
    case "returning":
    case "session":
      return withSession(async (request: Request) => {
        const session = await getSession<{ visits?: number }>(request);
        session.update("visits", (n = 0) => n + 1);
        return new Response("ok");
      }, options);
    case "react-router": {
      const storage = createMemorySessionStorage({
        cookie: {
          name: "__session",
          secrets: [SECRET],
          httpOnly: true,
          secure: true,
          sameSite: "lax",
          path: "/",
        },
      });
      return async (request: Request) => {
        const session = await storage.getSession(request.headers.get("Cookie"));
        session.set("visits", ((session.get("visits") as number | undefined) ?? 0) + 1);
        return new Response("ok", { headers: { "Set-Cookie": await storage.commitSession(session) } });
      };
    }
  }
  throw new TypeError(`Unknown mode: "${mode}"`);
}

/** What the control port answers: the server process's CPU time so far, in microseconds. */
export function cpuReport(): Response {
  const { user, system } = process.cpuUsage();
  return Response.json({ user, system });
}
