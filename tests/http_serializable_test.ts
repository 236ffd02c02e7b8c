// The concurrency promise, seen from the network: a real HTTP server on loopback serves the
// wrapped handler, and real concurrent clients (Node's fetch, one connection per request in
// flight, a cookie jar per tab) race on one session. On every store that can compare-and-set:
// MemoryStore, FileStore, RedisStore over ioredis, node-redis and @upstash/redis (REST bridge),
// PostgresStore over pg, postgres.js, Neon's Pool (WebSocket bridge) and neon() (HTTP bridge).
//
// For a session's data, concurrent requests end as if they ran one after another, or a request
// is refused with 409 and none of its changes land; a response sets or clears the cookie only
// when its own request created, regenerated or destroyed the session.
//
// Where a case needs every request to have loaded the session before any commits, a barrier in
// the handler holds each first run until all have arrived (so the race is certain, not a matter
// of timing); a server-side gate holds one request while another logs in or out.
//
// Figures per store (lost updates, unexpected refusals, cookies wrongly cleared, stray
// Set-Cookie headers, p99 of 100 writers on one session against 100 writers on 100 sessions)
// are reported with t.diagnostic; timing is reported, never asserted.
import { after, before, describe, it, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis as IoRedis } from "ioredis";
import { createClient } from "redis";
import { Redis as UpstashRedis } from "@upstash/redis";
import pg from "pg";
import postgres from "postgres";
import { neon, neonConfig, Pool as NeonPool } from "@neondatabase/serverless";
import { WebSocket } from "ws";
import { getSession, withSession } from "../src/with_session.ts";
import type { SessionStore } from "../src/store.ts";
import type { SessionOptions } from "../src/options.ts";
import { storageKeyOf } from "../src/id.ts";
import { MemoryStore } from "../src/stores/memory.ts";
import { FileStore } from "../src/stores/file.ts";
import { type RedisLike, RedisStore } from "../src/stores/redis.ts";
import { PostgresStore, type SqlLike } from "../src/stores/postgres.ts";
import { type NeonBridge, startNeonBridge } from "./bridges/neon.ts";
import { startUpstashBridge, type UpstashBridge } from "./bridges/upstash.ts";
import { clearsCookie, type Exchange, JarClient } from "./http/client.ts";
import { type RunningServer, serveFetch } from "./http/server.ts";

const SECRET = "http serializable test secret, 32 characters+";
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const RUN = crypto.randomUUID().slice(0, 8);

type Data = {
  n?: number;
  cart?: string[];
  user?: string;
  msg?: string;
  [mark: `mark-${string}`]: number;
};

// ---------------------------------------------------------------------------------------------
// Stores

interface OpenStore {
  store: SessionStore;
  close(): void | Promise<void>;
}

let upstashBridge: UpstashBridge | undefined;
let neonBridge: NeonBridge | undefined;
after(async () => {
  await upstashBridge?.close();
  await neonBridge?.close();
});

async function startNeon(): Promise<void> {
  if (neonBridge !== undefined) return;
  neonBridge = await startNeonBridge({ port: Number(new URL(DATABASE_URL).port || 5432) });
  neonConfig.webSocketConstructor = WebSocket;
  neonConfig.wsProxy = neonBridge.wsProxy;
  neonConfig.useSecureWebSocket = false;
  neonConfig.pipelineTLS = false;
  neonConfig.pipelineConnect = false;
  neonConfig.fetchEndpoint = neonBridge.fetchEndpoint;
}

async function dropPrefix(prefix: string): Promise<void> {
  const admin = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
  try {
    let cursor = "0";
    do {
      const [next, keys] = await admin.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
      if (keys.length > 0) await admin.del(...keys);
      cursor = next;
    } while (cursor !== "0");
  } finally {
    admin.disconnect();
  }
}

function redisStore(name: string, client: RedisLike, close: () => void | Promise<void>): OpenStore {
  const prefix = `websession-http:${RUN}:${name}:`;
  return {
    store: new RedisStore({ client, prefix }),
    close: async () => {
      await dropPrefix(prefix);
      await close();
    },
  };
}

async function postgresStore(
  name: string,
  client: SqlLike,
  close: () => void | Promise<void>,
): Promise<OpenStore> {
  const table = `websession_http_${RUN}_${name}`;
  const store = new PostgresStore({ client, table });
  await store.migrate();
  return {
    store,
    close: async () => {
      const admin = new pg.Client({ connectionString: DATABASE_URL });
      await admin.connect();
      try {
        await admin.query(`DROP TABLE IF EXISTS "${table}"`);
      } finally {
        await admin.end();
      }
      await close();
    },
  };
}

const STORES: [string, () => OpenStore | Promise<OpenStore>][] = [
  ["MemoryStore", () => ({ store: new MemoryStore(), close: () => {} })],
  ["FileStore", async () => {
    const dir = await mkdtemp(join(tmpdir(), "websession-http-"));
    return {
      store: new FileStore({ dir }),
      close: () => rm(dir, { recursive: true, force: true, maxRetries: 5 }),
    };
  }],
  ["RedisStore over ioredis", () => {
    const client = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
    return redisStore("ioredis", client, () => client.disconnect());
  }],
  ["RedisStore over node-redis", async () => {
    const client = await createClient({ url: REDIS_URL }).connect();
    return redisStore("node-redis", client, async () => void (await client.quit()));
  }],
  ["RedisStore over @upstash/redis", async () => {
    upstashBridge ??= await startUpstashBridge({ redisUrl: REDIS_URL });
    const client = new UpstashRedis({
      url: upstashBridge.url,
      token: upstashBridge.token,
      enableTelemetry: false,
    });
    return redisStore("upstash", client, () => {});
  }],
  ["PostgresStore over pg", () => {
    const client = new pg.Pool({ connectionString: DATABASE_URL, max: 10 });
    return postgresStore("pg", client, () => client.end());
  }],
  ["PostgresStore over postgres.js", () => {
    const client = postgres(DATABASE_URL, { max: 10, onnotice: () => {} });
    return postgresStore("postgresjs", client, () => client.end({ timeout: 5 }));
  }],
  ["PostgresStore over Neon Pool (WebSocket)", async () => {
    await startNeon();
    const client = new NeonPool({ connectionString: DATABASE_URL, max: 10 });
    return postgresStore("neon_pool", client, () => client.end());
  }],
  ["PostgresStore over neon() (HTTP)", async () => {
    await startNeon();
    return postgresStore("neon_http", neon(DATABASE_URL), () => {});
  }],
];

// ---------------------------------------------------------------------------------------------
// The app

/** Holds the first run of `size` requests until all have arrived, then lets every run through. */
class Barrier {
  #arrived = 0;
  #size: number;
  #open!: () => void;
  readonly promise: Promise<void>;
  filled = false;

  constructor(size: number) {
    this.#size = size;
    this.promise = new Promise((resolve) => (this.#open = resolve));
    // A bound, so that a request that never arrives fails the test instead of hanging it.
    setTimeout(() => this.#open(), 15_000).unref();
  }

  arrive(): Promise<void> {
    if (++this.#arrived === this.#size) {
      this.filled = true;
      this.#open();
    }
    return this.promise;
  }
}

/** A named gate: the handler tells it has loaded the session, and waits to be released. */
class Gate {
  #reached!: () => void;
  #release!: () => void;
  readonly reached = new Promise<void>((resolve) => (this.#reached = resolve));
  readonly released = new Promise<void>((resolve) => (this.#release = resolve));

  hold(): Promise<void> {
    this.#reached();
    return this.released;
  }

  /** Tells it has been reached, without waiting. */
  pass(): void {
    this.#reached();
  }

  release(): void {
    this.#release();
  }
}

function app(store: SessionStore, extra: Partial<SessionOptions<Data>> = {}) {
  const runs = new Map<string, number>();
  const errors: string[] = [];
  const barriers = new Map<string, Barrier>();
  const gates = new Map<string, Gate>();
  let next = 0;

  const handler = withSession(async (req: Request) => {
    const url = new URL(req.url);
    const path = url.pathname;
    runs.set(path, (runs.get(path) ?? 0) + 1);
    const session = await getSession<Data>(req);
    const barrier = barriers.get(url.searchParams.get("barrier") ?? "");
    const gate = gates.get(url.searchParams.get("gate") ?? "");
    await gate?.hold();
    const signal = gates.get(url.searchParams.get("signal") ?? "");
    switch (path) {
      case "/init":
        session.set("n", Number(url.searchParams.get("n") ?? 0));
        return new Response("created");
      case "/read":
        return new Response(String(session.get("n") ?? "none"));
      case "/all":
        return Response.json(session.toJSON());
      case "/getset": {
        // What people write: read, compute, write back.
        const n = (session.get("n") ?? 0) + 1;
        await barrier?.arrive();
        session.set("n", n);
        return new Response(String(n));
      }
      case "/count": {
        const n = session.update("n", (n = 0) => n + 1);
        signal?.pass(); // about to return: its commit follows with no I/O in between
        return new Response(String(n));
      }
      case "/mark": {
        // Its own key, and a shared value shown but not depended on.
        const shown = session.peek("n");
        await barrier?.arrive();
        session.set(`mark-${url.searchParams.get("name")}`, 1);
        return new Response(String(shown));
      }
      case "/flash":
        session.flash("msg", url.searchParams.get("msg") ?? "hello");
        return new Response("flashed");
      case "/show": {
        const msg = session.get("msg");
        await barrier?.arrive();
        return new Response(msg ?? "none");
      }
      case "/start":
        session.set("cart", []);
        return new Response("started");
      case "/add":
        session.update("cart", (cart = []) => [...cart, url.searchParams.get("item") ?? "book"]);
        return new Response("added");
      case "/cart":
        return Response.json({ user: session.get("user") ?? null, cart: session.get("cart") ?? null });
      case "/login":
        await barrier?.arrive();
        session.regenerate();
        session.set("user", url.searchParams.get("user") ?? "ada");
        return new Response("welcome");
      case "/logout":
        session.destroy();
        return new Response("logged out");
      case "/goodbye":
        session.destroy();
        session.flash("msg", "goodbye");
        return new Response("bye");
      default:
        return new Response("not found", { status: 404 });
    }
  }, {
    store,
    secrets: SECRET,
    cookie: { secure: false }, // plain HTTP on loopback
    onError: (error) => {
      errors.push((error as Error).name);
    },
    ...extra,
  });

  return {
    handler,
    errors,
    runs: (path: string) => runs.get(path) ?? 0,
    barrier(size: number): { name: string; barrier: Barrier } {
      const name = `b${++next}`;
      const barrier = new Barrier(size);
      barriers.set(name, barrier);
      return { name, barrier };
    },
    gate(): { name: string; gate: Gate } {
      const name = `g${++next}`;
      const gate = new Gate();
      gates.set(name, gate);
      return { name, gate };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Figures

interface Figures {
  /** Updates answered 2xx that are not in the final data. */
  lost: number;
  /** 409 answers where the promise allows none (GET re-runs, disjoint writers, update()). */
  refused: number;
  /** 409 answers to racing get-then-set POSTs (expected: every loser). */
  postRefused: number;
  /** Set-Cookie with Max-Age=0 on a response to a request that did not destroy. */
  wronglyCleared: number;
  /** Any Set-Cookie on a response to a request that did not create, regenerate or destroy. */
  strayCookies: number;
  /** p99 latency of 100 update() POSTs on one session, and on 100 sessions (ms). */
  p99One: number;
  p99Many: number;
}

const figures = new Map<string, Figures>();

/** Routes whose request may send a Set-Cookie: they create, regenerate or destroy a session. */
const SETS_COOKIE = new Set(["/init", "/start", "/login", "/logout", "/goodbye"]);
/** Routes whose request may clear the cookie: they destroy (case 5d checks the one that must not). */
const CLEARS_COOKIE = new Set(["/logout", "/goodbye"]);

function pathOf(exchange: Exchange): string {
  return new URL(exchange.path, "http://x").pathname;
}

function p99(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.ceil(sorted.length * 0.99) - 1]!;
}

const statuses = (exchanges: Exchange[]) => exchanges.map((e) => e.status);
const count = (exchanges: Exchange[], status: number) => exchanges.filter((e) => e.status === status).length;

// ---------------------------------------------------------------------------------------------
// The cases, once per store

for (const [name, open] of STORES) {
  // A bound on the whole block: a gate or barrier that is never reached fails it, never hangs it.
  // Requests that run concurrently (locking "explicit", or processes that do not share turns):
  // the compare-and-set and the merge decide.
  describe(`${name}: serializable over real HTTP, optimistic`, { timeout: 120_000 }, () => {
    let opened: OpenStore;
    let server: RunningServer;
    let running: ReturnType<typeof app>;
    /** The same store with the default locking, for the case that checks the default. */
    let serial: RunningServer;
    const log: Exchange[] = [];
    const f: Figures = {
      lost: 0,
      refused: 0,
      postRefused: 0,
      wronglyCleared: 0,
      strayCookies: 0,
      p99One: NaN,
      p99Many: NaN,
    };
    figures.set(name, f);

    before(async () => {
      opened = await open();
      running = app(opened.store, { locking: "explicit" });
      server = await serveFetch(running.handler);
      serial = await serveFetch(app(opened.store).handler);
    });
    after(async () => {
      await server?.close();
      await serial?.close();
      await opened?.close();
    });

    /** A new browser holding a stored session with n = start. */
    async function browser(start: number, url = server.url): Promise<JarClient> {
      const client = new JarClient(url, log);
      const created = await client.request(`/init?n=${start}`);
      assert.equal(created.status, 200);
      assert.ok(client.jar.has("session"), "the session cookie was set");
      return client;
    }

    /** `size` tabs of one browser, all holding its cookie now. */
    const tabs = (client: JarClient, size: number) => Array.from({ length: size }, () => client.clone());

    async function readN(client: JarClient): Promise<number> {
      const read = await client.request("/read");
      assert.equal(read.status, 200);
      return Number(read.body);
    }

    it("1. get-then-set over GET from 16 tabs: all 200, none lost (the losers re-run)", async (t) => {
      const N = 16;
      const start = 5;
      const client = await browser(start);
      const { name: b, barrier } = running.barrier(N);
      const runsBefore = running.runs("/getset");
      server.resetPeak();
      const answers = await Promise.all(tabs(client, N).map((tab) => tab.request(`/getset?barrier=${b}`)));
      const final = await readN(client);
      f.lost += start + count(answers, 200) - final;
      f.refused += count(answers, 409);
      const runs = running.runs("/getset") - runsBefore;
      t.diagnostic(
        `${N} GETs: final ${final} (start ${start}), handler runs ${runs}, peak in flight ${server.stats.peakInFlight}`,
      );

      assert.ok(barrier.filled, "every request loaded the session before any wrote");
      assert.ok(
        server.stats.peakInFlight >= N,
        "the requests were in flight at once, on separate connections",
      );
      assert.deepEqual(statuses(answers), Array(N).fill(200));
      assert.deepEqual(
        answers.map((a) => Number(a.body)).sort((x, y) => x - y),
        Array.from({ length: N }, (_, i) => start + 1 + i),
        "each request saw the value its predecessor wrote",
      );
      assert.equal(final, start + N);
      assert.ok(runs >= 2 * N - 1, `all but one loaded a value that changed and re-ran (runs: ${runs})`);
      for (const a of answers) assert.deepEqual(a.setCookies, []);
    });

    it("2. get-then-set over POST: final = start + 2xx answers, the others 409 without Set-Cookie", async (t) => {
      const N = 16;
      // All loaded before any commits: any serial order lets exactly one of them through.
      const start = 10;
      const client = await browser(start);
      const { name: b, barrier } = running.barrier(N);
      const raced = await Promise.all(
        tabs(client, N).map((tab) => tab.request(`/getset?barrier=${b}`, "POST")),
      );
      const afterRace = await readN(client);
      f.lost += start + count(raced, 200) - afterRace;
      f.postRefused += count(raced, 409);
      // Free-running: as they come.
      const free = await Promise.all(tabs(client, N).map((tab) => tab.request("/getset", "POST")));
      const final = await readN(client);
      f.lost += afterRace + count(free, 200) - final;
      f.postRefused += count(free, 409);
      t.diagnostic(
        `barrier: ${count(raced, 200)} of ${N} answered 2xx; free-running: ${
          count(free, 200)
        } of ${N} answered 2xx`,
      );

      assert.ok(barrier.filled);
      assert.equal(count(raced, 200), 1, "exactly one of the requests that all read the same value");
      assert.equal(afterRace, start + 1);
      for (const answers of [raced, free]) {
        const ok = count(answers, 200);
        assert.ok(ok >= 1);
        assert.equal(count(answers, 409), N - ok, "the others are refused with 409");
        for (const a of answers) if (a.status !== 200) assert.deepEqual(a.setCookies, []);
      }
      assert.equal(final, afterRace + count(free, 200), "final value = start + number of 2xx");
    });

    it("3. one flash value read by 10 parallel requests: exactly one gets it", async (t) => {
      const N = 10;
      const client = await browser(0);
      assert.equal((await client.request("/flash?msg=once")).status, 200);
      const { name: b, barrier } = running.barrier(N);
      const runsBefore = running.runs("/show");
      const shown = await Promise.all(tabs(client, N).map((tab) => tab.request(`/show?barrier=${b}`)));
      f.refused += count(shown, 409);
      const runs = running.runs("/show") - runsBefore;
      t.diagnostic(
        `flash readers: ${shown.filter((s) => s.body === "once").length} got it, handler runs ${runs}`,
      );

      assert.ok(barrier.filled, "all ten read the flash before any consumed it");
      assert.deepEqual(statuses(shown), Array(N).fill(200));
      assert.deepEqual(shown.filter((s) => s.body === "once").length, 1);
      assert.equal(shown.filter((s) => s.body === "none").length, N - 1);
      assert.ok(runs >= 2 * N - 1, `the other nine re-ran and found it gone (runs: ${runs})`);
      assert.equal((await client.request("/show")).body, "none");
    });

    it("4. writers of disjoint keys: all 200, merged, no handler ran twice", async (t) => {
      const N = 16;
      const client = await browser(3);
      const { name: b, barrier } = running.barrier(N);
      const runsBefore = running.runs("/mark");
      const answers = await Promise.all(
        tabs(client, N).map((tab, i) => tab.request(`/mark?name=${i}&barrier=${b}`, "POST")),
      );
      const runs = running.runs("/mark") - runsBefore;
      const all = JSON.parse((await client.request("/all")).body) as Data;
      const missing = Array.from({ length: N }, (_, i) => i).filter((i) => all[`mark-${i}`] !== 1);
      f.lost += missing.length;
      f.refused += count(answers, 409);
      t.diagnostic(`disjoint writers: ${count(answers, 200)} of ${N} 2xx, handler runs ${runs}`);

      assert.ok(barrier.filled, "all loaded the same version before any wrote");
      assert.deepEqual(statuses(answers), Array(N).fill(200));
      assert.equal(runs, N, "no handler ran twice");
      assert.deepEqual(missing, []);
      assert.equal(all.n, 3);
      assert.deepEqual(answers.map((a) => a.body), Array(N).fill("3"));
      for (const a of answers) assert.deepEqual(a.setCookies, []);
    });

    it("5. login race: a write that loaded before the login is refused, and the login's cookie stays", async () => {
      const client = new JarClient(server.url, log);
      const started = await client.request("/start");
      assert.equal(started.status, 200);
      const c0 = client.jar.get("session")!;
      assert.ok(c0);
      const { name: g, gate } = running.gate();
      const held = client.clone().request(`/add?item=pen&gate=${g}`);
      await gate.reached; // loaded with C0, waiting
      const login = await client.request("/login?user=ada", "POST");
      assert.equal(login.status, 200);
      const c1 = client.jar.get("session")!;
      assert.ok(c1 && c1 !== c0, "the login sent a new cookie");
      gate.release();
      const added = await held;
      if (added.status === 200) f.lost++;

      assert.equal(added.status, 409, "never 200 for an item that landed on no session");
      assert.deepEqual(added.setCookies, [], "the held request touches no cookie");
      assert.equal(client.jar.get("session"), c1);
      const me = await client.request("/cart");
      assert.equal(me.status, 200);
      assert.deepEqual(JSON.parse(me.body), { user: "ada", cart: [] });
      assert.deepEqual(me.setCookies, []);
    });

    it("5b. a write that commits before a held login lands in the logged-in session (serial order)", async () => {
      const client = new JarClient(server.url, log);
      await client.request("/start");
      const c0 = client.jar.get("session")!;
      const { name: g, gate } = running.gate();
      const login = client.request(`/login?user=ada&gate=${g}`, "POST");
      await gate.reached; // the login loaded with C0 and waits
      const added = await client.clone().request("/add?item=pen");
      gate.release();
      const loggedIn = await login;
      if (added.status === 200 && loggedIn.status === 200) {
        const me = JSON.parse((await client.request("/cart")).body);
        if (!(me.cart ?? []).includes("pen")) f.lost++;
      }

      assert.equal(added.status, 200);
      assert.deepEqual(added.setCookies, []);
      assert.equal(loggedIn.status, 200);
      const c1 = client.jar.get("session");
      assert.ok(c1 && c1 !== c0);
      assert.deepEqual(JSON.parse((await client.request("/cart")).body), { user: "ada", cart: ["pen"] });
    });

    it("5c. a double-submitted login: one regenerates, the other is refused without touching the cookie", async () => {
      const client = new JarClient(server.url, log);
      await client.request("/start");
      const c0 = client.jar.get("session")!;
      const { name: b, barrier } = running.barrier(2);
      const submits = await Promise.all([
        client.request(`/login?user=ada&barrier=${b}`, "POST"),
        client.request(`/login?user=ada&barrier=${b}`, "POST"),
      ]);
      const ok = submits.filter((s) => s.status === 200);

      assert.ok(barrier.filled);
      assert.deepEqual(statuses(submits).sort(), [200, 409]);
      assert.equal(ok[0]!.setCookies.length, 1);
      assert.deepEqual(submits.find((s) => s.status === 409)!.setCookies, []);
      const c1 = client.jar.get("session");
      assert.ok(c1 && c1 !== c0);
      assert.ok(ok[0]!.setCookies[0]!.startsWith(`session=${c1};`));
      assert.deepEqual(JSON.parse((await client.request("/cart")).body), { user: "ada", cart: [] });
    });

    it("5d. a logout that loaded before a login ended the session leaves the login's cookie alone", async () => {
      const client = new JarClient(server.url, log);
      await client.request("/start");
      const c0 = client.jar.get("session")!;
      const { name: g, gate } = running.gate();
      const logout = client.request(`/logout?gate=${g}`, "POST");
      await gate.reached; // the logout loaded with C0 and waits
      const login = await client.request("/login?user=ada", "POST");
      assert.equal(login.status, 200);
      const c1 = client.jar.get("session")!;
      assert.ok(c1 && c1 !== c0);
      gate.release();
      const out = await logout;
      const cleared = out.setCookies.filter(clearsCookie).length;
      f.wronglyCleared += cleared;

      // The login ended C0 first: the logout destroyed nothing. As in the serial order (login,
      // then a logout carrying the ended C0: a fresh session, no Set-Cookie), the browser keeps C1.
      assert.equal(
        cleared,
        0,
        `the logout's response deletes the login's cookie: ${out.setCookies.join(" | ")}`,
      );
      assert.equal(client.jar.get("session"), c1);
      assert.deepEqual(JSON.parse((await client.request("/cart")).body), { user: "ada", cart: [] });
    });

    it("6. a read-only GET with the pre-login cookie, after the login: fresh session, no Set-Cookie", async () => {
      const client = new JarClient(server.url, log);
      await client.request("/start");
      const stale = client.clone();
      assert.equal((await client.request("/login?user=grace", "POST")).status, 200);
      const late = await stale.request("/cart");
      if (late.status === 409) f.refused++;

      assert.equal(late.status, 200);
      assert.deepEqual(JSON.parse(late.body), { user: null, cart: null }, "a fresh, empty session");
      assert.deepEqual(late.setCookies, [], "the login's cookie is not replaced or cleared");
      const me = await client.request("/cart");
      assert.deepEqual(JSON.parse(me.body), { user: "grace", cart: [] });
    });

    it("7. logout's goodbye flash survives slow requests with the old cookie landing after it", async () => {
      const client = new JarClient(server.url, log);
      await client.request("/start");
      const c0 = client.jar.get("session")!;
      const writer = running.gate();
      const reader = running.gate();
      const slowWrite = client.clone().request(`/add?item=pen&gate=${writer.name}`);
      const slowRead = client.clone().request(`/cart?gate=${reader.name}`);
      await Promise.all([writer.gate.reached, reader.gate.reached]);
      const bye = await client.request("/goodbye");
      assert.equal(bye.status, 200);
      const c2 = client.jar.get("session");
      assert.ok(c2 && c2 !== c0, "the logout's response carries the new session holding the flash");
      writer.gate.release();
      reader.gate.release();
      const [lateWrite, lateRead] = await Promise.all([slowWrite, slowRead]);
      if (lateWrite.status === 200) f.lost++;
      // A read-only request with the old cookie arriving after the logout.
      const old = new JarClient(server.url, log);
      old.jar.set("session", c0);
      const afterLogout = await old.request("/cart");

      assert.equal(lateWrite.status, 409);
      assert.deepEqual(lateWrite.setCookies, []);
      assert.equal(lateRead.status, 200, "a read that began before the logout is answered");
      assert.deepEqual(lateRead.setCookies, []);
      assert.equal(afterLogout.status, 200);
      assert.deepEqual(JSON.parse(afterLogout.body), { user: null, cart: null });
      assert.deepEqual(afterLogout.setCookies, []);
      assert.equal(client.jar.get("session"), c2);
      const shown = await client.request("/show");
      assert.equal(shown.body, "goodbye");
      assert.equal((await client.request("/show")).body, "none", "read once");
    });

    it("8. 100 concurrent update() POSTs on one session: none refused, none lost (p99 against 100 sessions)", async (t) => {
      const N = 100;
      const start = 7;
      // The 100 sessions are created first: that burst also opens the connections both bursts
      // below reuse, so neither pays for connection setup.
      // The default locking: requests of one session take turns.
      const many = await Promise.all(Array.from({ length: N }, () => browser(start, serial.url)));
      const one = await browser(start, serial.url);
      const onOne = await Promise.all(tabs(one, N).map((tab) => tab.request("/count", "POST")));
      const final = await readN(one);
      f.lost += start + count(onOne, 200) - final;
      f.refused += N - count(onOne, 200);

      const onMany = await Promise.all(many.map((client) => client.request("/count", "POST")));
      // Behind the server: the stored records (one HTTP read of each would double the burst).
      const finals = await Promise.all(many.map(async (client) => {
        const record = await opened.store.load(await storageKeyOf(client.jar.get("session")!.split(".")[0]!));
        return record?.data.n as number;
      }));
      for (const [i, value] of finals.entries()) {
        f.lost += start + (onMany[i]!.status === 200 ? 1 : 0) - value;
      }
      f.refused += N - count(onMany, 200);
      f.p99One = p99(onOne.map((a) => a.ms));
      f.p99Many = p99(onMany.map((a) => a.ms));
      t.diagnostic(
        `p99 ${f.p99One.toFixed(1)} ms on one session, ${f.p99Many.toFixed(1)} ms on ${N} sessions: ratio ${
          (f.p99One / f.p99Many).toFixed(2)
        }`,
      );

      assert.deepEqual(statuses(onOne), Array(N).fill(200));
      assert.equal(final, start + N);
      assert.deepEqual(statuses(onMany), Array(N).fill(200));
      assert.deepEqual(finals, Array(N).fill(start + 1));
      for (const a of [...onOne, ...onMany]) assert.deepEqual(a.setCookies, []);
    });

    it("figures: nothing lost, nothing wrongly refused, no cookie wrongly set or cleared", (t) => {
      for (const exchange of log) {
        const path = pathOf(exchange);
        if (exchange.setCookies.length > 0 && !SETS_COOKIE.has(path)) f.strayCookies++;
        if (!CLEARS_COOKIE.has(path)) f.wronglyCleared += exchange.setCookies.filter(clearsCookie).length;
      }
      t.diagnostic(describeFigures(name, f));
      t.diagnostic(
        `requests ${log.length}, connections ${server.stats.connections}, errors told: ${
          summarize(running.errors)
        }`,
      );
      assert.equal(server.stats.crashes, 0);
      assert.equal(f.lost, 0);
      assert.equal(f.refused, 0);
      assert.equal(f.wronglyCleared, 0);
      assert.equal(f.strayCookies, 0);
    });
  });

  // The default (locking "implicit"): requests of one session in this process take turns, as
  // under CherryPy's implicit locking. Nothing is refused, nothing runs twice for nothing.
  describe(`${name}: requests of one session take turns over real HTTP`, { timeout: 120_000 }, () => {
    let opened: OpenStore;
    let server: RunningServer;
    let running: ReturnType<typeof app>;
    const log: Exchange[] = [];
    before(async () => {
      opened = await open();
      running = app(opened.store, { touchAfter: 0 });
      server = await serveFetch(running.handler);
    });
    after(async () => {
      await server?.close();
      await opened?.close();
    });

    async function browser(start: number): Promise<JarClient> {
      const client = new JarClient(server.url, log);
      assert.equal((await client.request(`/init?n=${start}`)).status, 200);
      return client;
    }
    const tabs = (client: JarClient, size: number) => Array.from({ length: size }, () => client.clone());

    it("30 get-then-set POSTs in flight at once: all 200, none lost, each handler ran once", async (t) => {
      const N = 30;
      const start = 4;
      const client = await browser(start);
      const runsBefore = running.runs("/getset");
      server.resetPeak();
      // The first holds its turn until all are in flight, so that they really overlap.
      const { name: g, gate } = running.gate();
      const pending = tabs(client, N).map((tab, i) =>
        tab.request(i === 0 ? `/getset?gate=${g}` : "/getset", "POST")
      );
      await gate.reached;
      for (let i = 0; i < 500 && server.stats.peakInFlight < N; i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      gate.release();
      const answers = await Promise.all(pending);
      const runs = running.runs("/getset") - runsBefore;
      const final = Number((await client.request("/read")).body);
      t.diagnostic(`${N} POSTs: ${count(answers, 200)} 2xx, final ${final}, handler runs ${runs}`);
      assert.ok(server.stats.peakInFlight >= N, "the requests were in flight at once");
      assert.deepEqual(statuses(answers), Array(N).fill(200));
      assert.equal(final, start + N);
      assert.equal(runs, N, "no handler ran twice");
      assert.deepEqual(
        answers.map((a) => Number(a.body)).sort((x, y) => x - y),
        Array.from({ length: N }, (_, i) => start + 1 + i),
      );
    });

    it("the README's first example (update, then read it back) over GET: none refused, no re-runs", async () => {
      const N = 30;
      const client = await browser(0);
      const runsBefore = running.runs("/count");
      const answers = await Promise.all(tabs(client, N).map((tab) => tab.request("/count")));
      assert.deepEqual(statuses(answers), Array(N).fill(200));
      assert.equal(running.runs("/count") - runsBefore, N);
      assert.equal(Number((await client.request("/read")).body), N);
    });

    it("read-only requests whose expiry refresh races writers are never refused", async () => {
      const N = 20;
      const client = await browser(1);
      const answers = await Promise.all(
        tabs(client, 2 * N).map((tab, i) => tab.request(i % 2 === 0 ? "/read" : "/count", "POST")),
      );
      assert.deepEqual(statuses(answers), Array(2 * N).fill(200));
      assert.equal(Number((await client.request("/read")).body), 1 + N);
    });
  });
}

function summarize(names: string[]): string {
  const counts = new Map<string, number>();
  for (const n of names) counts.set(n, (counts.get(n) ?? 0) + 1);
  return [...counts].map(([n, c]) => `${n} x${c}`).join(", ") || "none";
}

function describeFigures(name: string, f: Figures): string {
  const ratio = f.p99One / f.p99Many;
  return `${name}: lost ${f.lost}, refused ${f.refused} (POST get-then-set 409s ${f.postRefused}), ` +
    `cookies wrongly cleared ${f.wronglyCleared}, stray Set-Cookie ${f.strayCookies}, ` +
    `p99 one session ${f.p99One.toFixed(1)} ms / 100 sessions ${f.p99Many.toFixed(1)} ms = ${
      ratio.toFixed(2)
    }`;
}

/**
 * Passes every call to the real store; while armed, holds the next saves until released (to
 * put a commit's save in flight at a chosen moment).
 */
class HeldSaves {
  store: SessionStore;
  #armed = 0;
  #held: Gate[] = [];
  #waiting: Array<(gate: Gate) => void> = [];

  constructor(inner: SessionStore) {
    this.store = {
      capabilities: inner.capabilities,
      load: (key) => inner.load(key),
      save: async (key, record, expected) => {
        if (this.#armed > 0) {
          this.#armed--;
          const gate = new Gate();
          this.#held.push(gate);
          this.#waiting.shift()?.(gate);
          await gate.hold();
        }
        return await inner.save(key, record, expected);
      },
      destroy: (key) => inner.destroy(key),
      touch: (key, expiresAt, version) => inner.touch!(key, expiresAt, version),
    };
  }

  /** Holds the next `count` saves. */
  arm(count: number): void {
    this.#armed = count;
  }

  /** The next save to be held, once it is. */
  next(): Promise<Gate> {
    const ready = this.#held.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((resolve) => this.#waiting.push((gate) => resolve(this.#held.shift() ?? gate)));
  }
}

describe("MemoryStore: requests take turns over real HTTP", { timeout: 60_000 }, () => {
  let server: RunningServer;
  let held: HeldSaves;
  let running: ReturnType<typeof app>;
  const log: Exchange[] = [];
  before(async () => {
    held = new HeldSaves(new MemoryStore());
    running = app(held.store);
    server = await serveFetch(running.handler);
  });
  after(() => server?.close());

  it("a request that arrives while another of its session is in flight waits before loading, and loads what it wrote", async () => {
    const client = new JarClient(server.url, log);
    await client.request("/init?n=0");
    held.arm(1);
    // A commits first: its save is in flight and held.
    const a = client.clone().request("/count", "POST");
    const first = await held.next();
    const runsBefore = running.runs("/getset");
    // B arrives meanwhile: it must not load (it would read n = 0) until A is done.
    const b = client.clone().request("/getset", "POST");
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(running.runs("/getset") - runsBefore, 1, "B's handler started");
    first.release();
    const [answerA, answerB] = await Promise.all([a, b]);
    assert.deepEqual([answerA.status, answerB.status], [200, 200]);
    assert.equal(answerB.body, "2", "B read what A wrote");
    assert.equal((await client.request("/read")).body, "2");
  });
});

describe("figures of every store", () => {
  it("reports one line per store", (t: TestContext) => {
    for (const [name, f] of figures) t.diagnostic(describeFigures(name, f));
    assert.equal(figures.size, STORES.length);
  });
});
