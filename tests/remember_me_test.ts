// "Remember me" through real HTTP (tests/http/server.ts) on MemoryStore, the real Redis and the
// sealed CookieStore, with a clock the tests move: the log in's choice gives a persistent cookie
// and the `remember` timeouts, or a browser-session cookie and the plain ones, and every later
// write, refresh and regenerate() keeps it; the choice merges with concurrent writes (no 409,
// no re-run) and is none of the handler's data.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process"; // and node:http (tests/http/server.ts): not in workerd
import { endUserSessions, getSession, listUserSessions, MemoryStore, withSession } from "../mod.ts";
import { TestClock } from "../src/testing.ts";
import type { RunningServer } from "./http/server.ts";
import { Browser, DAY, Gates, maxAgeOf, SECRET, serve, signInApp, storeKinds } from "./sign_in_app.ts";
import { userSessions } from "../src/users/options.ts";

/** Plain defaults: idleTimeout 3600 s + touchAfter 1800 s. */
const PLAIN_MAX_AGE = 5400;
/** Remembered defaults: 30 days idle + 15 days touchAfter. */
const REMEMBERED_MAX_AGE = 45 * DAY;

const kinds = storeKinds("remember", process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
const servers: RunningServer[] = [];
after(async () => {
  for (const server of servers) await server.close();
  for (const kind of kinds) await kind.close();
});

async function start(kind: (typeof kinds)[number], extra = {}) {
  const clock = new TestClock();
  const gates = new Gates();
  const app = signInApp(clock, kind.make(clock), gates, extra);
  const server = await serve(app.handler);
  servers.push(server);
  return { clock, gates, stats: app.stats, browser: new Browser(server), server, options: app.options };
}

for (const kind of kinds) {
  describe(`remember me on ${kind.name}`, () => {
    it("a remembered session outlives the plain idle timeout; every cookie it gets later is persistent", async () => {
      const { clock, browser } = await start(kind);
      const login = await browser.send("/login?remember=1");
      assert.equal(login.status, 200);
      assert.equal(maxAgeOf(login.setCookies), REMEMBERED_MAX_AGE);

      clock.advance(60);
      const early = await browser.send("/write");
      assert.equal(early.status, 200);
      // Server stores send no cookie before touchAfter; a sealed cookie is re-sealed on each write.
      if (kind.name === "CookieStore") assert.equal(maxAgeOf(early.setCookies), REMEMBERED_MAX_AGE - 60);
      else assert.deepEqual(early.setCookies, []);

      clock.advance(2 * 3600); // past the plain idleTimeout + touchAfter (1.5 h)
      const me = await browser.me();
      assert.equal(me.user, "ada");
      assert.equal(me.remembered, true);

      clock.advance(16 * DAY); // touchAfter (15 days) has passed: the write extends and re-sends
      const write = await browser.send("/write");
      assert.equal(write.status, 200);
      assert.equal(maxAgeOf(write.setCookies), REMEMBERED_MAX_AGE);

      clock.advance(3600);
      const touch = await browser.send("/touch"); // asked: extended even before touchAfter
      assert.equal(touch.status, 200);
      assert.equal(maxAgeOf(touch.setCookies), REMEMBERED_MAX_AGE);

      const regenerated = await browser.send("/regenerate");
      assert.equal(regenerated.status, 200);
      assert.equal(maxAgeOf(regenerated.setCookies), REMEMBERED_MAX_AGE);

      clock.advance(29 * DAY); // idle for less than the remembered idleTimeout
      const later = await browser.me();
      assert.deepEqual([later.user, later.remembered, later.n], ["ada", true, 2]);

      clock.advance(45 * DAY + 1); // idle past idleTimeout + touchAfter: gone
      assert.equal((await browser.me()).user, null);
    });

    it("a remembered session ends at the remembered absolute timeout, and its Max-Age says so", async () => {
      const { clock, browser } = await start(kind);
      await browser.send("/login?remember=1");
      const maxAges = [];
      for (let i = 0; i < 3; i++) {
        clock.advance(20 * DAY);
        const write = await browser.send("/write");
        assert.equal(write.status, 200);
        maxAges.push(maxAgeOf(write.setCookies));
      }
      // 60 days after log in, 30 of the 90-day absolute timeout are left: less than idle + touchAfter.
      assert.deepEqual(maxAges, [REMEMBERED_MAX_AGE, REMEMBERED_MAX_AGE, 30 * DAY]);
      clock.advance(20 * DAY);
      assert.equal((await browser.me()).user, "ada");
      clock.advance(10 * DAY);
      assert.equal((await browser.me()).user, null);
    });

    it("a plain session gets a browser-session cookie throughout and ends at the plain timeout", async () => {
      const { clock, browser } = await start(kind);
      const login = await browser.send("/login?remember=0");
      assert.equal(login.status, 200);
      assert.equal(login.setCookies.length > 0, true);
      assert.equal(maxAgeOf(login.setCookies), undefined); // neither Max-Age nor Expires

      clock.advance(31 * 60);
      for (const path of ["/write", "/touch", "/regenerate"]) {
        const seen = await browser.send(path);
        assert.equal(seen.status, 200, path);
        assert.equal(maxAgeOf(seen.setCookies), undefined, path);
      }
      assert.equal((await browser.me()).remembered, false);

      clock.advance(59 * 60); // within the plain idleTimeout: still signed in (and extended)
      assert.equal((await browser.me()).user, "ada");
      clock.advance(PLAIN_MAX_AGE + 1);
      assert.equal((await browser.me()).user, null);
    });

    it("without a choice, cookie.persistent and the plain timeouts hold", async () => {
      const { browser } = await start(kind);
      const login = await browser.send("/login");
      assert.equal(maxAgeOf(login.setCookies), PLAIN_MAX_AGE);
      assert.equal((await browser.me()).remembered, null);
    });

    it("remember: true gives a persistent cookie even when cookie.persistent is false", async () => {
      const { browser } = await start(kind, {
        cookie: { secure: false, persistent: false },
        remember: { idleTimeout: 7 * DAY, touchAfter: DAY },
      });
      assert.equal(maxAgeOf((await browser.send("/login?remember=1")).setCookies), 8 * DAY);
    });

    it("the choice is none of the handler's data: keys(), size and toJSON() leave it out", async () => {
      const { browser } = await start(kind);
      await browser.send("/login?remember=1");
      const me = await browser.me();
      assert.deepEqual(me.keys, ["user"]);
      assert.equal(me.size, 1);
      assert.deepEqual(me.json, { user: "ada" });
      assert.equal(typeof me.authenticatedAt, "number");
    });

    it("a schema that strips unknown keys keeps the choice and the authentication time", async () => {
      const { clock, browser } = await start(kind, {
        schema: {
          "~standard": {
            version: 1,
            vendor: "test",
            validate: (value: unknown) => ({ value: { user: (value as { user?: string }).user } }),
          },
        },
      });
      await browser.send("/login?remember=1");
      const at = clock.now();
      clock.advance(2 * 3600);
      const me = await browser.me();
      assert.deepEqual([me.user, me.remembered, me.authenticatedAt], ["ada", true, at]);
    });

    it("a remembered session older than the plain absolute timeout is still listed and ended per user", {
      skip: kind.name === "CookieStore" ? "a sealed cookie store has no per-user index" : false,
    }, async () => {
      const { clock, browser, options } = await start(kind, { users: userSessions({ userKey: "user" }) });
      await browser.send("/login?remember=1");
      for (let day = 0; day < 8; day++) {
        clock.advance(DAY);
        await browser.send("/write");
      }
      assert.equal((await browser.me()).user, "ada"); // 8 days: past the plain 7-day absolute timeout
      assert.equal((await listUserSessions(options, "ada")).length, 1);
      assert.equal(await endUserSessions(options, { user: "ada" }), 1);
      assert.equal((await browser.me()).user, null);
    });

    it("a log in that regenerates merges with a concurrent write: no 409, no re-run", {
      skip: kind.compareAndSet ? false : "a sealed cookie has no server copy to merge on",
    }, async () => {
      const { browser, gates, stats } = await start(kind);
      await browser.send("/write"); // an anonymous session with n = 1
      const held = gates.prepare("login");
      const login = browser.send("/login?remember=1&hold=login");
      await held.reached; // the log in has read the session
      const other = new Browser(browser.server);
      other.jar = new Map(browser.jar);
      assert.equal((await other.send("/write")).status, 200); // the same session: n = 2, saved first
      held.release();
      const done = await login;
      assert.equal(done.status, 200);
      assert.equal(stats.runs.get("/login"), 1);
      assert.equal(maxAgeOf(done.setCookies), REMEMBERED_MAX_AGE);
      const me = await browser.me();
      assert.deepEqual([me.user, me.n, me.remembered], ["ada", 2, true]);
    });

    it("a re-authentication merges with a concurrent request that read every key", {
      skip: kind.compareAndSet ? false : "a sealed cookie has no server copy to merge on",
    }, async () => {
      const { clock, browser, gates, stats } = await start(kind);
      await browser.send("/login?remember=1");
      const held = gates.prepare("write");
      const write = browser.send("/write?all=1&hold=write"); // keys(): looks at every key
      await held.reached;
      clock.advance(10);
      const other = new Browser(browser.server);
      other.jar = new Map(browser.jar);
      assert.equal((await other.send("/reauth")).status, 200);
      held.release();
      const done = await write;
      assert.equal(done.status, 200, done.body);
      assert.equal(stats.runs.get("/write"), 1);
      const me = await browser.me();
      assert.equal(me.n, 1);
      assert.equal(me.authenticatedAt, clock.now());
    });
  });
}

describe("remember me: misuse", () => {
  it("the sign-in keys are reserved, and the choice must be a boolean", async () => {
    const handler = withSession(async (req: Request) => {
      const session = await getSession<Record<string, unknown>>(req);
      const errors: string[] = [];
      for (
        const attempt of [
          () => session.set("__remember", true),
          () => session.set("__authAt", 1),
          () => session.delete("__authAt"),
          () => session.regenerate({ remember: "yes" as unknown as boolean }),
        ]
      ) {
        try {
          attempt();
        } catch (error) {
          errors.push((error as Error).constructor.name);
        }
      }
      return Response.json(errors);
    }, { store: new MemoryStore(), secrets: SECRET });
    const response = await handler(new Request("https://example.com/"));
    assert.deepEqual(await response.json(), ["TypeError", "TypeError", "TypeError", "TypeError"]);
  });

  it("clear() forgets the choice and the authentication time", async () => {
    const handler = withSession(async (req: Request) => {
      const session = await getSession<{ user?: string }>(req);
      if (req.method === "POST") {
        session.regenerate({ remember: true });
        session.set("user", "ada");
        session.markAuthenticated();
      } else if (req.method === "DELETE") {
        session.clear();
        session.set("user", "guest");
      }
      return Response.json([session.remembered ?? null, session.authenticatedAt ?? null]);
    }, { store: new MemoryStore(), secrets: SECRET, now: () => 1_000 });
    const login = await handler(new Request("https://example.com/", { method: "POST" }));
    assert.deepEqual(await login.json(), [true, 1_000]);
    const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
    const cleared = await handler(
      new Request("https://example.com/", { method: "DELETE", headers: { cookie } }),
    );
    assert.deepEqual(await cleared.json(), [null, null]);
    const later = await handler(new Request("https://example.com/", { headers: { cookie } }));
    assert.deepEqual(await later.json(), [null, null]);
  });

  it("bad remember options throw at construction", () => {
    const store = new MemoryStore();
    const make = (remember: unknown) => () =>
      withSession(() => Promise.resolve(new Response()), { store, secrets: SECRET, remember } as never);
    assert.throws(make({ idleTimeout: 0 }), /Invalid remember\.idleTimeout/);
    assert.throws(make({ idleTimeout: 3600, touchAfter: 7200 }), /Invalid remember\.touchAfter/);
    assert.throws(make({ absoluteTimeout: -1 }), /Invalid remember\.absoluteTimeout/);
    assert.throws(make(30), /Invalid remember/);
  });
});
