// Active sessions, limits per user and audit events, through real HTTP (node:http on loopback)
// against MemoryStore and the real Redis, PostgreSQL and Memcached: what `listUserSessions` says
// of each device (last seen, user agent, the client address by a trusted-proxy rule, the "this
// device" flag, a public handle that is neither cookie nor storage key), ending one device by its
// handle, the metadata never causing a 409, `maxSessionsPerUser`, and the `end` and `expire`
// events.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Redis as IoRedis } from "ioredis";
import pg from "pg";
import { MemcacheClient } from "memcache-client";
import { MeterProvider, MetricReader } from "@opentelemetry/sdk-metrics";
import {
  cleanupSessions,
  endUserSessions,
  getSession,
  listUserSessions,
  MemoryStore,
  type SessionEvent,
  type SessionOptions,
  type SessionStore,
  trustedProxies,
  withSession,
} from "../mod.ts";
import { RedisStore } from "../src/stores/redis.ts";
import { PostgresStore } from "../src/stores/postgres.ts";
import { MemcachedStore } from "../src/stores/memcached.ts";
import { MEMCACHED_SERVER, skipWithoutMemcached } from "./services.ts";
import { storageKeyOf } from "../src/id.ts";
import { otelEvents } from "../src/otel.ts";
import { serveFetch } from "./http/server.ts";
import { userSessions } from "../src/users/options.ts";

const SECRET = "active sessions test secret, 32 characters";
const RUN = crypto.randomUUID().slice(0, 8);
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";

/** A browser over real HTTP: a cookie jar and a user agent. */
class Device {
  cookie: string | undefined;
  constructor(readonly base: string, readonly agent: string, readonly forwardedFor = "") {}

  async fetch(path: string, method = "GET"): Promise<Response> {
    const headers: Record<string, string> = { "user-agent": this.agent };
    if (this.forwardedFor !== "") headers["x-forwarded-for"] = this.forwardedFor;
    if (this.cookie !== undefined) headers.cookie = this.cookie;
    const response = await fetch(this.base + path, { method, headers });
    for (const line of response.headers.getSetCookie()) {
      const pair = line.split(";")[0]!;
      this.cookie = /;\s*Max-Age=0/i.test(line) || pair.endsWith("=") ? undefined : pair;
    }
    return response;
  }

  async text(path: string, method = "GET"): Promise<string> {
    return await (await this.fetch(path, method)).text();
  }

  /** The storage key of the session this device's cookie names. */
  async key(): Promise<string> {
    const value = this.cookie!.slice(this.cookie!.indexOf("=") + 1);
    return await storageKeyOf(value.slice(0, value.indexOf(".")));
  }
}

type Data = { user?: string; n?: number; x?: number };

/** The app: sign in, a counter, the devices page, "sign out that device", log out. */
function app(options: SessionOptions<Data>) {
  return withSession(async (req: Request) => {
    const session = await getSession<Data>(req);
    const url = new URL(req.url);
    switch (url.pathname) {
      case "/login":
        session.regenerate();
        session.set("user", url.searchParams.get("user")!);
        return new Response("in");
      case "/count":
        session.update("n", (n = 0) => n + 1);
        return new Response(String(session.get("n")));
      case "/whoami":
        return new Response(session.get("user") ?? "nobody");
      case "/devices":
        return Response.json(await listUserSessions(session));
      case "/end":
        return new Response(
          String(await endUserSessions(session, { handles: [url.searchParams.get("handle")!] })),
        );
      case "/logout":
        session.destroy();
        return new Response("out");
      default:
        return new Response("not found", { status: 404 });
    }
  }, options);
}

interface StoreCase {
  name: string;
  open(): SessionStore | Promise<SessionStore>;
  close(): void | Promise<void>;
  /** The store keeps expired records for `cleanup()`. */
  cleanup: boolean;
}

const redis = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 4 });
const memcached = new MemcacheClient({ server: MEMCACHED_SERVER, cmdTimeout: 5_000 });
after(async () => {
  redis.disconnect();
  await pool.end();
  memcached.shutdown();
});

const stores: StoreCase[] = [
  { name: "MemoryStore", open: () => new MemoryStore(), close: () => {}, cleanup: true },
  {
    name: "RedisStore (ioredis)",
    open: () => new RedisStore({ client: redis, prefix: `websession-users-test:${RUN}:` }),
    close: () => {},
    cleanup: false,
  },
  {
    name: "PostgresStore (pg)",
    open: async () => {
      const store = new PostgresStore({ client: pool, table: `websession_users_${RUN}` });
      await store.migrate();
      return store;
    },
    close: async () => void await pool.query(`DROP TABLE IF EXISTS "websession_users_${RUN}"`),
    cleanup: true,
  },
  {
    name: "MemcachedStore (memcache-client)",
    open: () => new MemcachedStore({ client: memcached, prefix: `websession-users-test-${RUN}:` }),
    close: () => {},
    cleanup: false,
  },
];

// Memcached may be missing on a newcomer's machine (never under CI): its case is then skipped.
const memcachedSkip = await skipWithoutMemcached();
for (const c of stores) {
  const skip = c.name.startsWith("MemcachedStore") ? memcachedSkip : undefined;
  describe(`active sessions on ${c.name}`, { skip }, () => {
    let store: SessionStore;
    after(() => c.close());
    const setup = async (more: Partial<SessionOptions<Data>> = {}, limit?: number) => {
      store ??= await c.open();
      assert.equal(store.capabilities.users, true, `${c.name} indexes sessions per user`);
      const events: SessionEvent[] = [];
      const options: SessionOptions<Data> = {
        store,
        secrets: SECRET,
        users: userSessions({
          userKey: "user",
          deviceInfo: {
            userAgent: true,
            clientAddress: trustedProxies(1),
            redact: ({ userAgent, clientAddress }) => ({
              userAgent,
              clientAddress: clientAddress?.replace(/\.\d+$/, ".0"),
            }),
          },
          maxSessionsPerUser: limit,
        }),
        onEvent: (event) => void events.push(event),
        ...more,
      };
      const server = await serveFetch(app(options));
      after(() => server.close());
      return { options, events, base: server.url, user: `ada-${crypto.randomUUID().slice(0, 8)}` };
    };

    it("lists each device with its agent, its trusted address, this-device flag and a handle", async () => {
      const { base, user } = await setup();
      // The phone's client wrote a false address first; the one proxy appended the real one.
      const phone = new Device(base, "Phone/1.0", "10.9.9.9, 198.51.100.44");
      const laptop = new Device(base, "Laptop/2.0", "203.0.113.7");
      await phone.text(`/login?user=${user}`);
      await new Promise((resolve) => setTimeout(resolve, 3)); // oldest first: not in one millisecond
      await laptop.text(`/login?user=${user}`);
      const listed = await (await phone.fetch("/devices")).json();
      assert.deepEqual(
        listed.map((d: Record<string, unknown>) => [d.userAgent, d.clientAddress, d.current]),
        [["Phone/1.0", "198.51.100.0", true], ["Laptop/2.0", "203.0.113.0", false]],
      );
      for (const device of listed) {
        assert.match(device.handle, /^[A-Za-z0-9_-]{22}$/);
        assert.ok(!device.key.includes(device.handle) && !phone.cookie!.includes(device.handle));
        assert.ok(!laptop.cookie!.includes(device.handle));
        assert.deepEqual(Object.keys(device.data), ["user"]); // no metadata, no flash among the data
        assert.ok(device.lastSeenAt >= device.createdAt && device.lastSeenAt <= Date.now());
      }
      assert.equal(listed[0].key, await phone.key());
      // The handle is stable: the laptop's own list names the phone by the same one.
      const fromLaptop = await (await laptop.fetch("/devices")).json();
      assert.equal(fromLaptop[0].handle, listed[0].handle);
    });

    it("ends one other device by its handle: that browser is signed out for real", async () => {
      const { base, user, events } = await setup();
      const phone = new Device(base, "Phone/1.0");
      const laptop = new Device(base, "Laptop/2.0");
      await phone.text(`/login?user=${user}`);
      await laptop.text(`/login?user=${user}`);
      // The other device by its flag: two sign-ins in one millisecond list in either order.
      const devices: Array<{ current: boolean; handle: string }> = await (await phone.fetch("/devices"))
        .json();
      const other = devices.find((device) => !device.current)!;
      assert.equal(await phone.text(`/end?handle=${other.handle}`), "1");
      assert.equal(await laptop.text("/whoami"), "nobody");
      assert.equal(await phone.text("/whoami"), user);
      assert.equal(
        (await listUserSessions({ store, secrets: SECRET, users: userSessions({ userKey: "user" }) }, user))
          .length,
        1,
      );
      // A handle that names no session of this user ends nothing.
      assert.equal(await phone.text(`/end?handle=${"A".repeat(22)}`), "0");
      assert.deepEqual(
        events.filter((e) => e.type === "end").map((e) => e.type === "end" && [e.reason, e.user]),
        [["user", user]],
      );
    });

    it("records last seen with writes, never with an extra write on a read-only request", async () => {
      let now = Date.now();
      const { base, user, events, options } = await setup({
        now: () => now,
        idleTimeout: 3600,
        touchAfter: 600,
      });
      const phone = new Device(base, "Phone/1.0");
      await phone.text(`/login?user=${user}`);
      const seen = async () => (await listUserSessions(options, user))[0]!.lastSeenAt;
      const signedInAt = now;
      assert.equal(await seen(), signedInAt);
      now += 60_000; // within touchAfter: a read-only request writes nothing
      events.length = 0;
      assert.equal(await phone.text("/whoami"), user);
      assert.deepEqual(events.filter((e) => e.type === "store" && e.operation !== "load"), []);
      assert.equal(await seen(), signedInAt);
      now += 60_000; // a write records the time exactly
      await phone.text("/count");
      assert.equal(await seen(), now);
      const wroteAt = now;
      now += 700_000; // past touchAfter: a read-only request only touches; last seen follows it
      events.length = 0;
      await phone.text("/whoami");
      assert.deepEqual(
        events.filter((e) => e.type === "store").map((e) => e.type === "store" && e.operation),
        [
          "load",
          "touch",
        ],
      );
      assert.ok((await seen()) > wroteAt);
      assert.equal(await seen(), now);
    });

    it("keeps at most maxSessionsPerUser: a sign-in beyond it ends the oldest, reported as limit", async () => {
      const { base, user, events } = await setup({}, 2);
      const devices = ["One", "Two", "Three"].map((agent) => new Device(base, agent));
      for (const device of devices) {
        await device.text(`/login?user=${user}`);
        await new Promise((resolve) => setTimeout(resolve, 3)); // the oldest: not in one millisecond
      }
      const listed = await listUserSessions({
        store,
        secrets: SECRET,
        users: userSessions({ userKey: "user" }),
      }, user);
      assert.deepEqual(listed.map((d) => d.userAgent), ["Two", "Three"]);
      assert.equal(await devices[0]!.text("/whoami"), "nobody"); // the remote-end treatment: a fresh session
      assert.equal(await devices[0]!.text("/count"), "1");
      assert.equal(await devices[1]!.text("/whoami"), user);
      assert.deepEqual(
        events.filter((e) => e.type === "end").map((e) => e.type === "end" && [e.reason, e.user]),
        [["limit", user]],
      );
    });

    it("reports each end with its reason: logout, admin", async () => {
      const { base, user, events, options } = await setup();
      const phone = new Device(base, "Phone/1.0");
      const laptop = new Device(base, "Laptop/2.0");
      await phone.text(`/login?user=${user}`);
      await laptop.text(`/login?user=${user}`);
      await phone.text("/logout");
      assert.equal(await endUserSessions(options, { user }), 1);
      assert.equal(await laptop.text("/whoami"), "nobody");
      assert.deepEqual(
        events.filter((e) => e.type === "end").map((e) => e.type === "end" && [e.reason, e.user]),
        [["logout", user], ["admin", user]],
      );
    });

    it("reports a session found past its absolute timeout on a load as expire", async () => {
      let now = Date.now();
      const { base, user, events } = await setup({ now: () => now, absoluteTimeout: 60 });
      const phone = new Device(base, "Phone/1.0");
      await phone.text(`/login?user=${user}`);
      events.length = 0;
      now += 61_000; // by the application's clock; the store still holds the record
      assert.equal(await phone.text("/whoami"), "nobody");
      assert.deepEqual(
        events.filter((e) => e.type === "expire").map((e) => e.type === "expire" && e.source),
        [
          "load",
        ],
      );
    });

    it(`cleanupSessions ${c.cleanup ? "reports what cleanup() removed" : "has nothing to do (the store expires by itself)"}`, async () => {
      const { events, options } = await setup();
      const key = "e".repeat(27) + crypto.randomUUID().replaceAll("-", "").slice(0, 16);
      const at = Date.now();
      await store.save(
        key,
        { data: { n: 1 }, version: 1, createdAt: at - 5_000, expiresAt: at + 1_000 },
        null,
      );
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      const removed = await cleanupSessions(options);
      const reported = events.filter((e) => e.type === "expire");
      if (c.cleanup) {
        assert.ok(removed >= 1, `removed ${removed}`);
        assert.deepEqual(reported.map((e) => e.type === "expire" && [e.source, e.count]), [[
          "cleanup",
          removed,
        ]]);
      } else {
        assert.equal(removed, 0);
        assert.deepEqual(reported, []);
      }
    });
  });
}

describe("session metadata and the merge", () => {
  it("a concurrent write that changes only metadata causes no 409 for a request that looked at everything", async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let arrived!: () => void;
    const waiting = new Promise<void>((resolve) => (arrived = resolve));
    const options: SessionOptions<Data> = {
      store: new MemoryStore(),
      secrets: SECRET,
      users: userSessions({ userKey: "user", deviceInfo: { userAgent: true } }),
      locking: "explicit", // the held request stands for another process
    };
    const handler = withSession(async (req: Request) => {
      const session = await getSession<Data>(req);
      const path = new URL(req.url).pathname;
      if (path === "/login") {
        session.set("user", "ada");
        session.set("x", 1);
      } else if (path === "/all") {
        const everything = session.toJSON(); // looks at every key
        arrived();
        await held;
        session.set("n", Object.keys(everything).length);
      } else {
        session.set("x", 1); // the same value: only the metadata (last seen, agent) changes
      }
      return new Response("ok");
    }, options);
    const server = await serveFetch(handler);
    after(() => server.close());
    const phone = new Device(server.url, "Phone/1.0");
    await phone.text("/login");
    const slow = phone.fetch("/all", "POST"); // POST: cannot be run again, a conflict would be a 409
    await waiting;
    const other = new Device(server.url, "Phone/2.0");
    other.cookie = phone.cookie;
    assert.equal((await other.fetch("/same", "POST")).status, 200);
    release();
    assert.equal((await slow).status, 200);
    const [device] = await listUserSessions(options, "ada");
    assert.equal(device!.data.n, 2);
    assert.equal(device!.userAgent, "Phone/1.0"); // the last write's metadata
  });

  it("refuses the reserved key and bad options", async () => {
    const handler = withSession(async (req: Request) => {
      const session = await getSession<Record<string, unknown>>(req);
      assert.throws(() => session.set("__meta", { seen: 0 }), /reserved/);
      return new Response("ok");
    }, { store: new MemoryStore(), secrets: SECRET, users: userSessions({ userKey: "user" }) });
    assert.equal((await handler(new Request("https://example.com/"))).status, 200);
    assert.throws(() => trustedProxies(0), RangeError);
    const store = new MemoryStore();
    const refused = (options: Partial<SessionOptions>, error: RegExp) =>
      assert.rejects(
        async () => await listUserSessions({ store, secrets: SECRET, ...options }, "ada"),
        error,
      );
    assert.throws(
      () => userSessions({ userKey: "user", maxSessionsPerUser: 0 }),
      /^RangeError: Invalid maxSessionsPerUser/,
    );
    assert.throws(
      () => userSessions({ userKey: "user", deviceInfo: { clientAddress: "x-forwarded-for" as never } }),
      /^TypeError: Invalid deviceInfo.clientAddress/,
    );
    for (const key of ["", "__user", 5]) {
      assert.throws(() => userSessions({ userKey: key as string }), /^TypeError: Invalid userKey/);
    }
    // The options sessions per user took before `users`: refused by name, never ignored.
    for (const moved of ["userKey", "deviceInfo", "maxSessionsPerUser"]) {
      await refused(
        { [moved]: "user" } as never,
        new RegExp(`^TypeError: Invalid ${moved}: it moved into the users option`),
      );
    }
    await refused(
      { users: { userKey: "user" } as never },
      /^TypeError: Invalid users: expected userSessions\(\)/,
    );
    const unindexed = {
      ...store,
      load: store.load.bind(store),
      save: store.save.bind(store),
      capabilities: { ...store.capabilities, users: false },
    };
    await refused(
      { store: unindexed as never, users: userSessions({ userKey: "user", maxSessionsPerUser: 2 }) },
      /^TypeError: Invalid maxSessionsPerUser: it needs a store that indexes sessions per user/,
    );
  });
});

class CollectingReader extends MetricReader {
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

describe("end and expire events in OpenTelemetry", () => {
  it("count ended sessions by reason and expired ones by source, without the user's id", async () => {
    const reader = new CollectingReader();
    const meter = new MeterProvider({ readers: [reader] }).getMeter("test");
    let now = Date.now();
    const options: SessionOptions<Data> = {
      store: new MemoryStore(),
      secrets: SECRET,
      users: userSessions({ userKey: "user" }),
      absoluteTimeout: 60,
      now: () => now,
      onEvent: otelEvents({ meter }),
    };
    const server = await serveFetch(app(options));
    after(() => server.close());
    const [a, b, c] = [1, 2, 3].map((n) => new Device(server.url, `Device/${n}`));
    for (const device of [a!, b!, c!]) await device.text("/login?user=ada");
    await a!.text("/logout");
    assert.equal(
      await endUserSessions(options, {
        user: "ada",
        handles: [(await listUserSessions(options, "ada"))[0]!.handle],
      }),
      1,
    );
    now += 61_000;
    assert.equal(await c!.text("/whoami"), "nobody");
    const points = new Map<string, Array<[unknown, number]>>();
    for (const scope of (await reader.collect()).resourceMetrics.scopeMetrics) {
      for (const metric of scope.metrics) {
        points.set(
          metric.descriptor.name,
          metric.dataPoints.map((p) => [p.attributes, p.value as number]),
        );
      }
    }
    assert.deepEqual(points.get("websession.session.ended"), [
      [{ "websession.session.end_reason": "logout" }, 1],
      [{ "websession.session.end_reason": "admin" }, 1],
    ]);
    assert.deepEqual(points.get("websession.session.expired"), [[{
      "websession.session.expiry_source": "load",
    }, 1]]);
  });
});
