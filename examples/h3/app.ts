// websession with h3 v2: wrap the app's fetch handler with withSession; in a handler,
// `await getSession(event.req)` returns the request's session.
import { H3, redirect } from "h3";
import { getSession, MemoryStore, type SessionOptions, withSession } from "../../mod.ts";

type Data = { visits?: number; user?: string; notice?: string };

const options: SessionOptions<Data> = {
  store: new MemoryStore(),
  secrets: process.env.SESSION_SECRET ?? "demo secret: replace me with 32+ random characters",
};

export const app = new H3();

app.get("/", async (event) => {
  const session = await getSession<Data>(event.req);
  const visits = session.update("visits", (n = 0) => n + 1);
  return { visits, user: session.get("user") ?? null, notice: session.get("notice") ?? null };
});

app.get("/api/visits", async (event) => {
  const session = await getSession<Data>(event.req);
  return { visits: session.get("visits") ?? 0, user: session.get("user") ?? null };
});

app.post("/login", async (event) => {
  const session = await getSession<Data>(event.req);
  const form = await event.req.formData();
  const user = String(form.get("user") ?? "guest");
  session.regenerate(); // a new id on log in: defeats session fixation
  session.set("user", user);
  session.flash("notice", `Welcome, ${user}!`);
  return redirect("/", 303);
});

app.post("/logout", async (event) => {
  const session = await getSession<Data>(event.req);
  const user = session.get("user");
  session.destroy();
  session.flash("notice", `Goodbye, ${user}.`);
  return redirect("/", 303);
});

/** The app's fetch handler with sessions: serve it, or `export default { fetch }`. */
export const fetch = withSession((request: Request) => app.fetch(request), options);
