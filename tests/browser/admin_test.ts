// The admin handler's HTML page in a real browser (Debian's Chromium, driven by playwright-core),
// served over HTTP on loopback beside the app it manages: a person looks up a user, sees each
// session (escaped: a user agent that is markup stays text), ends one with its button (that
// device is signed out for real), and a page on another site that posts the "end all" form is
// refused by the CSRF check (Chromium's own Sec-Fetch-Site), ending nothing.
// Chromium comes from `.ci/install_chromium.sh`; without it the test is skipped, except under CI.
import { userSessions } from "../../src/users/options.ts";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { type Browser, chromium, type Page } from "playwright-core";
import { getSession, MemoryStore, type SessionOptions, withSession } from "../../mod.ts";
import { createSessionAdmin } from "../../src/admin.ts";
import { type RunningServer, serveFetch } from "../http/server.ts";

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
const TOKEN = "Bearer browser-admin-token";
const EVIL = "http://evil.example";

type Data = { user?: string };

/** A device of the user, over real HTTP from Node: a cookie and a user agent. */
class Device {
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

const missing = !existsSync(CHROMIUM);
const skip = missing && !process.env.CI
  ? `no Chromium at ${CHROMIUM}: run .ci/install_chromium.sh (or set CHROMIUM_PATH)`
  : false;

if (skip) it("drives the admin page in Chromium", { skip }, () => {});
else {
  describe("the admin page in Chromium", () => {
    let server: RunningServer;
    let browser: Browser;
    let page: Page;
    let base: string;
    const user = `ada-${crypto.randomUUID().slice(0, 6)}`;

    before(async () => {
      if (missing) throw new Error(`No Chromium at ${CHROMIUM}: CI must run .ci/install_chromium.sh first`);
      const options: SessionOptions<Data> = {
        store: new MemoryStore(),
        secrets: "browser admin test secret, 32 characters",
        users: userSessions({ userKey: "user", deviceInfo: { userAgent: true } }),
        cookie: { secure: false }, // plain http on 127.0.0.1
      };
      const app = withSession(async (req: Request) => {
        const session = await getSession<Data>(req);
        const url = new URL(req.url);
        if (url.pathname === "/login") {
          session.regenerate();
          session.set("user", url.searchParams.get("user")!);
        }
        return new Response(session.get("user") ?? "nobody");
      }, options);
      const admin = createSessionAdmin({
        ...options,
        basePath: "/admin",
        authorize: (req) => req.headers.get("authorization") === TOKEN,
      });
      server = await serveFetch((req) =>
        new URL(req.url).pathname.startsWith("/admin") ? admin(req) : app(req)
      );
      base = server.url;
      browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 30_000 });
      // The administrator's credentials ride on every request the browser makes, a cross-site one
      // too: only the CSRF check stands between another site and the actions.
      const context = await browser.newContext({ extraHTTPHeaders: { authorization: TOKEN } });
      context.setDefaultTimeout(10_000);
      await context.route(`${EVIL}/**`, (route) =>
        route.fulfill({
          contentType: "text/html",
          body: `<form id="f" method="post" action="${base}/admin/end-all?user=${user}"></form>` +
            `<script>document.getElementById("f").submit()</script>`,
        }));
      page = await context.newPage();
    });

    after(async () => {
      await browser?.close();
      await server?.close();
    });

    const phone = () => devices[0]!;
    const laptop = () => devices[1]!;
    const devices: Device[] = [];

    it("looks a user up and lists each session, markup in a user agent shown as text", async () => {
      devices.push(
        new Device(base, "Phone/1.0"),
        new Device(base, "Laptop/2.0"),
        new Device(base, `<img src=x onerror="document.title='owned'">`),
      );
      for (const device of devices) assert.equal(await device.text(`/login?user=${user}`), user);
      await page.goto(`${base}/admin`);
      await page.fill("input[name=user]", user);
      await Promise.all([page.waitForURL(/user=/), page.click("button[type=submit]")]);
      assert.equal(await page.locator("tr[data-handle]").count(), 3);
      const agents = await page.locator("tr[data-handle] td:nth-child(5)").allTextContents();
      assert.deepEqual(agents, ["Phone/1.0", "Laptop/2.0", `<img src=x onerror="document.title='owned'">`]);
      assert.equal(await page.locator("img").count(), 0);
      assert.notEqual(await page.title(), "owned");
    });

    it("ends one session with its button: that device is signed out, the others are not", async () => {
      await Promise.all([
        page.waitForResponse((r) => r.url().includes("/admin?user=") && r.status() === 200),
        page.locator("tr[data-handle]").first().locator("button").click(),
      ]);
      assert.equal(await page.locator("tr[data-handle]").count(), 2);
      assert.equal(await phone().text("/whoami"), "nobody");
      assert.equal(await laptop().text("/whoami"), user);
    });

    it("refuses another site's post of the end-all form: nothing ends", async () => {
      const answer = page.waitForResponse((r) => r.url().startsWith(`${base}/admin/end-all`));
      await page.goto(`${EVIL}/`);
      const response = await answer;
      assert.equal(response.status(), 403);
      // The CSRF check's refusal, on the headers Chromium itself sent (Playwright does not list them).
      assert.match(await response.text(), /Sec-Fetch-Site: "cross-site", Origin: "http:\/\/evil\.example"/);
      assert.equal(await laptop().text("/whoami"), user);
    });

    it("ends all with its button, from the page itself", async () => {
      await page.goto(`${base}/admin?user=${user}`);
      assert.equal(await page.locator("tr[data-handle]").count(), 2);
      await Promise.all([
        page.waitForResponse((r) => r.url().includes("/admin?user=") && r.status() === 200),
        page.click("text=End all sessions"),
      ]);
      assert.match(await page.textContent("body") ?? "", /No live sessions/);
      assert.equal(await laptop().text("/whoami"), "nobody");
    });
  });
}
