// The session in a header (the `transport` option), seen from the network: a real HTTP server on
// loopback serves the wrapped handler, and clients that keep a token instead of a cookie
// (`Authorization: Bearer`, or a named header) sign in, rotate, log out and race, on MemoryStore
// and on a real Redis. Also through the Hono adapter, and beside the CSRF middleware.
//
// What must hold: the same rotation, expiry, revocation and concurrency rules as the cookie's;
// a request on the header is never answered with Set-Cookie and a cookie request never with the
// token header; a forged or tampered token is an unknown session, told to onInvalidCookie.
//
// A server on node:http (and node:process) keeps this file out of workerd; the transport runs there
// through the session suite's case (tests/conformance/session_suite.ts), on every store.
import { after, before, describe, it } from "node:test";
import process from "node:process";
import assert from "node:assert/strict";
import { Redis as IoRedis } from "ioredis";
import { Hono } from "hono";
import { createRequestHandler, type ServerBuild } from "react-router";
import { getSession, withSession } from "../src/with_session.ts";
import { commitSession, openSession } from "../src/open_session.ts";
import { endUserSessions } from "../src/users.ts";
import type { InvalidCookieReason, SessionOptions } from "../src/options.ts";
import type { SessionEvent } from "../src/events.ts";
import type { SessionStore } from "../src/store.ts";
import { MemoryStore } from "../src/stores/memory.ts";
import { RedisStore } from "../src/stores/redis.ts";
import { CookieStore } from "../src/stores/cookie.ts";
import { headerTransport, type SessionTransport, takeSessionToken } from "../src/transport.ts";
import { type SessionEnv, sessionMiddleware } from "../src/adapters/hono.ts";
import {
  getSession as getRouterSession,
  type RouterContextLike,
  sessionMiddleware as routerSessionMiddleware,
} from "../src/adapters/react_router.ts";
import { csrf, csrfMiddleware } from "../src/csrf.ts";
import { type RunningServer, serveFetch } from "./http/server.ts";
import { userSessions } from "../src/users/options.ts";

const OLD_SECRET = "header transport test: the old secret, 32+ chars";
const NEW_SECRET = "header transport test: the new secret, 32+ chars";
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const RUN = crypto.randomUUID().slice(0, 8);

type Data = { user?: string; cart?: string[] };

/** One answer, as a client sees it. */
interface Answer {
  status: number;
  body: string;
  /** The token header: `null` when absent, `""` when the session ended. */
  token: string | null;
  setCookies: string[];
  vary: string | null;
  cacheControl: string | null;
}

async function send(base: string, path: string, init: { method?: string; headers?: HeadersInit } = {}) {
  const response = await fetch(new URL(path, base), { method: init.method ?? "GET", headers: init.headers });
  const answer: Answer = {
    status: response.status,
    body: await response.text(),
    token: response.headers.get("session-token"),
    setCookies: response.headers.getSetCookie(),
    vary: response.headers.get("vary"),
    cacheControl: response.headers.get("cache-control"),
  };
  return answer;
}

/** A native client: keeps the token the server hands out, drops it on an empty one. */
class TokenClient {
  token: string | undefined;
  answers: Answer[] = [];
  constructor(readonly base: string, readonly scheme: "bearer" | "x-session" = "bearer") {}

  headers(token = this.token): Record<string, string> {
    if (this.scheme === "x-session") return { "x-session": token ?? "" };
    return token === undefined ? {} : { authorization: `Bearer ${token}` };
  }

  async call(path: string, method = "GET", token = this.token): Promise<Answer> {
    const answer = await send(this.base, path, { method, headers: this.headers(token) });
    this.answers.push(answer);
    if (answer.token !== null) this.token = answer.token === "" ? undefined : answer.token;
    return answer;
  }
}

/** The app: sign in (a new id), read, add to a cart, log out. */
async function app(req: Request): Promise<Response> {
  const session = await getSession<Data>(req);
  const url = new URL(req.url);
  switch (url.pathname) {
    case "/login":
      session.regenerate();
      session.set("user", url.searchParams.get("user") ?? "ada");
      return new Response("signed in");
    case "/logout":
      session.destroy();
      return new Response("signed out");
    case "/add": {
      const item = url.searchParams.get("item") ?? "book";
      session.update("cart", (cart = []) => [...cart, item]);
      return new Response("added");
    }
    case "/cart":
      return Response.json(session.get("cart") ?? []);
    default:
      return new Response(session.get("user") ?? "anonymous", {
        headers: { "cache-control": "public, max-age=60" },
      });
  }
}

interface Opened {
  store: SessionStore;
  close(): Promise<void>;
}

const stores: Array<{ name: string; open: () => Opened }> = [
  { name: "MemoryStore", open: () => ({ store: new MemoryStore(), close: async () => {} }) },
  {
    name: "RedisStore (ioredis)",
    open: () => {
      const client = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
      const prefix = `websession-header:${RUN}:`;
      return {
        store: new RedisStore({ client, prefix }),
        close: async () => {
          let cursor = "0";
          do {
            const [next, keys] = await client.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
            if (keys.length > 0) await client.del(...keys);
            cursor = next;
          } while (cursor !== "0");
          client.disconnect();
        },
      };
    },
  },
];

for (const { name, open } of stores) {
  describe(`the session in a header over HTTP: ${name}`, () => {
    let opened: Opened;
    let clock = Date.now();
    const invalid: InvalidCookieReason[] = [];
    const events: SessionEvent[] = [];
    const servers: RunningServer[] = [];
    const serve = async (options: Partial<SessionOptions<Data>>): Promise<string> => {
      const server = await serveFetch(withSession(app, {
        store: opened.store,
        secrets: [OLD_SECRET],
        transport: headerTransport({ header: "Authorization" }),
        now: () => clock,
        onInvalidCookie: (event) => void invalid.push(event.reason),
        onEvent: (event) => void (event.type === "invalid-cookie" && events.push(event)),
        ...options,
      }));
      servers.push(server);
      return server.url;
    };
    let bearer: string; // header only, Authorization: Bearer
    let both: string; // X-Session, and cookies for requests without it

    before(async () => {
      opened = open();
      bearer = await serve({});
      both = await serve({ transport: headerTransport({ header: "X-Session", cookie: true }) });
    });
    after(async () => {
      for (const server of servers) await server.close();
      await opened.close();
    });

    it("signs in on the header: the token comes back in Session-Token, never in Set-Cookie", async () => {
      const client = new TokenClient(bearer);
      const anonymous = await client.call("/me");
      assert.equal(anonymous.body, "anonymous");
      assert.equal(anonymous.token, null); // nothing stored: nothing to hand out
      const login = await client.call("/login?user=ada", "POST");
      assert.equal(login.status, 200);
      assert.match(login.token!, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
      assert.deepEqual(login.setCookies, []);
      assert.equal(login.vary, "Authorization");
      assert.equal(login.cacheControl, "private, no-store"); // a credential is never kept by a shared cache
      const me = await client.call("/me");
      assert.equal(me.body, "ada");
      assert.equal(me.token, null); // the client's token stays as it is
      assert.equal(me.cacheControl, "public, max-age=60"); // no credential in it: the app's own
      assert.deepEqual(client.answers.flatMap((a) => a.setCookies), []);
    });

    it("rotates the token on regenerate(); the old token is then an ended session", async () => {
      const client = new TokenClient(bearer);
      await client.call("/login?user=ada", "POST");
      const first = client.token!;
      await client.call("/add?item=pen", "POST");
      const again = await client.call("/login?user=grace", "POST");
      const second = client.token!;
      assert.notEqual(second, first);
      assert.equal(again.token, second);
      assert.equal((await client.call("/me")).body, "grace");
      // The old token names an ended session: within the grace a write is refused (409) and the
      // answer hands out no token (the client may hold the newer one already).
      invalid.length = 0;
      const late = await client.call("/add?item=ink", "POST", first);
      assert.equal(late.status, 409);
      assert.equal(late.token, null);
      assert.deepEqual(invalid, ["ended"]);
      const read = await client.call("/me", "GET", first);
      assert.equal(read.body, "anonymous");
      assert.equal(read.token, null);
      assert.equal(client.token, second);
      assert.deepEqual(JSON.parse((await client.call("/cart")).body), ["pen"]);
    });

    it("log out answers an empty Session-Token; the token then names no session", async () => {
      const client = new TokenClient(bearer);
      await client.call("/login", "POST");
      const token = client.token!;
      const logout = await client.call("/logout", "POST");
      assert.equal(logout.token, ""); // drop it
      assert.equal(logout.cacheControl, "private, no-store");
      assert.deepEqual(logout.setCookies, []);
      assert.equal(client.token, undefined);
      invalid.length = 0;
      const replay = await client.call("/me", "GET", token);
      assert.equal(replay.body, "anonymous");
      assert.deepEqual(invalid, ["ended"]);
    });

    it("expires on the server's idle timeout: the token carries no expiry of its own", async () => {
      const client = new TokenClient(bearer);
      await client.call("/login", "POST");
      assert.equal((await client.call("/me")).body, "ada");
      clock += (3600 + 1800 + 1) * 1000; // idleTimeout + touchAfter, and a second
      try {
        invalid.length = 0;
        assert.equal((await client.call("/me")).body, "anonymous");
        assert.deepEqual(invalid, ["unknown"]);
      } finally {
        clock = Date.now();
      }
    });

    it("a token signed with a retired secret still works, and the answer re-signs it", async () => {
      const client = new TokenClient(bearer);
      await client.call("/login", "POST");
      const old = client.token!;
      const rotated = await serve({ secrets: [NEW_SECRET, OLD_SECRET] });
      const renewed = await send(rotated, "/me", { headers: { authorization: `Bearer ${old}` } });
      assert.equal(renewed.body, "ada");
      assert.notEqual(renewed.token, null);
      assert.notEqual(renewed.token, old);
      assert.deepEqual(renewed.setCookies, []);
      const onlyNew = await serve({ secrets: [NEW_SECRET] });
      const me = await send(onlyNew, "/me", { headers: { authorization: `Bearer ${renewed.token}` } });
      assert.equal(me.body, "ada");
      assert.equal(me.token, null); // signed with the first secret already
    });

    it("log out everywhere (endUserSessions) ends every token of the user", async () => {
      const options: SessionOptions<Data> = {
        store: opened.store,
        secrets: [OLD_SECRET],
        transport: headerTransport(),
        users: userSessions({ userKey: "user" }),
      };
      const server = await serveFetch(withSession(app, options));
      servers.push(server);
      const user = `user-${crypto.randomUUID()}`;
      const phone = new TokenClient(server.url);
      const tablet = new TokenClient(server.url);
      await phone.call(`/login?user=${user}`, "POST");
      await tablet.call(`/login?user=${user}`, "POST");
      assert.equal((await phone.call("/me")).body, user);
      assert.equal(await endUserSessions(options, { user }), 2);
      assert.equal((await phone.call("/me")).body, "anonymous");
      assert.equal((await tablet.call("/me")).body, "anonymous");
    });

    it("concurrent requests with one token keep every write", async () => {
      const client = new TokenClient(bearer);
      await client.call("/login", "POST");
      const items = Array.from({ length: 24 }, (_, i) => `item-${i}`);
      const answers = await Promise.all(items.map((item) => client.call(`/add?item=${item}`, "POST")));
      assert.deepEqual(answers.map((a) => a.status), items.map(() => 200));
      assert.deepEqual(answers.map((a) => a.token), items.map(() => null));
      const cart = JSON.parse((await client.call("/cart")).body) as string[];
      assert.deepEqual([...cart].sort(), [...items].sort());
    });

    it("a tampered or forged token is an unknown session, told to onInvalidCookie", async () => {
      const client = new TokenClient(bearer);
      await client.call("/login", "POST");
      const token = client.token!;
      const dot = token.lastIndexOf(".");
      const flipped = token.at(-2) === "A" ? "B" : "A";
      const tampered = `${token.slice(0, -2)}${flipped}${token.at(-1)}`;
      const otherId = `${"A".repeat(dot)}${token.slice(dot)}`; // another id under this signature
      const cases: Array<[string, InvalidCookieReason]> = [
        [tampered, "signature"],
        [otherId, "signature"],
        ["not-a-token", "malformed"],
        ["a b c", "malformed"],
        ["x".repeat(300), "oversized"],
      ];
      for (const [forged, reason] of cases) {
        invalid.length = 0;
        events.length = 0;
        const answer = await send(bearer, "/me", { headers: { authorization: `Bearer ${forged}` } });
        assert.equal(answer.status, 200, forged);
        assert.equal(answer.body, "anonymous", forged);
        assert.equal(answer.token, null, forged); // a read of a fresh session hands out nothing
        assert.deepEqual(invalid, [reason], forged);
        assert.deepEqual(events.map((e) => e.type === "invalid-cookie" && e.reason), [reason], forged);
      }
      // A forged token never leaks into a session: writing starts a new one, with a new token.
      const write = await send(bearer, "/add", {
        method: "POST",
        headers: { authorization: `Bearer ${tampered}` },
      });
      assert.ok(write.token !== null && write.token !== "" && write.token !== tampered);
      assert.equal((await client.call("/me")).body, "ada"); // the real token is untouched
    });

    it("credentials of another scheme are not a session token; an empty Bearer asks for one", async () => {
      invalid.length = 0;
      const basic = await send(bearer, "/login", {
        method: "POST",
        headers: { authorization: "Basic YWRhOnNlY3JldA==" },
      });
      assert.equal(basic.status, 200);
      assert.ok(basic.token !== null && basic.token !== ""); // a new session, on the header
      assert.deepEqual(basic.setCookies, []);
      const bare = await send(bearer, "/login", { method: "POST", headers: { authorization: "Bearer" } });
      assert.ok(bare.token !== null && bare.token !== "");
      const lower = await send(bearer, "/me", { headers: { authorization: `bearer ${bare.token}` } });
      assert.equal(lower.body, "ada"); // the scheme is case-insensitive (RFC 9110 §11.1)
      assert.deepEqual(invalid, []);
    });

    it("a cookie is never read nor set on the header-only transport", async () => {
      const web = await serve({ transport: undefined }); // the same store and secrets, cookies
      const login = await send(web, "/login?user=cookie-user", { method: "POST" });
      const cookie = login.setCookies[0]!.split(";")[0]!;
      const me = await send(bearer, "/me", { headers: { cookie } });
      assert.equal(me.body, "anonymous");
      const logout = await send(bearer, "/logout", { method: "POST", headers: { cookie } });
      assert.deepEqual(logout.setCookies, []);
      assert.equal((await send(web, "/me", { headers: { cookie } })).body, "cookie-user");
    });

    it("both transports on: each request is answered on the one it came in on", async () => {
      // A browser: cookies, never the token header.
      const login = await send(both, "/login?user=web", { method: "POST" });
      assert.equal(login.token, null);
      assert.equal(login.setCookies.length, 1);
      assert.equal(login.vary, "Cookie, X-Session"); // either header changes the answer
      const cookie = login.setCookies[0]!.split(";")[0]!;
      // A native client: the header (an empty value asks for a session), never Set-Cookie.
      const native = new TokenClient(both, "x-session");
      const signIn = await native.call("/login?user=app", "POST");
      assert.ok(native.token !== undefined);
      assert.deepEqual(signIn.setCookies, []);
      assert.equal(signIn.vary, "X-Session, Cookie");
      // Both at once: the header wins; the cookie is neither read nor changed.
      const mixed = await send(both, "/me", { headers: { cookie, "x-session": native.token! } });
      assert.equal(mixed.body, "app");
      const out = await send(both, "/logout", {
        method: "POST",
        headers: { cookie, "x-session": native.token! },
      });
      assert.equal(out.token, "");
      assert.deepEqual(out.setCookies, []);
      assert.equal((await send(both, "/me", { headers: { cookie } })).body, "web");
      const webOut = await send(both, "/logout", { method: "POST", headers: { cookie } });
      assert.equal(webOut.token, null);
      assert.match(webOut.setCookies[0]!, /Max-Age=0/);
    });
  });
}

describe("the session in a header: options", () => {
  const secrets = [OLD_SECRET];
  it("refuses invalid transports at construction", () => {
    assert.throws(() => headerTransport({ header: "Cookie" }), /Invalid transport\.header: "Cookie"/);
    assert.throws(() => headerTransport({ header: "bad header" }), TypeError);
    assert.throws(() => headerTransport({ responseHeader: "Authorization" }), /is a request header/);
    assert.throws(() => headerTransport({ cookie: "yes" as unknown as boolean }), /transport\.cookie/);
    assert.throws(
      () =>
        withSession(app, { secrets, transport: { header: "Authorization" } as unknown as SessionTransport }),
      /Invalid transport: expected headerTransport/,
    );
    assert.throws(
      () => withSession(app, { store: new CookieStore({ secrets }), transport: headerTransport() }),
      /CookieStore keeps the whole session in cookies/,
    );
  });

  it("openSession reads the header from a Request or Headers; commitSession sends no cookie", async () => {
    const options: SessionOptions<Data> = { store: new MemoryStore(), secrets, transport: headerTransport() };
    const first = await openSession<Data>(new Headers(), options);
    first.set("user", "ada");
    assert.deepEqual(await commitSession(first), []);
    const token = takeSessionToken(first)!;
    assert.match(token, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
    assert.equal(takeSessionToken(first), undefined); // taken once
    const request = new Request("https://api.example.com/", {
      headers: { authorization: `Bearer ${token}` },
    });
    const again = await openSession<Data>(request, options);
    assert.equal(again.get("user"), "ada");
    again.destroy();
    assert.deepEqual(await commitSession(again), []);
    assert.equal(takeSessionToken(again), ""); // ended: the client drops its token
    await assert.rejects(openSession<Data>("session=abc", options), /header transport reads the session/);
  });
});

describe("the session in a header: Hono adapter and CSRF", () => {
  const secrets = [OLD_SECRET];
  let server: RunningServer;
  let wrapped: RunningServer;
  before(async () => {
    const store = new MemoryStore();
    const transport = headerTransport({ header: "Authorization", cookie: true });
    const hono = new Hono<SessionEnv<Data>>();
    hono.use(sessionMiddleware<Data>({ store, secrets, transport }), csrfMiddleware());
    hono.post("/login", (c) => {
      c.var.session.regenerate();
      c.var.session.set("user", "ada");
      return c.text("signed in");
    });
    hono.post("/logout", (c) => {
      c.var.session.destroy();
      return c.text("signed out");
    });
    hono.get("/me", (c) => c.text(c.var.session.get("user") ?? "anonymous"));
    server = await serveFetch((request) => Promise.resolve(hono.fetch(request)));
    wrapped = await serveFetch(withSession(csrf(app), { store, secrets, transport }));
  });
  after(async () => {
    await server.close();
    await wrapped.close();
  });

  it("signs in, reads and logs out on the header through sessionMiddleware", async () => {
    const client = new TokenClient(server.url);
    const login = await client.call("/login", "POST", "");
    assert.equal(login.status, 200); // no Origin, no Sec-Fetch-Site, no CSRF token: a native client
    assert.deepEqual(login.setCookies, []);
    assert.ok(client.token !== undefined);
    assert.equal(login.cacheControl, "private, no-store");
    assert.equal((await client.call("/me")).body, "ada");
    const logout = await client.call("/logout", "POST");
    assert.equal(logout.token, "");
    assert.deepEqual(logout.setCookies, []);
  });

  it("CSRF: a cookie request without Origin needs a token; a header request does not", async () => {
    for (const base of [server.url, wrapped.url]) {
      const web = await send(base, "/login", {
        method: "POST",
        headers: { "sec-fetch-site": "same-origin" },
      });
      const cookie = web.setCookies[0]!.split(";")[0]!;
      assert.equal((await send(base, "/logout", { method: "POST", headers: { cookie } })).status, 403, base);
      const native = await send(base, "/login", { method: "POST", headers: { authorization: "Bearer" } });
      assert.equal(native.status, 200, base);
      const token = native.token!;
      const out = await send(base, "/logout", {
        method: "POST",
        headers: { authorization: `Bearer ${token}` },
      });
      assert.equal(out.status, 200, base);
      assert.equal(out.token, "", base);
      // Cross-site with the header: still no victim's session in it; passes as well.
      const cross = await send(base, "/login", {
        method: "POST",
        headers: { authorization: "Bearer", "sec-fetch-site": "cross-site", origin: "https://evil.example" },
      });
      assert.equal(cross.status, 200, base);
    }
  });
});

describe("the session in a header: React Router adapter", () => {
  it("signs in, reads and logs out on the header through its middleware", async () => {
    const transport = headerTransport();
    const root = {
      middleware: [
        routerSessionMiddleware<Data>({ store: new MemoryStore(), secrets: [OLD_SECRET], transport }),
      ],
      async loader({ request, context }: { request: Request; context: RouterContextLike }) {
        const session = await getRouterSession<Data>(context);
        const path = new URL(request.url).pathname;
        if (path === "/login") {
          session.regenerate();
          session.set("user", "ada");
        } else if (path === "/logout") session.destroy();
        return new Response(session.get("user") ?? "anonymous");
      },
    };
    const build = {
      entry: { module: { default: () => new Response(null, { status: 500 }) } },
      routes: { root: { id: "root", path: "*", module: root } },
      assets: { entry: { imports: [], module: "" }, routes: {}, url: "", version: "1" },
      publicPath: "/",
      assetsBuildDirectory: "build/client",
      future: { v8_middleware: true },
      ssr: true,
      isSpaMode: false,
      prerender: [],
      routeDiscovery: { mode: "initial", manifestPath: "/__manifest" },
    } as unknown as ServerBuild;
    const handler = createRequestHandler(build);
    const server = await serveFetch((request) => handler(request));
    try {
      const client = new TokenClient(server.url);
      const login = await client.call("/login");
      assert.deepEqual(login.setCookies, []);
      assert.ok(client.token !== undefined);
      assert.equal(login.vary, "Authorization");
      assert.equal((await client.call("/me")).body, "ada");
      const logout = await client.call("/logout");
      assert.equal(logout.token, "");
      assert.deepEqual(logout.setCookies, []);
    } finally {
      await server.close();
    }
  });
});
