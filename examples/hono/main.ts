// The demo with Hono: withSession wraps `app.fetch`, and routes reach the session through the
// raw Request (`c.req.raw`). The result is a plain fetch handler, so it runs wherever Hono does:
//   deno serve --allow-env --port 8000 examples/hono/main.ts
//   bun examples/hono/main.ts                 (Bun serves a default export with `fetch`)
//   export default { fetch } in a Worker
import { Hono } from "hono";
import { getSession, MemoryStore, withSession } from "../../mod.ts";

type Data = { visits?: number; user?: string; notice?: string };

const env = (name: string): string | undefined =>
  (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env[name];

const app = new Hono();

app.get("/favicon.ico", (c) => c.body(null, 404)); // never counted

app.get("/", async (c) => {
  const session = await getSession<Data>(c.req.raw);
  const visits = session.update("visits", (n = 0) => n + 1);
  const notice = session.get("notice");
  const user = session.get("user");
  return c.html(`<!doctype html><title>websession + Hono</title><h1>websession + Hono</h1>
${notice ? `<p id="notice">${escape(notice)}</p>` : ""}
<p>You have visited this page <strong id="visits">${visits}</strong> time${visits === 1 ? "" : "s"}.</p>
${
    user
      ? `<p>Logged in as <strong id="user">${escape(user)}</strong>.</p>
<form method="post" action="/logout"><button id="logout">Log out</button></form>`
      : `<form method="post" action="/login"><input name="user" id="name" required><button id="login">Log in</button></form>`
  }`);
});

app.post("/login", async (c) => {
  const session = await getSession<Data>(c.req.raw);
  const form = await c.req.parseBody();
  const user = String(form.user ?? "").trim().slice(0, 40) || "guest";
  session.regenerate(); // new id on privilege change: defeats session fixation
  session.set("user", user);
  session.flash("notice", `Welcome, ${user}!`);
  return c.redirect("/", 303);
});

app.post("/logout", async (c) => {
  const session = await getSession<Data>(c.req.raw);
  const user = session.get("user");
  session.destroy();
  if (user) session.flash("notice", `Goodbye, ${user}.`);
  return c.redirect("/", 303);
});

app.get("/api/visits", async (c) => {
  const session = await getSession<Data>(c.req.raw);
  return c.json({ visits: session.get("visits") ?? 0, user: session.get("user") ?? null });
});

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

/** Hono's fetch, wrapped: every route above can `await getSession(c.req.raw)`. */
export const fetch = withSession(app.fetch, {
  store: new MemoryStore(),
  secrets: env("SESSION_SECRET") ?? "demo secret: replace me with 32+ random characters",
  // Browsers keep Secure cookies on http://localhost, but not on other plain-http hosts.
  cookie: { secure: env("SECURE_COOKIES") === "1" },
});

export default { port: Number(env("PORT") ?? 8000), fetch };
