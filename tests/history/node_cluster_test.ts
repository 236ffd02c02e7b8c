// Node deployed as several server processes sharing one store, judged by the history checker.
//
// Each cell starts 2–3 processes (`node --import tsx tests/history/server.ts`) serving the
// history app on loopback over one store (FileStore in a temp dir; RedisStore over ioredis and
// node-redis; PostgresStore over pg, its table made by `store.migrate()`; MemcachedStore). Two
// browsers each have two tabs sharing one cookie jar; the tabs fire waves of concurrent requests
// (each held back a random few ms, so they arrive out of order) at random processes: appends by
// `update` and by get + set, reads, an append / `save()` / append pair, over GET, POST, PUT and
// DELETE. Then a log in races writers, a log out races writers, and after each the browser must
// still be served. Every exchange goes into a list-append history that `checkHistory` judges.
//
// Faults, one per cell, during the second wave: a server process killed (SIGKILL: its requests
// in flight are indeterminate); a server process paused (SIGSTOP) for longer than the store's
// stale-lock time, then resumed; the store paused (a private redis-server or memcached of the
// cell's own, SIGSTOP then SIGCONT; for PostgreSQL, the app's connections terminated); one
// process with a clock 90 s ahead. A last cell runs `conflict: "overwrite"` and must be found
// out (lost acknowledged appends): the checker bites.
//
// Every cell must show that at least 10 runs of one session's handler were in progress at once
// in one process (the app counts them); a load that never gets there fails the cell. Per cell it
// prints requests, 2xx, 409, 5xx/indeterminate, the most concurrent handlers and the anomalies.
//
//
// Stores made of stores, 2–3 processes each: TieredStore (a Redis cache of the cell's own in front
// of PostgreSQL), with the cache flushed (FLUSHALL) while the second wave runs; MigratingStore from
// Redis or FileStore to PostgreSQL, and from CookieStore to Redis (sealed cookies moved by
// withSession), the browsers' sessions created by a process of the previous deploy (serving the
// old store alone), so that they move under the first wave's concurrent requests. Under
// HISTORY_LONG also the cache paused, the durable store's connections cut, a process killed.
//
// HISTORY_LONG=1 runs longer waves and every fault on every store; HISTORY_DUMP=<dir> writes each
// cell's history and exchanges there as JSON.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Redis as IoRedis } from "ioredis";
import pg from "pg";
import { PostgresStore } from "../../src/stores/postgres.ts";
import { RedisStore } from "../../src/stores/redis.ts";
import { FileStore } from "../../src/stores/file.ts";
import { MOVED_KEY } from "../../src/stores/migrating.ts";
import { isEnded, type SessionStore } from "../../src/store.ts";
import { storageKeyOf } from "../../src/id.ts";
import { type Answer, cookieSid, type ErrorAnswer, type Part, sidOf } from "./app.ts";
import { CookieStore } from "../../src/stores/cookie.ts";
import { movedSessionId } from "../../src/backends/moving.ts";
import { checkHistory, type CheckResult, formatResult, type MicroOp, type Op } from "./checker.ts";
import { skipWithoutMemcached, skipWithoutMemcachedProgram } from "../services.ts";
import { answers, type Child, freePort, start } from "../spawn.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const MEMCACHED = process.env.MEMCACHED_SERVER ?? "127.0.0.1:11211";
const RUN = crypto.randomUUID().slice(0, 8);
const LONG = process.env.HISTORY_LONG === "1";

/** Waves of concurrent requests per browser, and requests per wave per browser. */
const WAVES = LONG ? 10 : 2;
const PER_WAVE = LONG ? 60 : 48;
/** Writers racing each log in and log out, per browser. */
const RACERS = 16;
const BROWSERS = 2;
/** FileStore's stale-lock time in these cells; a paused process stays paused longer. */
const STALE_LOCK_MS = 1_000;
const PAUSE_MS = 1_800;
/** A request not answered by then is indeterminate. */
const REQUEST_TIMEOUT_MS = 15_000;
const MIN_CONCURRENT = 10;

type StoreKind =
  | "file"
  | "ioredis"
  | "node-redis"
  | "postgres"
  | "memcached"
  | "tiered"
  | "migrating-redis"
  | "migrating-file"
  | "migrating-cookie";
/** `pause-store`: for tiered, the cache; for migrating-redis, the store moved from. */
type Fault = "none" | "kill" | "stop-server" | "pause-store" | "skew" | "flush-cache" | "cut-durable";

interface Cell {
  store: StoreKind;
  fault: Fault;
  conflict?: "merge" | "overwrite";
  processes?: number;
  /** Anomalies are expected in today's library: the cell is reported, not failed. */
  todo?: string;
  /** The checker must find anomalies (the overwrite policy). */
  expectAnomalies?: boolean;
  /** No early `save()` in the traffic: a control for the cells with it. */
  noEarlySave?: boolean;
}

const STORES: StoreKind[] = ["file", "ioredis", "node-redis", "postgres", "memcached"];
const FAULTS: Fault[] = ["kill", "stop-server", "pause-store", "skew"];
/** The store a migrating cell moves from: what the previous deploy's process serves. */
const MOVED_FROM: Partial<Record<StoreKind, StoreKind | "cookie">> = {
  "migrating-redis": "ioredis",
  "migrating-file": "file",
  "migrating-cookie": "cookie",
};
/** What the CookieStore of the migrating-cookie cells seals with. */
const COOKIE_SECRET = "history cookie store secret, at least 32 characters";

/**
 * Known anomalies of the library: such a cell would be reported as todo, not failed. None is
 * known today (an early save() could overwrite another request's acknowledged write until every
 * compare-and-set was based on the record its request's data derives from).
 */
function knownAnomaly(_cell: Cell): string | undefined {
  return undefined;
}

function cells(): Cell[] {
  const list: Cell[] = STORES.map((store) => ({ store, fault: "none" as Fault }));
  if (LONG) {
    for (const fault of FAULTS) for (const store of STORES) list.push({ store, fault });
  } else {
    list.push(
      { store: "file", fault: "kill" },
      { store: "ioredis", fault: "kill" },
      { store: "postgres", fault: "kill" },
      { store: "file", fault: "stop-server" },
      { store: "node-redis", fault: "stop-server" },
      { store: "ioredis", fault: "pause-store" },
      { store: "memcached", fault: "pause-store" },
      { store: "postgres", fault: "pause-store" },
      { store: "file", fault: "skew" },
      { store: "ioredis", fault: "skew" },
    );
  }
  list.push(
    { store: "file", fault: "none", noEarlySave: true },
    { store: "ioredis", fault: "none", noEarlySave: true },
    { store: "file", fault: "stop-server", noEarlySave: true },
    { store: "ioredis", fault: "none", conflict: "overwrite", processes: 2, expectAnomalies: true },
    ...composedCells(),
  );
  return list.map((cell) => ({ ...cell, todo: knownAnomaly(cell) }));
}

/** Stores made of stores: a cache in front of a durable store, and a move between stores. */
function composedCells(): Cell[] {
  const list: Cell[] = [
    { store: "tiered", fault: "flush-cache", processes: 2 },
    { store: "migrating-redis", fault: "none", processes: 2 },
    { store: "migrating-file", fault: "none", processes: 3 },
    { store: "migrating-cookie", fault: "none", processes: 3 },
  ];
  if (LONG) {
    list.push(
      { store: "tiered", fault: "none", processes: 3 },
      { store: "tiered", fault: "pause-store", processes: 3 },
      { store: "tiered", fault: "cut-durable", processes: 3 },
      { store: "tiered", fault: "kill", processes: 3 },
      { store: "migrating-redis", fault: "kill", processes: 3 },
      { store: "migrating-redis", fault: "pause-store", processes: 3 },
      { store: "migrating-file", fault: "stop-server", processes: 3 },
      { store: "migrating-cookie", fault: "kill", processes: 3 },
      { store: "migrating-cookie", fault: "skew", processes: 3 },
    );
  }
  return list;
}

function cellName(cell: Cell): string {
  return `${cell.store}${cell.fault === "none" ? "" : ` + ${cell.fault}`}${
    cell.conflict === "overwrite" ? " (overwrite)" : ""
  }${cell.noEarlySave ? " (no early save)" : ""}`;
}

// ---------------------------------------------------------------------------------------------
// Processes

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A store server of the cell's own, which may be paused. */
interface Private {
  address: string;
  child: Child;
}

async function privateRedis(): Promise<Private> {
  const port = await freePort();
  const child = await start(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    { ready: () => answers(port, "PING\r\n", "+PONG") },
  );
  return { address: `redis://127.0.0.1:${port}`, child };
}

async function privateMemcached(): Promise<Private> {
  const port = await freePort();
  const args = ["-l", "127.0.0.1", "-p", String(port), "-U", "0", "-m", "64"];
  if (process.getuid?.() === 0) args.unshift("-u", "root");
  const child = await start("memcached", args, { ready: () => answers(port, "version\r\n", "VERSION") });
  return { address: `127.0.0.1:${port}`, child };
}

interface AppServer {
  url: string;
  child: Child;
  alive: boolean;
}

async function startServer(env: Record<string, string>): Promise<AppServer> {
  const child = await start(process.execPath, ["--import", "tsx", join("tests", "history", "server.ts")], {
    cwd: ROOT,
    env: { ...env, NODE_OPTIONS: "" },
    ready: /listening (\d+)/,
    timeoutMs: 60_000,
  });
  return { url: `http://127.0.0.1:${child.match![1]}`, child, alive: true };
}

// ---------------------------------------------------------------------------------------------
// A deployment: its store and its processes

interface Deployment {
  servers: AppServer[];
  /** Pauses or cuts the store. */
  pauseStore(): Promise<void>;
  /** Flushes the cache (tiered: the cache's own Redis). */
  flushCache(): Promise<void>;
  /** Cuts the durable store's connections (tiered: PostgreSQL). */
  cutDurable(): Promise<void>;
  /** Migrating cells: starts a process of the previous deploy, serving the store moved from. */
  previous?: () => Promise<AppServer>;
  /**
   * Migrating cells: how many of the sessions the previous deploy created (their cookies) moved,
   * and the session ids (`sidOf`) that name one session (child, root) across the move.
   */
  moves?: (cookies: string[]) => Promise<Moves>;
  close(): Promise<void>;
}

async function deploy(cell: Cell): Promise<Deployment> {
  const name = cellName(cell).replace(/[^a-z0-9]+/gi, "_").toLowerCase();
  const env: Record<string, string> = {
    HISTORY_STORE: cell.store,
    HISTORY_CONFLICT: cell.conflict ?? "merge",
    HISTORY_PREFIX: `websession-history:${RUN}:${name}:`,
    // A paused store outlasts the client's command timeout: those requests fail (503).
    HISTORY_TIMEOUT_MS: cell.fault === "pause-store" ? "1000" : "2000",
  };
  const cleanups: (() => Promise<void>)[] = [];
  const cleanUp = async () => {
    for (const cleanup of [...cleanups].reverse()) await cleanup();
  };
  let pauseStore = async () => {};
  let flushCache = async () => {};
  let cutDurable = async () => {};
  try {
    switch (cell.store) {
      case "file": {
        const dir = await mkdtemp(join(tmpdir(), "websession-history-"));
        env.HISTORY_DIR = dir;
        env.HISTORY_STALE_LOCK_MS = String(STALE_LOCK_MS);
        cleanups.push(() => rm(dir, { recursive: true, force: true }));
        break;
      }
      case "ioredis":
      case "node-redis": {
        if (cell.fault === "pause-store") {
          const redis = await privateRedis();
          env.HISTORY_REDIS_URL = redis.address;
          pauseStore = () => pauseProcess(redis.child, PAUSE_MS);
          cleanups.push(() => redis.child.stop("SIGKILL"));
        } else {
          env.HISTORY_REDIS_URL = REDIS_URL;
          cleanups.push(() => dropPrefix(env.HISTORY_PREFIX!));
        }
        break;
      }
      case "memcached": {
        if (cell.fault === "pause-store") {
          const memcached = await privateMemcached();
          env.HISTORY_MEMCACHED = memcached.address;
          pauseStore = () => pauseProcess(memcached.child, PAUSE_MS);
          cleanups.push(() => memcached.child.stop("SIGKILL"));
        } else {
          env.HISTORY_MEMCACHED = MEMCACHED;
        }
        break;
      }
      case "postgres":
        pauseStore = await postgresOf(env, name, cleanups);
        break;
      case "tiered": {
        cutDurable = await postgresOf(env, name, cleanups);
        // The cache is a Redis of the cell's own: flushing it touches nobody else's data.
        const cache = await privateRedis();
        env.HISTORY_CACHE_URL = cache.address;
        cleanups.push(() => cache.child.stop("SIGKILL"));
        pauseStore = () => pauseProcess(cache.child, PAUSE_MS);
        flushCache = () => flushAll(cache.address);
        break;
      }
      case "migrating-redis":
      case "migrating-file":
        await postgresOf(env, name, cleanups);
        pauseStore = await movedFromOf(cell, env, cleanups);
        break;
      case "migrating-cookie":
        // Sealed cookies move into Redis (the issue's CookieStore → Redis).
        env.HISTORY_COOKIE_SECRET = COOKIE_SECRET;
        env.HISTORY_REDIS_URL = REDIS_URL;
        cleanups.push(() => dropPrefix(env.HISTORY_PREFIX!));
        break;
    }
    const count = cell.processes ?? 3;
    const started = await Promise.allSettled(
      Array.from({ length: count }, (_, i) =>
        startServer({
          ...env,
          // The last process's clock runs 90 s ahead.
          ...(cell.fault === "skew" && i === count - 1 ? { HISTORY_SKEW_MS: "90000" } : {}),
        })),
    );
    const servers = started.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    cleanups.push(async () => void (await Promise.all(servers.map((s) => s.child.stop("SIGKILL")))));
    const failed = started.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
    const from = MOVED_FROM[cell.store];
    return {
      servers,
      pauseStore: () => pauseStore(),
      flushCache: () => flushCache(),
      cutDurable: () => cutDurable(),
      ...(from === undefined ? {} : {
        previous: async () => {
          const server = await startServer({ ...env, HISTORY_STORE: from });
          cleanups.push(() => server.child.stop("SIGKILL"));
          return server;
        },
        moves: movesOf(from, env, cleanups),
      }),
      close: cleanUp,
    };
  } catch (error) {
    await cleanUp();
    throw error;
  }
}

/** Creates the cell's PostgreSQL table; returns what cuts the app's connections. */
async function postgresOf(
  env: Record<string, string>,
  name: string,
  cleanups: (() => Promise<void>)[],
): Promise<() => Promise<void>> {
  const table = `websession_history_${RUN}_${name}`.slice(0, 60);
  const application = `history_${RUN}_${name}`.slice(0, 60);
  const url = new URL(DATABASE_URL);
  url.searchParams.set("application_name", application);
  env.HISTORY_DATABASE_URL = url.toString();
  env.HISTORY_TABLE = table;
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  await admin.connect();
  await new PostgresStore({ client: admin, table }).migrate();
  cleanups.push(async () => {
    try {
      // Bounded: a drop waiting on a lock must fail the cleanup, not hang the run.
      await admin.query("SET lock_timeout = '5s'");
      await admin.query(`DROP TABLE IF EXISTS "${table}"`);
      await admin.query(`DROP TABLE IF EXISTS "${table}_leases"`);
    } finally {
      await admin.end();
    }
  });
  return async () => {
    // Cut every connection of the app's processes, twice while the wave runs.
    for (let i = 0; i < 2; i++) {
      await admin.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        [application],
      );
      await sleep(300);
    }
  };
}

/** The store a migrating cell moves from: a directory, or Redis (of its own when it is paused). */
async function movedFromOf(
  cell: Cell,
  env: Record<string, string>,
  cleanups: (() => Promise<void>)[],
): Promise<() => Promise<void>> {
  if (cell.store === "migrating-file") {
    const dir = await mkdtemp(join(tmpdir(), "websession-history-"));
    env.HISTORY_DIR = dir;
    env.HISTORY_STALE_LOCK_MS = String(STALE_LOCK_MS);
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    return async () => {};
  }
  if (cell.fault === "pause-store") {
    const redis = await privateRedis();
    env.HISTORY_REDIS_URL = redis.address;
    cleanups.push(() => redis.child.stop("SIGKILL"));
    return () => pauseProcess(redis.child, PAUSE_MS);
  }
  env.HISTORY_REDIS_URL = REDIS_URL;
  cleanups.push(() => dropPrefix(env.HISTORY_PREFIX!));
  return async () => {};
}

interface Moves {
  moved: number;
  links: [string, string][];
}

/**
 * What tells, after the run, which sessions moved: a server store moved from is opened here and
 * must hold each as a moved tombstone; a sealed session must have its record in Redis, under the
 * id derived from the id inside the seal (linked to it, and the seal's iv that names its cookie).
 */
function movesOf(
  kind: StoreKind | "cookie",
  env: Record<string, string>,
  cleanups: (() => Promise<void>)[],
): (cookies: string[]) => Promise<Moves> {
  if (kind === "file") {
    const from = new FileStore({ dir: env.HISTORY_DIR! });
    return async (cookies) => ({ moved: await movedCount(from, cookies), links: [] });
  }
  const client = new IoRedis(env.HISTORY_REDIS_URL!, { maxRetriesPerRequest: 1 });
  client.on("error", () => {});
  cleanups.push(() => Promise.resolve(client.disconnect()));
  const redis = new RedisStore({ client, prefix: env.HISTORY_PREFIX });
  if (kind !== "cookie") return async (cookies) => ({ moved: await movedCount(redis, cookies), links: [] });
  const sealed = new CookieStore({ secrets: COOKIE_SECRET });
  return async (cookies) => {
    const result: Moves = { moved: 0, links: [] };
    for (const cookie of cookies) {
      const opened = await sealed.open((name) => (name === "session" ? cookie : undefined), "session");
      assert.ok(opened !== null && !("invalid" in opened), "the previous deploy's seal opens");
      const id = await movedSessionId(opened.id);
      if (await redis.load(await storageKeyOf(id)) !== null) result.moved++;
      result.links.push([sidOf(id), sidOf(opened.id)], [cookieSid(`session=${cookie}`)!, sidOf(opened.id)]);
    }
    return result;
  };
}

/** FLUSHALL on a Redis of the cell's own (never the shared one). */
async function flushAll(address: string): Promise<void> {
  assert.notEqual(address, REDIS_URL, "never flush the shared Redis");
  const client = new IoRedis(address, { maxRetriesPerRequest: 1 });
  try {
    assert.ok(await client.dbsize() > 0, "the cache held records before the flush");
    assert.equal(await client.flushall(), "OK");
  } finally {
    client.disconnect();
  }
}

async function pauseProcess(child: Child, ms: number): Promise<void> {
  child.signal("SIGSTOP");
  await sleep(ms);
  child.signal("SIGCONT");
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

// ---------------------------------------------------------------------------------------------
// The driver

type Route = "append" | "getset" | "read" | "twice" | "login" | "logout";

/** One request as the driver saw it. */
interface Exchange {
  client: string;
  request: string;
  route: Route;
  v?: number;
  w?: number;
  /** The session the cookie it sent named. */
  cookieSid: string | undefined;
  start: number;
  end: number;
  /** `undefined`: no answer (reset, timeout, killed server). */
  status?: number;
  body?: Answer | ErrorAnswer;
  final?: boolean;
}

class Browser {
  jar = new Map<string, string>();
  constructor(readonly name: string) {}
  get cookie(): string {
    return [...this.jar].map(([k, v]) => `${k}=${v}`).join("; ");
  }
  keep(setCookies: string[]): void {
    for (const header of setCookies) {
      const pair = header.split(";", 1)[0]!;
      const name = pair.slice(0, pair.indexOf("="));
      const value = pair.slice(name.length + 1);
      if (value === "" || /;\s*Max-Age=0\s*(;|$)/i.test(header)) this.jar.delete(name);
      else this.jar.set(name, value);
    }
  }
}

const METHODS = ["GET", "POST", "PUT", "DELETE"] as const;
const pick = <T>(list: readonly T[]): T => list[Math.floor(Math.random() * list.length)]!;

class Driver {
  log: Exchange[] = [];
  #value = 0;
  #request = 0;
  constructor(readonly deployment: Deployment, readonly earlySave = true) {}

  alive(): AppServer[] {
    return this.deployment.servers.filter((s) => s.alive);
  }

  /** Sends one request from a tab of `browser`, after `jitter` ms. */
  async send(
    browser: Browser,
    tab: number,
    route: Route,
    method: string,
    options: { jitter?: number; server?: AppServer; final?: boolean } = {},
  ): Promise<Exchange> {
    if (options.jitter) await sleep(Math.random() * options.jitter);
    const server = options.server ?? pick(this.alive());
    const request = `q${++this.#request}`;
    const params = new URLSearchParams();
    const exchange: Exchange = {
      client: `${browser.name}.t${tab}`,
      request,
      route,
      cookieSid: undefined,
      start: 0,
      end: Infinity,
      ...(options.final ? { final: true } : {}),
    };
    if (route === "append" || route === "getset" || route === "twice") {
      params.set("v", String(exchange.v = ++this.#value));
    }
    if (route === "twice") params.set("w", String(exchange.w = ++this.#value));
    const headers: Record<string, string> = { "x-request-id": request };
    const cookie = browser.cookie;
    if (cookie !== "") headers.cookie = cookie;
    exchange.cookieSid = cookieSid(cookie);
    this.log.push(exchange);
    exchange.start = performance.now();
    try {
      const response = await fetch(`${server.url}/${route}?${params}`, {
        method,
        headers,
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      const text = await response.text();
      exchange.end = performance.now();
      exchange.status = response.status;
      try {
        exchange.body = JSON.parse(text);
      } catch {
        // not JSON (a crash page): indeterminate
      }
      browser.keep(response.headers.getSetCookie());
    } catch {
      // reset, timeout, killed: no answer
    }
    return exchange;
  }

  /** A random request of the traffic mix. */
  traffic(browser: Browser, tab: number, jitter: number): Promise<Exchange> {
    const r = Math.random();
    if (r < 0.4) return this.send(browser, tab, "append", pick(METHODS), { jitter });
    if (r < 0.6) return this.send(browser, tab, "getset", pick(METHODS), { jitter });
    if (r < 0.85 || !this.earlySave) return this.send(browser, tab, "read", "GET", { jitter });
    return this.send(browser, tab, "twice", pick(["POST", "PUT"]), { jitter });
  }
}

/** The micro-ops a request meant to run, per part, when its answer does not say. */
function intended(e: Exchange): MicroOp[][] {
  const unknown: MicroOp = { f: "read", key: "l", value: null };
  switch (e.route) {
    case "append":
      return [[{ f: "append", key: "l", value: e.v! }]];
    case "getset":
      return [[unknown, { f: "append", key: "l", value: e.v! }]];
    case "twice":
      return [[{ f: "append", key: "l", value: e.v! }], [{ f: "append", key: "l", value: e.w! }]];
    default:
      return [[unknown]];
  }
}

/** Turns the exchanges into a history: sessions followed across log ins, outcomes as Elle's. */
function historyOf(log: Exchange[], links: [string, string][] = []): Op[] {
  // Sessions: a log in continues its session under the new id.
  const parent = new Map<string, string>();
  const find = (sid: string): string => {
    let root = sid;
    while (parent.has(root)) root = parent.get(root)!;
    return root;
  };
  // A session that moved to another id (out of a sealed cookie) is the same session.
  for (const [child, root] of links) {
    const a = find(root);
    const b = find(child);
    if (a !== b) parent.set(b, a);
  }
  for (const e of log) {
    const body = e.body as Answer | undefined;
    if (e.route === "login" && e.status !== undefined && e.status < 300 && body?.to && body.to !== body.sid) {
      const a = find(body.sid);
      const b = find(body.to);
      if (a !== b) parent.set(b, a);
    }
  }
  const ops: Op[] = [];
  for (const e of log) {
    const base = { client: e.client, request: e.request, start: e.start };
    const fallback = find(e.cookieSid ?? `none:${e.request}`);
    const split = e.route === "twice";
    const planned = intended(e);
    if (e.status !== undefined && e.status >= 200 && e.status < 300 && (e.body as Answer)?.parts) {
      const parts = (e.body as Answer).parts;
      parts.forEach((part: Part, i: number) =>
        ops.push({
          ...base,
          ...(split ? { part: i } : {}),
          session: find(part.sid),
          end: e.end,
          txn: part.ops,
          outcome: "ok",
          ...(e.final || e.route === "logout" ? { final: true } : {}),
        })
      );
      continue;
    }
    const early = (e.body as ErrorAnswer | undefined)?.early;
    if (early) {
      ops.push({ ...base, part: 0, session: find(early.sid), end: e.end, txn: early.ops, outcome: "ok" });
    }
    const outcome = e.status === 409 ? "fail" : "info";
    planned.forEach((txn, i) => {
      if (early && i === 0) return;
      ops.push({
        ...base,
        ...(split ? { part: i } : {}),
        session: fallback,
        end: outcome === "fail" ? e.end : Infinity,
        txn,
        outcome,
      });
    });
  }
  return ops;
}

// ---------------------------------------------------------------------------------------------
// A cell

interface Row {
  cell: string;
  requests: number;
  ok: number;
  conflict: number;
  info: number;
  maxConcurrent: number;
  anomalies: string;
  verdict: string;
}
const table: Row[] = [];

async function runCell(
  cell: Cell,
): Promise<{ row: Row; result: CheckResult; served: string[]; moved: number | undefined }> {
  const deployment = await deploy(cell);
  try {
    const driver = new Driver(deployment, !cell.noEarlySave);
    const browsers = Array.from({ length: BROWSERS }, (_, i) => new Browser(`b${i + 1}`));
    const served: string[] = [];
    // Each browser's session exists before the traffic (in the old store, for a migrating cell:
    // created by the previous deploy, which is gone before the traffic starts).
    const previous = deployment.previous === undefined ? undefined : await deployment.previous();
    for (const b of browsers) {
      const created = await driver.send(b, 0, "append", "POST", previous ? { server: previous } : {});
      assert.equal(created.status, 200, "the session was created");
    }
    if (previous !== undefined) await previous.child.stop("SIGKILL");
    const seeded = browsers.map((b) => b.jar.get("session")!);

    for (let wave = 0; wave < WAVES; wave++) {
      const fault = wave === 1 ? injectFault(cell, deployment) : Promise.resolve();
      await Promise.all(
        browsers.flatMap((b) => Array.from({ length: PER_WAVE }, (_, i) => driver.traffic(b, i % 2, 8))),
      );
      await fault;
    }

    // A log in racing writers, then the browser still served.
    await Promise.all(browsers.map(async (b) => {
      const racers = Array.from({ length: RACERS }, (_, i) => driver.traffic(b, i % 2, 20));
      await sleep(Math.random() * 10);
      // A POST that read the list is refused (409) when a writer commits first: the user tries again.
      const login = (async () => {
        for (let attempt = 0; attempt < 10; attempt++) {
          if ((await driver.send(b, 0, "login", "POST")).status !== 409) return;
        }
      })();
      await Promise.all([login, ...racers]);
      served.push(await stillServed(driver, b, "after log in"));
    }));
    // A log out racing writers, then the browser still served (a new session).
    await Promise.all(browsers.map(async (b) => {
      const racers = Array.from({ length: RACERS }, (_, i) => driver.traffic(b, i % 2, 20));
      await sleep(Math.random() * 10);
      const logout = driver.send(b, 1, "logout", "DELETE");
      await Promise.all([logout, ...racers]);
      served.push(await stillServed(driver, b, "after log out"));
    }));

    // The most concurrent runs of one session's handler, in any one process.
    let maxConcurrent = 0;
    for (const server of driver.alive()) {
      const answer = await fetch(`${server.url}/stats`, { signal: AbortSignal.timeout(5_000) });
      const stats = await answer.json() as { maxConcurrent: number };
      maxConcurrent = Math.max(maxConcurrent, stats.maxConcurrent);
    }
    // Final reads, once the traffic has stopped.
    for (const b of browsers) await driver.send(b, 0, "read", "GET", { final: true });

    const moves = await deployment.moves?.(seeded);
    const moved = moves?.moved;
    const history = historyOf(driver.log, moves?.links ?? []);
    const result = checkHistory(history);
    if (process.env.HISTORY_DUMP) {
      // The history and the exchanges behind it, for a closer look (or another checker).
      const file = join(process.env.HISTORY_DUMP, `${cellName(cell).replace(/[^a-z0-9]+/gi, "_")}.json`);
      await writeFile(file, JSON.stringify({ cell: cellName(cell), history, exchanges: driver.log }));
    }
    const statuses = driver.log.map((e) => e.status);
    const row: Row = {
      cell: cellName(cell),
      requests: driver.log.length,
      ok: statuses.filter((s) => s !== undefined && s >= 200 && s < 300).length,
      conflict: statuses.filter((s) => s === 409).length,
      info: statuses.filter((s) => s === undefined || s >= 500).length,
      maxConcurrent,
      anomalies: Object.entries(result.counts.anomalies).map(([k, n]) => `${k} ${n}`).join(", ") || "none",
      verdict: formatResult(result),
    };
    table.push(row);
    return { row, result, served, moved };
  } finally {
    await deployment.close();
  }
}

/** How many of the sessions named by `cookies` the old store holds as moved (a tombstone marked so). */
async function movedCount(from: SessionStore, cookies: string[]): Promise<number> {
  let moved = 0;
  for (const cookie of cookies) {
    const record = await from.load(await storageKeyOf(cookie.split(".")[0]!));
    if (isEnded(record) && record!.data[MOVED_KEY] === true) moved++;
  }
  return moved;
}

/** One append then one read with the browser's cookie: both answered, the read holds the append. */
async function stillServed(driver: Driver, b: Browser, when: string): Promise<string> {
  const appended = await driver.send(b, 0, "append", "POST");
  const read = await driver.send(b, 1, "read", "GET");
  const list = ((read.body as Answer | undefined)?.parts?.[0]?.ops[0] as { value?: number[] } | undefined)
    ?.value;
  if (appended.status !== 200 || read.status !== 200 || !list?.includes(appended.v!)) {
    return `${b.name} ${when}: append ${appended.status ?? "no answer"}, read ${read.status ?? "no answer"} ${
      JSON.stringify(list)
    }`;
  }
  return "";
}

async function injectFault(cell: Cell, deployment: Deployment): Promise<void> {
  await sleep(60); // requests in flight
  const victim = deployment.servers[0]!;
  switch (cell.fault) {
    case "kill":
      victim.alive = false;
      victim.child.signal("SIGKILL");
      break;
    case "stop-server":
      // Longer than FileStore's stale-lock time (and than any lock the other stores hold).
      await pauseProcess(victim.child, PAUSE_MS);
      break;
    case "pause-store":
      await deployment.pauseStore();
      break;
    case "flush-cache":
      await deployment.flushCache();
      break;
    case "cut-durable":
      await deployment.cutDurable();
      break;
    default:
      break;
  }
}

// ---------------------------------------------------------------------------------------------

/** Why a cell cannot run on this machine (no Memcached outside CI), or `undefined`. */
const memcachedSkip = await skipWithoutMemcached();
const memcachedProgramSkip = skipWithoutMemcachedProgram();
function skipOf(cell: Cell): string | undefined {
  if (cell.store !== "memcached") return undefined;
  return cell.fault === "pause-store" ? memcachedProgramSkip : memcachedSkip;
}

describe("Node as several server processes over one store: list-append histories", () => {
  after(() => {
    const lines = [
      "cell | requests | 2xx | 409 | 5xx/info | max concurrent | anomalies",
      ...table.map((r) =>
        `${r.cell} | ${r.requests} | ${r.ok} | ${r.conflict} | ${r.info} | ${r.maxConcurrent} | ${r.anomalies}`
      ),
    ];
    console.log(lines.join("\n"));
  });

  for (const cell of cells()) {
    const skip = skipOf(cell);
    if (skip) {
      it(cellName(cell), { skip }, () => {});
      continue;
    }
    it(
      cellName(cell),
      { timeout: LONG ? 900_000 : 90_000, ...(cell.todo ? { todo: cell.todo } : {}) },
      async (t) => {
        const { row, result, served, moved } = await runCell(cell);
        t.diagnostic(
          `requests ${row.requests}, 2xx ${row.ok}, 409 ${row.conflict}, 5xx/info ${row.info}, ` +
            `max concurrent handlers of one session ${row.maxConcurrent}, anomalies: ${row.anomalies}`,
        );
        t.diagnostic(row.verdict);
        if (moved !== undefined) t.diagnostic(`sessions moved under load: ${moved} of ${BROWSERS}`);
        for (const a of result.anomalies.slice(0, 5)) t.diagnostic(`${a.kind}: ${a.message}`);

        assert.ok(
          row.maxConcurrent >= MIN_CONCURRENT,
          `only ${row.maxConcurrent} handlers of one session ran at once (at least ${MIN_CONCURRENT} needed)`,
        );
        assert.ok(result.counts.finals >= BROWSERS, "every browser's list was read at the end");
        assert.ok(row.ok > row.requests / 2, "most requests were answered 2xx");
        if (cell.expectAnomalies) {
          assert.ok(
            result.anomalies.some((a) => a.kind === "lost"),
            `overwrite lost no acknowledged append: the checker did not bite (${row.verdict})`,
          );
          return;
        }
        assert.deepEqual(
          served.filter((s) => s !== ""),
          [],
          "the browser is served after log in and log out",
        );
        if (moved !== undefined) {
          assert.equal(moved, BROWSERS, "every session created in the old store moved");
        }
        assert.deepEqual(
          result.anomalies.map((a) => a.message),
          [],
        );
      },
    );
  }
});
