// Step-up ("sudo mode") through real HTTP (tests/http/server.ts) on MemoryStore, the real Redis
// and the sealed CookieStore, with a clock the tests move: requireRecentAuth passes within the
// window, answers 401 with RFC 9470's challenge after it, passes again after a re-authentication;
// regenerate() keeps the authentication time (and the remember choice); a session that never
// authenticated, or was logged out, is refused.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process"; // and node:http (tests/http/server.ts): not in workerd
import {
  getSession,
  MemoryStore,
  RecentAuthRequiredError,
  requireRecentAuth,
  SessionError,
  withSession,
} from "../mod.ts";
import { TestClock } from "../src/testing.ts";
import type { RunningServer } from "./http/server.ts";
import {
  Browser,
  DAY,
  Gates,
  maxAgeOf,
  SECRET,
  type Seen,
  serve,
  signInApp,
  storeKinds,
} from "./sign_in_app.ts";

const kinds = storeKinds("stepup", process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
const servers: RunningServer[] = [];
after(async () => {
  for (const server of servers) await server.close();
  for (const kind of kinds) await kind.close();
});

async function start(kind: (typeof kinds)[number], extra = {}) {
  const clock = new TestClock();
  const app = signInApp(clock, kind.make(clock), new Gates(), extra);
  const server = await serve(app.handler);
  servers.push(server);
  return { clock, stats: app.stats, browser: new Browser(server) };
}

/** A 401 that tells the client to authenticate again, within `maxAge` seconds. */
function assertStepUp(seen: Seen, maxAge: number): void {
  assert.equal(seen.status, 401, seen.body);
  const challenge = seen.headers.get("www-authenticate") ?? "";
  assert.match(challenge, /^Cookie /);
  assert.match(challenge, /error="insufficient_user_authentication"/);
  assert.match(challenge, new RegExp(`max_age="${maxAge}"`));
  assert.deepEqual(seen.setCookies, []); // the session is left as it was
}

for (const kind of kinds) {
  describe(`step-up on ${kind.name}`, () => {
    it("passes within the window, answers 401 after it, passes again after re-authentication", async () => {
      const { clock, browser } = await start(kind);
      assert.equal((await browser.send("/login")).status, 200);
      clock.advance(299);
      assert.equal((await browser.send("/sensitive?maxAge=300")).status, 200);
      clock.advance(2); // 301 s after the log in
      assertStepUp(await browser.send("/sensitive?maxAge=300"), 300);
      assert.equal((await browser.me()).user, "ada"); // still signed in: only the action is refused
      assertStepUp(await browser.send("/sensitive?maxAge=60"), 60);

      assert.equal((await browser.send("/reauth")).status, 200);
      assert.equal((await browser.send("/sensitive?maxAge=300")).status, 200);
      clock.advance(300); // exactly max_age: still allowed (RFC 9470: the allowable elapsed time)
      assert.equal((await browser.send("/sensitive?maxAge=300")).status, 200);
      clock.advance(0.001);
      assertStepUp(await browser.send("/sensitive?maxAge=300"), 300);
    });

    it("regenerate() keeps the authentication time and the remember choice", async () => {
      const { clock, browser } = await start(kind);
      await browser.send("/login?remember=1");
      const authenticatedAt = (await browser.me()).authenticatedAt;
      assert.equal(authenticatedAt, clock.now());
      clock.advance(100);
      const regenerated = await browser.send("/regenerate");
      assert.equal(maxAgeOf(regenerated.setCookies), 45 * DAY);
      const me = await browser.me();
      assert.deepEqual([me.user, me.remembered, me.authenticatedAt], ["ada", true, authenticatedAt]);
      assert.equal((await browser.send("/sensitive?maxAge=300")).status, 200);
      clock.advance(201);
      assertStepUp(await browser.send("/sensitive?maxAge=300"), 300);
      clock.advance(2 * 3600); // the remembered session outlives the plain idle timeout
      assert.equal((await browser.send("/reauth")).status, 200);
      assert.equal((await browser.send("/sensitive?maxAge=300")).status, 200);
    });

    it("a session that never authenticated, or was logged out, is refused", async () => {
      const { browser } = await start(kind);
      assertStepUp(await browser.send("/sensitive?maxAge=300"), 300); // no session at all
      await browser.send("/write"); // an anonymous session
      assertStepUp(await browser.send("/sensitive?maxAge=3600"), 3600);
      await browser.send("/login");
      assert.equal((await browser.send("/sensitive?maxAge=300")).status, 200);
      await browser.send("/logout");
      await browser.send("/write"); // a new anonymous session after the log out
      assertStepUp(await browser.send("/sensitive?maxAge=300"), 300);
    });

    it("an onError of the application's own sees the error and its fields", async () => {
      const seen: unknown[] = [];
      const { clock, browser } = await start(kind, {
        onError: (error: unknown) => {
          seen.push(error);
          if (error instanceof RecentAuthRequiredError) {
            return Response.json({ reauthenticate: true, maxAge: error.maxAge }, { status: 401 });
          }
        },
      });
      await browser.send("/login");
      const at = clock.now();
      clock.advance(61);
      const refused = await browser.send("/sensitive?maxAge=60");
      assert.equal(refused.status, 401);
      assert.deepEqual(JSON.parse(refused.body), { reauthenticate: true, maxAge: 60 });
      assert.equal(seen.length, 1);
      const error = seen[0] as RecentAuthRequiredError;
      assert.ok(error instanceof SessionError);
      assert.equal(error.code, "ERR_SESSION_RECENT_AUTH_REQUIRED");
      assert.equal(error.authenticatedAt, at);
    });
  });
}

describe("step-up: misuse", () => {
  it("maxAge must be a number of seconds from 0", async () => {
    const handler = withSession(async (req: Request) => {
      const session = await getSession(req);
      session.markAuthenticated();
      const errors: string[] = [];
      for (const maxAge of [-1, Number.NaN, Infinity, "300", undefined]) {
        try {
          requireRecentAuth(session, { maxAge: maxAge as number });
        } catch (error) {
          errors.push((error as Error).constructor.name);
        }
      }
      requireRecentAuth(session, { maxAge: 0 }); // authenticated this very millisecond
      return Response.json(errors);
    }, { store: new MemoryStore(), secrets: SECRET, now: () => 1_000 });
    const response = await handler(new Request("https://example.com/"));
    assert.deepEqual(await response.json(), Array(5).fill("RangeError"));
  });
});
