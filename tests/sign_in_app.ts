// The sign-in app that tests/remember_me_test.ts and tests/step_up_test.ts serve over real HTTP
// (tests/http/server.ts), on each store that carries the flow: MemoryStore, RedisStore on the
// real Redis, and the sealed CookieStore. Time is a TestClock the tests move; every store gets
// the same clock as withSession. A small cookie jar plays the browser.
import { Redis as IoRedis } from "ioredis";
import {
  getSession,
  MemoryStore,
  requireRecentAuth,
  type SessionEvent,
  type SessionOptions,
  withSession,
} from "../mod.ts";
import { RedisStore } from "../src/stores/redis.ts";
import { CookieStore } from "../src/stores/cookie.ts";
import type { TestClock } from "../src/testing.ts";
import { type RunningServer, serveFetch } from "./http/server.ts";

export const SECRET = "sign-in test secret of at least thirty-two chars";

/** Seconds in a day. */
export const DAY = 86_400;

type Data = { user?: string; n?: number; note?: string };

/** One store the flow runs on. */
export interface StoreKind {
  name: string;
  /** Whether saves are compare-and-set (the merge cases need it). */
  compareAndSet: boolean;
  make(clock: TestClock): SessionOptions["store"];
  /** Removes what the tests wrote. */
  close(): Promise<void>;
}

/** The stores: MemoryStore, RedisStore (the Redis at `redisUrl`, a prefix of this run), CookieStore. */
export function storeKinds(file: string, redisUrl: string): StoreKind[] {
  const prefix = `test:${file}:${crypto.randomUUID().slice(0, 8)}:`;
  let redis: IoRedis | undefined;
  return [
    {
      name: "MemoryStore",
      compareAndSet: true,
      make: (clock) => new MemoryStore({ now: clock.now }),
      close: async () => {},
    },
    {
      name: "RedisStore",
      compareAndSet: true,
      make: (clock) => {
        redis ??= new IoRedis(redisUrl, { maxRetriesPerRequest: 1 });
        return new RedisStore({ client: redis, prefix, now: clock.now });
      },
      close: async () => {
        if (redis === undefined) return;
        let cursor = "0";
        do {
          const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
          if (keys.length > 0) await redis.del(...keys);
          cursor = next;
        } while (cursor !== "0");
        redis.disconnect();
      },
    },
    {
      name: "CookieStore",
      compareAndSet: false,
      make: (clock) => new CookieStore({ secrets: SECRET, now: clock.now }),
      close: async () => {},
    },
  ];
}

/** What the app's handler did, for the tests to count. */
export interface AppStats {
  runs: Map<string, number>;
  events: SessionEvent[];
  errors: unknown[];
}

/** A gate a request waits at (`?hold=name`) until the test opens it. */
export class Gates {
  #waiting = new Map<string, { reached: () => void; open: Promise<void>; release: () => void }>();
  #reached = new Map<string, Promise<void>>();

  /** Prepares gate `name`: `reached` resolves once a request waits there. */
  prepare(name: string): { reached: Promise<void>; release: () => void } {
    let reached = (): void => {};
    const reachedPromise = new Promise<void>((resolve) => (reached = resolve));
    let release = (): void => {};
    const open = new Promise<void>((resolve) => (release = resolve));
    this.#waiting.set(name, { reached, open, release });
    this.#reached.set(name, reachedPromise);
    return { reached: reachedPromise, release };
  }

  /** Called by the handler. */
  async wait(name: string | null): Promise<void> {
    const gate = name === null ? undefined : this.#waiting.get(name);
    if (gate === undefined) return;
    this.#waiting.delete(name!);
    gate.reached();
    await gate.open;
  }
}

/**
 * The app. Routes:
 * - `POST /login?remember=1|0` (no parameter: no choice): `regenerate({ remember })`, sets the
 *   user, `markAuthenticated()`.
 * - `POST /reauth`: `markAuthenticated()` (the password entered again).
 * - `POST /write`: increments `n`.  `POST /touch`: `touch()`.  `POST /regenerate`: `regenerate()`.
 * - `POST /logout`: `destroy()`.
 * - `POST /sensitive?maxAge=S`: `requireRecentAuth(session, { maxAge: S })`, then writes a note.
 * - `GET /me`: `{ user, n, remembered, authenticatedAt, keys, size, json }`.
 * Any route: `?hold=name` waits at that gate after the session was read; `?all=1` reads every key.
 */
export function signInApp(
  clock: TestClock,
  store: SessionOptions["store"],
  gates: Gates,
  extra: Partial<SessionOptions> = {},
): { handler: (req: Request) => Promise<Response>; stats: AppStats; options: SessionOptions } {
  const stats: AppStats = { runs: new Map(), events: [], errors: [] };
  const options: SessionOptions = {
    store,
    secrets: SECRET,
    now: clock.now,
    cookie: { secure: false },
    locking: "explicit",
    onEvent: (event) => void stats.events.push(event),
    ...extra,
  };
  const handler = withSession(async (req: Request) => {
    const url = new URL(req.url);
    const path = url.pathname;
    stats.runs.set(path, (stats.runs.get(path) ?? 0) + 1);
    const session = await getSession<Data>(req);
    if (url.searchParams.has("all")) void [...session.keys()];
    await gates.wait(url.searchParams.get("hold"));
    switch (path) {
      case "/login": {
        const choice = url.searchParams.get("remember");
        session.regenerate(choice === null ? undefined : { remember: choice === "1" });
        session.set("user", "ada");
        session.markAuthenticated();
        return new Response("signed in");
      }
      case "/reauth":
        session.markAuthenticated();
        return new Response("authenticated");
      case "/write":
        session.update("n", (n = 0) => n + 1);
        return new Response("written");
      case "/touch":
        session.touch();
        return new Response("touched");
      case "/regenerate":
        session.regenerate();
        return new Response("regenerated");
      case "/logout":
        session.destroy();
        return new Response("signed out");
      case "/sensitive":
        requireRecentAuth(session, { maxAge: Number(url.searchParams.get("maxAge") ?? "300") });
        session.set("note", "changed");
        return new Response("done");
      case "/me":
        return Response.json({
          user: session.get("user") ?? null,
          n: session.peek("n") ?? null,
          remembered: session.remembered ?? null,
          authenticatedAt: session.authenticatedAt ?? null,
          keys: [...session.keys()],
          size: session.size,
          json: session.toJSON(),
        });
    }
    return new Response("not found", { status: 404 });
  }, options);
  return { handler, stats, options };
}

/** A response as the browser saw it. */
export interface Seen {
  status: number;
  body: string;
  headers: Headers;
  setCookies: string[];
}

/** A browser tab: a cookie jar over fetch. Cookies expire only when told (`Max-Age=0`). */
export class Browser {
  jar = new Map<string, string>();
  constructor(readonly server: RunningServer) {}

  async send(path: string, method = "POST"): Promise<Seen> {
    const headers: Record<string, string> = {};
    if (this.jar.size > 0) headers.cookie = [...this.jar].map(([k, v]) => `${k}=${v}`).join("; ");
    const response = await fetch(new URL(path, this.server.url), { method, headers });
    const seen = {
      status: response.status,
      body: await response.text(),
      headers: response.headers,
      setCookies: response.headers.getSetCookie(),
    };
    for (const header of seen.setCookies) {
      const pair = header.split(";", 1)[0]!;
      const name = pair.slice(0, pair.indexOf("="));
      const value = pair.slice(name.length + 1);
      if (value === "" || /;\s*Max-Age=0(;|$)/i.test(header)) this.jar.delete(name);
      else this.jar.set(name, value);
    }
    return seen;
  }

  async me(): Promise<
    {
      user: string | null;
      n: number | null;
      remembered: boolean | null;
      authenticatedAt: number | null;
      keys: string[];
      size: number;
      json: Record<string, unknown>;
    }
  > {
    const seen = await this.send("/me", "GET");
    return JSON.parse(seen.body);
  }
}

/** The `Max-Age` of the session's Set-Cookie values (chunks too): one number, or `undefined` if none has one. */
export function maxAgeOf(setCookies: string[]): number | undefined {
  const ages = new Set<number | undefined>();
  for (const header of setCookies) {
    if (/;\s*Max-Age=0(;|$)/i.test(header)) continue; // a chunk cookie deleted
    const match = /;\s*Max-Age=(\d+)/i.exec(header);
    ages.add(match === null ? undefined : Number(match[1]));
    if (match === null && /;\s*Expires=/i.test(header)) throw new Error(`Expires without Max-Age: ${header}`);
  }
  if (ages.size > 1) throw new Error(`Session cookies disagree on Max-Age: ${setCookies.join(" | ")}`);
  return [...ages][0];
}

/** Serves the app; returns the server and a browser. */
export async function serve(handler: (req: Request) => Promise<Response>): Promise<RunningServer> {
  return await serveFetch(handler);
}
