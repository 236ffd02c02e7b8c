// websession with Elysia: wrap the app's fetch handler with withSession; in a handler,
// `await getSession(request)` returns the request's session.
import { Elysia } from "elysia";
import { getSession, MemoryStore, type SessionOptions, withSession } from "../../mod.ts";

type Data = { visits?: number; user?: string; notice?: string };

const options: SessionOptions<Data> = {
  store: new MemoryStore(),
  secrets: process.env.SESSION_SECRET ?? "demo secret: replace me with 32+ random characters",
};

// Elysia's redirect() builds Response.redirect(), which needs an absolute URL on Node.
function seeOther(location: string): Response {
  return new Response(null, { status: 303, headers: { location } });
}

export const app = new Elysia()
  .get("/", async ({ request }) => {
    const session = await getSession<Data>(request);
    const visits = session.update("visits", (n = 0) => n + 1);
    return { visits, user: session.get("user") ?? null, notice: session.get("notice") ?? null };
  })
  .get("/api/visits", async ({ request }) => {
    const session = await getSession<Data>(request);
    return { visits: session.get("visits") ?? 0, user: session.get("user") ?? null };
  })
  .post("/login", async ({ request, body }) => {
    const session = await getSession<Data>(request);
    const user = String((body as { user?: string }).user ?? "guest");
    session.regenerate(); // a new id on log in: defeats session fixation
    session.set("user", user);
    session.flash("notice", `Welcome, ${user}!`);
    return seeOther("/");
  })
  .post("/logout", async ({ request }) => {
    const session = await getSession<Data>(request);
    const user = session.get("user");
    session.destroy();
    session.flash("notice", `Goodbye, ${user}.`);
    return seeOther("/");
  });

/** The app's fetch handler with sessions (instead of app.listen): serve it. */
export const fetch = withSession((request: Request) => app.handle(request), options);
