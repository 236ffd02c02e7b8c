// The sign-in features used together, through real HTTP (node:http on loopback): the header
// transport with the admin handler, CSRF, step-up, remember me and sessions per user; what each
// combination promised and a test of it. node:http keeps this file out of workerd.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  getSession,
  listUserSessions,
  MemoryStore,
  requireRecentAuth,
  type SessionOptions,
  trustedProxies,
  withSession,
} from "../mod.ts";
import { Redis as IoRedis } from "ioredis";
import { createSessionAdmin } from "../src/admin.ts";
import { csrf } from "../src/csrf.ts";
import { RedisStore } from "../src/stores/redis.ts";
import { headerTransport } from "../src/transport.ts";
import { serveFetch } from "./http/server.ts";
import { userSessions } from "../src/users/options.ts";

const SECRET = "combinations test secret, 32 characters!";

type Data = { user?: string };

/** An API on the header transport (no cookies) that signs in `ada` and says who is signed in. */
function api(options: SessionOptions<Data>) {
  return withSession(async (req: Request) => {
    const session = await getSession<Data>(req);
    if (new URL(req.url).pathname === "/login") {
      session.regenerate();
      session.set("user", "ada");
    }
    return new Response(session.get("user") ?? "anonymous");
  }, options);
}

async function serve(handler: (req: Request) => Promise<Response>): Promise<string> {
  const server = await serveFetch(handler);
  after(() => server.close());
  return server.url;
}

describe("the admin handler on the header transport", () => {
  it("refuses a cross-site post that carries the administrator's Basic credentials", async () => {
    // The app's options spread into the admin handler, as the guide shows; the administrator
    // signs in with HTTP Basic, which the browser then attaches to every request by itself.
    const options: SessionOptions<Data> = {
      store: new MemoryStore(),
      secrets: SECRET,
      users: userSessions({ userKey: "user" }),
      transport: headerTransport(),
    };
    const basic = `Basic ${btoa("admin:admin password")}`;
    const admin = createSessionAdmin({
      ...options,
      basePath: "/admin",
      authorize: (req) => req.headers.get("authorization") === basic,
    });
    const app = api(options);
    const base = await serve((req) => new URL(req.url).pathname.startsWith("/admin") ? admin(req) : app(req));
    const token = (await fetch(`${base}/login`, { method: "POST" })).headers.get("session-token")!;
    const me = async () =>
      await (await fetch(`${base}/me`, { headers: { authorization: `Bearer ${token}` } })).text();
    assert.equal(await me(), "ada");

    // A form on another site posting to the admin page: the browser adds the Basic credentials.
    const forged = await fetch(`${base}/admin/end-all?user=ada`, {
      method: "POST",
      headers: {
        authorization: basic,
        "sec-fetch-site": "cross-site",
        origin: "https://evil.example",
        "content-type": "application/x-www-form-urlencoded",
      },
      body: "x=1",
    });
    assert.equal(forged.status, 403);
    await forged.body?.cancel();
    // An old browser's forged post says nothing of where it comes from: it needs the token.
    const bare = await fetch(`${base}/admin/end-all?user=ada`, {
      method: "POST",
      headers: { authorization: basic },
    });
    assert.equal(bare.status, 403);
    await bare.body?.cancel();
    assert.equal(await me(), "ada");

    const own = await fetch(`${base}/admin/end-all?user=ada`, {
      method: "POST",
      headers: { authorization: basic, "sec-fetch-site": "same-origin" },
    });
    assert.deepEqual(await own.json(), { ended: 1 });
    assert.equal(await me(), "anonymous");
  });
});

describe("csrf exemptHeaderTransport", () => {
  it("passes header sessions by default, checks them when false", async () => {
    const options: SessionOptions<Data> = {
      store: new MemoryStore(),
      secrets: SECRET,
      transport: headerTransport(),
    };
    const handler = () => new Response("done");
    const exempt = await serve(withSession(csrf(handler), options));
    const checked = await serve(withSession(csrf(handler, { exemptHeaderTransport: false }), options));
    const forged = { method: "POST", headers: { "sec-fetch-site": "cross-site", authorization: "Bearer" } };
    assert.equal((await fetch(`${exempt}/`, forged)).status, 200);
    assert.equal((await fetch(`${checked}/`, forged)).status, 403);
    const own = { method: "POST", headers: { "sec-fetch-site": "same-origin", authorization: "Bearer" } };
    assert.equal((await fetch(`${checked}/`, own)).status, 200);
    assert.throws(() => csrf(handler, { exemptHeaderTransport: "no" as never }), TypeError);
  });
});

describe("step-up on the header transport", () => {
  it("challenges a Bearer token with the Bearer scheme (RFC 9470 §3), a named header with Cookie", async () => {
    for (const [header, scheme] of [["Authorization", "Bearer"], ["X-Session", "Cookie"]] as const) {
      const base = await serve(withSession(async (req: Request) => {
        const session = await getSession<Data>(req);
        if (new URL(req.url).pathname === "/login") {
          session.regenerate({ remember: true });
          session.set("user", "ada");
          return new Response("in");
        }
        requireRecentAuth(session, { maxAge: 300 }); // never marked: refused
        return new Response("done");
      }, { store: new MemoryStore(), secrets: SECRET, transport: headerTransport({ header }) }));
      const first: Record<string, string> = header === "Authorization"
        ? { authorization: "Bearer" }
        : { "x-session": "" };
      const token = (await fetch(`${base}/login`, { method: "POST", headers: first })).headers.get(
        "session-token",
      )!;
      const credential: Record<string, string> = header === "Authorization"
        ? { authorization: `Bearer ${token}` }
        : { "x-session": token };
      const refused = await fetch(`${base}/delete`, { method: "POST", headers: credential });
      assert.equal(refused.status, 401);
      assert.equal(
        refused.headers.get("www-authenticate"),
        `${scheme} error="insufficient_user_authentication", error_description="Sign in again to continue", max_age="300"`,
      );
      await refused.body?.cancel();
    }
  });
});

describe("listUserSessions with remember me and step-up", () => {
  it("shows a session's data as toJSON() does: no __remember or __authAt", async () => {
    const options: SessionOptions<Data> = {
      store: new MemoryStore(),
      secrets: SECRET,
      users: userSessions({ userKey: "user" }),
    };
    const base = await serve(withSession(async (req: Request) => {
      const session = await getSession<Data>(req);
      session.regenerate({ remember: true });
      session.set("user", "ada");
      session.markAuthenticated();
      return Response.json(session.toJSON());
    }, options));
    const seen = await (await fetch(`${base}/login`, { method: "POST" })).json();
    assert.deepEqual(seen, { user: "ada" });
    const [listed] = await listUserSessions(options, "ada");
    assert.deepEqual(listed!.data, { user: "ada" });
  });
});

describe("trustedProxies", () => {
  const address = (rule: (req: Request) => string | undefined, headers: Record<string, string>) =>
    rule(new Request("https://example.com/", { headers }));

  it("reads only the header the proxies write: a client's X-Forwarded-For never names the address", () => {
    const rfc = trustedProxies(1, { header: "Forwarded" });
    const spoofed = { forwarded: "for=198.51.100.4", "x-forwarded-for": "203.0.113.66" };
    assert.equal(address(rfc, spoofed), "198.51.100.4");
    // The default reads X-Forwarded-For alone: a client's Forwarded is no fallback either.
    assert.equal(address(trustedProxies(1), { forwarded: "for=203.0.113.66" }), undefined);
    assert.throws(() => trustedProxies(1, { header: "X-Real-IP" as never }), TypeError);
  });

  it("counts Forwarded elements, not for= parameters, and keeps only IP addresses without ports", () => {
    const rfc = trustedProxies(1, { header: "Forwarded" });
    // The proxy's element has no for=: the client's element is not taken in its place.
    assert.equal(address(rfc, { forwarded: "for=203.0.113.66, proto=https;by=192.0.2.1" }), undefined);
    assert.equal(address(rfc, { forwarded: 'for="192.0.2.43:47011"' }), "192.0.2.43");
    assert.equal(
      address(rfc, { forwarded: 'for="[2001:db8:cafe::17]:4711";proto=https' }),
      "2001:db8:cafe::17",
    );
    assert.equal(
      address(trustedProxies(2, { header: "Forwarded" }), {
        forwarded: 'for=192.0.2.1;x="a,b", for=192.0.2.9',
      }),
      "192.0.2.1",
    );
    assert.equal(address(rfc, { forwarded: "for=_hidden" }), undefined);
    const xff = trustedProxies(1);
    assert.equal(address(xff, { "x-forwarded-for": "203.0.113.66, <b>x</b>" }), undefined);
    assert.equal(address(xff, { "x-forwarded-for": "203.0.113.66, 198.51.100.4:5678" }), "198.51.100.4");
    assert.equal(address(xff, { "x-forwarded-for": "203.0.113.66,  2001:DB8::1 " }), "2001:DB8::1");
    assert.equal(address(xff, { "x-forwarded-for": "203.0.113.66, " }), undefined);
  });
});

describe("the sign-in keys stay reserved", () => {
  it("get, peek and has do not show __remember or __authAt; set, update, delete and flash refuse them", async () => {
    const base = await serve(withSession(async (req: Request) => {
      // deno-lint-ignore no-explicit-any
      const session = await getSession<any>(req);
      session.regenerate({ remember: true });
      session.markAuthenticated();
      const refused = ["__remember", "__authAt"].flatMap((key) => [
        () => session.set(key, 1),
        () => session.update(key, () => 1),
        () => session.delete(key),
        () => session.flash(key, 1),
      ]).filter((write) => {
        try {
          write();
          return false;
        } catch (error) {
          return error instanceof TypeError;
        }
      }).length;
      return Response.json({
        shown: [session.get("__remember"), session.peek("__authAt"), session.get("__authAt")],
        has: [session.has("__remember"), session.has("__authAt")],
        kept: [session.remembered, typeof session.authenticatedAt],
        refused,
      });
    }, { store: new MemoryStore(), secrets: SECRET }));
    assert.deepEqual(await (await fetch(`${base}/login`, { method: "POST" })).json(), {
      shown: [null, null, null],
      has: [false, false],
      kept: [true, "number"],
      refused: 8,
    });
  });
});

describe("maxSessionsPerUser under concurrent sign-ins of one user", () => {
  const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
  const RUN = crypto.randomUUID().slice(0, 8);

  for (const limit of [1, 2]) {
    it(`keeps exactly ${limit} of 20 sign-ins at once through three processes on Redis`, async () => {
      // Three app servers, each with its own Redis connection: the sign-ins race for real.
      const prefix = `websession-combinations-test:${RUN}:${limit}:`;
      const clients = [0, 1, 2].map(() => new IoRedis(REDIS_URL));
      after(() => clients.forEach((client) => client.disconnect()));
      const optionsOf = (client: IoRedis): SessionOptions<Data> => ({
        store: new RedisStore({ client, prefix }),
        secrets: SECRET,
        users: userSessions({ userKey: "user", maxSessionsPerUser: limit }),
        transport: headerTransport(),
      });
      const bases = await Promise.all(clients.map((client) => serve(api(optionsOf(client)))));
      const tokens = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
        const login = await fetch(`${bases[i % 3]}/login`, { method: "POST" });
        assert.equal(login.status, 200);
        await login.body?.cancel();
        return login.headers.get("session-token")!;
      }));
      assert.equal((await listUserSessions(optionsOf(clients[0]!), "ada")).length, limit);
      let signedIn = 0;
      for (const token of tokens) {
        const me = await fetch(`${bases[0]}/me`, { headers: { authorization: `Bearer ${token}` } });
        if (await me.text() === "ada") signedIn++;
      }
      assert.equal(signedIn, limit);
    });
  }
});

describe("step-up across servers whose clocks differ", () => {
  it("lasts at most maxAge when the authentication time is ahead of the clock", async () => {
    // Two app servers on one store: the one that records the authentication runs `ahead` ms fast.
    const store = new MemoryStore();
    const real = Date.UTC(2030, 0, 1);
    const app = (skew: number) =>
      withSession(async (req: Request) => {
        const session = await getSession<Data>(req);
        if (new URL(req.url).pathname === "/login") {
          session.regenerate();
          session.set("user", "ada");
          session.markAuthenticated();
          return new Response("in");
        }
        requireRecentAuth(session, { maxAge: 300 });
        return new Response("done");
      }, { store, secrets: SECRET, now: () => real + skew });
    for (const [ahead, status] of [[2_000, 200], [3_600_000, 401]] as const) {
      const fast = await serve(app(ahead));
      const exact = await serve(app(0));
      const login = await fetch(`${fast}/login`, { method: "POST" });
      const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
      await login.body?.cancel();
      const sensitive = await fetch(`${exact}/delete`, { method: "POST", headers: { cookie } });
      await sensitive.body?.cancel();
      assert.equal(sensitive.status, status, `authenticated ${ahead} ms ahead`);
    }
  });
});

describe("createSessionAdmin basePath", () => {
  it("refuses a basePath that a form action or a Location would read as another host", () => {
    const options = {
      store: new MemoryStore(),
      secrets: SECRET,
      users: userSessions({ userKey: "user" }),
      authorize: () => true,
    };
    for (const basePath of ["//evil.example", "//evil.example/admin", "/admin?x", "/admin#x", "/a\\b"]) {
      assert.throws(() => createSessionAdmin({ ...options, basePath }), TypeError, basePath);
    }
    for (const basePath of ["/", "/admin/sessions", "/admin/sessions/"]) {
      assert.doesNotThrow(() => createSessionAdmin({ ...options, basePath }), basePath);
    }
  });
});
