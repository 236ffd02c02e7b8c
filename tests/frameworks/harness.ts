// What the framework tests share: building an example app once (cached by a hash of its inputs),
// starting its server on a loopback port, a cookie-jar client that talks to it like a browser
// (Origin sent, redirects not followed), and the walk of behaviours every recipe must show.
//
// Each example under examples/<framework>/ is copied to .tmp/fw-<framework>/ (the same depth
// below the root, so its relative imports of the library still resolve, and its packages come
// from the root node_modules) together with test-only routes the test file writes, and built
// there. The copy is kept: when nothing it was built from changed, the next run starts the
// server without building again.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { answersHttp, freePort, run, start } from "../spawn.ts";

/** The repository root. */
export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** The session secret every example reads from `SESSION_SECRET`. */
export const SECRET = "framework recipes test secret, 32+ characters";
const START_TIMEOUT_MS = 120_000;

/** A path under the root's node_modules/.bin. */
export function bin(name: string): string {
  return join(ROOT, "node_modules", ".bin", name);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs a command to completion; rejects with its output when it fails. */
export async function runCommand(
  command: string,
  args: string[],
  { cwd, env = {} }: { cwd: string; env?: Record<string, string> },
): Promise<string> {
  const { code, signal, output } = await run(command, args, { cwd, env: { NO_COLOR: "1", ...env } });
  if (code !== 0) {
    throw new Error(`${command} ${args.join(" ")} failed (code ${code}, signal ${signal}):\n${output}`);
  }
  return output;
}

function filesUnder(dir: string, skip: ReadonlySet<string>): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    if (skip.has(name)) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...filesUnder(path, skip));
    else out.push(path);
  }
  return out;
}

/** Folders a framework writes into its project: never part of what a build is made from. */
const GENERATED = new Set([
  "node_modules",
  ".next",
  ".svelte-kit",
  "build",
  "dist",
  ".astro",
  "next-env.d.ts",
  ".stamp",
]);

/** A hash of everything a build of `framework` depends on. */
function inputsHash(framework: string, files: Record<string, string>): string {
  const hash = createHash("sha256");
  const inputs = [
    ...filesUnder(join(ROOT, "examples", framework), GENERATED),
    ...filesUnder(join(ROOT, "src"), GENERATED),
    join(ROOT, "mod.ts"),
    join(ROOT, "package-lock.json"),
  ];
  for (const file of inputs) {
    hash.update(relative(ROOT, file)).update("\0").update(readFileSync(file)).update("\0");
  }
  for (const [path, text] of Object.entries(files).sort()) {
    hash.update(path).update("\0").update(text).update("\0");
  }
  return hash.digest("hex");
}

/** A prepared example: the folder it was built in, and whether this run built it. */
export interface Prepared {
  dir: string;
  built: boolean;
}

/**
 * Copies examples/<framework> to .tmp/fw-<framework>, adds `files` (test-only routes, by path
 * in the copy) and runs `build` there, unless the copy was already built from the same inputs.
 */
export async function prepare(
  framework: string,
  { files = {}, build }: { files?: Record<string, string>; build?: (dir: string) => Promise<unknown> },
): Promise<Prepared> {
  const dir = join(ROOT, ".tmp", `fw-${framework}`);
  const stamp = join(dir, ".stamp");
  const hash = inputsHash(framework, files);
  if (existsSync(stamp) && readFileSync(stamp, "utf8") === hash) return { dir, built: false };
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  cpSync(join(ROOT, "examples", framework), dir, {
    recursive: true,
    filter: (source) => !GENERATED.has(source.split("/").pop()!),
  });
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  await build?.(dir);
  writeFileSync(stamp, hash);
  return { dir, built: true };
}

/**
 * Test-only module source: gates for the conflict tests' held requests, by name, kept on
 * globalThis so that every bundle of an app (a framework may bundle each route on its own) shares
 * them.
 */
export const GATE_SOURCE = `
export function gate(name = "rw") {
  const gates = (globalThis.__websessionGates ??= new Map());
  if (!gates.has(name)) {
    let release = () => {};
    const released = new Promise((resolve) => (release = resolve));
    gates.set(name, { held: false, released, release });
  }
  return gates.get(name);
}
`;

/** A running server: where it answers, what it printed, and how to stop it. */
export interface Running {
  base: string;
  output(): string;
  stop(): Promise<void>;
}

/**
 * Starts a server in its own process group with `PORT`, `HOST`, `ORIGIN` and `SESSION_SECRET` set, and
 * waits until `probe` answers (any status).
 */
export async function startServer(
  command: string,
  args: string[],
  { cwd, env = {}, probe = "/api/visits" }: { cwd: string; env?: Record<string, string>; probe?: string },
): Promise<Running> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = await start(command, args, {
    cwd,
    env: {
      NO_COLOR: "1",
      PORT: String(port),
      HOST: "127.0.0.1",
      HOSTNAME: "127.0.0.1",
      // The origin a server behind no proxy is reached at (SvelteKit's adapter-node needs it).
      ORIGIN: base,
      SESSION_SECRET: SECRET,
      ...env,
    },
    group: true,
    ready: () => answersHttp(base + probe),
    timeoutMs: START_TIMEOUT_MS,
  });
  return { base, output: () => child.output(), stop: () => child.stop() };
}

/** One response, body read. */
export interface Reply {
  status: number;
  headers: Headers;
  body: string;
  setCookies: string[];
}

/** A browser tab over HTTP: a cookie jar, `Origin` on every request, redirects not followed. */
export class Browser {
  jar = new Map<string, string>();
  readonly base: string;

  constructor(base: string) {
    this.base = base;
  }

  /** Sends a request with the jar's cookies and keeps the cookies the response sets. */
  async request(
    path: string,
    init: { method?: string; body?: BodyInit; headers?: HeadersInit } = {},
  ): Promise<Reply> {
    const headers = new Headers(init.headers);
    headers.set("origin", this.base);
    if (this.jar.size > 0) headers.set("cookie", [...this.jar].map(([k, v]) => `${k}=${v}`).join("; "));
    const response = await fetch(new URL(path, this.base), {
      method: init.method ?? "GET",
      headers,
      body: init.body,
      redirect: "manual",
    });
    const reply: Reply = {
      status: response.status,
      headers: response.headers,
      body: await response.text(),
      setCookies: response.headers.getSetCookie(),
    };
    for (const header of reply.setCookies) {
      const pair = header.split(";", 1)[0]!;
      const name = pair.slice(0, pair.indexOf("="));
      const value = pair.slice(name.length + 1);
      if (/;\s*Max-Age=0\s*(;|$)/i.test(header) || value === "") this.jar.delete(name);
      else this.jar.set(name, value);
    }
    return reply;
  }

  /** Another tab of the same browser: the same cookies now, its own jar from now on. */
  clone(): Browser {
    const copy = new Browser(this.base);
    copy.jar = new Map(this.jar);
    return copy;
  }
}

/** What the app shows: the counter, the user and the flash message. */
export interface Shown {
  visits: number;
  user: string | null;
  notice: string | null;
}

/**
 * How a test drives one app. Each step sends what a browser would send and returns the reply
 * that carries the session's cookies (for a form, the redirect).
 */
export interface Driver {
  /** Counts a visit and shows the counter, the user and the flash (consumed). */
  visit(browser: Browser): Promise<{ reply: Reply; shown: Shown }>;
  /** Shows the counter and the user without changing anything. */
  peek(browser: Browser): Promise<{ reply: Reply; shown: Omit<Shown, "notice"> }>;
  /** Logs in as `user`: a new id, a flash for the next page. */
  login(browser: Browser, user: string): Promise<Reply>;
  /** Logs out: the session ends, a flash for the next page. */
  logout(browser: Browser): Promise<Reply>;
}

/** A JSON body, with the reply in the message when it is not JSON. */
export function json<T>(reply: Reply): T {
  try {
    return JSON.parse(reply.body) as T;
  } catch {
    throw new Error(`Expected JSON, got ${reply.status}: ${reply.body.slice(0, 500)}`);
  }
}

const SESSION_COOKIE = /^session=[\w-]{32}\.[\w-]{43}; /;

/**
 * The behaviours every recipe must show over real HTTP: a counter that survives requests, a
 * read-only request with no Set-Cookie, log in with a new id and a flash shown once, log out,
 * and 20 concurrent increments with none lost.
 */
export function walk(name: string, start: () => Promise<{ driver: Driver; stop(): Promise<void> }>): void {
  describe(name, () => {
    let driver: Driver;
    let stop: (() => Promise<void>) | undefined;
    before(async () => {
      const started = await start();
      driver = started.driver;
      stop = started.stop;
    });
    after(async () => await stop?.());

    it("keeps a counter across requests; a read-only request sends no Set-Cookie", async () => {
      const tab = newBrowser();
      const first = await driver.visit(tab);
      assert.deepEqual(first.shown, { visits: 1, user: null, notice: null });
      assert.equal(first.reply.setCookies.length, 1, "one session cookie");
      assert.match(first.reply.setCookies[0]!, SESSION_COOKIE);
      assert.match(first.reply.setCookies[0]!, /; HttpOnly/i);
      assert.match(first.reply.setCookies[0]!, /; SameSite=Lax/i); // Next writes "lax"
      assert.match(first.reply.headers.get("cache-control") ?? "", /private|no-store/);
      const second = await driver.visit(tab);
      assert.equal(second.shown.visits, 2);
      assert.deepEqual(second.reply.setCookies, [], "a changed session whose cookie stands sends none");

      const read = await driver.peek(tab);
      assert.deepEqual(read.shown, { visits: 2, user: null });
      assert.deepEqual(read.reply.setCookies, [], "a read-only request sends no Set-Cookie");

      const stranger = newBrowser();
      const nothing = await driver.peek(stranger);
      assert.deepEqual(nothing.shown, { visits: 0, user: null });
      assert.deepEqual(nothing.reply.setCookies, [], "no session is created for a reader");
    });

    it("logs in with a new id (the old cookie opens nothing), shows the flash once, logs out", async () => {
      const tab = newBrowser();
      await driver.visit(tab);
      const anonymous = tab.jar.get("session")!;
      assert.ok(anonymous);
      const login = await driver.login(tab, "ada");
      assert.equal(login.status, 303, login.body.slice(0, 500));
      const loggedIn = tab.jar.get("session")!;
      assert.notEqual(loggedIn.split(".")[0], anonymous.split(".")[0], "regenerated");

      assert.deepEqual((await driver.visit(tab)).shown, { visits: 2, user: "ada", notice: "Welcome, ada!" });
      assert.deepEqual((await driver.visit(tab)).shown, { visits: 3, user: "ada", notice: null });

      const fixated = newBrowser();
      fixated.jar.set("session", anonymous);
      assert.deepEqual((await driver.peek(fixated)).shown, { visits: 0, user: null }, "the old id is dead");

      const logout = await driver.logout(tab);
      assert.equal(logout.status, 303, logout.body.slice(0, 500));
      assert.ok(
        logout.setCookies.some((c) => SESSION_COOKIE.test(c)),
        `a new session for the flash: ${logout.setCookies}`,
      );
      assert.notEqual(tab.jar.get("session")?.split(".")[0], loggedIn.split(".")[0]);
      assert.deepEqual((await driver.visit(tab)).shown, { visits: 1, user: null, notice: "Goodbye, ada." });
      assert.deepEqual((await driver.visit(tab)).shown, { visits: 2, user: null, notice: null });

      const replayed = newBrowser();
      replayed.jar.set("session", loggedIn);
      assert.deepEqual((await driver.peek(replayed)).shown, { visits: 0, user: null }, "logged out for good");
    });

    it("loses none of 20 concurrent increments", async () => {
      const tab = newBrowser();
      await driver.visit(tab);
      // Each visit checks its own status (a refused request throws).
      const replies = await Promise.all(Array.from({ length: 20 }, () => driver.visit(tab.clone())));
      const counts = replies.map((r) => r.shown.visits).sort((a, b) => a - b);
      assert.ok(counts.every((n) => n >= 2 && n <= 21), `counts: ${counts}`);
      assert.deepEqual((await driver.peek(tab)).shown, { visits: 21, user: null });
    });

    function newBrowser(): Browser {
      return new Browser(driverBase(driver));
    }
  });
}

const bases = new WeakMap<Driver, string>();

/** Ties a driver to the origin its browsers talk to. */
export function bindBase<D extends Driver>(driver: D, base: string): D {
  bases.set(driver, base);
  return driver;
}

function driverBase(driver: Driver): string {
  const base = bases.get(driver);
  if (base === undefined) throw new TypeError("Driver has no base: use bindBase");
  return base;
}

/** Where a JSON app answers: visit and peek answer JSON, login and logout take form posts. */
export interface JsonPaths {
  visit: string;
  peek: string;
  login: string;
  logout: string;
}

/** A driver for an app with JSON endpoints (visit, peek) and form posts (login, logout). */
export function jsonDriver(
  base: string,
  paths: JsonPaths = { visit: "/", peek: "/api/visits", login: "/login", logout: "/logout" },
): Driver {
  return bindBase({
    async visit(browser) {
      const reply = await browser.request(paths.visit);
      assert.equal(reply.status, 200, reply.body.slice(0, 500));
      return { reply, shown: json<Shown>(reply) };
    },
    async peek(browser) {
      const reply = await browser.request(paths.peek);
      assert.equal(reply.status, 200, reply.body.slice(0, 500));
      return { reply, shown: json<Omit<Shown, "notice">>(reply) };
    },
    login(browser, user) {
      return browser.request(paths.login, { method: "POST", body: new URLSearchParams({ user }) });
    },
    logout(browser) {
      return browser.request(paths.logout, { method: "POST", body: new URLSearchParams() });
    },
  }, base);
}

/**
 * A conflict that only running the handler again can resolve: a request reads `n` and holds
 * (`GET /rw?hold`) while another request writes `n`; then it is released and writes `n + 1`.
 * Under `withSession` the held request runs again on the fresh session: both increments land.
 */
export async function rerunAfterConflict(base: string): Promise<{ held: Reply; n: number }> {
  const tab = new Browser(base);
  const start = await tab.request("/rw");
  assert.equal(start.status, 200, start.body.slice(0, 500));
  assert.equal(start.body, "1");
  const held = tab.clone().request("/rw?hold");
  // The held request has read n once it says so.
  for (let i = 0; (await tab.clone().request("/rw-held")).body !== "yes"; i++) {
    assert.ok(i < 600, "the held request never read the session");
    await sleep(50);
  }
  const other = await tab.request("/rw");
  assert.equal(other.body, "2");
  const released = await tab.request("/rw-release", { method: "POST" });
  assert.equal(released.status, 200, released.body.slice(0, 500));
  const reply = await held;
  const n = Number((await tab.request("/rw")).body) - 1;
  return { held: reply, n };
}
