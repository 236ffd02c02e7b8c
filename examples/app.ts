// The demo app, shared by every runtime's example: a visit counter, log in / log out with
// regenerate() / destroy(), and a flash message. Plain fetch handler, Web standards only.
import { getSession, type SessionOptions, withSession } from "../mod.ts";

type Data = { visits?: number; user?: string; notice?: string };

function page(body: string): Response {
  return new Response(
    `<!doctype html><html><head><meta charset="utf-8"><title>websession demo</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem}
.notice{background:#e8f5e9;border:1px solid #a5d6a7;padding:.5rem 1rem;border-radius:6px}
form{display:inline}button{font:inherit;padding:.3rem .9rem}</style></head><body>${body}</body></html>`,
    { headers: { "content-type": "text/html; charset=utf-8" } },
  );
}

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function redirect(to: string): Response {
  return new Response(null, { status: 303, headers: { location: to } });
}

/** The demo's fetch handler, wrapped with `withSession`. */
export function createApp<A extends unknown[] = unknown[]>(
  options: SessionOptions<Data> | ((req: Request, ...rest: A) => SessionOptions<Data>),
): (req: Request, ...rest: A) => Promise<Response> {
  return withSession(async (req: Request, ..._rest: A) => {
    const url = new URL(req.url);
    if (url.pathname === "/favicon.ico") return new Response(null, { status: 404 }); // never counted
    const session = await getSession<Data>(req);

    if (req.method === "POST" && url.pathname === "/login") {
      const form = await req.formData();
      const user = String(form.get("user") ?? "").trim().slice(0, 40) || "guest";
      session.regenerate(); // new id on privilege change: defeats session fixation
      session.set("user", user);
      session.flash("notice", `Welcome, ${user}!`);
      return redirect("/");
    }
    if (req.method === "POST" && url.pathname === "/logout") {
      const user = session.get("user");
      session.destroy();
      if (user) session.flash("notice", `Goodbye, ${user}.`);
      return redirect("/");
    }
    if (url.pathname === "/api/visits") {
      return Response.json({ visits: session.get("visits") ?? 0, user: session.get("user") ?? null });
    }
    if (url.pathname !== "/") return new Response("Not found", { status: 404 });

    const visits = session.update("visits", (n = 0) => n + 1);
    const notice = session.get("notice");
    const user = session.get("user");
    return page(`<h1>websession demo</h1>
${notice ? `<p class="notice" id="notice">${escape(notice)}</p>` : ""}
<p>You have visited this page <strong id="visits">${visits}</strong> time${visits === 1 ? "" : "s"}.</p>
${
      user
        ? `<p>Logged in as <strong id="user">${escape(user)}</strong>.</p>
<form method="post" action="/logout"><button id="logout">Log out</button></form>`
        : `<form method="post" action="/login"><input name="user" id="name" placeholder="your name" required>
<button id="login">Log in</button></form>`
    }`);
  }, options);
}
