// websession/react-router with the real React Router, 7 (middleware behind future.v8_middleware)
// and 8: a server build made in code (route modules with middleware, loaders and actions; an entry
// that renders the router's data as JSON instead of React) runs through createRequestHandler, the
// function every React Router server adapter calls. Each major runs the same walk (counter, log
// in with regenerate, flash once, log out, 20 concurrent increments, a read-only request) with
// sessionMiddleware and with createSessionStorage; then conflicts, errors and types.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as rr7 from "react-router";
import * as rr8 from "react-router-8";
import { type ConflictPolicy, MemoryStore, type SessionOptions, type SessionStore } from "../../mod.ts";
import { CookieStore } from "../../src/stores/cookie.ts";
import {
  createSessionStorage,
  getSession,
  type RouterContextLike,
  type RouterSessionStorage,
  sessionMiddleware,
} from "../../src/adapters/react_router.ts";
import { Client, type Handler } from "../conformance/client.ts";

const SECRET = "react router adapter test secret, 32+ chars";

type Data = { visits?: number; user?: string; notice?: string; n?: number; tag?: string };
type Args = { request: Request; context: RouterContextLike; params: Record<string, string | undefined> };
type Module = Record<string, unknown>;

/** What differs between the majors. */
interface Major {
  name: string;
  createRequestHandler: (
    build: never,
    mode?: string,
  ) => (request: Request, context?: never) => Promise<Response>;
  redirect: (url: string, init?: number | ResponseInit) => Response;
  data: typeof rr8.data;
  /** The `future` of a build whose routes use middleware. */
  middlewareFuture: Record<string, boolean>;
  /** The path of the single-fetch data request for `/`. */
  rootData: string;
}

const MAJORS: Major[] = [
  {
    name: "React Router 7",
    createRequestHandler: rr7.createRequestHandler as Major["createRequestHandler"],
    redirect: rr7.redirect,
    data: rr7.data as typeof rr8.data,
    middlewareFuture: { v8_middleware: true },
    rootData: "/_root.data",
  },
  {
    name: "React Router 8",
    createRequestHandler: rr8.createRequestHandler as Major["createRequestHandler"],
    redirect: rr8.redirect,
    data: rr8.data,
    middlewareFuture: {},
    rootData: "/_.data",
  },
];

function Page(): null {
  return null;
}

/** The document entry: the router's data as JSON, with the headers React Router computed. */
const entry = {
  default(
    _request: Request,
    status: number,
    headers: Headers,
    context: {
      staticHandlerContext: { loaderData: unknown; actionData: unknown };
      serverHandoffStream?: ReadableStream;
    },
  ): Response {
    context.serverHandoffStream?.cancel().catch(() => {});
    headers.set("content-type", "application/json");
    const { loaderData, actionData } = context.staticHandlerContext;
    return new Response(JSON.stringify({ loaderData, actionData }), { status, headers });
  },
};

/** A server build of these routes, as the Vite plugin would emit it. */
function handlerOf(
  major: Major,
  routes: Record<string, { parentId?: string; path?: string; index?: boolean; module: Module }>,
  future: Record<string, boolean>,
): Handler {
  const build = {
    entry: { module: entry },
    routes: Object.fromEntries(Object.entries(routes).map(([id, route]) => [id, { id, ...route }])),
    assets: {
      entry: { imports: [], module: "/entry.client.js" },
      routes: {},
      url: "/manifest.js",
      version: "1",
    },
    publicPath: "/",
    assetsBuildDirectory: "build/client",
    future,
    ssr: true,
    isSpaMode: false,
    prerender: [],
    routeDiscovery: { mode: "initial", manifestPath: "/__manifest" },
  };
  const handler = major.createRequestHandler(build as never, "production");
  return (request: Request) => handler(request);
}

/** A gate a request can wait on. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open = (): void => {};
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}

interface AppOptions {
  options?: Partial<SessionOptions<Data>>;
  slow?: Promise<void>;
}

/** The demo with sessionMiddleware in the root route and getSession(context) in loaders and actions. */
function middlewareApp(
  major: Major,
  { options = {}, slow }: AppOptions = {},
): { handler: Handler; runs: number[] } {
  const full: SessionOptions<Data> = { secrets: SECRET, store: new MemoryStore(), ...options };
  const runs = [0];
  const handler = handlerOf(major, {
    root: { path: "", module: { middleware: [sessionMiddleware<Data>(full)], default: Page } },
    home: {
      parentId: "root",
      index: true,
      module: {
        async loader({ context }: Args) {
          const session = await getSession<Data>(context);
          const visits = session.update("visits", (n = 0) => n + 1);
          return { visits, user: session.get("user") ?? null, notice: session.get("notice") ?? null };
        },
        default: Page,
      },
    },
    login: {
      parentId: "root",
      path: "login",
      module: {
        async action({ request, context }: Args) {
          const session = await getSession<Data>(context);
          const form = await request.formData();
          session.regenerate();
          session.set("user", String(form.get("user")));
          session.flash("notice", `Welcome, ${form.get("user")}!`);
          return major.redirect("/");
        },
        default: Page,
      },
    },
    logout: {
      parentId: "root",
      path: "logout",
      module: {
        async action({ context }: Args) {
          const session = await getSession<Data>(context);
          const user = session.get("user");
          session.destroy();
          session.flash("notice", `Goodbye, ${user}.`);
          return major.redirect("/");
        },
        default: Page,
      },
    },
    visits: {
      parentId: "root",
      path: "api/visits",
      module: {
        async loader({ context }: Args) {
          const session = await getSession<Data>(context);
          return Response.json({ visits: session.get("visits") ?? 0, user: session.get("user") ?? null });
        },
      },
    },
    rw: {
      parentId: "root",
      path: "api/read-then-write",
      module: {
        async action({ request, context }: Args) {
          runs[0]!++;
          const session = await getSession<Data>(context);
          const n = session.get("n") ?? 0;
          if (request.headers.has("x-slow")) await slow;
          session.set("n", n + 1);
          return new Response(String(n + 1));
        },
      },
    },
    tag: {
      parentId: "root",
      path: "api/tag",
      module: {
        async action({ context }: Args) {
          (await getSession<Data>(context)).set("tag", "t");
          return new Response("ok");
        },
      },
    },
    plain: {
      parentId: "root",
      path: "api/plain",
      module: { loader: () => new Response("no session asked") },
    },
    failing: {
      parentId: "root",
      path: "api/failing",
      module: {
        async loader({ context }: Args) {
          await getSession<Data>(context);
          return new Response("unreachable");
        },
      },
    },
  }, major.middlewareFuture);
  return { handler, runs };
}

/** The same demo written the classic way, over createSessionStorage: each loader commits. */
function storageApp(major: Major, storage: RouterSessionStorage<Data, Data>): Handler {
  const cookieOf = (request: Request) => request.headers.get("Cookie");
  return handlerOf(major, {
    root: { path: "", module: { default: Page } },
    home: {
      parentId: "root",
      index: true,
      module: {
        async loader({ request }: Args) {
          const session = await storage.getSession(cookieOf(request));
          const visits = session.update("visits", (n = 0) => n + 1);
          const body = { visits, user: session.get("user") ?? null, notice: session.get("notice") ?? null };
          return major.data(body, { headers: { "Set-Cookie": await storage.commitSession(session) } });
        },
        default: Page,
      },
    },
    login: {
      parentId: "root",
      path: "login",
      module: {
        async action({ request }: Args) {
          const session = await storage.getSession(cookieOf(request));
          const form = await request.formData();
          session.regenerate();
          session.set("user", String(form.get("user")));
          session.flash("notice", `Welcome, ${form.get("user")}!`);
          return major.redirect("/", { headers: { "Set-Cookie": await storage.commitSession(session) } });
        },
        default: Page,
      },
    },
    logout: {
      parentId: "root",
      path: "logout",
      module: {
        async action({ request }: Args) {
          const session = await storage.getSession(cookieOf(request));
          const user = session.get("user");
          const cleared = await storage.destroySession(session);
          // A flash after log out lives in a new session: a second cookie of the same name
          // would be one too many for one response, so the redirect carries only the clearing.
          assert.match(cleared, /Max-Age=0/);
          assert.equal(typeof user, "string");
          return major.redirect("/", { headers: { "Set-Cookie": cleared } });
        },
        default: Page,
      },
    },
    visits: {
      parentId: "root",
      path: "api/visits",
      module: {
        async loader({ request }: Args) {
          const session = await storage.getSession(cookieOf(request));
          const body = { visits: session.get("visits") ?? 0, user: session.get("user") ?? null };
          const headers = new Headers();
          const cookie = await storage.commitSession(session);
          if (cookie !== "") headers.set("Set-Cookie", cookie);
          return Response.json(body, { headers });
        },
      },
    },
  }, {});
}

function form(fields: Record<string, string>): RequestInit {
  return { method: "POST", body: new URLSearchParams(fields), redirect: "manual" };
}

async function home(
  browser: Client,
): Promise<{ visits: number; user: string | null; notice: string | null }> {
  const response = await browser.fetch("/");
  assert.equal(response.status, 200);
  return (await response.json()).loaderData.home;
}

/** The walk every major and mount must pass. */
function walk(name: string, make: () => Handler, { flashOnLogout = true } = {}): void {
  describe(name, () => {
    it("keeps a counter across requests; a read-only request sends no Set-Cookie", async () => {
      const browser = new Client(make());
      const first = await browser.fetch("/");
      assert.deepEqual((await first.json()).loaderData.home, { visits: 1, user: null, notice: null });
      const cookies = first.headers.getSetCookie();
      assert.equal(cookies.length, 1, String(cookies));
      assert.match(
        cookies[0]!,
        /^session=[\w-]{32}\.[\w-]{43}; Path=\/; HttpOnly; Secure; SameSite=Lax; Max-Age=5400/,
      );
      const second = await browser.fetch("/");
      assert.equal((await second.json()).loaderData.home.visits, 2);
      assert.deepEqual(second.headers.getSetCookie(), [], "a changed session whose cookie stands sends none");

      const read = await browser.fetch("/api/visits");
      assert.deepEqual(await read.json(), { visits: 2, user: null });
      assert.deepEqual(read.headers.getSetCookie(), []);
    });

    it("logs in with a new id (the old cookie opens nothing), shows the flash once, logs out", async () => {
      const handler = make();
      const browser = new Client(handler);
      await home(browser);
      const anonymous = browser.jar.get("session")!;
      const login = await browser.fetch("/login", form({ user: "ada" }));
      assert.equal(login.status, 302);
      assert.equal(login.headers.get("location"), "/");
      const loggedIn = browser.jar.get("session")!;
      assert.notEqual(loggedIn.split(".")[0], anonymous.split(".")[0], "regenerated");

      assert.deepEqual(await home(browser), { visits: 2, user: "ada", notice: "Welcome, ada!" });
      assert.deepEqual(await home(browser), { visits: 3, user: "ada", notice: null });
      const fixated = new Client(handler);
      fixated.jar.set("session", anonymous);
      assert.deepEqual(await (await fixated.fetch("/api/visits")).json(), { visits: 0, user: null });

      const logout = await browser.fetch("/logout", { method: "POST", redirect: "manual" });
      assert.equal(logout.status, 302);
      assert.notEqual(browser.jar.get("session"), loggedIn, "the cookie was cleared or replaced");
      assert.deepEqual(await home(browser), {
        visits: 1,
        user: null,
        notice: flashOnLogout ? "Goodbye, ada." : null,
      });
      const replayed = new Client(handler);
      replayed.jar.set("session", loggedIn);
      assert.deepEqual(await (await replayed.fetch("/api/visits")).json(), { visits: 0, user: null });
    });

    it("loses none of 20 concurrent increments", async () => {
      const browser = new Client(make());
      await home(browser);
      const responses = await Promise.all(Array.from({ length: 20 }, () => browser.clone().fetch("/")));
      assert.deepEqual(responses.map((r) => r.status), Array(20).fill(200));
      await Promise.all(responses.map((r) => r.body?.cancel()));
      assert.deepEqual(await (await browser.fetch("/api/visits")).json(), { visits: 21, user: null });
    });
  });
}

for (const major of MAJORS) {
  walk(`${major.name}: sessionMiddleware, getSession(context)`, () => middlewareApp(major).handler);
  walk(
    `${major.name}: createSessionStorage`,
    () => storageApp(major, createSessionStorage<Data>({ secrets: SECRET, store: new MemoryStore() })),
    { flashOnLogout: false },
  );
}

/** Two overlapping requests read `n` and write `n + 1`; the slow one commits last. */
async function readWriteRace(major: Major, conflict: ConflictPolicy): Promise<{ status: number; n: number }> {
  const slow = gate();
  const errors: string[] = [];
  const { handler, runs } = middlewareApp(major, {
    slow: slow.wait,
    options: {
      conflict,
      locking: "explicit", // the slow request is held while the other runs: no turns
      onError: (error) => {
        errors.push((error as Error).name);
        return new Response("refused by onError", { status: 409 });
      },
    },
  });
  const browser = new Client(handler);
  await browser.fetch("/api/tag", { method: "POST" });
  const pending = browser.clone().fetch("/api/read-then-write", {
    method: "POST",
    headers: { "x-slow": "1" },
  });
  while (runs[0] === 0) await new Promise((resolve) => setTimeout(resolve, 1));
  assert.equal(await browser.text("/api/read-then-write", { method: "POST" }), "1");
  slow.open();
  const response = await pending;
  await response.body?.cancel();
  const n = Number(await browser.text("/api/read-then-write", { method: "POST" })) - 1;
  assert.deepEqual(errors, response.status === 409 ? ["SessionConflictError"] : []);
  return { status: response.status, n };
}

for (const major of MAJORS) {
  describe(`${major.name}: requests beyond the walk`, () => {
    it("a data request (client navigation) gets the cookie", async () => {
      const { handler } = middlewareApp(major);
      const browser = new Client(handler);
      const data = await browser.fetch(major.rootData);
      assert.equal(data.status, 200);
      assert.match(await data.text(), /visits/);
      assert.equal(data.headers.getSetCookie().length, 1);
      assert.equal(data.headers.get("vary"), "Cookie");
      assert.equal((await home(browser)).visits, 2);
    });

    it("a request no loader asks for the session costs no store call and gets no session headers", async () => {
      let loads = 0;
      const store = new MemoryStore();
      const load = store.load.bind(store);
      store.load = (key: string) => (loads++, load(key));
      const { handler } = middlewareApp(major, { options: { store } });
      const browser = new Client(handler);
      await home(browser);
      const loadsBefore = loads;
      const plain = await browser.fetch("/api/plain");
      assert.equal(await plain.text(), "no session asked");
      assert.equal(plain.headers.get("vary"), null);
      assert.equal(loads, loadsBefore);
    });

    it("merge: a conflict that needs the action run again is 409 through onError", async () => {
      assert.deepEqual(await readWriteRace(major, "merge"), { status: 409, n: 1 });
    });

    it("retry: 409 through onError (a middleware calls next() once)", async () => {
      assert.deepEqual(await readWriteRace(major, "retry"), { status: 409, n: 1 });
    });

    it("overwrite: last write wins, as configured", async () => {
      assert.deepEqual(await readWriteRace(major, "overwrite"), { status: 200, n: 1 });
    });

    it("a store outage is 503 through onError, not the error page's 500", async () => {
      const broken: SessionStore = {
        capabilities: { compareAndSet: true, ttl: true },
        load: () => Promise.reject(new Error("connection refused")),
        save: () => Promise.reject(new Error("connection refused")),
        destroy: () => Promise.reject(new Error("connection refused")),
      };
      const cookie = (await middlewareApp(major).handler(new Request("https://app.example/")))
        .headers.get("set-cookie")!.split(";")[0]!;
      const { handler } = middlewareApp(major, { options: { store: broken } });
      const response = await handler(new Request("https://app.example/api/failing", { headers: { cookie } }));
      assert.equal(response.status, 503);
      assert.equal(await response.text(), "Service Unavailable");
    });
  });
}

describe("React Router 7 without future.v8_middleware", () => {
  it("a loader's getSession(context) says which flag is missing", async () => {
    const handler = handlerOf(MAJORS[0]!, {
      root: { path: "", module: { middleware: [sessionMiddleware({ secrets: SECRET })], default: Page } },
      probe: {
        parentId: "root",
        path: "probe",
        module: {
          loader: ({ context }: Args) =>
            getSession(context).then(
              () => new Response("session"),
              (error: Error) => new Response(error.message),
            ),
        },
      },
    }, {});
    assert.match(
      await (await handler(new Request("https://app.example/probe"))).text(),
      /future\.v8_middleware/,
    );
  });
});

describe("React Router: createSessionStorage", () => {
  const storage = () => createSessionStorage<Data>({ secrets: SECRET, store: new MemoryStore() });

  it("merges 20 concurrent commits of different keys and of update(); a get-then-set that lost is a 409 Response", async () => {
    const { getSession, commitSession } = createSessionStorage<Record<string, number>>({
      secrets: SECRET,
      store: new MemoryStore(),
    });
    const first = await getSession(null);
    first.set("visits", 0);
    const cookie = (await commitSession(first)).split(";")[0]!;
    const opened = await Promise.all(Array.from({ length: 20 }, () => getSession(cookie)));
    opened.forEach((session, i) => {
      session.update("visits", (n = 0) => n + 1);
      session.set(`key${i}`, i);
    });
    assert.deepEqual(await Promise.all(opened.map((session) => commitSession(session))), Array(20).fill(""));
    const after = await getSession(cookie);
    assert.equal(after.get("visits"), 20);
    assert.equal(Object.keys(after.data).length, 21);

    const a = await getSession(cookie);
    const b = await getSession(cookie);
    a.set("visits", (a.get("visits") ?? 0) + 1);
    b.set("visits", (b.get("visits") ?? 0) + 1);
    await commitSession(a);
    const refused = await commitSession(b).then(() => undefined, (error: unknown) => error);
    assert.ok(refused instanceof Response);
    assert.equal(refused.status, 409);
    assert.equal((await getSession(cookie)).get("visits"), 21);
  });

  it("has React Router's Session shape: id empty until stored, data with flash keys, has/unset, isSession", async () => {
    const { getSession, commitSession } = storage();
    const session = await getSession();
    assert.equal(session.id, "");
    assert.ok(rr8.isSession(session) && rr7.isSession(session));
    session.set("user", "ada");
    session.flash("notice", "hi");
    assert.deepEqual(session.data, { user: "ada", __flash_notice__: "hi" });
    const cookie = (await commitSession(session)).split(";")[0]!;
    assert.match(session.id, /^[\w-]{32}$/);
    const again = await getSession(cookie);
    assert.equal(again.id, session.id);
    assert.ok(again.has("notice"));
    again.unset("notice");
    again.unset("user");
    assert.equal(await commitSession(again), "");
    const last = await getSession(cookie);
    assert.deepEqual(last.data, {});
    assert.equal(last.get("notice"), undefined);
  });

  it("refuses a cookie store and a session of another storage", async () => {
    assert.throws(
      () => createSessionStorage({ store: new CookieStore({ secrets: [SECRET] }) }),
      /createCookieSessionStorage/,
    );
    const other = await rr8.createMemorySessionStorage().getSession();
    await assert.rejects(storage().commitSession(other as never), /getSession\(\)/);
  });

  it("fits React Router's SessionStorage type, 7 and 8", () => {
    const s7: rr7.SessionStorage<Data, Data> = createSessionStorage<Data, Data>({ secrets: SECRET });
    const s8: rr8.SessionStorage<Data, Data> = createSessionStorage<Data, Data>({ secrets: SECRET });
    const m7: rr7.MiddlewareFunction<Response> = sessionMiddleware({ secrets: SECRET });
    const m8: rr8.MiddlewareFunction<Response> = sessionMiddleware({ secrets: SECRET });
    const get7 = (context: Readonly<rr7.RouterContextProvider>) => getSession(context);
    const get8 = (context: Readonly<rr8.RouterContextProvider>) => getSession(context);
    assert.equal([s7, s8, m7, m8, get7, get8].every((value) => value !== undefined), true);
  });
});
