// websession/testing: signIn creates a session the app accepts, with the app's own cookie
// options; TestClock drives expiry; the cookies have the shape of Playwright's addCookies. (A
// Chromium check of addCookies belongs with tests/browser/, which imports playwright-core; this
// file also runs in workerd.)
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { getSession, listUserSessions, type SessionOptions, withSession } from "../mod.ts";
import { CookieStore } from "../src/stores/cookie.ts";
import { richValues } from "../src/serializer.ts";
import { MemoryStore, signIn, TestClock } from "../src/testing.ts";
import { headerTransport } from "../src/transport.ts";
import { userSessions } from "../src/users/options.ts";

const SECRET = "testing kit secret of at least 32 characters";
type Data = { user?: string; role?: string };

/** An app that answers who is signed in, 401 when nobody is. */
function appFor(options: SessionOptions<Data>): (request: Request) => Promise<Response> {
  return withSession(async (request: Request) => {
    const session = await getSession<Data>(request);
    const user = session.get("user");
    if (user === undefined) return new Response("anonymous", { status: 401 });
    return new Response(`${user}:${session.get("role") ?? ""}`);
  }, options);
}

function visit(app: (request: Request) => Promise<Response>, cookie: string, url = "https://example.com/") {
  return app(new Request(url, { headers: { cookie } }));
}

describe("signIn", () => {
  it("creates a session the app reads, with nothing new to set on the next request", async () => {
    const options = { store: new MemoryStore(), secrets: SECRET };
    const app = appFor(options);
    const signed = await signIn<Data>(options, { user: "ada", role: "admin" });
    assert.match(signed.cookie, /^session=[A-Za-z0-9_-]{32}\.[A-Za-z0-9_-]{43}$/);
    assert.equal(signed.setCookie.length, 1);
    assert.equal(signed.setCookie[0]!.split(";", 1)[0], signed.cookie);
    const response = await visit(app, signed.cookie);
    assert.equal(response.status, 200);
    assert.equal(await response.text(), "ada:admin");
    assert.equal(response.headers.get("set-cookie"), null);
    assert.equal(await options.store.count(), 1);
  });

  it("gives a cookie that an app with other secrets or another store refuses", async () => {
    const store = new MemoryStore();
    const signed = await signIn<Data>({ store, secrets: SECRET }, { user: "ada" });
    const otherSecrets = appFor({ store, secrets: "another secret of at least thirty-two chars" });
    assert.equal((await visit(otherSecrets, signed.cookie)).status, 401);
    const otherStore = appFor({ store: new MemoryStore(), secrets: SECRET });
    assert.equal((await visit(otherStore, signed.cookie)).status, 401);
  });

  it("follows the cookie options: a __Host- name, not persistent", async () => {
    const options: SessionOptions<Data> = {
      store: new MemoryStore(),
      secrets: SECRET,
      cookie: { name: "__Host-sid", sameSite: "Strict", persistent: false },
    };
    const signed = await signIn<Data>(options, { user: "ada" }, { url: "https://app.example.com:8443/x" });
    assert.match(signed.setCookie[0]!, /^__Host-sid=[^;]+; Path=\/; HttpOnly; Secure; SameSite=Strict$/);
    assert.match(signed.cookie, /^__Host-sid=/);
    assert.deepEqual({ ...signed.cookies[0]!, value: "" }, {
      name: "__Host-sid",
      value: "",
      domain: "app.example.com",
      path: "/",
      expires: -1,
      httpOnly: true,
      secure: true,
      sameSite: "Strict",
    });
    assert.equal(await (await visit(appFor(options), signed.cookie)).text(), "ada:");
  });

  it("follows a Domain, a Path and a persistent expiry", async () => {
    const options: SessionOptions<Data> = {
      store: new MemoryStore(),
      secrets: SECRET,
      idleTimeout: 1800,
      cookie: { domain: "example.com", path: "/app", httpOnly: false, sameSite: "None" },
    };
    const before = Math.floor(Date.now() / 1000);
    const signed = await signIn<Data>(options, { user: "ada" });
    const after = Math.floor(Date.now() / 1000);
    assert.match(
      signed.setCookie[0]!,
      /; Path=\/app; Domain=example\.com; Secure; SameSite=None; Max-Age=\d+; /,
    );
    const cookie = signed.cookies[0]!;
    assert.equal(cookie.domain, ".example.com");
    assert.equal(cookie.path, "/app");
    assert.equal(cookie.httpOnly, false);
    assert.equal(cookie.sameSite, "None");
    // As a browser reads it: Max-Age (at least the idle window) from when the cookie arrived.
    const maxAge = Number(/; Max-Age=(\d+)/.exec(signed.setCookie[0]!)![1]);
    assert.ok(maxAge >= 1800, String(maxAge));
    assert.ok(cookie.expires >= before + maxAge && cookie.expires <= after + maxAge, String(cookie.expires));
  });

  it("indexes the session under its user with a userKey", async () => {
    const options: SessionOptions<Data> = {
      store: new MemoryStore(),
      secrets: SECRET,
      users: userSessions({ userKey: "user" }),
    };
    await signIn<Data>(options, { user: "ada" });
    await signIn<Data>(options, { user: "ada", role: "admin" });
    await signIn<Data>(options, { user: "bob" });
    const sessions = await listUserSessions(options as SessionOptions<object>, "ada");
    assert.deepEqual(sessions.map((s) => s.data.role ?? "-").sort(), ["-", "admin"]);
  });

  it("works with a sealed cookie store", async () => {
    const options: SessionOptions<Data> = {
      store: new CookieStore({ secrets: "sealing secret of at least thirty-two characters" }),
    };
    const signed = await signIn<Data>(options, { user: "ada", role: "reader" });
    assert.ok(signed.cookies.length >= 1);
    assert.equal(await (await visit(appFor(options), signed.cookie)).text(), "ada:reader");
  });

  it("gives the token of an app on the header transport (native clients), with cookies off or on", async () => {
    const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
    const signedId = /^[A-Za-z0-9_-]{32}\.[A-Za-z0-9_-]{43}$/;
    // Header only: no cookie at all, and the token is how the client reaches the session.
    const native: SessionOptions<Data> = {
      store: new MemoryStore(),
      secrets: SECRET,
      transport: headerTransport(),
    };
    const signed = await signIn<Data>(native, { user: "ada", role: "native" });
    assert.deepEqual([signed.cookie, signed.setCookie, signed.cookies], ["", [], []]);
    assert.match(signed.token ?? "", signedId);
    const app = appFor(native);
    const read = await app(new Request("https://api.example.com/", { headers: bearer(signed.token!) }));
    assert.equal(await read.text(), "ada:native");
    assert.equal(read.headers.get("session-token"), null); // nothing new to hand out
    assert.equal((await app(new Request("https://api.example.com/"))).status, 401);

    // Cookies on too: the cookie for the browser, the token (the cookie's value) for the native client.
    const both: SessionOptions<Data> = {
      store: new MemoryStore(),
      secrets: SECRET,
      transport: headerTransport({ header: "X-Session", cookie: true }),
    };
    const twice = await signIn<Data>(both, { user: "bob" });
    assert.match(twice.cookie, /^session=/);
    assert.equal(twice.token, twice.cookies[0]!.value);
    const web = appFor(both);
    assert.equal(await (await visit(web, twice.cookie)).text(), "bob:");
    const header = await web(
      new Request("https://api.example.com/", { headers: { "x-session": twice.token! } }),
    );
    assert.equal(await header.text(), "bob:");

    // Without the option: no token.
    assert.equal(
      (await signIn<Data>({ store: new MemoryStore(), secrets: SECRET }, { user: "ada" })).token,
      undefined,
    );
  });

  it("stores rich values with the serializer option", async () => {
    type Rich = { user?: string; since?: Date; tags?: Set<string> };
    const options: SessionOptions<Rich> = {
      store: new MemoryStore(),
      secrets: SECRET,
      serializer: richValues,
    };
    const since = new Date("2030-01-01T00:00:00Z");
    const { cookie } = await signIn<Rich>(options, { user: "ada", since, tags: new Set(["a", "b"]) });
    const app = withSession(async (request: Request) => {
      const session = await getSession<Rich>(request);
      const seen = session.get("since");
      const tags = session.get("tags");
      return Response.json([
        seen instanceof Date ? seen.toISOString() : null,
        tags instanceof Set ? [...tags] : null,
      ]);
    }, options);
    const response = await visit(app, cookie);
    assert.deepEqual(await response.json(), [since.toISOString(), ["a", "b"]]);
  });

  it("refuses data that holds nothing to store, or values that are not plain JSON", async () => {
    const options = { store: new MemoryStore(), secrets: SECRET };
    await assert.rejects(
      signIn(options, {}),
      (error: Error) => error instanceof TypeError && /signIn/.test(error.message),
    );
    await assert.rejects(signIn(options, null as unknown as Data), TypeError);
    await assert.rejects(signIn(options, { user: new Date() as unknown as string }), TypeError);
    assert.equal(await options.store.count(), 0);
  });
});

describe("TestClock", () => {
  it("drives idle expiry without waiting", async () => {
    const clock = new TestClock(Date.UTC(2030, 0, 1));
    const options: SessionOptions<Data> = {
      store: new MemoryStore({ now: clock.now }),
      secrets: SECRET,
      idleTimeout: 600,
      touchAfter: 0,
      now: clock.now,
    };
    const app = appFor(options);
    const { cookie } = await signIn<Data>(options, { user: "ada" });
    clock.advance(599);
    assert.equal((await visit(app, cookie)).status, 200); // and touched: idle again from here
    clock.advance(599);
    assert.equal((await visit(app, cookie)).status, 200);
    clock.advance(601);
    assert.equal((await visit(app, cookie)).status, 401);
  });

  it("drives absolute expiry, and its Set-Cookie dates follow it", async () => {
    const clock = new TestClock(new Date("2030-01-01T00:00:00Z"));
    const options: SessionOptions<Data> = {
      store: new MemoryStore({ now: clock.now }),
      secrets: SECRET,
      idleTimeout: 3600,
      absoluteTimeout: 7200,
      now: clock.now,
    };
    const signed = await signIn<Data>(options, { user: "ada" });
    // Expires is dated by the test clock (2030), not the real one.
    const maxAge = Number(/; Max-Age=(\d+)/.exec(signed.setCookie[0]!)![1]);
    assert.ok(
      signed.setCookie[0]!.endsWith(`; Expires=${new Date(clock.now() + maxAge * 1000).toUTCString()}`),
    );
    assert.match(signed.setCookie[0]!, /; Expires=\w{3}, 01 Jan 2030 /);
    const app = appFor(options);
    // Visited just within each idle hour, the session still ends two hours after it began.
    for (const at of ["00:59:59", "01:59:58"]) {
      clock.advance(3599);
      assert.equal((await visit(app, signed.cookie)).status, 200, at);
    }
    clock.advance(3); // 02:00:01: idle for 3 s only, but past absoluteTimeout
    assert.equal((await visit(app, signed.cookie)).status, 401);
  });

  it("refuses to go back or to move by a non-number", () => {
    const clock = new TestClock(1_000);
    assert.throws(() => clock.advance(-1), RangeError);
    assert.throws(() => clock.advance(Number.NaN), RangeError);
    assert.throws(() => new TestClock(Number.POSITIVE_INFINITY), RangeError);
    assert.equal(clock.advance(0.5), 1_500);
    const { now } = clock;
    assert.equal(now(), 1_500);
  });
});
