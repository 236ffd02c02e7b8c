// websession/hono with the real Hono: the same walk (counter, log in with regenerate, flash once,
// log out, 20 concurrent increments, a read-only request) through app.request and over HTTP
// served by @hono/node-server, for the middleware on its own and under withSession; then what
// each conflict policy answers, and errors.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import {
  type ConflictPolicy,
  MemoryStore,
  SessionConflictError,
  type SessionOptions,
  type SessionStore,
  withSession,
} from "../../mod.ts";
import { getSession, type SessionEnv, sessionMiddleware } from "../../src/adapters/hono.ts";
import { Client, type Handler } from "../conformance/client.ts";

const SECRET = "hono adapter test secret, 32+ characters";

type Data = { visits?: number; user?: string; notice?: string; n?: number; tag?: string };

/** A gate a request can wait on; `open()` lets every waiter through. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open = (): void => {};
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}

interface DemoOptions {
  /** `"middleware"`: sessionMiddleware(options); `"withSession"`: sessionMiddleware() + withSession(app.fetch). */
  mount: "middleware" | "withSession";
  options?: Partial<SessionOptions<Data>>;
  /** Requests with `x-slow` wait on this before they return. */
  slow?: Promise<void>;
}

function demoApp(
  { mount, options = {}, slow }: DemoOptions,
): { fetch: Handler; store: SessionStore; runs: number[] } {
  const store = (options.store as SessionStore | undefined) ?? new MemoryStore();
  const full: SessionOptions<Data> = { secrets: SECRET, ...options, store };
  const runs: number[] = [0];
  const app = new Hono<SessionEnv<Data>>();
  app.use(mount === "middleware" ? sessionMiddleware<Data>(full) : sessionMiddleware<Data>());

  app.get("/", (c) => {
    const session = c.var.session;
    const visits = session.update("visits", (n = 0) => n + 1);
    return c.json({ visits, user: session.get("user") ?? null, notice: session.get("notice") ?? null });
  });
  app.post("/login", async (c) => {
    const session = await getSession<Data>(c);
    const form = await c.req.parseBody();
    session.regenerate();
    session.set("user", String(form.user));
    session.flash("notice", `Welcome, ${form.user}!`);
    return c.redirect("/", 303);
  });
  app.post("/logout", (c) => {
    const session = c.get("session");
    const user = session.get("user");
    session.destroy();
    session.flash("notice", `Goodbye, ${user}.`);
    return c.redirect("/", 303);
  });
  app.get("/api/visits", (c) => {
    const session = c.var.session;
    return c.json({ visits: session.get("visits") ?? 0, user: session.get("user") ?? null });
  });
  // Reads n, then writes n + 1: a conflict with a concurrent writer of n cannot be replayed. PUT:
  // withSession's merge runs idempotent methods again (RFC 9110 §9.2.2).
  app.put("/read-then-write", async (c) => {
    runs[0]!++;
    const session = c.var.session;
    const n = session.get("n") ?? 0;
    if (c.req.header("x-slow") !== undefined) await slow;
    session.set("n", n + 1);
    return c.text(String(n + 1));
  });
  app.post("/tag", (c) => {
    c.var.session.set("tag", c.req.query("tag") ?? "");
    return c.text("ok");
  });
  app.post("/fail", (c) => {
    c.var.session.set("user", "mallory");
    throw new Error("handler failed");
  });
  app.post("/save", async (c) => {
    c.var.session.set("user", "saved early");
    await c.var.session.save();
    return c.text("saved");
  });

  const fetch: Handler = mount === "middleware"
    ? (request: Request) => Promise.resolve(app.fetch(request))
    : withSession((request: Request) => app.fetch(request), full);
  return { fetch, store, runs };
}

function form(fields: Record<string, string>): RequestInit {
  return { method: "POST", body: new URLSearchParams(fields), redirect: "manual" };
}

/** A fetch handler that sends each request to `base` over HTTP. */
function overHttp(base: string): Handler {
  return async (request: Request) => {
    const url = new URL(request.url);
    return await fetch(new URL(url.pathname + url.search, base), {
      method: request.method,
      headers: request.headers,
      body: request.body === null ? undefined : await request.arrayBuffer(),
      redirect: "manual",
    });
  };
}

/** The six behaviours every way of serving must show. */
function walk(name: string, start: () => Promise<{ handler: Handler; stop?: () => Promise<void> }>): void {
  describe(name, () => {
    let handler: Handler;
    let stop: (() => Promise<void>) | undefined;
    before(async () => ({ handler, stop } = await start()));
    after(async () => await stop?.());

    it("keeps a counter across requests; a read-only request sends no Set-Cookie", async () => {
      const browser = new Client(handler);
      const first = await browser.fetch("/");
      assert.deepEqual(await first.json(), { visits: 1, user: null, notice: null });
      const [cookie] = first.headers.getSetCookie();
      assert.match(
        cookie!,
        /^session=[\w-]{32}\.[\w-]{43}; Path=\/; HttpOnly; Secure; SameSite=Lax; Max-Age=5400/,
      );
      assert.equal(first.headers.get("vary"), "Cookie");
      assert.equal(first.headers.get("cache-control"), "private, no-store");
      const second = await browser.fetch("/");
      assert.equal((await second.json()).visits, 2);
      assert.deepEqual(second.headers.getSetCookie(), [], "a changed session whose cookie stands sends none");

      const read = await browser.fetch("/api/visits");
      assert.deepEqual(await read.json(), { visits: 2, user: null });
      assert.deepEqual(read.headers.getSetCookie(), []);
      assert.equal(read.headers.get("vary"), "Cookie");
      assert.equal(read.headers.get("cache-control"), null);
    });

    it("logs in with a new id (the old cookie opens nothing), shows the flash once, logs out", async () => {
      const browser = new Client(handler);
      await browser.fetch("/");
      const anonymous = browser.jar.get("session")!;
      const login = await browser.fetch("/login", form({ user: "ada" }));
      assert.equal(login.status, 303);
      const loggedIn = browser.jar.get("session")!;
      assert.notEqual(loggedIn.split(".")[0], anonymous.split(".")[0], "regenerated");

      assert.deepEqual(await (await browser.fetch("/")).json(), {
        visits: 2,
        user: "ada",
        notice: "Welcome, ada!",
      });
      assert.deepEqual(await (await browser.fetch("/")).json(), { visits: 3, user: "ada", notice: null });
      const fixated = new Client(handler);
      fixated.jar.set("session", anonymous);
      assert.deepEqual(await (await fixated.fetch("/api/visits")).json(), { visits: 0, user: null });

      const logout = await browser.fetch("/logout", { method: "POST", redirect: "manual" });
      assert.equal(logout.status, 303);
      assert.ok(
        logout.headers.getSetCookie().some((c) => /^session=[^;]+;/.test(c)),
        "a new session for the flash",
      );
      assert.deepEqual(await (await browser.fetch("/")).json(), {
        visits: 1,
        user: null,
        notice: "Goodbye, ada.",
      });
      const replayed = new Client(handler);
      replayed.jar.set("session", loggedIn);
      assert.deepEqual(await (await replayed.fetch("/api/visits")).json(), { visits: 0, user: null });
    });

    it("loses none of 20 concurrent increments", async () => {
      const browser = new Client(handler);
      await browser.fetch("/");
      const responses = await Promise.all(Array.from({ length: 20 }, () => browser.clone().fetch("/")));
      assert.deepEqual(responses.map((r) => r.status), Array(20).fill(200));
      await Promise.all(responses.map((r) => r.body?.cancel()));
      assert.deepEqual(await (await browser.fetch("/api/visits")).json(), { visits: 21, user: null });
    });
  });
}

walk("hono: sessionMiddleware(options), app.request", () => {
  const { fetch } = demoApp({ mount: "middleware" });
  return Promise.resolve({ handler: fetch });
});

walk("hono: sessionMiddleware() under withSession(app.fetch)", () => {
  const { fetch } = demoApp({ mount: "withSession" });
  return Promise.resolve({ handler: fetch });
});

walk("hono: sessionMiddleware(options) served over HTTP by @hono/node-server", async () => {
  const { fetch } = demoApp({ mount: "middleware" });
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    handler: overHttp(`http://127.0.0.1:${port}`),
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
});

/**
 * Two overlapping requests of one session read `n` and write `n + 1`; the slow one saves last.
 * Returns the slow request's status and the final `n`.
 */
async function readWriteRace(
  mount: DemoOptions["mount"],
  conflict: ConflictPolicy,
): Promise<{ status: number; n: number; runs: number; errors: string[] }> {
  const slow = gate();
  const errors: string[] = [];
  const { fetch, runs } = demoApp({
    mount,
    slow: slow.wait,
    options: {
      conflict,
      // The slow request is held while the other runs: they must not take turns.
      locking: "explicit",
      onError: (error) => {
        errors.push((error as Error).name);
        return new Response("refused by onError", { status: 409 });
      },
    },
  });
  const browser = new Client(fetch);
  await browser.fetch("/tag?tag=start", { method: "POST" });
  const pending = browser.clone().fetch("/read-then-write", { method: "PUT", headers: { "x-slow": "1" } });
  // The slow request is waiting after its read; another request writes n meanwhile.
  while (runs[0] === 0) await new Promise((resolve) => setTimeout(resolve, 1));
  assert.equal(await browser.text("/read-then-write", { method: "PUT" }), "1");
  slow.open();
  const response = await pending;
  await response.body?.cancel();
  const n = Number(await browser.text("/read-then-write", { method: "PUT" })) - 1;
  return { status: response.status, n, runs: runs[0]!, errors };
}

describe("hono: conflict policies", () => {
  it("merge: a conflict that needs the handler run again is 409 through onError under the middleware", async () => {
    assert.deepEqual(await readWriteRace("middleware", "merge"), {
      status: 409,
      n: 1,
      runs: 3,
      errors: ["SessionConflictError"],
    });
  });

  it("retry: 409 through onError under the middleware, never a 500 or a second next()", async () => {
    assert.deepEqual(await readWriteRace("middleware", "retry"), {
      status: 409,
      n: 1,
      runs: 3,
      errors: ["SessionConflictError"],
    });
  });

  it("reject: 409 through onError", async () => {
    const result = await readWriteRace("middleware", "reject");
    assert.deepEqual(result, { status: 409, n: 1, runs: 3, errors: ["SessionConflictError"] });
  });

  it("overwrite: last write wins, as configured", async () => {
    assert.deepEqual(await readWriteRace("middleware", "overwrite"), {
      status: 200,
      n: 1,
      runs: 3,
      errors: [],
    });
  });

  it("merge and retry under withSession(app.fetch): the app runs again and both writes land", async () => {
    for (const conflict of ["merge", "retry"] as const) {
      const result = await readWriteRace("withSession", conflict);
      assert.deepEqual(result, { status: 200, n: 2, runs: 4, errors: [] }, conflict);
    }
  });

  it("retry under the middleware: 20 concurrent read-then-write requests answer 200 or 409, and every 200 landed", async () => {
    const { fetch } = demoApp({ mount: "middleware", options: { conflict: "retry" } });
    const browser = new Client(fetch);
    await browser.fetch("/tag?tag=start", { method: "POST" });
    const responses = await Promise.all(
      Array.from({ length: 20 }, () => browser.clone().fetch("/read-then-write", { method: "PUT" })),
    );
    const statuses = responses.map((r) => r.status);
    await Promise.all(responses.map((r) => r.body?.cancel()));
    assert.ok(statuses.every((s) => s === 200 || s === 409), `statuses: ${statuses}`);
    const landed = statuses.filter((s) => s === 200).length;
    assert.ok(landed >= 1);
    assert.equal(await browser.text("/read-then-write", { method: "PUT" }), String(landed + 1));
  });

  it("merge under the middleware: 20 concurrent writers of different keys all land", async () => {
    const { fetch } = demoApp({ mount: "middleware" });
    const browser = new Client(fetch);
    await browser.fetch("/");
    const responses = await Promise.all(
      Array.from(
        { length: 20 },
        (_, i) =>
          browser.clone().fetch(i % 2 === 0 ? "/" : `/tag?tag=t${i}`, {
            method: i % 2 === 0 ? "GET" : "POST",
          }),
      ),
    );
    assert.deepEqual(responses.map((r) => r.status), Array(20).fill(200));
    await Promise.all(responses.map((r) => r.body?.cancel()));
    const { visits } = await (await browser.fetch("/api/visits")).json();
    assert.equal(visits, 11);
  });
});

describe("hono: errors", () => {
  const broken: SessionStore = {
    capabilities: { compareAndSet: true, ttl: true },
    load: () => Promise.reject(new Error("connection refused")),
    save: () => Promise.reject(new Error("connection refused")),
    destroy: () => Promise.reject(new Error("connection refused")),
  };

  it("a store outage is 503 through onError, and the handler does not run", async () => {
    const { fetch, runs } = demoApp({ mount: "middleware", options: { store: broken } });
    const signed = new Client(demoApp({ mount: "middleware" }).fetch);
    await signed.fetch("/");
    const response = await fetch(
      new Request("https://app.example/read-then-write", {
        method: "POST",
        headers: { cookie: signed.cookie },
      }),
    );
    assert.equal(response.status, 503);
    assert.equal(await response.text(), "Service Unavailable");
    assert.equal(runs[0], 0);
  });

  it("a handler that throws saves nothing (the app's onError answers)", async () => {
    const { fetch } = demoApp({ mount: "middleware" });
    const browser = new Client(fetch);
    await browser.fetch("/");
    const failed = await browser.fetch("/fail", { method: "POST" });
    assert.equal(failed.status, 500);
    assert.deepEqual(failed.headers.getSetCookie(), []);
    // The error page was made for a request whose session was open: a shared cache keys it by cookie.
    assert.equal(failed.headers.get("vary"), "Cookie");
    assert.deepEqual(await (await browser.fetch("/api/visits")).json(), { visits: 1, user: null });
  });

  it("session.save() in a handler saves early; its cookie goes out with the response", async () => {
    const { fetch } = demoApp({ mount: "middleware" });
    const browser = new Client(fetch);
    const saved = await browser.fetch("/save", { method: "POST" });
    assert.equal(await saved.text(), "saved");
    assert.equal(saved.headers.getSetCookie().length, 1);
    assert.deepEqual(await (await browser.fetch("/api/visits")).json(), { visits: 0, user: "saved early" });
  });

  it("a SessionError a handler lets through is answered through onError with its status, not 500", async () => {
    const app = new Hono<SessionEnv>();
    app.use(sessionMiddleware({ secrets: SECRET, store: new MemoryStore() }));
    app.get("/", () => {
      throw new SessionConflictError("refused");
    });
    const response = await app.request("/");
    assert.equal(response.status, 409);
    assert.equal(await response.text(), "Conflict");
  });

  it("getSession(c) without the middleware, and sessionMiddleware() without withSession, say what is missing", async () => {
    const app = new Hono();
    app.get("/", async (c) => c.text(await getSession(c).then(() => "session", (e: Error) => e.message)));
    assert.match(await (await app.request("/")).text(), /sessionMiddleware/);
    const bare = new Hono();
    let message = "";
    bare.onError((error) => {
      message = error.message;
      return new Response(null, { status: 500 });
    });
    bare.use(sessionMiddleware());
    bare.get("/", (c) => c.text("unreachable"));
    assert.equal((await bare.request("/")).status, 500);
    assert.match(message, /withSession/);
  });

  it("options are checked when the middleware is made", () => {
    assert.throws(() => sessionMiddleware({ secrets: "short" }), TypeError);
    assert.throws(() => sessionMiddleware({ secrets: SECRET, idleTimeout: -1 }), RangeError);
  });

  it("options can come from the context (Workers bindings in c.env)", async () => {
    const perEnv = new Map<string, SessionOptions>();
    const app = new Hono<{ Bindings: { SECRET: string } } & SessionEnv<Data>>();
    app.use(sessionMiddleware<Data>((c) => {
      let options = perEnv.get(c.env.SECRET);
      if (options === undefined) {
        perEnv.set(c.env.SECRET, options = { secrets: c.env.SECRET, store: new MemoryStore() });
      }
      return options;
    }));
    app.get("/", (c) => c.text(String(c.var.session.update("visits", (n = 0) => n + 1))));
    const env = { SECRET };
    const first = await app.request("/", {}, env);
    const cookie = first.headers.get("set-cookie")!.split(";")[0]!;
    assert.equal(await (await app.request("/", { headers: { cookie } }, env)).text(), "2");
    assert.equal(perEnv.size, 1);
  });

  it("a redirect's immutable headers still get the cookie", async () => {
    const app = new Hono<SessionEnv>();
    app.use(sessionMiddleware({ secrets: SECRET, store: new MemoryStore() }));
    app.get("/", (c) => {
      c.var.session.set("user", "ada");
      return Response.redirect("https://app.example/next", 302);
    });
    const response = await app.request("/");
    assert.equal(response.status, 302);
    assert.equal(response.headers.get("location"), "https://app.example/next");
    assert.equal(response.headers.getSetCookie().length, 1);
  });
});
