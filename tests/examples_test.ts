// Starts every runnable example on a free loopback port, each in its own runtime, and drives it
// over real HTTP the way a browser would (a cookie jar, no redirects followed): count visits,
// /favicon.ico not counted, log in (a new cookie, the old one dead, a flash shown once), log
// out (the cookie cleared, the session gone), and the cookie's attributes.
// Node (the fetch handler served by @hono/node-server), Deno (Deno.serve), Bun (Bun.serve), a
// Cloudflare Worker in Miniflare (KV and the secret from env), and the Hono app (sessionMiddleware
// from websession/hono, the session in c.var.session) under `deno serve` and Bun.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Log, LogLevel, Miniflare } from "miniflare";
import { answersHttp, freePort, start } from "./spawn.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const bin = (name: string) => join(ROOT, "node_modules", ".bin", name);
const SECRET = "examples test secret: at least 32 characters long";
const START_TIMEOUT_MS = 30_000;
const COMPATIBILITY_DATE = "2026-05-01";

/** A running example: where it answers, and how to stop it. */
interface Running {
  base: string;
  stop(): Promise<void>;
  /** What it printed so far (for failure messages). */
  output(): string;
}

/** Starts `command` in its own process group, with PORT set, and waits until it answers. */
async function startProcess(
  command: string,
  args: (port: number) => string[],
  env: Record<string, string> = {},
): Promise<Running> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = await start(command, args(port), {
    cwd: ROOT,
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", PORT: String(port), SESSION_SECRET: SECRET, ...env },
    group: true,
    ready: () => answersHttp(`${base}/favicon.ico`),
    timeoutMs: START_TIMEOUT_MS,
  });
  return { base, output: () => child.output(), stop: () => child.stop() };
}

/** Bundles the Worker example and serves it from Miniflare on a loopback port. */
async function startWorker(): Promise<Running> {
  const bundled = await build({
    entryPoints: [join(ROOT, "examples/workers/worker.ts")],
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    write: false,
    logLevel: "silent",
  });
  const port = await freePort();
  const mf = new Miniflare({
    modules: true,
    script: bundled.outputFiles[0]!.text,
    compatibilityDate: COMPATIBILITY_DATE,
    kvNamespaces: ["SESSIONS"],
    bindings: { SESSION_SECRET: SECRET },
    host: "127.0.0.1",
    port,
    cf: false,
    log: new Log(LogLevel.WARN),
  });
  const url = await mf.ready;
  return {
    base: url.origin,
    output: () => "",
    stop: () => mf.dispose(),
  };
}

interface SetCookie {
  name: string;
  value: string;
  attributes: Map<string, string>;
  raw: string;
}

function parseSetCookie(header: string): SetCookie {
  const [pair, ...rest] = header.split(";");
  const eq = pair!.indexOf("=");
  const attributes = new Map<string, string>();
  for (const part of rest) {
    const [key, ...value] = part.trim().split("=");
    attributes.set(key!.toLowerCase(), value.join("="));
  }
  return { name: pair!.slice(0, eq).trim(), value: pair!.slice(eq + 1).trim(), attributes, raw: header };
}

/** A browser-like client: keeps cookies, sends them back, drops expired ones, never follows redirects. */
class Browser {
  jar = new Map<string, string>();
  constructor(readonly base: string) {}

  async fetch(
    path: string,
    init: RequestInit = {},
  ): Promise<{ response: Response; body: string; cookies: SetCookie[] }> {
    const headers = new Headers(init.headers);
    if (this.jar.size > 0) headers.set("cookie", [...this.jar].map(([k, v]) => `${k}=${v}`).join("; "));
    const response = await fetch(new URL(path, this.base), {
      ...init,
      headers,
      redirect: "manual",
      signal: AbortSignal.timeout(10_000),
    });
    const body = await response.text();
    const cookies = response.headers.getSetCookie().map(parseSetCookie);
    for (const cookie of cookies) {
      if (cookie.attributes.get("max-age") === "0" || cookie.value === "") this.jar.delete(cookie.name);
      else this.jar.set(cookie.name, cookie.value);
    }
    return { response, body, cookies };
  }

  async visits(): Promise<{ visits: number; user: string | null }> {
    const { response, body } = await this.fetch("/api/visits");
    assert.equal(response.status, 200);
    return JSON.parse(body);
  }

  postForm(path: string, fields: Record<string, string> = {}) {
    return this.fetch(path, { method: "POST", body: new URLSearchParams(fields) });
  }
}

function visitsOnPage(body: string): number {
  const match = /id="visits">(\d+)</.exec(body);
  assert.ok(match, `no visit count in the page:\n${body.slice(0, 500)}`);
  return Number(match[1]);
}

/** What tells one example from another, beyond the walk they all share. */
interface Expected {
  /** The page's `<title>`: the shared demo app or the Hono app answered. */
  title: string;
  /** What the example prints once it listens (`port`: the port it was given in `PORT`), if anything. */
  banner?: (port: string) => string;
  /**
   * The store can serve stale reads (Workers KV), so the cookie also carries the last version
   * written, and is re-sent whenever the session changes.
   */
  versioned?: boolean;
}

/** The shared demo app (examples/app.ts) and the line its servers print once listening. */
const DEMO: Expected = {
  title: "websession demo",
  banner: (port) => `websession demo on http://localhost:${port}`,
};

/** The Hono app (examples/hono/main.ts): its own page; `deno serve` and Bun print their own lines. */
const HONO: Expected = { title: "websession + Hono" };

/** The same walk through the demo for every example. */
function demoWalk(name: string, start: () => Promise<Running>, expected: Expected): void {
  const { title, banner, versioned = false } = expected;
  describe(`example: ${name}`, () => {
    let app: Running | undefined;
    let browser: Browser;
    let firstCookie = "";
    let loggedInCookie = "";

    before(async () => {
      app = await start();
      browser = new Browser(app.base);
    });
    after(async () => {
      await app?.stop();
    });

    it("serves its own page and counts visits, with one session cookie of the expected attributes", async () => {
      const first = await browser.fetch("/");
      assert.equal(first.response.status, 200);
      assert.match(first.response.headers.get("content-type") ?? "", /^text\/html/);
      assert.ok(
        first.body.includes(`<title>${title}</title>`),
        `the page of "${title}":\n${first.body.slice(0, 300)}`,
      );
      if (banner !== undefined) {
        const line = banner(new URL(app!.base).port);
        assert.ok(app!.output().includes(line), `printed "${line}":\n${app!.output()}`);
      }
      assert.equal(visitsOnPage(first.body), 1);
      assert.equal(first.cookies.length, 1);
      const cookie = first.cookies[0]!;
      assert.equal(cookie.name, "session");
      assert.match(
        cookie.value,
        versioned ? /^[A-Za-z0-9_-]{32}\.1\.[A-Za-z0-9_-]{43}$/ : /^[A-Za-z0-9_-]{32}\.[A-Za-z0-9_-]{43}$/,
      );
      const dot = cookie.value.lastIndexOf(".");
      assert.equal(
        cookie.value.slice(dot + 1),
        createHmac("sha256", SECRET).update(cookie.value.slice(0, dot)).digest("base64url"),
        "signed with the secret the example was given through its environment",
      );
      assert.equal(cookie.attributes.get("path"), "/");
      assert.ok(cookie.attributes.has("httponly"), cookie.raw);
      assert.equal(cookie.attributes.get("samesite"), "Lax");
      assert.ok(!cookie.attributes.has("secure"), `plain http: no Secure (${cookie.raw})`);
      assert.equal(cookie.attributes.get("max-age"), "5400");
      const expires = Date.parse(cookie.attributes.get("expires") ?? "");
      assert.ok(
        Math.abs(expires - (Date.now() + 5_400_000)) < 120_000,
        `Expires about an hour and a half ahead (idleTimeout + touchAfter): ${cookie.raw}`,
      );
      assert.match(first.response.headers.get("vary") ?? "", /Cookie/i);
      assert.match(first.response.headers.get("cache-control") ?? "", /no-store/);
      firstCookie = cookie.value;

      const second = await browser.fetch("/");
      assert.equal(visitsOnPage(second.body), 2);
      if (versioned) {
        assert.equal(second.cookies.length, 1);
        assert.equal(second.cookies[0]!.value.split(".")[0], firstCookie.split(".")[0], "the same id");
        assert.equal(second.cookies[0]!.value.split(".")[1], "2", "the version seen");
      } else {
        assert.deepEqual(second.cookies, [], "the cookie is not sent again");
      }
    });

    it("does not count /favicon.ico", async () => {
      const icon = await browser.fetch("/favicon.ico");
      assert.equal(icon.response.status, 404);
      assert.deepEqual(icon.cookies, []);
      assert.deepEqual(await browser.visits(), { visits: 2, user: null });
    });

    it("logs in with a new cookie, kills the old one, and shows the flash once", async () => {
      const login = await browser.postForm("/login", { user: "ada" });
      assert.equal(login.response.status, 303);
      assert.equal(new URL(login.response.headers.get("location")!, app!.base).pathname, "/");
      const session = login.cookies.find((c) => c.name === "session" && c.value !== "");
      assert.ok(session, `a new session cookie: ${login.cookies.map((c) => c.raw).join(" | ")}`);
      assert.notEqual(session.value, firstCookie, "regenerated");
      assert.notEqual(session.value.split(".")[0], firstCookie.split(".")[0], "a new id");
      assert.ok(session.attributes.has("httponly"));
      loggedInCookie = session.value;

      const home = await browser.fetch("/");
      assert.equal(visitsOnPage(home.body), 3, "the data came along");
      assert.match(home.body, /Welcome, ada!/);
      assert.match(home.body, /id="user">ada</);
      const again = await browser.fetch("/");
      assert.equal(visitsOnPage(again.body), 4);
      assert.doesNotMatch(again.body, /Welcome/, "a flash shows once");

      const fixated = new Browser(app!.base);
      fixated.jar.set("session", firstCookie);
      assert.deepEqual(await fixated.visits(), { visits: 0, user: null }, "the pre-login cookie is dead");
    });

    it("logs out: the cookie is cleared and the session is gone", async () => {
      const logout = await browser.postForm("/logout");
      assert.equal(logout.response.status, 303);
      const cleared = logout.cookies.find((c) => c.name === "session" && c.attributes.get("max-age") === "0");
      const replaced = logout.cookies.find((c) => c.name === "session" && c.value !== "");
      assert.ok(
        cleared || replaced,
        `the session cookie is cleared or replaced: ${logout.cookies.map((c) => c.raw).join(" | ")}`,
      );
      if (cleared) assert.match(cleared.attributes.get("expires") ?? "", /1970/);
      assert.notEqual(browser.jar.get("session"), loggedInCookie);

      const home = await browser.fetch("/");
      assert.doesNotMatch(home.body, /id="user"/, "logged out");
      assert.match(home.body, /Goodbye, ada\./);
      const { user } = await browser.visits();
      assert.equal(user, null);

      const replay = new Browser(app!.base);
      replay.jar.set("session", loggedInCookie);
      assert.deepEqual(
        await replay.visits(),
        { visits: 0, user: null },
        "a cookie replayed after logout opens nothing",
      );
    });
  });
}

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "websession-example-"));
  dirs.push(dir);
  return dir;
}
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

demoWalk(
  "Node (the fetch handler served by @hono/node-server, FileStore)",
  async () =>
    startProcess(process.execPath, () => ["--import", "tsx", "examples/node/main.ts"], {
      SESSION_DIR: await tempDir(),
    }),
  DEMO,
);

demoWalk(
  "Deno (Deno.serve, Deno KV)",
  () =>
    startProcess(
      bin("deno"),
      () => ["run", "--allow-net", "--allow-env", "--unstable-kv", "examples/deno/main.ts"],
      {
        KV_PATH: ":memory:",
      },
    ),
  DEMO,
);

demoWalk(
  "Bun (Bun.serve, FileStore)",
  async () => startProcess(bin("bun"), () => ["examples/bun/main.ts"], { SESSION_DIR: await tempDir() }),
  DEMO,
);

demoWalk("Cloudflare Worker in Miniflare (Workers KV, secret from env)", startWorker, {
  title: DEMO.title,
  versioned: true,
});

demoWalk(
  "Hono (sessionMiddleware from websession/hono, MemoryStore) under deno serve",
  () =>
    startProcess(
      bin("deno"),
      (
        port,
      ) => ["serve", "--allow-env", "--host", "127.0.0.1", "--port", String(port), "examples/hono/main.ts"],
    ),
  HONO,
);

demoWalk(
  "Hono (sessionMiddleware from websession/hono, MemoryStore) under Bun",
  () => startProcess(bin("bun"), () => ["examples/hono/main.ts"]),
  HONO,
);

describe("example: Node with SECURE_COOKIES=1", () => {
  it("marks the session cookie Secure", async () => {
    const app = await startProcess(process.execPath, () => ["--import", "tsx", "examples/node/main.ts"], {
      SESSION_DIR: await tempDir(),
      SECURE_COOKIES: "1",
    });
    try {
      const { cookies } = await new Browser(app.base).fetch("/");
      assert.equal(cookies.length, 1);
      assert.ok(cookies[0]!.attributes.has("secure"), cookies[0]!.raw);
      assert.ok(cookies[0]!.attributes.has("httponly"), cookies[0]!.raw);
    } finally {
      await app.stop();
    }
  });
});

describe("examples without SESSION_SECRET", () => {
  it("the Worker fails with a message naming SESSION_SECRET and how to set it", async () => {
    const { default: worker } = await import("../examples/workers/worker.ts");
    const { sessionSecret } = await import("../examples/secret.ts");
    const logged: unknown[] = [];
    const original = console.error;
    console.error = (...args: unknown[]) => void logged.push(...args);
    let response: Response;
    try {
      const env = { SESSIONS: {} } as unknown as Parameters<typeof worker.fetch>[1];
      const ctx = { waitUntil() {}, passThroughOnException() {} } as unknown as Parameters<
        typeof worker.fetch
      >[2];
      response = await worker.fetch(new Request("http://localhost:8787/"), env, ctx);
    } finally {
      console.error = original;
    }
    assert.equal(response.status, 500);
    const messages = logged.map((entry) =>
      entry instanceof Error ? `${entry.message} ${String(entry.cause)}` : String(entry)
    );
    assert.ok(
      messages.some((m) =>
        /Missing SESSION_SECRET: .*wrangler secret put SESSION_SECRET/.test(m) && /\.dev\.vars/.test(m)
      ),
      messages.join("\n"),
    );
    assert.throws(
      () => sessionSecret("short", "how"),
      /^TypeError: Invalid SESSION_SECRET: it has 5 characters, it needs 32 or more: how$/,
    );
  });
});

describe("npm start before npm install", () => {
  it("says to run npm install first instead of ERR_MODULE_NOT_FOUND", async () => {
    const { mkdtemp, mkdir, copyFile, writeFile, rm } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const { spawnSync } = await import("node:child_process");
    const fresh = await mkdtemp(join(tmpdir(), "websession-fresh-clone-"));
    try {
      // A fresh clone: the package.json and its scripts, no node_modules.
      await mkdir(join(fresh, "tests"));
      await copyFile(join(ROOT, "tests", "check_install.mjs"), join(fresh, "tests", "check_install.mjs"));
      await copyFile(join(ROOT, "package.json"), join(fresh, "package.json"));
      await mkdir(join(fresh, "examples", "node"), { recursive: true });
      await writeFile(join(fresh, "examples", "node", "main.ts"), "throw new Error('never run');\n");
      const result = spawnSync("npm", ["start", "--silent"], {
        cwd: fresh,
        encoding: "utf8",
        timeout: 60_000,
      });
      assert.notEqual(result.status, 0);
      assert.match(
        result.stderr,
        /Cannot start the example: the dev dependencies are not installed\. Run npm install first, then npm start/,
      );
      assert.doesNotMatch(result.stderr, /ERR_MODULE_NOT_FOUND/);
    } finally {
      await rm(fresh, { recursive: true, force: true });
    }
  });
});
