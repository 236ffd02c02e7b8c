// Every subject the benchmark measures, each as two fetch handlers with the same work: `read` (load
// the session, read it, change nothing) and `count` (load, +1, save). Plain JavaScript, so that
// Node, Deno and Bun run it without a loader; websession comes from the built package through its
// public entry point (bench/entry.mjs), the peers from their published packages (imported only
// when asked for, so a runtime that runs websession alone never loads them).
//
// - bare: `new Response("ok")`, no session; "bare (second process)" is the same in a second
//   process (bare vs bare: the machine's own spread);
// - bare + copy: the copy rule alone (the bare Response copied and given a Set-Cookie);
// - floor / "floor, cookie in place": bench/floor.mjs, the least code doing websession's work;
// - websession: withSession over a MemoryStore;
// - the peers, each through its documented API on the same Requests.
import { createFloor } from "./floor.mjs";
import { load } from "./entry.mjs";

export const SECRET = "benchmark secret: at least thirty-two characters";
const ok = () => new Response("ok");
const COOKIE = {
  name: "__session",
  secrets: [SECRET],
  httpOnly: true,
  secure: true,
  sameSite: "lax",
  path: "/",
};

/** The peers, by name: each opens to `{ read, count }`. */
export const PEERS = {
  async "react-router memory"() {
    const { createMemorySessionStorage } = await import("react-router");
    const storage = createMemorySessionStorage({ cookie: COOKIE });
    return {
      async read(req) {
        (await storage.getSession(req.headers.get("Cookie"))).get("visits");
        return ok();
      },
      async count(req) {
        const session = await storage.getSession(req.headers.get("Cookie"));
        session.set("visits", (session.get("visits") ?? 0) + 1);
        return new Response("ok", { headers: { "Set-Cookie": await storage.commitSession(session) } });
      },
    };
  },
  async "@remix-run/session memory"() {
    const { createRouter } = await import("@remix-run/fetch-router");
    const { createCookie } = await import("@remix-run/cookie");
    const { Session } = await import("@remix-run/session");
    const { createMemorySessionStorage } = await import("@remix-run/session/memory-storage");
    const { session: middleware } = await import("@remix-run/session-middleware");
    const cookie = createCookie("__session", { ...COOKIE, sameSite: "Lax" });
    const router = createRouter({ middleware: [middleware(cookie, createMemorySessionStorage())] });
    router.get("/read", (context) => (context.get(Session).get("visits"), ok()));
    router.get("/count", (context) => {
      const session = context.get(Session);
      session.set("visits", Number(session.get("visits") ?? 0) + 1);
      return ok();
    });
    return { read: (req) => router.fetch(req), count: (req) => router.fetch(req) };
  },
  async "hono-sessions MemoryStore"() {
    const { Hono } = await import("hono");
    const { MemoryStore, sessionMiddleware } = await import("hono-sessions");
    const app = new Hono();
    app.use(
      "*",
      sessionMiddleware({
        store: new MemoryStore(),
        encryptionKey: SECRET,
        expireAfterSeconds: 3600,
        cookieOptions: { sameSite: "Lax", path: "/", httpOnly: true, secure: true },
      }),
    );
    app.get("/read", (c) => (c.get("session").get("visits"), c.text("ok")));
    app.get("/count", (c) => {
      const session = c.get("session");
      session.set("visits", (session.get("visits") ?? 0) + 1);
      return c.text("ok");
    });
    return { read: (req) => app.request(req), count: (req) => app.request(req) };
  },
  async "@hono/session"() {
    const { Hono } = await import("hono");
    const { useSession } = await import("@hono/session");
    const app = new Hono();
    app.use(useSession({
      secret: "6d1f0c2b9a8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a392817060f5e",
      duration: { absolute: 604_800, inactivity: 3600 },
    }));
    app.get("/read", async (c) => (await c.var.session.get(), c.text("ok")));
    app.get("/count", async (c) => {
      const visits = ((await c.var.session.get())?.visits ?? 0) + 1;
      await c.var.session.update({ visits });
      return c.text("ok");
    });
    return { read: (req) => app.request(req), count: (req) => app.request(req) };
  },
  async "iron-session"() {
    const { getIronSession } = await import("iron-session");
    const options = { password: SECRET, cookieName: "iron" };
    return {
      async read(req) {
        (await getIronSession(req, new Response(), options)).visits;
        return ok();
      },
      async count(req) {
        const carrier = new Response();
        const session = await getIronSession(req, carrier, options);
        session.visits = (session.visits ?? 0) + 1;
        await session.save();
        return new Response("ok", { headers: carrier.headers });
      },
    };
  },
  async "h3 useSession"() {
    const { H3, useSession } = await import("h3");
    const config = { password: SECRET };
    const app = new H3()
      .get("/read", async (event) => ((await useSession(event, config)).data.visits, "ok"))
      .get("/count", async (event) => {
        const session = await useSession(event, config);
        await session.update({ visits: (session.data.visits ?? 0) + 1 });
        return "ok";
      });
    return { read: (req) => app.fetch(req), count: (req) => app.fetch(req) };
  },
};

/**
 * Opens a subject: `{ read, count, sets }`, `sets` telling whether its new visitors get a cookie.
 *
 * @param {string} name
 * @param {{ http?: boolean }} options `http`: served over plain HTTP (websession's cookie not Secure).
 */
export async function open(name, options = {}) {
  switch (name) {
    case "bare":
    case "bare (second process)":
      return { read: ok, count: ok, sets: false };
    case "bare + copy": {
      const cookie =
        "session=aaaaaaaaaaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb; Path=/; HttpOnly";
      const copied = () => {
        const response = ok();
        const out = new Response(response.body, response);
        out.headers.set("vary", "Cookie");
        out.headers.append("set-cookie", cookie);
        out.headers.set("cache-control", "private, no-store");
        return out;
      };
      return { read: copied, count: copied, sets: false };
    }
    case "floor":
    case "floor, cookie in place": {
      const floor = createFloor({ secret: SECRET, copy: name === "floor" });
      return {
        read: floor.wrap((_req, session) => (session.get("visits"), ok())),
        count: floor.wrap((_req, session) => (session.update("visits", (n = 0) => n + 1), ok())),
        sets: true,
      };
    }
    case "websession": {
      const { getSession, MemoryStore, withSession } = await load("websession");
      const settings = {
        store: new MemoryStore(),
        secrets: SECRET,
        ...(options.http ? { cookie: { secure: false } } : {}),
      };
      return {
        read: withSession(async (req) => ((await getSession(req)).get("visits"), ok()), settings),
        count: withSession(
          async (req) => ((await getSession(req)).update("visits", (n = 0) => n + 1), ok()),
          settings,
        ),
        sets: true,
      };
    }
  }
  if (!(name in PEERS)) throw new Error(`Unknown subject: "${name}"`);
  return { ...(await PEERS[name]()), sets: true };
}
