// The libraries under test, each used through its documented public API on Web Requests, with
// the same two routes: `count` (load, +1, save) and `read` (load, read, change nothing).
//
// Store writes are counted where a library has server-side storage: websession through a thin
// counting SessionStore (only in the counting pass, never while timing), the peers through the
// hook their own docs give for custom storage (a subclass or a wrapper of their memory storage).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";
import { Redis } from "ioredis";
import pg from "pg";
import { createCookieSessionStorage, createMemorySessionStorage } from "react-router";
import { createRouter } from "@remix-run/fetch-router";
import { createCookie } from "@remix-run/cookie";
import { Session as RemixSession } from "@remix-run/session";
import { createMemorySessionStorage as createRemixMemoryStorage } from "@remix-run/session/memory-storage";
import { createCookieSessionStorage as createRemixCookieStorage } from "@remix-run/session/cookie-storage";
import { session as remixSessionMiddleware } from "@remix-run/session-middleware";
import { getIronSession } from "iron-session";
import { H3, useSession as useH3Session } from "h3";
import { Hono } from "hono";
import {
  CookieStore as HonoSessionsCookieStore,
  MemoryStore as HonoSessionsMemoryStore,
  sessionMiddleware,
} from "hono-sessions";
import { useSession as useHonoSession } from "@hono/session";
import {
  CookieStore,
  FileStore,
  getSession,
  MemoryStore,
  PostgresStore,
  RedisStore,
  type SessionStore,
  withSession,
} from "./websession.ts";

/** A fetch handler. */
export type Handler = (request: Request) => Promise<Response>;

/** One opened library: its two routes and its write counter. */
export interface Instance {
  count: Handler;
  read: Handler;
  /** Store writes so far; `undefined` when the library keeps no server-side state. */
  writes(): number | undefined;
  /** Sessions the store holds, where it can count them. */
  sessions?(): Promise<number | undefined>;
  close(): Promise<void>;
}

/** A row of the benchmark. */
export interface Subject {
  name: string;
  /** `package@version`. */
  library: string;
  kind: "baseline" | "websession" | "peer";
  /** What the session lives in, for the table. */
  storage: string;
  /**
   * Opens the library. `counting` wraps its storage to count writes (websession); peers count
   * through their storage hooks all the time, which costs them one integer increment.
   */
  open(counting: boolean): Promise<Instance>;
}

export const SECRET = "benchmark secret: at least thirty-two characters";
const require = createRequire(import.meta.url);

/** The installed version of a package. */
export function versionOf(name: string): string {
  try {
    return (require(`${name}/package.json`) as { version: string }).version;
  } catch {
    // Some packages do not export their package.json: find it next to the entry point.
    const entry = require.resolve(name);
    const root = entry.slice(
      0,
      entry.lastIndexOf(`/node_modules/${name}/`) + `/node_modules/${name}/`.length,
    );
    return (require(`${root}package.json`) as { version: string }).version;
  }
}

/** This package's version. */
export const websessionVersion: string = (require("../package.json") as { version: string }).version;

const text = (body: string) =>
  new Response(body, { headers: { "content-type": "text/plain;charset=UTF-8" } });

/** Counts `save`/`destroy`/`touch` on the way to the real store. */
export class CountingStore implements SessionStore {
  writes = 0;
  readonly capabilities;
  #inner: SessionStore;
  constructor(inner: SessionStore) {
    this.#inner = inner;
    this.capabilities = inner.capabilities;
  }
  load(key: string) {
    return this.#inner.load(key);
  }
  save(key: string, record: Parameters<SessionStore["save"]>[1], expected: number | null) {
    this.writes++;
    return this.#inner.save(key, record, expected);
  }
  destroy(key: string) {
    this.writes++;
    return this.#inner.destroy(key);
  }
  touch(key: string, expiresAt: number, version: number) {
    this.writes++;
    return this.#inner.touch!(key, expiresAt, version);
  }
}

function websession(
  name: string,
  storage: string,
  make: () => Promise<{ store: SessionStore | CookieStore; close(): Promise<void> }>,
): Subject {
  return {
    name,
    library: `websession@${websessionVersion}`,
    kind: "websession",
    storage,
    async open(counting) {
      const made = await make();
      const counter = counting && !(made.store instanceof CookieStore)
        ? new CountingStore(made.store as SessionStore)
        : undefined;
      const store = counter ?? made.store;
      const options = { store, secrets: SECRET };
      const count = withSession(async (req: Request) => {
        const session = await getSession<{ visits?: number }>(req);
        return text(`visit ${session.update("visits", (n = 0) => n + 1)}`);
      }, options);
      const read = withSession(async (req: Request) => {
        const session = await getSession<{ visits?: number }>(req);
        return text(`visit ${session.get("visits") ?? 0}`);
      }, options);
      return {
        count,
        read,
        writes: () => (made.store instanceof CookieStore ? undefined : counter?.writes ?? 0),
        sessions: () =>
          made.store instanceof CookieStore
            ? Promise.resolve(undefined)
            : made.store.count?.() ?? Promise.resolve(undefined),
        close: made.close,
      };
    },
  };
}

const RUN = crypto.randomUUID().slice(0, 8);
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";

/** Every row, baselines first. */
export function subjects(): Subject[] {
  return [
    {
      name: "bare handler",
      library: "(none)",
      kind: "baseline",
      storage: "-",
      open: () =>
        Promise.resolve({
          count: (req: Request) => Promise.resolve(text(`visit ${req.method === "GET" ? 1 : 0}`)),
          read: (req: Request) => Promise.resolve(text(`visit ${req.method === "GET" ? 1 : 0}`)),
          writes: () => undefined,
          close: () => Promise.resolve(),
        }),
    },
    {
      name: "bare Hono app",
      library: `hono@${versionOf("hono")}`,
      kind: "baseline",
      storage: "-",
      open: () => {
        const app = new Hono().get("/count", (c) => c.text("visit 1")).get("/read", (c) => c.text("visit 1"));
        return Promise.resolve({
          count: (req: Request) => Promise.resolve(app.request(req)),
          read: (req: Request) => Promise.resolve(app.request(req)),
          writes: () => undefined,
          close: () => Promise.resolve(),
        });
      },
    },
    {
      name: "bare H3 app",
      library: `h3@${versionOf("h3")}`,
      kind: "baseline",
      storage: "-",
      open: () => {
        const app = new H3().get("/count", () => "visit 1").get("/read", () => "visit 1");
        return Promise.resolve({
          count: (req: Request) => Promise.resolve(app.fetch(req)),
          read: (req: Request) => Promise.resolve(app.fetch(req)),
          writes: () => undefined,
          close: () => Promise.resolve(),
        });
      },
    },
    {
      name: "bare fetch-router",
      library: `@remix-run/fetch-router@${versionOf("@remix-run/fetch-router")}`,
      kind: "baseline",
      storage: "-",
      open: () => {
        const router = createRouter();
        router.get("/count", () => text("visit 1"));
        router.get("/read", () => text("visit 1"));
        return Promise.resolve({
          count: (req: Request) => router.fetch(req),
          read: (req: Request) => router.fetch(req),
          writes: () => undefined,
          close: () => Promise.resolve(),
        });
      },
    },

    websession(
      "websession MemoryStore",
      "memory",
      () => Promise.resolve({ store: new MemoryStore(), close: () => Promise.resolve() }),
    ),
    websession("websession FileStore", "files", async () => {
      const dir = await mkdtemp(join(tmpdir(), "websession-bench-"));
      return { store: new FileStore({ dir }), close: () => rm(dir, { recursive: true, force: true }) };
    }),
    websession("websession CookieStore", "sealed cookie (JWE A256GCM)", () =>
      Promise.resolve({
        store: new CookieStore({ secrets: ["cookie sealing secret, at least 32 characters"] }),
        close: () => Promise.resolve(),
      })),
    websession("websession RedisStore", "Redis (ioredis)", async () => {
      const client = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, lazyConnect: true });
      await client.connect();
      const prefix = `websession-bench:${RUN}:${crypto.randomUUID().slice(0, 4)}:`;
      return {
        store: new RedisStore({ client, prefix }),
        close: async () => {
          let cursor = "0";
          do {
            const [next, keys] = await client.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
            if (keys.length > 0) await client.del(...keys);
            cursor = next;
          } while (cursor !== "0");
          client.disconnect();
        },
      };
    }),
    websession("websession PostgresStore", "PostgreSQL (pg)", async () => {
      const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 10 });
      const table = `websession_bench_${RUN}_${crypto.randomUUID().slice(0, 4)}`;
      const store = new PostgresStore({ client: pool, table });
      await store.migrate();
      return {
        store,
        close: async () => {
          await pool.query(`DROP TABLE IF EXISTS "${table}"`);
          await pool.end();
        },
      };
    }),

    {
      name: "react-router memory",
      library: `react-router@${versionOf("react-router")}`,
      kind: "peer",
      storage: "memory (signed id cookie)",
      open: () => {
        let writes = 0;
        const storage = createMemorySessionStorage({
          cookie: {
            name: "__session",
            secrets: [SECRET],
            httpOnly: true,
            secure: true,
            sameSite: "lax",
            path: "/",
          },
        });
        return Promise.resolve({
          async count(req: Request) {
            const session = await storage.getSession(req.headers.get("Cookie"));
            session.set("visits", ((session.get("visits") as number | undefined) ?? 0) + 1);
            writes++; // commitSession always writes the memory map
            return new Response(`visit ${session.get("visits")}`, {
              headers: {
                "content-type": "text/plain;charset=UTF-8",
                "Set-Cookie": await storage.commitSession(session),
              },
            });
          },
          async read(req: Request) {
            const session = await storage.getSession(req.headers.get("Cookie"));
            return text(`visit ${session.get("visits") ?? 0}`);
          },
          writes: () => writes,
          close: () => Promise.resolve(),
        });
      },
    },
    {
      name: "react-router cookie",
      library: `react-router@${versionOf("react-router")}`,
      kind: "peer",
      storage: "signed cookie (not encrypted)",
      open: () => {
        const storage = createCookieSessionStorage({
          cookie: {
            name: "__session",
            secrets: [SECRET],
            httpOnly: true,
            secure: true,
            sameSite: "lax",
            path: "/",
          },
        });
        return Promise.resolve({
          async count(req: Request) {
            const session = await storage.getSession(req.headers.get("Cookie"));
            session.set("visits", ((session.get("visits") as number | undefined) ?? 0) + 1);
            return new Response(`visit ${session.get("visits")}`, {
              headers: {
                "content-type": "text/plain;charset=UTF-8",
                "Set-Cookie": await storage.commitSession(session),
              },
            });
          },
          async read(req: Request) {
            const session = await storage.getSession(req.headers.get("Cookie"));
            return text(`visit ${session.get("visits") ?? 0}`);
          },
          writes: () => undefined,
          close: () => Promise.resolve(),
        });
      },
    },
    remix("@remix-run/session memory", "memory (signed id cookie)", true),
    remix("@remix-run/session cookie", "signed cookie (not encrypted)", false),
    {
      name: "iron-session",
      library: `iron-session@${versionOf("iron-session")}`,
      kind: "peer",
      storage: "sealed cookie (iron)",
      open: () => {
        const options = { password: SECRET, cookieName: "iron" };
        return Promise.resolve({
          async count(req: Request) {
            const carrier = new Response();
            const session = await getIronSession<{ visits?: number }>(req, carrier, options);
            session.visits = (session.visits ?? 0) + 1;
            await session.save();
            carrier.headers.set("content-type", "text/plain;charset=UTF-8");
            return new Response(`visit ${session.visits}`, { headers: carrier.headers });
          },
          async read(req: Request) {
            const session = await getIronSession<{ visits?: number }>(req, new Response(), options);
            return text(`visit ${session.visits ?? 0}`);
          },
          writes: () => undefined,
          close: () => Promise.resolve(),
        });
      },
    },
    {
      name: "h3 useSession",
      library: `h3@${versionOf("h3")}`,
      kind: "peer",
      storage: "sealed cookie (iron)",
      open: () => {
        const config = { password: SECRET };
        const app = new H3()
          .get("/count", async (event) => {
            const session = await useH3Session<{ visits?: number }>(event, config);
            await session.update({ visits: (session.data.visits ?? 0) + 1 });
            return `visit ${session.data.visits}`;
          })
          .get("/read", async (event) => {
            const session = await useH3Session<{ visits?: number }>(event, config);
            return `visit ${session.data.visits ?? 0}`;
          });
        return Promise.resolve({
          count: (req: Request) => Promise.resolve(app.fetch(req)),
          read: (req: Request) => Promise.resolve(app.fetch(req)),
          writes: () => undefined,
          close: () => Promise.resolve(),
        });
      },
    },
    honoSessions("hono-sessions MemoryStore", "memory (sealed id cookie)", true),
    honoSessions("hono-sessions CookieStore", "sealed cookie (iron)", false),
    {
      name: "@hono/session",
      library: `@hono/session@${versionOf("@hono/session")}`,
      kind: "peer",
      storage: "encrypted cookie (JWE)",
      open: () => {
        const app = new Hono();
        app.use(useHonoSession({
          secret: "6d1f0c2b9a8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a392817060f5e",
          duration: { absolute: 604_800, inactivity: 3600 },
        }));
        app.get("/count", async (c) => {
          const session = (c.var as {
            session: { get(): Promise<{ visits?: number } | null>; update(d: object): Promise<void> };
          }).session;
          const visits = ((await session.get())?.visits ?? 0) + 1;
          await session.update({ visits });
          return c.text(`visit ${visits}`);
        });
        app.get("/read", async (c) => {
          const session = (c.var as { session: { get(): Promise<{ visits?: number } | null> } }).session;
          return c.text(`visit ${(await session.get())?.visits ?? 0}`);
        });
        return Promise.resolve({
          count: (req: Request) => Promise.resolve(app.request(req)),
          read: (req: Request) => Promise.resolve(app.request(req)),
          writes: () => undefined,
          close: () => Promise.resolve(),
        });
      },
    },
  ];
}

/** @remix-run/session through the documented session middleware of fetch-router. */
function remix(name: string, storageLabel: string, memory: boolean): Subject {
  return {
    name,
    library: `@remix-run/session@${versionOf("@remix-run/session")} + session-middleware@${
      versionOf("@remix-run/session-middleware")
    }`,
    kind: "peer",
    storage: storageLabel,
    open: () => {
      let writes = 0;
      const cookie = createCookie("__session", {
        secrets: [SECRET],
        httpOnly: true,
        secure: true,
        sameSite: "Lax",
      });
      const inner = memory ? createRemixMemoryStorage() : createRemixCookieStorage();
      // Count the memory storage's writes: its save() writes the map when it returns an id.
      const storage = memory
        ? {
          read: inner.read,
          async save(session: Parameters<typeof inner.save>[0]) {
            const result = await inner.save(session);
            if (result !== null) writes++;
            return result;
          },
        }
        : inner;
      const router = createRouter({ middleware: [remixSessionMiddleware(cookie, storage)] });
      router.get("/count", (context: { get(key: typeof RemixSession): RemixSession }) => {
        const session = context.get(RemixSession);
        session.set("visits", Number(session.get("visits") ?? 0) + 1);
        return text(`visit ${session.get("visits")}`);
      });
      router.get("/read", (context: { get(key: typeof RemixSession): RemixSession }) => {
        const session = context.get(RemixSession);
        return text(`visit ${session.get("visits") ?? 0}`);
      });
      return Promise.resolve({
        count: (req: Request) => router.fetch(req),
        read: (req: Request) => router.fetch(req),
        writes: () => (memory ? writes : undefined),
        close: () => Promise.resolve(),
      });
    },
  };
}

/** hono-sessions' middleware with its own MemoryStore or CookieStore. */
function honoSessions(name: string, storageLabel: string, memory: boolean): Subject {
  return {
    name,
    library: `hono-sessions@${versionOf("hono-sessions")}`,
    kind: "peer",
    storage: storageLabel,
    open: () => {
      let writes = 0;
      // Its documented extension point: a store class. Counting subclass of its MemoryStore.
      class CountingMemoryStore extends HonoSessionsMemoryStore {
        override createSession(...args: Parameters<HonoSessionsMemoryStore["createSession"]>) {
          writes++;
          return super.createSession(...args);
        }
        override persistSessionData(...args: Parameters<HonoSessionsMemoryStore["persistSessionData"]>) {
          writes++;
          return super.persistSessionData(...args);
        }
      }
      const store = memory ? new CountingMemoryStore() : new HonoSessionsCookieStore();
      const app = new Hono<
        { Variables: { session: { get(k: string): unknown; set(k: string, v: unknown): void } } }
      >();
      app.use(
        "*",
        sessionMiddleware({
          store,
          encryptionKey: SECRET,
          expireAfterSeconds: 3600,
          cookieOptions: { sameSite: "Lax", path: "/", httpOnly: true, secure: true },
        }) as never,
      );
      app.get("/count", (c) => {
        const session = c.get("session");
        const visits = ((session.get("visits") as number | undefined) ?? 0) + 1;
        session.set("visits", visits);
        return c.text(`visit ${visits}`);
      });
      app.get("/read", (c) => c.text(`visit ${(c.get("session").get("visits") as number | undefined) ?? 0}`));
      return Promise.resolve({
        count: (req: Request) => Promise.resolve(app.request(req)),
        read: (req: Request) => Promise.resolve(app.request(req)),
        writes: () => (memory ? writes : undefined),
        close: () => Promise.resolve(),
      });
    },
  };
}
