// The rounds of the contention benchmark, shared by every place that runs them: bench/contention.ts
// on Node (in process, and driving the Worker of bench/contention_worker.mjs from outside its
// isolate), bench/contention_deno.mjs in Deno, and the subjects the Worker serves. Plain
// JavaScript: Node, Deno and esbuild (for workerd) load it as is.
//
// A subject is { get, post, read, runs }: three fetch handlers and the count of handler runs so
// far (a number, or a promise of one when the handlers run elsewhere).
import { createLockedSessions } from "./lock_subject.mjs";
import { timed } from "./timed.mjs";

export const IN_FLIGHT = 30;
/** At most this many measured rounds per subject and load, however quick they are. */
const MAX_ROUNDS = 150;
/** Unmeasured rounds per subject and load before the measured ones. */
export const WARM_ROUNDS = 3;
/** Quick rounds go on warming up for this long (ms). */
const WARM_MS = 500;
export const SECRET = "benchmark secret: at least thirty-two characters";

/** websession over `store`: GET is the README's first example, POST `get` then `set`. */
export function websessionSubject(core, store) {
  let runs = 0;
  const options = { store, secrets: SECRET, onError: () => {} };
  return {
    // The README's first example.
    get: core.withSession(async (req) => {
      runs++;
      const session = await core.getSession(req);
      session.update("visits", (n = 0) => n + 1);
      return new Response(`visit ${session.get("visits")}`);
    }, options),
    post: core.withSession(async (req) => {
      runs++;
      const session = await core.getSession(req);
      session.set("visits", (session.get("visits") ?? 0) + 1);
      return new Response("ok");
    }, options),
    read: core.withSession(async (req) => {
      runs++;
      return new Response(String((await core.getSession(req)).get("visits") ?? 0));
    }, options),
    runs: () => runs,
  };
}

/** The same three handlers behind a per-session lock taken before loading (bench/lock_subject.mjs). */
export function lockSubject(store) {
  let runs = 0;
  const sessions = createLockedSessions({ store, secret: SECRET });
  return {
    get: sessions.wrap((_req, s) => {
      runs++;
      s.update("visits", (n = 0) => n + 1);
      return new Response(`visit ${s.get("visits")}`);
    }),
    post: sessions.wrap((_req, s) => {
      runs++;
      s.set("visits", (s.get("visits") ?? 0) + 1);
      return new Response("ok");
    }),
    read: sessions.wrap((_req, s) => {
      runs++;
      return new Response(String(s.get("visits") ?? 0));
    }),
    runs: () => runs,
  };
}

/** A new session of `subject`: the cookie its first request sets. */
export async function newCookie(subject) {
  const response = await subject.get(new Request("https://bench.example/count"));
  await response.arrayBuffer();
  const cookie = response.headers.getSetCookie().map((h) => h.split(";", 1)[0]).join("; ");
  if (!cookie) throw new Error(`no cookie (status ${response.status})`);
  return cookie;
}

/** The session's visits as stored (one read request). */
export async function visits(subject, cookie) {
  const r = await subject.read(new Request("https://bench.example/read", { headers: { cookie } }));
  return Number(await r.text());
}

/** One round: IN_FLIGHT requests on one fresh session; the samples and the increments lost. */
export async function round(subject, method) {
  const cookie = await newCookie(subject);
  const handler = method === "GET" ? subject.get : subject.post;
  const results = await Promise.all(Array.from({ length: IN_FLIGHT }, () => timed(handler, method, cookie)));
  const lost = 1 + results.filter((r) => r.status === 200).length - (await visits(subject, cookie));
  return { results, lost };
}

/**
 * Two subjects (websession and the lock subject) under one load, round by round in turn (so that
 * neither gets the quieter half of the machine's minute), each after `WARM_ROUNDS` unmeasured
 * rounds (so that neither pays the compiler's first runs in its figures; measured first and cold,
 * websession's p99 on MemoryStore once read 6x the lock's, while warm the two cost the same per
 * request). `rounds` rounds of IN_FLIGHT requests on one fresh session each, fewer once
 * `budgetMs` is spent (3 at least); where rounds are quick (a store answering in microseconds),
 * more while the budget lasts, up to `MAX_ROUNDS`: a p99 over 300 samples of a millisecond is
 * the third-slowest request, one garbage collection or one preemption of the process, and reads
 * anywhere from 1x to 11x the lock's from run to run; over a few thousand samples it is the
 * workload's.
 *
 * @returns Per subject: the samples ({ ms, status } per request), handler runs per request, and
 *   the increments lost.
 */
export async function measurePair(subjects, method, rounds, budgetMs) {
  // At least WARM_ROUNDS, and where rounds are quick, WARM_MS of them (a round of a store that
  // answers in microseconds takes a millisecond: three of them leave the compiler's tier-up in the
  // measured rounds, where it sets the p99).
  const warmStart = performance.now();
  for (let i = 0; i < WARM_ROUNDS || (i < 100 && performance.now() - warmStart < WARM_MS); i++) {
    for (const subject of subjects) await round(subject, method);
  }
  const tallies = [];
  for (const subject of subjects) tallies.push({ samples: [], lost: 0, runs0: await subject.runs() });
  const t0 = performance.now();
  for (let r = 0; r < MAX_ROUNDS; r++) {
    const spent = performance.now() - t0;
    if ((r >= 3 && spent > budgetMs) || (r >= rounds && spent > budgetMs / 4)) break;
    for (const [i, subject] of subjects.entries()) {
      const { results, lost } = await round(subject, method);
      tallies[i].samples.push(...results);
      tallies[i].lost += lost;
    }
  }
  const out = [];
  for (const [i, subject] of subjects.entries()) {
    const { samples, lost, runs0 } = tallies[i];
    // Handler runs of the measured requests only: each round's session-creating request and final
    // read run the handler once each.
    const runs = (await subject.runs()) - runs0 - 2 * (samples.length / IN_FLIGHT);
    out.push({ samples, runs: runs / samples.length, lost });
  }
  return out;
}
