// The admin handler (websession/admin) through real HTTP (node:http on loopback), as a tool uses
// it with fetch and JSON: who may use it (authorize), what it shows (redacted: no data, no cookie,
// no storage key), CSRF on its actions (a cross-site post is refused and ends nothing), and that
// ending a session signs that browser out for real (its next request is a new session). Also the
// HTML page's escaping, on MemoryStore and on the real Redis.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Redis as IoRedis } from "ioredis";
import { getSession, MemoryStore, type SessionOptions, type SessionStore, withSession } from "../mod.ts";
import { createSessionAdmin, escapeHtml } from "../src/admin.ts";
import { RedisStore } from "../src/stores/redis.ts";
import { serveFetch } from "./http/server.ts";
import { userSessions } from "../src/users/options.ts";

const SECRET = "admin handler test secret, 32 characters";
const TOKEN = "Bearer admin-token-for-tests";
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const RUN = crypto.randomUUID().slice(0, 8);

type Data = { user?: string; secret?: string };

/** The app (sign in, who am I) and the admin handler under /admin, on one server. */
async function serve(store: SessionStore) {
  const options: SessionOptions<Data> = {
    store,
    secrets: SECRET,
    users: userSessions({ userKey: "user", deviceInfo: { userAgent: true } }),
  };
  const app = withSession(async (req: Request) => {
    const session = await getSession<Data>(req);
    const url = new URL(req.url);
    if (url.pathname === "/login") {
      session.regenerate();
      session.set("user", url.searchParams.get("user")!);
      session.set("secret", "the user's private data");
      return new Response("in");
    }
    return new Response(session.get("user") ?? "nobody");
  }, options);
  const admin = createSessionAdmin({
    ...options,
    basePath: "/admin",
    authorize: (req) => {
      const auth = req.headers.get("authorization");
      if (auth === null) {
        return new Response("Sign in", {
          status: 401,
          headers: { "www-authenticate": 'Bearer realm="admin"' },
        });
      }
      return auth === TOKEN;
    },
  });
  const server = await serveFetch((req) =>
    new URL(req.url).pathname.startsWith("/admin") ? admin(req) : app(req)
  );
  after(() => server.close());
  return server.url;
}

class Browser {
  cookie: string | undefined;
  constructor(readonly base: string, readonly agent: string) {}
  async text(path: string): Promise<string> {
    const headers: Record<string, string> = { "user-agent": this.agent };
    if (this.cookie !== undefined) headers.cookie = this.cookie;
    const response = await fetch(this.base + path, { headers });
    for (const line of response.headers.getSetCookie()) this.cookie = line.split(";")[0];
    return await response.text();
  }
}

function tool(base: string, headers: Record<string, string> = {}) {
  const asAdmin = { authorization: TOKEN, accept: "application/json", ...headers };
  return {
    get: (path: string) => fetch(base + path, { headers: asAdmin }),
    post: (path: string, more: Record<string, string> = { "sec-fetch-site": "same-origin" }) =>
      fetch(base + path, { method: "POST", headers: { ...asAdmin, ...more } }),
  };
}

const redis = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
after(() => redis.disconnect());

const stores: Array<[string, () => SessionStore]> = [
  ["MemoryStore", () => new MemoryStore()],
  ["RedisStore (ioredis)", () => new RedisStore({ client: redis, prefix: `websession-admin-test:${RUN}:` })],
];

for (const [name, makeStore] of stores) {
  describe(`the admin handler on ${name}`, () => {
    it("refuses who authorize refuses: 401 as authorize answers it, 403 for false", async () => {
      const base = await serve(makeStore());
      const anonymous = await fetch(`${base}/admin?user=ada`, { headers: { accept: "application/json" } });
      assert.equal(anonymous.status, 401);
      assert.equal(anonymous.headers.get("www-authenticate"), 'Bearer realm="admin"');
      const wrong = await fetch(`${base}/admin?user=ada`, {
        headers: { accept: "application/json", authorization: "Bearer guessed" },
      });
      assert.equal(wrong.status, 403);
      assert.match((await wrong.json()).error, /not authorized/);
      const post = await fetch(`${base}/admin/end-all?user=ada`, {
        method: "POST",
        headers: { authorization: "Bearer guessed", "sec-fetch-site": "same-origin" },
      });
      assert.equal(post.status, 403);
    });

    it("lists a user's sessions redacted, shows one by its handle", async () => {
      const base = await serve(makeStore());
      const user = `ada-${crypto.randomUUID().slice(0, 8)}`;
      const phone = new Browser(base, "Phone/1.0");
      const laptop = new Browser(base, "Laptop/2.0");
      await phone.text(`/login?user=${user}`);
      await laptop.text(`/login?user=${user}`);
      const admin = tool(base);
      const listed = await admin.get(`/admin?user=${encodeURIComponent(user)}`);
      assert.equal(listed.status, 200);
      assert.equal(listed.headers.get("cache-control"), "no-store");
      const text = await listed.text();
      assert.ok(
        !text.includes("private data") && !text.includes(phone.cookie!.split("=")[1]!.split(".")[0]!),
      );
      const { sessions } = JSON.parse(text);
      assert.deepEqual(sessions.map((s: { userAgent: string }) => s.userAgent), ["Phone/1.0", "Laptop/2.0"]);
      assert.deepEqual(Object.keys(sessions[0]).sort(), [
        "createdAt",
        "current",
        "expiresAt",
        "handle",
        "lastSeenAt",
        "userAgent",
      ]);
      const one = await admin.get(`/admin?user=${encodeURIComponent(user)}&handle=${sessions[1].handle}`);
      assert.deepEqual(await one.json(), sessions[1]);
      const none = await admin.get(`/admin?user=${encodeURIComponent(user)}&handle=${"A".repeat(22)}`);
      assert.equal(none.status, 404);
      assert.equal((await admin.get("/admin")).status, 400); // no user
      assert.equal((await admin.get("/admin/end")).status, 405);
    });

    it("refuses a cross-site post, and a post without Origin or token; ends nothing", async () => {
      const base = await serve(makeStore());
      const user = `ada-${crypto.randomUUID().slice(0, 8)}`;
      const phone = new Browser(base, "Phone/1.0");
      await phone.text(`/login?user=${user}`);
      const admin = tool(base);
      const crossSite = await admin.post(`/admin/end-all?user=${user}`, { "sec-fetch-site": "cross-site" });
      assert.equal(crossSite.status, 403);
      assert.match(await crossSite.text(), /cross-site/i);
      const foreign = await admin.post(`/admin/end-all?user=${user}`, { origin: "https://evil.example" });
      assert.equal(foreign.status, 403);
      const bare = await admin.post(`/admin/end-all?user=${user}`, {});
      assert.equal(bare.status, 403); // neither header: the token is needed
      assert.equal(await phone.text("/whoami"), user);
    });

    it("ends one session by its handle, then all: those browsers are signed out for real", async () => {
      const base = await serve(makeStore());
      const user = `ada-${crypto.randomUUID().slice(0, 8)}`;
      const browsers = ["A", "B", "C"].map((agent) => new Browser(base, agent));
      for (const browser of browsers) {
        await browser.text(`/login?user=${user}`);
        await new Promise((resolve) => setTimeout(resolve, 3)); // listed oldest first: not in one millisecond
      }
      const admin = tool(base);
      const { sessions } = await (await admin.get(`/admin?user=${user}`)).json();
      const ended = await admin.post(`/admin/end?user=${user}&handle=${sessions[0].handle}`);
      assert.deepEqual(await ended.json(), { ended: 1 });
      assert.equal(await browsers[0]!.text("/whoami"), "nobody");
      assert.equal(await browsers[1]!.text("/whoami"), user);
      const again = await admin.post(`/admin/end?user=${user}&handle=${sessions[0].handle}`);
      assert.equal(again.status, 404);
      assert.deepEqual(await (await admin.post(`/admin/end-all?user=${user}`)).json(), { ended: 2 });
      assert.equal(await browsers[1]!.text("/whoami"), "nobody");
      assert.equal(await browsers[2]!.text("/whoami"), "nobody");
      assert.deepEqual((await (await admin.get(`/admin?user=${user}`)).json()).sessions, []);
    });

    it("answers people with an HTML page whose output is escaped", async () => {
      const base = await serve(makeStore());
      const user = `<b>ada</b>&"${crypto.randomUUID().slice(0, 4)}`;
      const evil = new Browser(base, `<script>alert("x")</script>`);
      await evil.text(`/login?user=${encodeURIComponent(user)}`);
      const page = await tool(base, { accept: "text/html" }).get(`/admin?user=${encodeURIComponent(user)}`);
      assert.equal(page.status, 200);
      assert.match(page.headers.get("content-type")!, /^text\/html/);
      assert.match(page.headers.get("content-security-policy")!, /default-src 'none'/);
      const html = await page.text();
      assert.ok(!html.includes("<script>") && !html.includes("<b>ada"));
      assert.ok(html.includes(escapeHtml(`<script>alert("x")</script>`)));
      assert.match(html, /name="_csrf" value="[A-Za-z0-9_-]{86}"/);
    });
  });
}

describe("createSessionAdmin options", () => {
  it("needs authorize, and a basePath that is a path", () => {
    const options = { store: new MemoryStore(), secrets: SECRET, users: userSessions({ userKey: "user" }) };
    assert.throws(() => createSessionAdmin({ ...options } as never), /authorize/);
    assert.throws(
      () => createSessionAdmin({ ...options, authorize: () => true, basePath: "admin" }),
      /basePath/,
    );
    assert.equal(
      escapeHtml(`<a href="x">'&'</a>`),
      "&#60;a href=&#34;x&#34;&#62;&#39;&#38;&#39;&#60;/a&#62;",
    );
  });
});
