// websession/csrf through real HTTP: an app served on loopback (tests/http/server.ts), requests
// sent with node:http so that each carries exactly the headers a browser of each kind sends
// (cross-site, same-site, same-origin, Origin only, neither), tokens in a form body and in the
// header, rotation on log in (regenerate), and no session load where no token is needed.
// node:http keeps this file out of workerd; the core's checks need nothing from Node.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { Hono } from "hono";
import { getSession, MemoryStore, type SessionEvent, type SessionOptions, withSession } from "../mod.ts";
import { type SessionEnv, sessionMiddleware } from "../src/adapters/hono.ts";
import { csrf, csrfMiddleware, type CsrfOptions, csrfToken } from "../src/csrf.ts";
import { type RunningServer, serveFetch } from "./http/server.ts";

const SECRET = "csrf test secret of at least thirty-two chars";

interface Reply {
  status: number;
  body: string;
  setCookie: string[];
}

/** Sends one request with exactly these headers (node:http adds only Host and framing). */
function send(
  server: RunningServer,
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: string | Uint8Array } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const body = typeof init.body === "string" ? new TextEncoder().encode(init.body) : init.body;
    const headers: Record<string, string> = { ...init.headers };
    if (body !== undefined) headers["content-length"] = String(body.byteLength);
    const req = httpRequest(`${server.url}${path}`, { method: init.method ?? "GET", headers }, (res) => {
      const chunks: Uint8Array[] = [];
      res.on("data", (chunk: Uint8Array) => chunks.push(chunk));
      res.on("end", () => {
        const raw = res.headers["set-cookie"];
        resolve({
          status: res.statusCode ?? 0,
          body: new TextDecoder().decode(Buffer.concat(chunks)),
          setCookie: raw === undefined ? [] : raw,
        });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

const cookieOf = (reply: Reply): string => reply.setCookie[0]!.split(";", 1)[0]!;
const FORM = "application/x-www-form-urlencoded";

/**
 * The app: GET /form renders a token (and counts nothing else), GET /plain and POST /plain never
 * ask for the session, POST /note stores the posted note, POST /login regenerates the session.
 */
function makeApp(csrfOptions?: CsrfOptions) {
  const seen = { loads: 0, handled: 0 };
  const options: SessionOptions = {
    store: new MemoryStore(),
    secrets: SECRET,
    onEvent: (event: SessionEvent) => {
      if (event.type === "load") seen.loads++;
    },
  };
  const handler = withSession(
    csrf(async (request: Request) => {
      seen.handled++;
      const path = new URL(request.url).pathname;
      if (path === "/plain") return new Response(`plain ${request.method}`);
      const session = await getSession<{ user?: string; note?: string }>(request);
      if (path === "/form") return new Response(await csrfToken(session));
      if (path === "/login") {
        session.regenerate();
        session.set("user", "ada");
        return new Response("logged in");
      }
      const type = request.headers.get("content-type") ?? "";
      const form = type.startsWith("multipart/") || type.startsWith(FORM)
        ? await request.formData()
        : undefined;
      const note = String(form?.get("note") ?? (await request.text()));
      session.set("note", note);
      return new Response(`noted ${note}`);
    }, csrfOptions),
    options,
  );
  return { handler, seen };
}

describe("csrf over HTTP", () => {
  let app: ReturnType<typeof makeApp>;
  let server: RunningServer;
  let trusting: ReturnType<typeof makeApp>;
  let trustingServer: RunningServer;
  before(async () => {
    app = makeApp();
    server = await serveFetch(app.handler);
    trusting = makeApp({ allowSameSite: true, trustedOrigins: ["https://partner.example"] });
    trustingServer = await serveFetch(trusting.handler);
  });
  after(async () => {
    await server.close();
    await trustingServer.close();
  });

  /** A session cookie and one of its tokens. */
  async function visitor(): Promise<{ cookie: string; token: string }> {
    const page = await send(server, "/form");
    assert.equal(page.status, 200);
    return { cookie: cookieOf(page), token: page.body };
  }

  it("lets safe methods through from anywhere, without loading the session", async () => {
    const { cookie } = await visitor();
    const loads = app.seen.loads;
    const crossSite = { cookie, "sec-fetch-site": "cross-site", origin: "https://evil.example" };
    for (const method of ["GET", "HEAD", "OPTIONS"]) {
      const reply = await send(server, "/plain", { method, headers: crossSite });
      assert.equal(reply.status, 200, method);
    }
    assert.equal(app.seen.loads, loads);
  });

  it("lets a same-origin POST through without a token and without loading the session", async () => {
    const { cookie } = await visitor();
    const loads = app.seen.loads;
    const reply = await send(server, "/plain", {
      method: "POST",
      headers: { cookie, "sec-fetch-site": "same-origin", origin: server.url },
    });
    assert.deepEqual([reply.status, reply.body], [200, "plain POST"]);
    assert.equal(app.seen.loads, loads);
  });

  it("refuses a cross-site POST before the handler runs, saying why", async () => {
    const { cookie } = await visitor();
    const handled = app.seen.handled;
    const loads = app.seen.loads;
    const reply = await send(server, "/note", {
      method: "POST",
      headers: {
        cookie,
        "sec-fetch-site": "cross-site",
        origin: "https://evil.example",
        "content-type": FORM,
      },
      body: "note=pwned",
    });
    assert.equal(reply.status, 403);
    assert.match(
      reply.body,
      /^Cross-site request refused: .*"https:\/\/evil\.example".*send it from a page of this site/,
    );
    assert.equal(app.seen.handled, handled);
    assert.equal(app.seen.loads, loads);
  });

  it("refuses same-site unless allowed; trusts listed origins even cross-site", async () => {
    const headers = { "sec-fetch-site": "same-site", origin: "https://blog.example.com" };
    const refused = await send(server, "/plain", { method: "POST", headers });
    assert.equal(refused.status, 403);
    assert.match(refused.body, /Sec-Fetch-Site: same-site.*trustedOrigins/);
    assert.equal((await send(trustingServer, "/plain", { method: "POST", headers })).status, 200);
    const partner = { "sec-fetch-site": "cross-site", origin: "https://partner.example" };
    assert.equal((await send(trustingServer, "/plain", { method: "DELETE", headers: partner })).status, 200);
    const other = { "sec-fetch-site": "cross-site", origin: "https://other.example" };
    assert.equal((await send(trustingServer, "/plain", { method: "DELETE", headers: other })).status, 403);
  });

  it("judges by Origin when there is no Sec-Fetch-Site (older browsers, plain http)", async () => {
    const own = await send(server, "/plain", { method: "PUT", headers: { origin: server.url } });
    assert.equal(own.status, 200);
    const other = await send(server, "/plain", { method: "PUT", headers: { origin: "http://127.0.0.1:1" } });
    assert.equal(other.status, 403);
    assert.match(other.body, /Origin "http:\/\/127\.0\.0\.1:1" is not "http:\/\/127\.0\.0\.1:\d+"/);
    const opaque = await send(server, "/plain", { method: "PATCH", headers: { origin: "null" } });
    assert.equal(opaque.status, 403);
  });

  it("asks a request with neither header for the token, and takes it from a form field", async () => {
    const { cookie, token } = await visitor();
    const missing = await send(server, "/note", {
      method: "POST",
      headers: { cookie, "content-type": FORM },
      body: "note=hello",
    });
    assert.equal(missing.status, 403);
    assert.match(missing.body, /^CSRF token missing: .*"_csrf" form field.*X-CSRF-Token header/);
    const ok = await send(server, "/note", {
      method: "POST",
      headers: { cookie, "content-type": FORM },
      body: `note=hello+world&_csrf=${encodeURIComponent(token)}`,
    });
    assert.deepEqual([ok.status, ok.body], [200, "noted hello world"]); // the handler still read the whole body
  });

  it("takes the token from a multipart form, field first, however large the rest", async () => {
    const { cookie, token } = await visitor();
    const boundary = "----websession-test-boundary";
    const big = "x".repeat(200_000);
    const part = (name: string, value: string, file = "") =>
      `--${boundary}\r\nContent-Disposition: form-data; name="${name}"${
        file ? `; filename="${file}"\r\nContent-Type: text/plain` : ""
      }\r\n\r\n${value}\r\n`;
    const headers = { cookie, "content-type": `multipart/form-data; boundary=${boundary}` };
    const first = part("_csrf", token) + part("note", "upload") + part("file", big, "big.txt") +
      `--${boundary}--\r\n`;
    const ok = await send(server, "/note", { method: "POST", headers, body: first });
    assert.deepEqual([ok.status, ok.body], [200, "noted upload"]);
    // The same field after 200 kB is beyond maxBodyBytes (64 KiB): not looked for.
    const last = part("note", "upload") + part("file", big, "big.txt") + part("_csrf", token) +
      `--${boundary}--\r\n`;
    const refused = await send(server, "/note", { method: "POST", headers, body: last });
    assert.equal(refused.status, 403);
    assert.match(refused.body, /within its first 65536 bytes/);
    // A file part named like the field is not the field.
    const asFile = part("_csrf", token, "token.txt") + `--${boundary}--\r\n`;
    assert.equal((await send(server, "/note", { method: "POST", headers, body: asFile })).status, 403);
  });

  it("takes the token from the X-CSRF-Token header (fetch), and refuses a wrong one", async () => {
    const { cookie, token } = await visitor();
    const json = { cookie, "content-type": "application/json" };
    const ok = await send(server, "/note", {
      method: "POST",
      headers: { ...json, "x-csrf-token": token },
      body: "from fetch",
    });
    assert.deepEqual([ok.status, ok.body], [200, "noted from fetch"]);
    const other = await visitor(); // another session's token
    const wrong = await send(server, "/note", {
      method: "POST",
      headers: { ...json, "x-csrf-token": other.token },
      body: "x",
    });
    assert.equal(wrong.status, 403);
    assert.match(wrong.body, /^CSRF token invalid: .*load the page again/);
    const garbage = await send(server, "/note", {
      method: "POST",
      headers: { ...json, "x-csrf-token": "abc" },
    });
    assert.equal(garbage.status, 403);
  });

  it("retires tokens when the session is regenerated on log in", async () => {
    const { cookie, token } = await visitor();
    const login = await send(server, "/login", {
      method: "POST",
      headers: { cookie, "content-type": FORM },
      body: `_csrf=${token}`,
    });
    assert.equal(login.status, 200);
    const loggedIn = cookieOf(login);
    assert.notEqual(loggedIn, cookie);
    const stale = await send(server, "/note", {
      method: "POST",
      headers: { cookie: loggedIn, "x-csrf-token": token },
    });
    assert.equal(stale.status, 403);
    assert.match(stale.body, /CSRF token invalid/);
    const fresh = (await send(server, "/form", { headers: { cookie: loggedIn } })).body;
    assert.notEqual(fresh, token);
    const ok = await send(server, "/note", {
      method: "POST",
      headers: { cookie: loggedIn, "x-csrf-token": fresh },
      body: "after login",
    });
    assert.deepEqual([ok.status, ok.body], [200, "noted after login"]);
  });
});

describe("csrfMiddleware (Hono) over HTTP", () => {
  let server: RunningServer;
  before(async () => {
    const app = new Hono<SessionEnv>();
    app.use(sessionMiddleware({ store: new MemoryStore(), secrets: SECRET }));
    app.use(csrfMiddleware());
    app.get("/form", async (c) => c.text(await csrfToken(c.var.session)));
    app.post("/note", async (c) => {
      const body = await c.req.parseBody();
      return c.text(`noted ${String(body.note)}`);
    });
    server = await serveFetch(async (request) => await app.fetch(request));
  });
  after(() => server.close());

  it("refuses cross-site, asks header-less requests for the token, takes it from form or header", async () => {
    const page = await send(server, "/form");
    const cookie = cookieOf(page);
    const token = page.body;
    const post = (headers: Record<string, string>, body = "note=hi") =>
      send(server, "/note", { method: "POST", headers: { cookie, "content-type": FORM, ...headers }, body });
    assert.equal(
      (await post({ "sec-fetch-site": "cross-site", origin: "https://evil.example" })).status,
      403,
    );
    assert.equal((await post({ "sec-fetch-site": "same-origin" })).status, 200);
    assert.equal((await post({})).status, 403);
    const form = await post({}, `_csrf=${token}&note=hi`);
    assert.deepEqual([form.status, form.body], [200, "noted hi"]);
    assert.equal((await post({ "x-csrf-token": token })).status, 200);
  });
});

describe("csrf options", () => {
  it("refuse what cannot work, at construction", () => {
    const handler = () => new Response("ok");
    assert.throws(() => csrf(handler, { trustedOrigins: ["https://example.com/"] }), TypeError);
    assert.throws(() => csrf(handler, { trustedOrigins: ["example.com"] }), TypeError);
    assert.throws(() => csrf(handler, { maxBodyBytes: 0 }), RangeError);
    assert.throws(() => csrfMiddleware({ header: "x csrf" }), TypeError);
    assert.doesNotThrow(() => csrf(handler, { trustedOrigins: ["https://example.com"] }));
  });
});
