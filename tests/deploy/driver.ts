// The client side of every deployment cell: concurrent requests of one session against a served
// app (tests/deploy/app.ts), from outside, and the checks of what came back. Node only.
//
// One scenario per cell:
//   1. log in (no cookie): the session's cookie;
//   2. rounds of `concurrency` appends fired at once with that one cookie, half through
//      session.update() and half through get + set (a POST whose read changed is refused, 409);
//   3. a log in (regenerate) racing `concurrency` appends of the old cookie, then the list through
//      the new cookie;
//   4. a log out (destroy) racing `concurrency` appends, then the old cookie once more (a fresh,
//      empty session) and a new log in with one more round (the app still serves sessions);
//   5. /stats: the most handlers of one session the server saw running at once.
// Every request and answer is recorded in a history (see `Op`), for the history checker.
import { type AnomalyKind, checkHistory, formatResult, type Op as CheckedOp } from "../history/checker.ts";
import type { Stats } from "./app.ts";

/** Sends one request to the served app (a Miniflare dispatchFetch, or fetch over loopback). */
export type Send = (path: string, init: { method: string; cookie?: string }) => Promise<Response>;

/** How big a scenario is. */
export interface ScenarioOptions {
  /** Requests fired at once in each round. */
  concurrency: number;
  /** Rounds of appends before the log in race. */
  rounds: number;
  /** A 503 is what the store promises for a stale read (Workers KV): counted, not a failure. */
  staleReads?: boolean;
  /** Waited before the final reads, so a stale store has caught up (ms). */
  settleMs?: number;
}

/** One request of the history: what was asked and what came back. */
export interface Op {
  /** The client's step, in the order requests were fired. */
  index: number;
  /** `append` (update), `append-set` (get + set), `read`, `login`, `logout`. */
  f: "append" | "append-set" | "read" | "login" | "logout";
  /**
   * The session the client meant, as it knows it: `A` from the first log in (through its
   * regenerate(), which keeps the data, to its log out), `B` from the log in after that; `none`
   * for a request without a cookie.
   */
  session: string;
  /** Which of the client's cookies it sent: `c1`, `c2`, ... (`none`: no cookie). */
  cookie: string;
  /** The value appended; for a read, the list it answered. */
  value?: string | string[];
  /** What a get + set append read (its answer says). */
  read?: string[];
  /** This read is the final state of its session's list. */
  final?: boolean;
  status: number;
  /** The session id the server opened (`x-session-id`). */
  sessionId?: string;
  /** The body of an answer of 500 or more (the first 200 characters). */
  error?: string;
  /** When it was sent and answered (ms, performance.now). */
  start: number;
  end: number;
}

/** What a cell saw. */
export interface Outcome {
  history: Op[];
  /** Requests sent, answered 2xx, 409, 503 and other 5xx. */
  requests: number;
  ok: number;
  conflicts: number;
  unavailable: number;
  serverErrors: number;
  /**
   * The most requests presenting one of this scenario's session cookies that the server was
   * serving at once (from /stats, counted where its fetch handler is entered).
   */
  mostAtOnce: number;
  /** The most session handlers (inside withSession) of one session that ran at once. */
  handlersAtOnce: number;
  /** What went wrong that the README does not allow, one line each. */
  anomalies: string[];
  /** What went wrong that the README allows for this store (stale reads, lost updates on KV). */
  allowed: string[];
  /** The history checker's verdict, in one line. */
  verdict: string;
}

/** The value of the `session` cookie in an answer: a string, `""` when cleared, else undefined. */
export function sessionCookie(response: Response): string | undefined {
  const all = typeof response.headers.getSetCookie === "function"
    ? response.headers.getSetCookie()
    : (response.headers.get("set-cookie") ?? "").split(/,(?=\s*[^;,=\s]+=)/);
  for (const line of all) {
    const match = /^\s*session=([^;]*)/.exec(line);
    if (match === null) continue;
    if (/;\s*max-age=0/i.test(line) || match[1] === "") return "";
    return match[1]!;
  }
  return undefined;
}

/** Runs the scenario against `send` and `stats`; never throws on what the server answers. */
export async function runScenario(
  send: Send,
  stats: () => Promise<Stats>,
  options: ScenarioOptions,
): Promise<Outcome> {
  const history: Op[] = [];
  const anomalies: string[] = [];
  const allowed: string[] = [];
  const labels = new Map<string, string>();
  let serial = 0;
  let unique = 0;
  const label = (cookie: string | undefined) => {
    if (cookie === undefined) return "none";
    if (!labels.has(cookie)) labels.set(cookie, `c${labels.size + 1}`);
    return labels.get(cookie)!;
  };

  async function call(
    f: Op["f"],
    cookie: string | undefined,
    session: string,
  ): Promise<{ op: Op; response: Response | undefined; body: unknown; setCookie?: string }> {
    const value = f === "append" || f === "append-set" ? `v${++unique}` : undefined;
    const path = f === "read" ? "/list" : f === "append" || f === "append-set" ? `/${f}?v=${value}` : `/${f}`;
    const op: Op = {
      index: serial++,
      f,
      session,
      cookie: label(cookie),
      status: 0,
      start: performance.now(),
      end: 0,
    };
    if (value !== undefined) op.value = value;
    let response: Response | undefined;
    let body: unknown;
    try {
      response = await send(path, { method: f === "read" ? "GET" : "POST", ...(cookie ? { cookie } : {}) });
      op.status = response.status;
      const text = await response.text();
      if (response.status >= 500) op.error = text.slice(0, 200);
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
      op.sessionId = response.headers.get("x-session-id") ?? undefined;
      if (f === "read" && response.ok) op.value = (body as { list: string[] }).list;
      if (f === "append-set" && response.ok) op.read = (body as { read: string[] }).read;
    } catch (error) {
      op.status = -1;
      op.error = String(error).slice(0, 200);
    }
    op.end = performance.now();
    history.push(op);
    const setCookie = response === undefined ? undefined : sessionCookie(response);
    return { op, response, body, ...(setCookie !== undefined ? { setCookie } : {}) };
  }

  /** Appends fired at once with one cookie (half update, half get + set), plus `extra`. */
  async function round(cookie: string, session: string, extra?: "login" | "logout") {
    const calls: ReturnType<typeof call>[] = [];
    const middle = Math.floor(options.concurrency / 2);
    for (let i = 0; i < options.concurrency; i++) {
      if (extra !== undefined && i === middle) calls.push(call(extra, cookie, session));
      calls.push(call(i % 2 === 0 ? "append" : "append-set", cookie, session));
    }
    return await Promise.all(calls);
  }

  /** The newest cookie a round handed out for the session (stores with stale reads re-sign it). */
  function follow(cookie: string, answers: Awaited<ReturnType<typeof call>>[]): string {
    let newest = cookie;
    let at = -Infinity;
    for (const a of answers) {
      if (a.setCookie && a.op.f !== "login" && a.op.end > at) {
        newest = a.setCookie;
        at = a.op.end;
      }
    }
    return newest;
  }

  // 1. Log in.
  const first = await call("login", undefined, "A");
  if (first.op.status !== 200 || !first.setCookie) {
    anomalies.push(`the first log in answered ${first.op.status} ${first.op.error ?? ""}`.trim());
    return summarize();
  }
  let cookie = first.setCookie;
  const sessionId = first.op.sessionId;

  // 2. Rounds of appends.
  for (let r = 0; r < options.rounds; r++) {
    const answers = await round(cookie, "A");
    for (const a of answers) {
      if (a.response?.ok && a.op.sessionId !== sessionId && a.op.sessionId !== undefined) {
        anomalies.push(`${a.op.f} ${a.op.value} was served another session (${a.op.sessionId})`);
      }
    }
    cookie = follow(cookie, answers);
  }
  await call("read", cookie, "A");

  // 3. A log in racing appends; then the list through the new cookie, the final state of the
  // session before its log out (regenerate() keeps the data).
  const loginRace = await round(cookie, "A", "login");
  const login = loginRace.find((a) => a.op.f === "login")!;
  let loggedIn: string | undefined;
  if (login.op.status !== 200 || !login.setCookie) {
    anomalies.push(`the log in racing appends answered ${login.op.status} ${login.op.error ?? ""}`.trim());
  } else {
    loggedIn = login.setCookie;
    finalRead("after the log in race", (await call("read", loggedIn, "A")).op);
  }

  // 4. A log out racing appends (the same list after its final read: the checker counts these
  // appends as unchecked), then the old cookie once more, then a new session.
  if (loggedIn !== undefined) {
    const logoutRace = await round(loggedIn, "A-logout", "logout");
    const logout = logoutRace.find((a) => a.op.f === "logout")!;
    if (logout.op.status !== 200) {
      anomalies.push(
        `the log out racing appends answered ${logout.op.status} ${logout.op.error ?? ""}`.trim(),
      );
    } else if (logout.setCookie !== "") {
      anomalies.push("the log out did not clear the cookie");
    }
    const after = await call("read", loggedIn, "ended");
    if (after.op.status !== 200) {
      anomalies.push(`the logged-out cookie then answered ${after.op.status} ${after.op.error ?? ""}`.trim());
    } else if ((after.op.value as string[]).length !== 0) {
      // Workers KV: "a location may serve a session that ended elsewhere until the tombstone
      // reaches it"; the cookie's version is older than the tombstone, so no stale read is seen.
      (options.staleReads ? allowed : anomalies).push(
        `the logged-out cookie was served data: ${JSON.stringify(after.op.value)}`,
      );
    }
  }
  if (options.settleMs) await new Promise((resolve) => setTimeout(resolve, options.settleMs));
  const again = await call("login", undefined, "B");
  if (again.op.status !== 200 || !again.setCookie) {
    anomalies.push(`a new log in after the races answered ${again.op.status} ${again.op.error ?? ""}`.trim());
  } else {
    const answers = await round(again.setCookie, "B");
    const fresh = follow(again.setCookie, answers);
    if (options.settleMs) await new Promise((resolve) => setTimeout(resolve, options.settleMs));
    finalRead("in the new session", (await call("read", fresh, "B")).op);
  }
  return summarize();

  /** Marks a read as the final state of its session's list; one that failed is reported. */
  function finalRead(when: string, read: Op): void {
    if (read.status === 200) {
      read.final = true;
      return;
    }
    const text = `the final read ${when} answered ${read.status} ${read.error ?? ""}`.trim();
    (options.staleReads && read.status === 503 ? allowed : anomalies).push(text);
  }

  /** What the history checker decides, its anomalies sorted into allowed and not. */
  function check(): string {
    const result = checkHistory(checkerHistory(history));
    for (const anomaly of result.anomalies) {
      const line = `${anomaly.kind}: ${anomaly.message}`;
      (options.staleReads && ALLOWED_ON_KV.has(anomaly.kind) ? allowed : anomalies).push(line);
    }
    return formatResult(result);
  }

  async function summarize(): Promise<Outcome> {
    let mostAtOnce = 0;
    let handlersAtOnce = 0;
    try {
      const seen = await stats();
      for (const cookie of labels.keys()) mostAtOnce = Math.max(mostAtOnce, seen.requests[cookie] ?? 0);
      for (const op of history) {
        if (op.sessionId !== undefined) {
          handlersAtOnce = Math.max(handlersAtOnce, seen.handlers[op.sessionId] ?? 0);
        }
      }
    } catch (error) {
      anomalies.push(`/stats failed: ${error}`);
    }
    const verdict = check();
    const count = (test: (status: number) => boolean) => history.filter((op) => test(op.status)).length;
    for (const op of history) {
      if (op.status === 503 && options.staleReads) continue;
      if (op.status >= 500 || op.status < 0) {
        anomalies.push(
          `${op.f} ${op.value ?? ""} answered ${op.status}: ${op.error ?? ""}`.replace(/\s+/g, " "),
        );
      }
    }
    return {
      history,
      requests: history.length,
      ok: count((s) => s >= 200 && s < 300),
      conflicts: count((s) => s === 409),
      unavailable: count((s) => s === 503),
      serverErrors: count((s) => s >= 500 && s !== 503 || s < 0),
      mostAtOnce,
      handlersAtOnce,
      anomalies,
      allowed,
      verdict,
    };
  }
}

/**
 * What the README allows on Workers KV, which cannot compare-and-set: "concurrent writes lose
 * updates" (a lost append, and what follows from last-write-wins: reads that disagree on the
 * list, stale reads, dependency cycles). Never allowed: a refused append that lands, a duplicate,
 * a value nobody appended, or one from another session.
 */
const ALLOWED_ON_KV = new Set<AnomalyKind>([
  "lost",
  "non-prefix",
  "stale-read",
  "G0",
  "G1c",
  "G-single",
  "G2",
  "G0-realtime",
  "G1c-realtime",
  "G-single-realtime",
  "G2-realtime",
]);

/** A list value as the checker's number: `v12` is 12. */
function numberOf(value: string): number {
  return Number(value.slice(1));
}

/**
 * The history in the checker's terms: each append, get + set append and read is a transaction
 * on the list "l" of the session the client meant; 2xx is `ok`, 409 `fail`, anything else
 * (5xx, no answer) `info`. Log ins and log outs touch no list and are left out.
 * The appends racing the log out are a session of their own (`A-logout`): the list they append
 * to ends with the log out, with no read to judge them by (the checker counts them unchecked).
 */
export function checkerHistory(history: readonly Op[]): CheckedOp[] {
  const checked: CheckedOp[] = [];
  for (const op of history) {
    // The logged-out cookie's read is judged by the scenario itself (a fresh, empty session).
    if (op.f === "login" || op.f === "logout" || op.session === "ended") continue;
    const outcome = op.status >= 200 && op.status < 300 ? "ok" : op.status === 409 ? "fail" : "info";
    const txn: CheckedOp["txn"] = [];
    if (op.f === "read") {
      txn.push({
        f: "read",
        key: "l",
        value: outcome === "ok" ? (op.value as string[]).map(numberOf) : null,
      });
    } else {
      // What a get + set racing the log out read is a list that has no final state to judge it by.
      if (op.f === "append-set" && op.session !== "A-logout") {
        txn.push({ f: "read", key: "l", value: outcome === "ok" ? (op.read ?? []).map(numberOf) : null });
      }
      txn.push({ f: "append", key: "l", value: numberOf(op.value as string) });
    }
    checked.push({
      client: `c${op.index}`,
      request: String(op.index),
      session: op.session,
      start: op.start,
      end: outcome === "info" && op.status < 0 ? Infinity : op.end,
      txn,
      outcome,
      ...(op.final ? { final: true } : {}),
    });
  }
  return checked;
}

/** One line of numbers for a cell's report. */
export function describeOutcome(name: string, o: Outcome): string {
  const first = o.anomalies.slice(0, 3).join(" | ");
  return `${name}: ${o.requests} requests, ${o.ok} 2xx, ${o.conflicts} 409, ${o.unavailable} 503, ` +
    `${o.serverErrors} other 5xx, most requests of one session at once ${o.mostAtOnce} ` +
    `(session handlers ${o.handlersAtOnce}), ` +
    `${o.anomalies.length} anomalies${first ? ` (${first})` : ""}` +
    (o.allowed.length
      ? `; allowed by the README: ${o.allowed.length} (${o.allowed.slice(0, 2).join(" | ")})`
      : "") +
    `; checker: ${o.verdict}`;
}

/** Scenario sizes: small for CI, larger with DEPLOY_LONG=1. */
export function scenarioSize(): { concurrency: number; rounds: number } {
  return process.env.DEPLOY_LONG === "1" ? { concurrency: 30, rounds: 20 } : { concurrency: 20, rounds: 3 };
}
