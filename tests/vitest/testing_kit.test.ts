// websession/testing under Vitest, as an application's own tests use it: the package's entry
// points, a handler built with withSession, signIn's Cookie header sent over real HTTP (the
// handler served by @hono/node-server) and to the handler itself, and a TestClock moved past the
// idle timeout. Run by `vitest run` in this folder (tests/vitest/vitest_test.ts).
import type { AddressInfo } from "node:net";
import { serve, type ServerType } from "@hono/node-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getSession, withSession } from "websession";
import { MemoryStore, signIn, TestClock } from "websession/testing";

type Data = { user?: string; visits?: number };

const clock = new TestClock(Date.UTC(2030, 0, 1));
const options = {
  store: new MemoryStore({ now: clock.now }),
  secrets: ["a secret of at least thirty-two characters"],
  idleTimeout: 600,
  now: clock.now,
};

/** The account page: who is signed in and how many visits, 401 when nobody is. */
const app = withSession(async (request: Request) => {
  const session = await getSession<Data>(request);
  const user = session.get("user");
  if (user === undefined) return new Response("Log in", { status: 401 });
  session.update("visits", (visits = 0) => visits + 1);
  return new Response(`${user}, visit ${session.get("visits")}`);
}, options);

describe("websession/testing under Vitest", () => {
  let server: ServerType;
  let base = "";

  beforeAll(async () => {
    server = await new Promise<ServerType>((resolve) => {
      const started = serve({ fetch: app, port: 0, hostname: "127.0.0.1" }, () => resolve(started));
    });
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise<void>((resolve, reject) =>
      server.close((error) => (error ? reject(error) : resolve()))
    );
  });

  it("signIn's Cookie header reaches the page behind the login over HTTP", async () => {
    const { cookie, setCookie } = await signIn<Data>(options, { user: "ada" });
    expect(setCookie).toHaveLength(1);
    expect(cookie).toMatch(/^session=[^;]+$/);
    const first = await fetch(`${base}/account`, { headers: { cookie } });
    expect(first.status).toBe(200);
    expect(await first.text()).toBe("ada, visit 1");
    expect(await (await fetch(`${base}/account`, { headers: { cookie } })).text()).toBe("ada, visit 2");
    const anonymous = await fetch(`${base}/account`);
    expect(anonymous.status).toBe(401);
    await anonymous.body?.cancel();
  });

  it("the handler itself, and a TestClock moved past idleTimeout", async () => {
    const { cookie } = await signIn<Data>(options, { user: "bob" });
    const visit = () => app(new Request("https://example.com/account", { headers: { cookie } }));
    expect(await (await visit()).text()).toBe("bob, visit 1");
    clock.advance(599); // within idleTimeout
    expect(await (await visit()).text()).toBe("bob, visit 2");
    clock.advance(3600); // an hour idle: far past it
    expect((await visit()).status).toBe(401);
  });
});
