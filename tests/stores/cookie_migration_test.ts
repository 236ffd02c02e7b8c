// Moving from CookieStore to a server store without signing anyone out: `MigratingStore({ from:
// cookieStore, to })` in withSession, over real HTTP (node:http, a cookie jar over fetch), into
// MemoryStore, Redis and PostgreSQL. A browser signed in with a sealed cookie keeps its data and
// gets a signed id instead; concurrent requests with one seal converge on one server record with
// every write kept; a seal replayed after a later write or a log out brings nothing back; a seal
// ended (destroy, endUser), expired or tampered with is not moved.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Redis as IoRedis } from "ioredis";
import pg from "pg";
import { commitSession, endUserSessions, getSession, openSession, withSession } from "../../mod.ts";
import type { InvalidCookieReason, SessionOptions } from "../../src/options.ts";
import { isEnded, type SessionStore } from "../../src/store.ts";
import { storageKeyOf } from "../../src/id.ts";
import { MemoryStore } from "../../src/stores/memory.ts";
import { CookieStore, type CookieStoreOptions } from "../../src/stores/cookie.ts";
import { RedisStore } from "../../src/stores/redis.ts";
import { PostgresStore } from "../../src/stores/postgres.ts";
import { MigratingStore, type MigratingStoreOptions } from "../../src/stores/migrating.ts";
import { movedSessionId } from "../../src/backends/moving.ts";
import { type RunningServer, serveFetch } from "../http/server.ts";
import { JarClient } from "../http/client.ts";
import { sessionSuite } from "../conformance/session_suite.ts";
import { userSessions } from "../../src/users/options.ts";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const RUN = crypto.randomUUID().slice(0, 8);
const SECRET = "the application's secret, 32 characters or more";
const COOKIE_SECRET = "the cookie store's secret, 32 characters or more";
const quiet = { warn() {}, error() {} };
/** Signed ids (`id.signature`): what the server store's cookie holds. */
const SIGNED = /^[A-Za-z0-9_-]{32}\.[A-Za-z0-9_-]{43}$/;
/** Enough data that the seal takes several chunk cookies (`session.0`, `session.1`, ...). */
const BLOB = "0123456789abcdef".repeat(40);

type Data = { user?: string; list?: string[]; blob?: string };

/** The app: sign in, append to a list, read, log out. The same handler before and after the switch. */
function app(store: SessionStore | CookieStore, extra: Partial<SessionOptions<Data>> = {}) {
  return withSession(async (req: Request) => {
    const session = await getSession<Data>(req);
    const url = new URL(req.url);
    switch (url.pathname) {
      case "/login":
        session.regenerate();
        session.set("user", url.searchParams.get("user")!);
        session.set("blob", BLOB);
        break;
      case "/append":
        session.update("list", (list = []) => [...list, url.searchParams.get("x")!]);
        break;
      case "/logout":
        session.destroy();
        return new Response("bye");
    }
    return Response.json({ user: session.get("user") ?? null, list: session.get("list") ?? [] });
  }, { store, secrets: SECRET, logger: quiet, cookie: { secure: false }, ...extra });
}

interface Target {
  label: string;
  /** A fresh server store, and what removes its data afterwards. */
  open(): Promise<{ store: SessionStore; close(): Promise<void> }>;
}

const redis = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 4 });
after(async () => {
  const keys = await redis.keys(`cookie-migration:${RUN}:suite:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
  await admin.end();
});

let n = 0;
const targets: Target[] = [
  {
    label: "MemoryStore",
    open: () => Promise.resolve({ store: new MemoryStore(), close: () => Promise.resolve() }),
  },
  {
    label: "Redis",
    open() {
      const prefix = `cookie-migration:${RUN}:${++n}:`;
      return Promise.resolve({
        store: new RedisStore({ client: redis, prefix }),
        async close() {
          const keys = await redis.keys(`${prefix}*`);
          if (keys.length > 0) await redis.del(...keys);
        },
      });
    },
  },
  {
    label: "PostgreSQL",
    async open() {
      const table = `websession_cookie_migration_${RUN}_${++n}`;
      const store = new PostgresStore({ client: admin, table });
      await store.migrate();
      return {
        store,
        close: async () => void await admin.query(`DROP TABLE IF EXISTS "${table}", "${table}_leases"`),
      };
    },
  },
];

// The shared session suite through the moving backend: sessions created after the switch (no
// sealed cookie) behave as on `to` itself, through withSession and the request-free API.
const movingToRedis = () =>
  new MigratingStore({
    from: new CookieStore({ secrets: COOKIE_SECRET }),
    to: new RedisStore({ client: redis, prefix: `cookie-migration:${RUN}:suite:${++n}:` }),
  });
sessionSuite("MigratingStore (CookieStore to Redis)", { open: movingToRedis });
sessionSuite("MigratingStore (CookieStore to Redis), request-free", {
  open: movingToRedis,
  api: "request-free",
});

/** The server record a browser's seal moves to. */
async function movedKey(cookies: CookieStore, jar: Map<string, string>): Promise<string> {
  const opened = await cookies.open((name) => jar.get(name), "session");
  assert.ok(opened !== null && !("invalid" in opened), "the seal opens");
  return await storageKeyOf(await movedSessionId(opened.id));
}

function sealNames(jar: Map<string, string>): string[] {
  return [...jar.keys()].filter((name) => name.startsWith("session.")).sort();
}

for (const target of targets) {
  describe(`CookieStore to ${target.label} in withSession, over HTTP`, () => {
    let server: RunningServer;
    let handler: (req: Request) => Promise<Response>;
    let to: SessionStore;
    let close: () => Promise<void>;
    const reasons: InvalidCookieReason[] = [];
    before(async () => {
      ({ store: to, close } = await target.open());
      server = await serveFetch((req) => handler(req));
    });
    after(async () => {
      await server.close();
      await close();
    });
    /** Serves the sealed app, then the switched one (sharing the CookieStore's configuration). */
    const sealed = (cookies: CookieStore) => void (handler = app(cookies));
    const switched = (cookies: CookieStore) =>
      void (handler = app(new MigratingStore({ from: cookies, to }), {
        onInvalidCookie: (event) => void reasons.push(event.reason),
      }));
    const browser = () => new JarClient(server.url, []);
    /** A browser signed in as `user` on the sealed app, and the server key its seal moves to. */
    const signedIn = async (user: string, options: Partial<CookieStoreOptions> = {}) => {
      const cookies = new CookieStore({ secrets: COOKIE_SECRET, ...options });
      sealed(cookies);
      const tab = browser();
      await tab.request(`/login?user=${user}`);
      return { cookies, tab, key: await movedKey(cookies, tab.jar) };
    };

    it("keeps a signed-in browser's data and user, sends the signed id and clears the sealed chunks", async () => {
      const { cookies, tab, key } = await signedIn("ada", { chunkSize: 300 });
      await tab.request("/append?x=before");
      const chunks = sealNames(tab.jar);
      assert.ok(chunks.length > 1, `the seal takes several chunks: ${chunks}`);

      switched(cookies);
      const read = await tab.request("/read");
      assert.equal(read.status, 200);
      assert.deepEqual(JSON.parse(read.body), { user: "ada", list: ["before"] });
      assert.deepEqual([...tab.jar.keys()], ["session"], "only the signed id is left");
      assert.match(tab.jar.get("session")!, SIGNED);
      for (const chunk of chunks) {
        assert.ok(read.setCookies.some((c) => c.startsWith(`${chunk}=;`) && /Max-Age=0/.test(c)), chunk);
      }
      const record = await to.load(key);
      assert.deepEqual(record?.data.list, ["before"]);
      assert.equal(record?.data.user, "ada");

      // From now on the server store serves it: a write lands there, the next read sees it.
      assert.equal((await tab.request("/append?x=after")).status, 200);
      assert.deepEqual(JSON.parse((await tab.request("/read")).body).list, ["before", "after"]);
      assert.deepEqual((await to.load(key))?.data.list, ["before", "after"]);
    });

    it("ten concurrent requests with one seal end in one server session, every write kept", async () => {
      const { cookies, tab, key } = await signedIn("bob");
      await tab.request("/append?x=sealed");

      switched(cookies);
      const tabs = Array.from({ length: 10 }, () => tab.clone());
      const answers = await Promise.all(tabs.map((t, i) => t.request(`/append?x=${i}`)));
      assert.deepEqual(answers.map((a) => a.status), Array(10).fill(200));
      const ids = new Set(tabs.map((t) => t.jar.get("session")!.split(".")[0]));
      assert.equal(ids.size, 1, "one server session");
      const list = JSON.parse((await tabs[0]!.request("/read")).body).list as string[];
      assert.deepEqual([...list].sort(), ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "sealed"].sort());
      assert.equal(list[0], "sealed");
      assert.deepEqual((await to.load(key))?.data.list, list);
    });

    it("a seal replayed after a later write or a log out brings back no old data", async () => {
      const { cookies, tab, key } = await signedIn("cy");
      await tab.request("/append?x=old");
      const replay = tab.clone(); // a copy of the sealed cookie, taken before the switch

      switched(cookies);
      await tab.request("/append?x=new");
      assert.deepEqual(JSON.parse((await replay.clone().request("/read")).body).list, ["old", "new"]);

      assert.equal((await tab.request("/logout")).status, 200);
      assert.equal(isEnded(await to.load(key)), true);
      const read = await replay.clone().request("/read");
      assert.deepEqual(JSON.parse(read.body), { user: null, list: [] });
      const write = await replay.clone().request("/append?x=zombie");
      if (write.status === 200) assert.deepEqual(JSON.parse(write.body), { user: null, list: ["zombie"] });
      else assert.equal(write.status, 409);
      assert.equal(isEnded(await to.load(key)), true, "the tombstone stays");
    });

    it("a seal ended by destroy or by endUser is not moved", async () => {
      const revocation = new MemoryStore();
      const cookies = new CookieStore({ secrets: COOKIE_SECRET, revocation, userKey: "user" });
      sealed(cookies);
      const [left, everywhere, kept] = [browser(), browser(), browser()];
      await left.request("/login?user=dee");
      const leftCopy = left.clone();
      const leftKey = await movedKey(cookies, left.jar);
      await left.request("/logout");
      await everywhere.request("/login?user=eve");
      const everywhereKey = await movedKey(cookies, everywhere.jar);
      await kept.request("/login?user=fay");
      await cookies.endUser("eve");

      switched(cookies);
      reasons.length = 0;
      for (const tab of [leftCopy, everywhere]) {
        const read = await tab.request("/read");
        assert.deepEqual(JSON.parse(read.body), { user: null, list: [] });
        assert.equal(read.setCookies.length, 0);
      }
      assert.deepEqual(reasons, ["ended", "ended"]);
      assert.equal(await to.load(leftKey), null);
      assert.equal(await to.load(everywhereKey), null);
      // Another user's seal still moves.
      assert.equal(JSON.parse((await kept.request("/read")).body).user, "fay");
    });

    it("log out everywhere while seals are left: endUser on the seals first, then endUserSessions", async () => {
      const revocation = new MemoryStore();
      const cookies = new CookieStore({ secrets: COOKIE_SECRET, revocation, userKey: "user" });
      sealed(cookies);
      const [phone, laptop, tablet] = [browser(), browser(), browser()];
      for (const device of [phone, laptop, tablet]) await device.request("/login?user=gus");
      const options = {
        store: new MigratingStore({ from: cookies, to }),
        secrets: SECRET,
        users: userSessions({ userKey: "user" }),
      };
      handler = app(options.store, { users: userSessions({ userKey: "user" }) });
      const phoneSeal = phone.clone();
      await phone.request("/read"); // moved
      // endUserSessions alone ends the moved sessions only: a seal that has not moved yet still
      // moves, signed in (the documented limit).
      assert.equal(await endUserSessions(options, { user: "gus" }), 1);
      assert.equal(JSON.parse((await phone.request("/read")).body).user, null);
      assert.equal(JSON.parse((await phoneSeal.request("/read")).body).user, null, "a moved seal replayed");
      assert.equal(JSON.parse((await laptop.request("/read")).body).user, "gus");
      // The documented order: the seals first (none moves after it), then the moved sessions.
      await cookies.endUser("gus");
      assert.equal(await endUserSessions(options, { user: "gus" }), 1);
      for (const device of [laptop, tablet]) {
        assert.deepEqual(JSON.parse((await device.request("/read")).body), { user: null, list: [] });
      }
    });

    it("an expired seal is not moved", async () => {
      let clock = Date.now();
      const now = () => clock;
      const cookies = new CookieStore({ secrets: COOKIE_SECRET, now });
      handler = app(cookies, { now, idleTimeout: 60 });
      const tab = browser();
      await tab.request("/login?user=gus");
      const key = await movedKey(cookies, tab.jar);
      clock += 2 * 3600_000;
      reasons.length = 0;
      handler = app(new MigratingStore({ from: cookies, to }), {
        now,
        idleTimeout: 60,
        onInvalidCookie: (event) => void reasons.push(event.reason),
      });
      const read = await tab.request("/read");
      assert.deepEqual(JSON.parse(read.body), { user: null, list: [] });
      assert.deepEqual(reasons, ["malformed"]);
      assert.equal(await to.load(key), null);
    });

    it("a tampered seal is rejected", async () => {
      const { cookies, tab, key } = await signedIn("hal");
      const value = tab.jar.get("session")!;
      const at = value.length - 30; // inside the ciphertext
      tab.jar.set("session", value.slice(0, at) + (value[at] === "A" ? "B" : "A") + value.slice(at + 1));

      switched(cookies);
      reasons.length = 0;
      const read = await tab.request("/append?x=forged");
      assert.deepEqual(JSON.parse(read.body), { user: null, list: ["forged"] });
      assert.deepEqual(reasons, ["malformed"]);
      assert.equal(await to.load(key), null);
      assert.match(tab.jar.get("session")!, SIGNED, "a fresh session of its own");
    });
  });
}

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
