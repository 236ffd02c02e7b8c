// The demo with Hono: sessionMiddleware puts the session in `c.var.session` and commits it after
// the handlers. The app is a plain fetch handler, so it runs wherever Hono does:
//   deno serve --allow-env --port 8000 examples/hono/main.ts
//   bun examples/hono/main.ts                 (Bun serves a default export with `fetch`)
//   serve({ fetch: app.fetch }) from @hono/node-server on Node; export default app in a Worker
import { Hono } from "hono";
import { MemoryStore } from "../../mod.ts";
import { type SessionEnv, sessionMiddleware } from "../../src/adapters/hono.ts";

type Data = { visits?: number; user?: string; notice?: string };

const env = (name: string): string | undefined =>
  (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env[name];

const app = new Hono<SessionEnv<Data>>();

app.get("/favicon.ico", (c) => c.body(null, 404)); // before the middleware: never counted, no store call

app.use(sessionMiddleware<Data>({
  store: new MemoryStore(),
  secrets: env("SESSION_SECRET") ?? "demo secret: replace me with 32+ random characters",
  // Browsers keep Secure cookies on http://localhost, but not on other plain-http hosts.
  cookie: { secure: env("SECURE_COOKIES") === "1" },
}));

app.get("/", (c) => {
  const session = c.var.session;
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
  const session = c.var.session;
  const form = await c.req.parseBody();
  const user = String(form.user ?? "").trim().slice(0, 40) || "guest";
  session.regenerate(); // new id on privilege change: defeats session fixation
  session.set("user", user);
  session.flash("notice", `Welcome, ${user}!`);
  return c.redirect("/", 303);
});

app.post("/logout", (c) => {
  const session = c.var.session;
  const user = session.get("user");
  session.destroy();
  if (user) session.flash("notice", `Goodbye, ${user}.`);
  return c.redirect("/", 303);
});

app.get("/api/visits", (c) => {
  const session = c.get("session");
  return c.json({ visits: session.get("visits") ?? 0, user: session.get("user") ?? null });
});

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

export default { port: Number(env("PORT") ?? 8000), fetch: app.fetch };
