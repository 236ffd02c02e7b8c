// A real browser (Debian's Chromium, driven by playwright-core) against the demo app served
// over HTTP on loopback: the counter survives reloads, the browser's own /favicon.ico requests
// (sent with the cookie) never count, logging in regenerates the cookie, the flash shows once,
// logging out clears it; cookie attributes are read from the browser's cookie jar.
// Chromium comes from `.ci/install_chromium.sh`; without it the test is skipped, except under CI.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { type Browser, type BrowserContext, chromium, type Cookie, type Page } from "playwright-core";
import { createApp } from "../../examples/app.ts";
import { FileStore } from "../../src/stores/file.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Serves a fetch handler with node:http, remembering every path asked for. */
function serve(
  handler: (request: Request) => Promise<Response>,
  seen: string[],
): Promise<{ server: Server; base: string }> {
  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    seen.push(`${req.method} ${req.url}${req.headers.cookie ? " (with cookie)" : ""}`);
    try {
      const headers = new Headers();
      for (const [name, value] of Object.entries(req.headers)) {
        if (Array.isArray(value)) { for (const v of value) headers.append(name, v); }
        else if (value !== undefined) headers.set(name, value);
      }
      const hasBody = req.method !== "GET" && req.method !== "HEAD";
      const request = new Request(`http://${req.headers.host}${req.url}`, {
        method: req.method,
        headers,
        body: hasBody ? (Readable.toWeb(req) as ReadableStream<Uint8Array>) : undefined,
        // @ts-expect-error: Node needs duplex for a streamed request body
        duplex: hasBody ? "half" : undefined,
      });
      const response = await handler(request);
      const out: Record<string, string | string[]> = {};
      response.headers.forEach((value, name) => {
        if (name !== "set-cookie") out[name] = value;
      });
      const cookies = response.headers.getSetCookie();
      if (cookies.length > 0) out["set-cookie"] = cookies;
      res.writeHead(response.status, out);
      res.end(Buffer.from(await response.arrayBuffer()));
    } catch (error) {
      res.writeHead(500);
      res.end(String(error));
    }
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      resolve({ server, base: `http://127.0.0.1:${port}` });
    });
  });
}

const missing = !existsSync(CHROMIUM);
const skip = missing && !process.env.CI
  ? `no Chromium at ${CHROMIUM}: run .ci/install_chromium.sh (or set CHROMIUM_PATH)`
  : false;

if (skip) it("drives the demo in Chromium", { skip }, () => {});
else {describe("the demo in Chromium", () => {
    let dir: string;
    let server: Server;
    let base: string;
    let browser: Browser;
    let context: BrowserContext;
    let page: Page;
    const seen: string[] = [];

    async function sessionCookie(): Promise<Cookie | undefined> {
      return (await context.cookies(base)).find((cookie) => cookie.name === "session");
    }
    async function visits(): Promise<number> {
      return Number(await page.textContent("#visits"));
    }

    before(async () => {
      if (missing) throw new Error(`No Chromium at ${CHROMIUM}: CI must run .ci/install_chromium.sh first`);
      dir = await mkdtemp(join(tmpdir(), "websession-browser-"));
      const app = createApp({
        store: new FileStore({ dir }),
        secrets: "browser test secret: at least 32 characters long",
        cookie: { secure: false }, // plain http on 127.0.0.1
      });
      ({ server, base } = await serve(app, seen));
      browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 30_000 });
      context = await browser.newContext();
      context.setDefaultTimeout(10_000);
      page = await context.newPage();
    });

    after(async () => {
      await browser?.close();
      await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
      server?.closeAllConnections();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    let firstValue = "";
    let loggedInValue = "";

    it("counts a first visit and sets an HttpOnly, SameSite=Lax session cookie", async () => {
      await page.goto(`${base}/`);
      assert.equal(await visits(), 1);
      const cookie = await sessionCookie();
      assert.ok(cookie, "the browser keeps a session cookie");
      assert.match(cookie.value, /^[A-Za-z0-9_-]{32}\.[A-Za-z0-9_-]{43}$/);
      assert.equal(cookie.httpOnly, true);
      assert.equal(cookie.sameSite, "Lax");
      assert.equal(cookie.path, "/");
      assert.equal(cookie.secure, false);
      assert.equal(cookie.domain, "127.0.0.1");
      const lifetime = cookie.expires - Date.now() / 1000;
      assert.ok(
        lifetime > 5_200 && lifetime <= 5_400,
        `expires in about an hour and a half (idleTimeout + touchAfter), got ${lifetime} s`,
      );
      assert.doesNotMatch(await page.evaluate(() => document.cookie), /session=/, "scripts cannot read it");
      firstValue = cookie.value;
    });

    it("keeps counting across reloads, and the browser's /favicon.ico requests do not count", async (t) => {
      await page.reload();
      assert.equal(await visits(), 2);
      await page.reload();
      assert.equal(await visits(), 3);
      // Chromium asks for the icon on its own, with the cookie. Should a build ever stop doing so,
      // the page asks for it instead, so the check below always has an icon request to judge.
      const icon = "GET /favicon.ico (with cookie)";
      const end = Date.now() + 5_000;
      while (!seen.includes(icon) && Date.now() < end) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      if (!seen.includes(icon)) {
        t.diagnostic("Chromium sent no /favicon.ico of its own: the page requests it");
        await page.evaluate(() =>
          fetch("/favicon.ico", { credentials: "same-origin" }).then((r) => r.status)
        );
      }
      assert.ok(seen.includes(icon), seen.join("\n"));
      await page.reload();
      assert.equal(await visits(), 4, "only page views count");
      assert.equal((await sessionCookie())?.value, firstValue, "the same cookie all along");
    });

    it("logs in with a regenerated cookie and shows the welcome flash once", async () => {
      await page.fill("#name", "ada");
      await Promise.all([page.waitForURL(`${base}/`), page.click("#login")]);
      assert.equal(await page.textContent("#user"), "ada");
      assert.equal(await page.textContent("#notice"), "Welcome, ada!");
      assert.equal(await visits(), 5, "the count came along");
      const cookie = await sessionCookie();
      assert.ok(cookie);
      assert.notEqual(cookie.value, firstValue, "a new cookie after logging in");
      assert.notEqual(cookie.value.split(".")[0], firstValue.split(".")[0], "a new id");
      assert.equal(cookie.httpOnly, true);
      loggedInValue = cookie.value;

      await page.reload();
      assert.equal(await page.locator("#notice").count(), 0, "the flash is gone");
      assert.equal(await page.textContent("#user"), "ada");
      assert.equal(await visits(), 6);

      // The pre-login cookie, sent by another browser profile, opens nothing.
      const other = await browser.newContext();
      await other.addCookies([{ name: "session", value: firstValue, url: base }]);
      const otherPage = await other.newPage();
      const opened = await otherPage.goto(`${base}/`);
      // Within a minute of the login, a request with the old cookie is taken for one that was in
      // flight: it may change nothing (409) and sets no cookie. It never opens the session.
      assert.equal(opened?.status(), 409);
      assert.equal(await otherPage.locator("#user").count(), 0);
      assert.doesNotMatch(await otherPage.content(), /ada/);
      assert.deepEqual((await other.cookies()).map((c) => c.value), [firstValue], "its cookie is left alone");
      await other.close();
    });

    it("logs out: the logged-in cookie leaves the jar and the session is gone", async () => {
      await Promise.all([page.waitForURL(`${base}/`), page.click("#logout")]);
      assert.match((await page.textContent("#notice")) ?? "", /Goodbye, ada\./);
      assert.equal(await page.locator("#user").count(), 0);
      assert.equal(await page.locator("#login").count(), 1);
      assert.notEqual((await sessionCookie())?.value, loggedInValue, "the logged-in cookie is gone");

      await page.reload();
      assert.equal(await page.locator("#notice").count(), 0);
      assert.equal(await page.locator("#user").count(), 0);

      const replay = await browser.newContext();
      await replay.addCookies([{ name: "session", value: loggedInValue, url: base }]);
      const replayPage = await replay.newPage();
      const replayed = await replayPage.goto(`${base}/`);
      assert.equal(replayed?.status(), 409, "a cookie replayed just after logout can change nothing");
      assert.equal(
        await replayPage.locator("#user").count(),
        0,
        "a cookie replayed after logout opens nothing",
      );
      assert.doesNotMatch(await replayPage.content(), /ada/);
      await replay.close();
    });
  });}
