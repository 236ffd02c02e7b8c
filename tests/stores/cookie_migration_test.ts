// Moving from CookieStore to a server store: the shared session suite through the moving
// backend (`MigratingStore({ from: cookieStore, to })` into Redis), and the move through
// openSession, under a cookie name of its own, beside a signed id, to a store that is down, with
// bad options. The move over HTTP into MemoryStore, Redis and PostgreSQL (data kept, concurrent
// requests, replayed, ended, expired and tampered seals) is in tests/stores/migrating/moving_test.ts.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Redis as IoRedis } from "ioredis";
import { commitSession, getSession, openSession, withSession } from "../../mod.ts";
import type { SessionStore } from "../../src/store.ts";
import { MemoryStore } from "../../src/stores/memory.ts";
import { CookieStore } from "../../src/stores/cookie.ts";
import { RedisStore } from "../../src/stores/redis.ts";
import { MigratingStore, type MigratingStoreOptions } from "../../src/stores/migrating.ts";
import { sessionSuite } from "../conformance/session_suite.ts";
import { quiet } from "./composed.ts";
import {
  BLOB,
  COOKIE_SECRET,
  type Data,
  listApp as app,
  prefix,
  redis,
  RUN,
  SECRET,
} from "./migrating/stores.ts";

// The shared session suite through the moving backend: sessions created after the switch (no
// sealed cookie) behave as on `to` itself, through withSession and the request-free API.
const movingToRedis = () =>
  new MigratingStore({
    from: new CookieStore({ secrets: COOKIE_SECRET }),
    to: new RedisStore({ client: redis(), prefix: prefix() }),
  });
sessionSuite("MigratingStore (CookieStore to Redis)", { open: movingToRedis });
sessionSuite("MigratingStore (CookieStore to Redis), request-free", {
  open: movingToRedis,
  api: "request-free",
});

describe("CookieStore to a server store: openSession, cookie names, options", () => {
  const options = (store: SessionStore | CookieStore) => ({ store, secrets: SECRET, logger: quiet });

  it("openSession and commitSession move a seal too", async () => {
    const cookies = new CookieStore({ secrets: COOKIE_SECRET, chunkSize: 200 });
    const first = await openSession<Data>(null, options(cookies));
    first.set("user", "ivy");
    first.set("blob", BLOB);
    const header = (await commitSession(first)).map((c) => c.split(";")[0]).join("; ");
    assert.match(header, /session\.1=/);

    const to = new MemoryStore();
    const moving = options(new MigratingStore({ from: cookies, to }));
    const moved = await openSession<Data>(header, moving);
    assert.equal(moved.get("user"), "ivy");
    const sent = await commitSession(moved);
    assert.match(
      sent.find((c) => c.startsWith("session="))!,
      /^session=[A-Za-z0-9_-]{32}\.[A-Za-z0-9_-]{43};/,
    );
    assert.ok(sent.some((c) => c.startsWith("session.0=;")));
    assert.equal(await to.count(), 1);
  });

  it("reads a seal under a cookie name of its own (fromCookie)", async () => {
    const cookies = new CookieStore({ secrets: COOKIE_SECRET });
    const before = withSession(async (req: Request) => {
      (await getSession<Data>(req)).set("user", "jo");
      return new Response("ok");
    }, { ...options(cookies), cookie: { name: "sealed" } });
    const sealedCookie = (await before(new Request("https://example.com/"))).headers.getSetCookie()[0]!
      .split(";")[0]!;
    assert.match(sealedCookie, /^sealed=/);

    const to = new MemoryStore();
    const after = withSession(async (req: Request) => {
      return new Response((await getSession<Data>(req)).get("user") ?? "none");
    }, options(new MigratingStore({ from: cookies, to, fromCookie: "sealed" })));
    const response = await after(new Request("https://example.com/", { headers: { cookie: sealedCookie } }));
    assert.equal(await response.text(), "jo");
    const sent = response.headers.getSetCookie();
    assert.ok(sent.some((c) => /^session=[A-Za-z0-9_-]{32}\./.test(c)));
    assert.ok(sent.some((c) => c.startsWith("sealed=;")), "the sealed cookie is cleared");
  });

  it("a signed id wins over a sealed cookie left beside it, which is cleared", async () => {
    const cookies = new CookieStore({ secrets: COOKIE_SECRET, chunkSize: 200 });
    const sealedApp = app(cookies);
    const login = await sealedApp(new Request("https://example.com/login?user=kim"));
    const seal = login.headers.getSetCookie().map((c) => c.split(";")[0]).join("; ");
    const movingApp = app(new MigratingStore({ from: cookies, to: new MemoryStore() }));
    const moved = await movingApp(
      new Request("https://example.com/append?x=1", { headers: { cookie: seal } }),
    );
    const signed = moved.headers.getSetCookie().find((c) => c.startsWith("session="))!.split(";")[0]!;
    // A stale chunk the browser kept (a lost clearing response), beside the signed id.
    const both = `${signed}; ${seal.split("; ").filter((c) => !c.startsWith("session=")).join("; ")}`;
    const again = await movingApp(
      new Request("https://example.com/append?x=2", { headers: { cookie: both } }),
    );
    assert.deepEqual((await again.json()).list, ["1", "2"]);
  });

  it("a server store that is down answers 503 and keeps the seal: no fresh id", async () => {
    const cookies = new CookieStore({ secrets: COOKIE_SECRET });
    const login = await app(cookies)(new Request("https://example.com/login?user=lee"));
    const seal = login.headers.getSetCookie().map((c) => c.split(";")[0]).join("; ");
    // A real client of a port nothing listens on: every command fails at once.
    const down = new IoRedis("redis://127.0.0.1:1", {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
    });
    down.on("error", () => {});
    const to = new RedisStore({ client: down, prefix: `cookie-migration:${RUN}:down:` });
    const response = await app(new MigratingStore({ from: cookies, to }))(
      new Request("https://example.com/append?x=1", { headers: { cookie: seal } }),
    );
    assert.equal(response.status, 503);
    assert.deepEqual(response.headers.getSetCookie(), [], "the browser keeps its sealed cookie");
    down.disconnect();
  });

  it("refuses a fromCookie without a CookieStore, or one that is no cookie name", () => {
    const sealer = new CookieStore({ secrets: COOKIE_SECRET });
    const refused: Array<[MigratingStoreOptions, RegExp]> = [
      [
        { from: new MemoryStore(), to: new MemoryStore(), fromCookie: "x" },
        /Invalid fromCookie: only a CookieStore/,
      ],
      [
        { from: sealer, to: new MemoryStore(), fromCookie: "a b" },
        /Invalid fromCookie: "a b" is not a cookie name/,
      ],
      [{ from: new MemoryStore(), to: sealer as never }, /Invalid to: expected a server SessionStore/],
    ];
    for (const [options, message] of refused) assert.throws(() => new MigratingStore(options), message);
  });
});
