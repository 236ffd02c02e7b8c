// The app a history is recorded against: one fetch handler, built with the library's public
// entry points, whose session holds one list under the key "l". Every route answers with what
// it did and saw as list-append micro-ops (the checker's `MicroOp`), and the session it ran on:
//
//   /append?v=N       session.update("l", (l = []) => [...l, N])        append
//   /getset?v=N       get("l"), then set("l", [...l, N])                read + append
//   /read             get("l")                                          read
//   /twice?v=N&w=M    update(N), await session.save(), update(M)        two transactions
//   /login?user=U     get("l"), regenerate(), set("user", U)            read (the list is kept)
//   /logout           get("l"), destroy()                               read (the list as it ended)
//   /stats            (no session) the most handlers of one session that ran at once
//   /stats/reset      (no session) forgets them
//
// Any method reaches any route; the conflict policy treats them by their own rules (an
// idempotent method runs again on a conflict, a POST is refused).
//
// A 2xx body: `{ sid, to, parts: [{ sid, ops }] }`: `sid` is the session the handler loaded
// (the first 16 characters of its id), `to` the one it ended with (another after a log in or
// log out). An error body (409, 503, 500): `{ error, early? }`: `early` is the part that
// `save()` stored before the error, when one did. Requests carry `x-request-id` so that the
// error handler can find that part.
//
// Concurrency is measured, not assumed: the handler counts, per session cookie, how many of its
// runs are in progress at once in this process, and `/stats` reports the most. Each run holds
// `delayMs` after loading the session, so that runs of one session really overlap.
import { getSession, type SealedSessionStore, type SessionStore, withSession } from "../../mod.ts";
import type { ConflictPolicy } from "../../mod.ts";
import type { MicroOp } from "./checker.ts";

/** The app's session data. */
export type Data = { l?: number[]; user?: string };

/** One transaction the handler ran, as the checker reads it. */
export interface Part {
  /** The session it ran on (first 16 characters of the id). */
  sid: string;
  ops: MicroOp[];
}

/** The body of a 2xx answer. */
export interface Answer {
  sid: string;
  to: string;
  parts: Part[];
}

/** The body of an error answer. */
export interface ErrorAnswer {
  error: string;
  early?: Part;
}

/** Options of {@linkcode historyApp}. */
export interface HistoryAppOptions {
  store: SessionStore | SealedSessionStore;
  /** @default "merge" */
  conflict?: ConflictPolicy;
  /** The app's clock (a skewed one for a process whose clock is off). @default Date.now */
  now?: () => number;
  /** How long each handler run holds after loading its session, in ms. @default 30 */
  delayMs?: number;
}

const SECRET = "history app secret, at least 32 characters long";
const KEY = "l";

/** The session id prefix a handler reports: enough to tell sessions apart, not a credential. */
export const sidOf = (id: string): string => id.slice(0, 16);

/**
 * The session id prefix in a `Cookie` header (`session=<id>.<signature>`), if any. A sealed
 * cookie (a compact JWE, five parts: its id is inside) is named by its iv, unique per seal.
 */
export function cookieSid(cookie: string | null): string | undefined {
  const match = /(?:^|;\s*)session=([^;]+)/.exec(cookie ?? "");
  if (!match) return undefined;
  const parts = match[1]!.split(".");
  return sidOf(parts.length === 5 ? parts[2]! : parts[0]!);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Builds the app.
 *
 * @param options The store, conflict policy, clock and hold.
 * @returns The fetch handler.
 */
export function historyApp(options: HistoryAppOptions): (request: Request) => Promise<Response> {
  const delay = options.delayMs ?? 30;
  const running = new Map<string, number>();
  let maxConcurrent = 0;
  let maxSessions = 0;
  /** Parts that `save()` stored, by request id, until the request is answered. */
  const early = new Map<string, Part>();

  /** One run of the handler. */
  const run = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    const session = await getSession<Data>(req);
    const sid = sidOf(session.id);
    await sleep(delay);
    const v = Number(url.searchParams.get("v"));
    const parts: Part[] = [];
    switch (url.pathname) {
      case "/append":
        session.update(KEY, (l = []) => [...l, v]);
        parts.push({ sid, ops: [{ f: "append", key: KEY, value: v }] });
        break;
      case "/getset": {
        const l = session.get(KEY) ?? [];
        session.set(KEY, [...l, v]);
        parts.push({ sid, ops: [{ f: "read", key: KEY, value: l }, { f: "append", key: KEY, value: v }] });
        break;
      }
      case "/read":
        parts.push({ sid, ops: [{ f: "read", key: KEY, value: session.get(KEY) ?? [] }] });
        break;
      case "/twice": {
        const w = Number(url.searchParams.get("w"));
        session.update(KEY, (l = []) => [...l, v]);
        await session.save();
        const first: Part = { sid, ops: [{ f: "append", key: KEY, value: v }] };
        const id = req.headers.get("x-request-id");
        if (id) early.set(id, first);
        session.update(KEY, (l = []) => [...l, w]);
        parts.push(first, { sid: sidOf(session.id), ops: [{ f: "append", key: KEY, value: w }] });
        break;
      }
      case "/login": {
        const l = session.get(KEY) ?? [];
        session.regenerate();
        session.set("user", url.searchParams.get("user") ?? "ada");
        parts.push({ sid, ops: [{ f: "read", key: KEY, value: l }] });
        break;
      }
      case "/logout": {
        const l = session.get(KEY) ?? [];
        session.destroy();
        parts.push({ sid, ops: [{ f: "read", key: KEY, value: l }] });
        break;
      }
      default:
        return new Response("not found", { status: 404 });
    }
    return Response.json({ sid, to: sidOf(session.id), parts } satisfies Answer);
  };

  const inner = withSession(async (req: Request) => {
    // Counted per run of the handler itself (a run again after a conflict counts again).
    const who = cookieSid(req.headers.get("cookie")) ?? "";
    const now = (running.get(who) ?? 0) + 1;
    running.set(who, now);
    if (who !== "" && now > maxConcurrent) maxConcurrent = now;
    if (running.size > maxSessions) maxSessions = running.size;
    try {
      return await run(req);
    } finally {
      const left = running.get(who)! - 1;
      if (left === 0) running.delete(who);
      else running.set(who, left);
    }
  }, {
    store: options.store,
    secrets: SECRET,
    cookie: { secure: false }, // plain HTTP on loopback
    conflict: options.conflict ?? "merge",
    ...(options.now ? { now: options.now } : {}),
    onError: (error, req) => {
      const status = typeof (error as { status?: unknown }).status === "number"
        ? (error as { status: number }).status
        : 500;
      const id = req.headers.get("x-request-id");
      const part = id ? early.get(id) : undefined;
      const body: ErrorAnswer = { error: (error as Error).name, ...(part ? { early: part } : {}) };
      return Response.json(body, { status });
    },
  });

  return async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    if (url.pathname === "/stats") return Response.json({ maxConcurrent, maxSessions });
    if (url.pathname === "/stats/reset") {
      maxConcurrent = 0;
      maxSessions = 0;
      return Response.json({ ok: true });
    }
    const id = req.headers.get("x-request-id");
    try {
      return await inner(req);
    } finally {
      if (id) early.delete(id);
    }
  };
}
