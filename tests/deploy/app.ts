// The small session app that every deployment cell serves: the same fetch handler on workerd
// (Miniflare, wrangler dev), Deno.serve and Bun.serve. Web standards only.
//
// Routes (all but /stats go through withSession):
//   POST /append?v=X      appends X to the list "l" with session.update("l", ...)
//   POST /append-set?v=X  appends X with a plain get + set (a POST: a changed read is refused, 409);
//                         answers the list it read
//   GET  /list            the list, as JSON
//   POST /login           regenerate(), then marks the session logged in
//   POST /logout          destroy()
//   GET  /stats           what this isolate or process saw: the most requests of one session it
//                         was serving at once (counted where the fetch handler is entered, by the
//                         session cookie presented), and the most session handlers (the code
//                         inside withSession) of one session that ran at once, by session id
//
// Every answer that opened the session carries the session's id in `x-session-id`, so that the
// driver can find its session in /stats; correctness is decided from status codes and lists.
import { getSession, type SessionOptions, withSession } from "../../mod.ts";

/** The session data of the app. */
export type Data = { l?: string[]; user?: string };

/** How long each handler waits (ms) while it holds the session, so that requests overlap. */
export const HOLD_MS = 25;

/** How many of something run now, by key, and the most seen at once: plain data in module scope. */
class AtOnce {
  readonly #now = new Map<string, number>();
  readonly most = new Map<string, number>();

  enter(key: string): void {
    const now = (this.#now.get(key) ?? 0) + 1;
    this.#now.set(key, now);
    if (now > (this.most.get(key) ?? 0)) this.most.set(key, now);
  }

  leave(key: string): void {
    const now = (this.#now.get(key) ?? 1) - 1;
    if (now === 0) this.#now.delete(key);
    else this.#now.set(key, now);
  }
}

/** Requests in the fetch handler, by the session cookie they presented. */
const requests = new AtOnce();
/** Session handlers running (after getSession), by session id. */
const handlers = new AtOnce();

function cookieOf(request: Request): string {
  return /(?:^|;\s*)session=([^;]*)/.exec(request.headers.get("cookie") ?? "")?.[1] ?? "none";
}

function hold(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** What GET /stats answers. */
export interface Stats {
  /** The most requests that presented one session cookie being served at once, by cookie value. */
  requests: Record<string, number>;
  /** The most session handlers of one session that ran at once, by session id. */
  handlers: Record<string, number>;
}

/** The stats of this isolate or process. */
export function stats(): Stats {
  return { requests: Object.fromEntries(requests.most), handlers: Object.fromEntries(handlers.most) };
}

/**
 * The app's fetch handler. `options` is what `withSession` takes: an options object, or a
 * function of the handler's arguments (Workers: `(request, env, ctx)`), which must return the
 * same object for the same `env`.
 */
export function createDeployApp<A extends unknown[]>(
  options: SessionOptions<Data> | ((request: Request, ...rest: A) => SessionOptions<Data>),
): (request: Request, ...rest: A) => Promise<Response> {
  const app = withSession(async function handler(request: Request, ..._rest: A): Promise<Response> {
    const url = new URL(request.url);
    const session = await getSession<Data>(request);
    const id = session.id;
    handlers.enter(id);
    try {
      await hold(HOLD_MS);
      const headers = { "x-session-id": id };
      const idNow = () => ({ "x-session-id": session.id });
      const value = url.searchParams.get("v") ?? "";
      if (request.method === "POST" && url.pathname === "/append") {
        session.update("l", (list = []) => [...list, value]);
        return Response.json({ appended: value }, { headers });
      }
      if (request.method === "POST" && url.pathname === "/append-set") {
        const list = session.get("l") ?? [];
        session.set("l", [...list, value]);
        return Response.json({ appended: value, read: list }, { headers });
      }
      if (request.method === "GET" && url.pathname === "/list") {
        return Response.json({ list: session.get("l") ?? [], user: session.get("user") ?? null }, {
          headers,
        });
      }
      if (request.method === "POST" && url.pathname === "/login") {
        session.regenerate();
        session.set("user", "someone");
        return Response.json({ user: "someone" }, { headers: idNow() });
      }
      if (request.method === "POST" && url.pathname === "/logout") {
        session.destroy();
        return Response.json({ user: null }, { headers });
      }
      return new Response("Not found", { status: 404, headers });
    } finally {
      handlers.leave(id);
    }
  }, options);
  return async function deployApp(request: Request, ...rest: A): Promise<Response> {
    if (new URL(request.url).pathname === "/stats") return Response.json(stats());
    const cookie = cookieOf(request);
    requests.enter(cookie);
    try {
      return await app(request, ...rest);
    } finally {
      requests.leave(cookie);
    }
  };
}
