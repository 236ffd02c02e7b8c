// What the tests of MigratingStore and of the moving backend share: the real Redis and PostgreSQL
// on loopback, fresh prefixes and tables under one run's (removed at the end), pairs of stores
// that several processes share, the storage key of a client's session; and for the move from
// CookieStore, the app a browser uses before and after the switch, the server stores it moves
// to, and the server record a seal moves to.
import { after } from "node:test";
import assert from "node:assert/strict";
import { Redis as IoRedis } from "ioredis";
import pg from "pg";
import { getSession, withSession } from "../../../mod.ts";
import type { SessionOptions } from "../../../src/options.ts";
import type { SessionStore } from "../../../src/store.ts";
import { storageKeyOf } from "../../../src/id.ts";
import { MemoryStore } from "../../../src/stores/memory.ts";
import type { CookieStore } from "../../../src/stores/cookie.ts";
import { FileStore } from "../../../src/stores/file.ts";
import { PostgresStore } from "../../../src/stores/postgres.ts";
import { RedisStore } from "../../../src/stores/redis.ts";
import { MigratingStore } from "../../../src/stores/migrating.ts";
import { movedSessionId } from "../../../src/backends/moving.ts";
import type { Client } from "../../conformance/client.ts";
import { dropPrefix, quiet, REDIS_URL, tempDir } from "../composed.ts";
import { storeTables } from "../../conformance/util.ts";

/** Part of every prefix and table a test file uses, so that runs never meet. */
export const RUN = crypto.randomUUID().slice(0, 8);

let client: IoRedis | undefined;
/**
 * The Redis the stores use: a client opened on first use and closed after the file's tests, with
 * every key under this run's prefixes (a runtime that runs several files in one process opens it
 * again for the next).
 */
export const redis = (): IoRedis => (client ??= new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 }));
after(async () => {
  const closing = client;
  client = undefined;
  if (closing === undefined) return;
  await dropPrefix(closing, `migrating-test:${RUN}:`);
  closing.disconnect();
});

let n = 0;
/** A fresh Redis prefix. */
export const prefix = () => `migrating-test:${RUN}:${++n}:`;

/** The storage key of a client's session (the id is the signed cookie's first part). */
export function keyOf(client: Client): Promise<string> {
  const value = decodeURIComponent(client.jar.get("session")!);
  return storageKeyOf(value.slice(0, value.lastIndexOf(".")));
}

/** Two stores shared by several processes: a directory and a Redis prefix. */
export async function pair() {
  const dir = await tempDir();
  const to = prefix();
  return {
    from: () => new FileStore({ dir }),
    to: () => new RedisStore({ client: redis(), prefix: to }),
    migrating: () =>
      new MigratingStore({
        from: new FileStore({ dir }),
        to: new RedisStore({ client: redis(), prefix: to }),
      }),
  };
}

// The move from CookieStore (src/backends/moving.ts).

const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
/** The application's secret. */
export const SECRET = "the application's secret, 32 characters or more";
/** The CookieStore's secret. */
export const COOKIE_SECRET = "the cookie store's secret, 32 characters or more";
/** Signed ids (`id.signature`): what the server store's cookie holds. */
export const SIGNED = /^[A-Za-z0-9_-]{32}\.[A-Za-z0-9_-]{43}$/;
/** Enough data that the seal takes several chunk cookies (`session.0`, `session.1`, ...). */
export const BLOB = "0123456789abcdef".repeat(40);

export type Data = { user?: string; list?: string[]; blob?: string };

/** The app: sign in, append to a list, read, log out. The same handler before and after the switch. */
export function listApp(store: SessionStore | CookieStore, extra: Partial<SessionOptions<Data>> = {}) {
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

export interface Target {
  label: string;
  /** A fresh server store, and what removes its data afterwards. */
  open(): Promise<{ store: SessionStore; close(): Promise<void> }>;
}

let pool: pg.Pool | undefined;
/** The PostgreSQL the stores use: a pool opened on first use and ended after the file's tests. */
const admin = (): pg.Pool => (pool ??= new pg.Pool({ connectionString: DATABASE_URL, max: 4 }));
after(async () => {
  const ending = pool;
  pool = undefined;
  await ending?.end();
});

/** The server stores a browser moves to: MemoryStore, Redis and PostgreSQL. */
export const targets: Target[] = [
  {
    label: "MemoryStore",
    open: () => Promise.resolve({ store: new MemoryStore(), close: () => Promise.resolve() }),
  },
  {
    label: "Redis",
    open() {
      const at = prefix();
      return Promise.resolve({
        store: new RedisStore({ client: redis(), prefix: at }),
        close: () => dropPrefix(redis(), at),
      });
    },
  },
  {
    label: "PostgreSQL",
    async open() {
      const table = `websession_cookie_migration_${RUN}_${++n}`;
      const store = new PostgresStore({ client: admin(), table });
      await store.migrate();
      return {
        store,
        close: async () => void await admin().query(`DROP TABLE IF EXISTS ${storeTables(table)}`),
      };
    },
  },
];

/** The server record a browser's seal moves to. */
export async function movedKey(cookies: CookieStore, jar: Map<string, string>): Promise<string> {
  const opened = await cookies.open((name) => jar.get(name), "session");
  assert.ok(opened !== null && !("invalid" in opened), "the seal opens");
  return await storageKeyOf(await movedSessionId(opened.id));
}

/** The names of a jar's sealed chunk cookies. */
export function sealNames(jar: Map<string, string>): string[] {
  return [...jar.keys()].filter((name) => name.startsWith("session.")).sort();
}
