/**
 * A list-append history checker in the manner of Jepsen's Elle.
 *
 * Sessions hold lists (one list per session key). A history is the list of transactions the
 * clients ran, each with what it did and what it saw, and how it ended:
 *
 * - `ok`: acknowledged (2xx): it committed, and what it read is what it saw.
 * - `fail`: refused (409): it must have changed nothing.
 * - `info`: indeterminate (5xx, reset, timeout, killed server): it may or may not have committed;
 *   its reads are unknown (give them `value: null`).
 *
 * A request that saved early (`session.save()` mid-handler) is two transactions: record both,
 * with the same `request` and `part` 0 and 1.
 *
 * `checkHistory(history)` finds:
 *
 * - `lost`: an acknowledged append missing from the final read of its session and key;
 * - `failed-present`: a refused append that some read saw (Elle's G1a, aborted read);
 * - `duplicate`: a value twice in one read (an indeterminate append landing twice included);
 * - `non-prefix`: a read that is not a prefix of the final (or, without one, the longest) list:
 *   reads of one list disagree on its order (Elle's incompatible order);
 * - `stale-read`: a read that ended before another read of the same list began, yet is longer
 *   than it (the later read went back in time);
 * - `phantom`: a read saw a value nobody appended;
 * - `misplaced`: a read saw a value appended to another session or key;
 * - dependency cycles among committed transactions (ok ones, and indeterminate ones whose append
 *   some read saw): write-write (list order), write-read (what a read saw), read-write
 *   (anti-dependency: the append that came right after what a read saw) and, unless
 *   `realtime: false`, real-time edges (one ended before the other began). Strongly connected
 *   components come from Tarjan's algorithm; in each, the cycle with the weakest edges is
 *   reported: `G0` (write-write only), `G1c` (with write-read), `G-single` (exactly one
 *   read-write), `G2` (more), each `…-realtime` when it needs a real-time edge.
 *
 * The final state of a session's list is the read of an op marked `final: true` (a read after
 * the traffic stopped, or a logout that read the list as it ended it). Appends to a session and
 * key with no final read are counted as `unchecked` (their presence cannot be judged).
 *
 * @example
 * ```ts
 * import { checkHistory, formatResult, type Op } from "./checker.ts";
 * const history: Op[] = [
 *   { client: "a", request: "1", session: "s", start: 0, end: 5, outcome: "ok",
 *     txn: [{ f: "append", key: "l", value: 1 }] },
 *   { client: "b", request: "2", session: "s", start: 6, end: 9, outcome: "ok", final: true,
 *     txn: [{ f: "read", key: "l", value: [1] }] },
 * ];
 * const result = checkHistory(history);
 * console.log(formatResult(result)); // "valid: 2 ops (2 ok, 0 fail, 0 info), ..."
 * ```
 *
 * @module
 */

/** A list element: unique across the whole history. */
export type Value = number;

/** One micro-operation of a transaction. */
export type MicroOp =
  | { f: "append"; key: string; value: Value }
  /** `value`: the list observed (`[]` when absent), or `null` when unknown (an `info` op). */
  | { f: "read"; key: string; value: Value[] | null };

/** How a transaction ended, as Elle classes it. */
export type Outcome = "ok" | "fail" | "info";

/** One transaction of the history. */
export interface Op {
  /** The client (tab, worker) that issued it. */
  client: string;
  /** The request it belongs to; both parts of an early-saving request share it. */
  request: string;
  /** 0 and 1 for the parts of a request that saved early; absent otherwise. */
  part?: number;
  /** The session (its identity across regenerations) whose lists it touched. */
  session: string;
  /** When the client sent it (monotonic ms). */
  start: number;
  /** When the client had the whole answer (monotonic ms); `Infinity` when it never had one. */
  end: number;
  txn: MicroOp[];
  outcome: Outcome;
  /** Its reads are the final state of their lists. */
  final?: boolean;
}

/** Kinds of anomaly. */
export type AnomalyKind =
  | "lost"
  | "failed-present"
  | "duplicate"
  | "non-prefix"
  | "stale-read"
  | "phantom"
  | "misplaced"
  | CycleKind;

/** Kinds of dependency cycle. */
export type CycleKind =
  | "G0"
  | "G1c"
  | "G-single"
  | "G2"
  | "G0-realtime"
  | "G1c-realtime"
  | "G-single-realtime"
  | "G2-realtime";

/** An edge of the dependency graph. */
export type EdgeKind = "ww" | "wr" | "rw" | "rt";

/** One step of a reported cycle: `op` depends on the step before it by `edge`. */
export interface CycleStep {
  op: Op;
  /** The edge from this op to the next one (the last step's leads back to the first). */
  edge: EdgeKind;
}

/** Something the history shows that no serial order allows. */
export interface Anomaly {
  kind: AnomalyKind;
  session?: string;
  key?: string;
  value?: Value;
  /** The operations involved. */
  ops: Op[];
  /** For cycles: the cycle, in order. */
  cycle?: CycleStep[];
  /** One line that says what went wrong. */
  message: string;
}

/** What was checked. */
export interface Counts {
  ops: number;
  ok: number;
  fail: number;
  info: number;
  appends: { ok: number; fail: number; info: number };
  /** Reads with a known value. */
  reads: number;
  /** Session/key pairs with a final read. */
  finals: number;
  /** Appends whose session and key had no final read. */
  unchecked: number;
  /** Indeterminate appends that some read saw (they committed). */
  infoCommitted: number;
  /** Nodes and edges of the dependency graph. */
  nodes: number;
  edges: Record<EdgeKind, number>;
  /** Strongly connected components with more than one op. */
  cyclicComponents: number;
  /** Anomalies found, by kind (all of them, even past `maxPerKind`). */
  anomalies: Partial<Record<AnomalyKind, number>>;
}

/** The verdict. */
export interface CheckResult {
  /** No anomaly. */
  ok: boolean;
  anomalies: Anomaly[];
  counts: Counts;
}

/** Options of {@linkcode checkHistory}. */
export interface CheckOptions {
  /** Add real-time edges (strict serializability). @default true */
  realtime?: boolean;
  /** Stop listing anomalies of one kind after this many (`counts.anomalies` has them all). @default 20 */
  maxPerKind?: number;
}

type Node = number;

interface Appended {
  op: Op;
  session: string;
  key: string;
}

/**
 * Checks a list-append history.
 *
 * @param history The transactions, in any order.
 * @param options See {@linkcode CheckOptions}.
 * @returns The anomalies found and what was checked.
 * @throws {TypeError} When the history is malformed (a value appended twice, an op without txn).
 */
export function checkHistory(history: readonly Op[], options: CheckOptions = {}): CheckResult {
  const realtime = options.realtime ?? true;
  const maxPerKind = options.maxPerKind ?? 20;
  const anomalies: Anomaly[] = [];
  const perKind = new Map<AnomalyKind, number>();
  const report = (a: Anomaly) => {
    const n = (perKind.get(a.kind) ?? 0) + 1;
    perKind.set(a.kind, n);
    counts.anomalies[a.kind] = n;
    if (n <= maxPerKind) anomalies.push(a);
  };
  const counts: Counts = {
    ops: history.length,
    ok: 0,
    fail: 0,
    info: 0,
    appends: { ok: 0, fail: 0, info: 0 },
    reads: 0,
    finals: 0,
    unchecked: 0,
    infoCommitted: 0,
    nodes: 0,
    edges: { ww: 0, wr: 0, rw: 0, rt: 0 },
    cyclicComponents: 0,
    anomalies: {},
  };

  // Who appended what.
  const writer = new Map<Value, Appended>();
  for (const op of history) {
    if (!Array.isArray(op.txn)) throw new TypeError(`Op ${op.request} has no txn`);
    counts[op.outcome]++;
    for (const m of op.txn) {
      if (m.f !== "append") continue;
      counts.appends[op.outcome]++;
      const seen = writer.get(m.value);
      if (seen !== undefined) {
        throw new TypeError(
          `Value ${m.value} appended twice (requests ${seen.op.request} and ${op.request})`,
        );
      }
      writer.set(m.value, { op, session: op.session, key: m.key });
    }
  }

  // Reads, per session and key; the final one of each.
  const listKey = (session: string, key: string) => JSON.stringify([session, key]);
  interface Read {
    op: Op;
    value: Value[];
  }
  const reads = new Map<string, Read[]>();
  const finals = new Map<string, Read>();
  const observed = new Set<Value>();
  for (const op of history) {
    if (op.outcome !== "ok") continue;
    for (const m of op.txn) {
      if (m.f !== "read" || m.value === null) continue;
      counts.reads++;
      const k = listKey(op.session, m.key);
      const read = { op, value: m.value };
      const list = reads.get(k);
      if (list === undefined) reads.set(k, [read]);
      else list.push(read);
      if (op.final) {
        const before = finals.get(k);
        if (before === undefined || before.op.end < op.end) finals.set(k, read);
      }
      const seenHere = new Set<Value>();
      for (const v of m.value) {
        observed.add(v);
        if (seenHere.has(v)) {
          report({
            kind: "duplicate",
            session: op.session,
            key: m.key,
            value: v,
            ops: [op, ...(writer.has(v) ? [writer.get(v)!.op] : [])],
            message: `${v} appears twice in one read of ${op.session}/${m.key} (request ${op.request})`,
          });
        }
        seenHere.add(v);
        const w = writer.get(v);
        if (w === undefined) {
          report({
            kind: "phantom",
            session: op.session,
            key: m.key,
            value: v,
            ops: [op],
            message: `${v} read in ${op.session}/${m.key} (request ${op.request}) was never appended`,
          });
        } else if (w.op.outcome === "fail") {
          report({
            kind: "failed-present",
            session: op.session,
            key: m.key,
            value: v,
            ops: [w.op, op],
            message: `${v} of refused request ${w.op.request} was read by request ${op.request}`,
          });
        } else if (w.session !== op.session || w.key !== m.key) {
          report({
            kind: "misplaced",
            session: op.session,
            key: m.key,
            value: v,
            ops: [w.op, op],
            message:
              `${v} appended to ${w.session}/${w.key} (request ${w.op.request}) was read in ${op.session}/${m.key}`,
          });
        }
      }
    }
  }
  counts.finals = finals.size;

  // Presence in the final read.
  for (const [value, w] of writer) {
    const final = finals.get(listKey(w.session, w.key));
    if (final === undefined) {
      counts.unchecked++;
      continue;
    }
    if (w.op.outcome === "ok" && !final.value.includes(value)) {
      report({
        kind: "lost",
        session: w.session,
        key: w.key,
        value,
        ops: [w.op, final.op],
        message:
          `acknowledged ${value} (request ${w.op.request}) is missing from the final read of ${w.session}/${w.key}`,
      });
    }
  }
  for (const [value, w] of writer) if (w.op.outcome === "info" && observed.has(value)) counts.infoCommitted++;

  // The order of each list: the final read, else the longest read.
  const order = new Map<string, Value[]>();
  for (const [k, list] of reads) {
    const final = finals.get(k);
    let longest = final?.value ?? [];
    if (final === undefined) { for (const r of list) if (r.value.length > longest.length) longest = r.value; }
    order.set(k, longest);
    for (const r of list) {
      if (!isPrefix(r.value, longest)) {
        const [session, key] = JSON.parse(k) as [string, string];
        report({
          kind: "non-prefix",
          session,
          key,
          ops: [r.op, ...(final ? [final.op] : [])],
          message: `read [${r.value}] of ${session}/${key} (request ${r.op.request}) is not a prefix of ${
            final ? "the final" : "the longest"
          } [${longest}]`,
        });
      }
    }
    // Later reads never go back: a read that began after another ended holds at least as much.
    const byEnd = [...list].sort((a, b) => a.op.end - b.op.end);
    const byStart = [...list].sort((a, b) => a.op.start - b.op.start);
    let i = 0;
    let longestEnded: Read | undefined;
    for (const later of byStart) {
      while (i < byEnd.length && byEnd[i]!.op.end < later.op.start) {
        const r = byEnd[i++]!;
        if (longestEnded === undefined || r.value.length > longestEnded.value.length) longestEnded = r;
      }
      if (longestEnded !== undefined && later.value.length < longestEnded.value.length) {
        const [session, key] = JSON.parse(k) as [string, string];
        report({
          kind: "stale-read",
          session,
          key,
          ops: [longestEnded.op, later.op],
          message:
            `read [${later.value}] of ${session}/${key} (request ${later.op.request}) began after read [${longestEnded.value}] (request ${longestEnded.op.request}) ended`,
        });
      }
    }
  }

  // The dependency graph.
  const nodes: Op[] = [];
  const index = new Map<Op, Node>();
  for (const op of history) {
    const committed = op.outcome === "ok" ||
      (op.outcome === "info" && op.txn.some((m) => m.f === "append" && observed.has(m.value)));
    if (committed) {
      index.set(op, nodes.length);
      nodes.push(op);
    }
  }
  counts.nodes = nodes.length;
  const adj: Map<Node, Set<EdgeKind>>[] = nodes.map(() => new Map());
  const edge = (from: Op | undefined, to: Op | undefined, kind: EdgeKind) => {
    if (from === undefined || to === undefined || from === to) return;
    const a = index.get(from);
    const b = index.get(to);
    if (a === undefined || b === undefined) return;
    let kinds = adj[a]!.get(b);
    if (kinds === undefined) adj[a]!.set(b, kinds = new Set());
    if (!kinds.has(kind)) {
      kinds.add(kind);
      counts.edges[kind]++;
    }
  };
  for (const [k, list] of reads) {
    const ordered = order.get(k)!;
    const writerOf = (v: Value | undefined) => (v === undefined ? undefined : writer.get(v)?.op);
    for (let i = 0; i + 1 < ordered.length; i++) edge(writerOf(ordered[i]), writerOf(ordered[i + 1]), "ww");
    for (const r of list) {
      if (!isPrefix(r.value, ordered)) continue; // reported; its place in the order is unknown
      edge(writerOf(r.value.at(-1)), r.op, "wr");
      edge(r.op, writerOf(ordered[r.value.length]), "rw");
    }
  }
  if (realtime) {
    // Transitive reduction: B depends on A when A ended before B began and no op lies wholly
    // between them.
    const byEnd = nodes.map((_, n) => n).filter((n) => Number.isFinite(nodes[n]!.end))
      .sort((a, b) => nodes[a]!.end - nodes[b]!.end);
    const maxStart: number[] = []; // max start among byEnd[0..i]
    for (const [i, n] of byEnd.entries()) {
      maxStart[i] = Math.max(maxStart[i - 1] ?? -Infinity, nodes[n]!.start);
    }
    for (const b of nodes) {
      // ops that ended before b began: byEnd[0..hi)
      let lo = 0, hi = byEnd.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (nodes[byEnd[mid]!]!.end < b.start) lo = mid + 1;
        else hi = mid;
      }
      const count = lo;
      if (count === 0) continue;
      const frontier = maxStart[count - 1]!;
      for (let i = count - 1; i >= 0 && nodes[byEnd[i]!]!.end >= frontier; i--) {
        edge(nodes[byEnd[i]!], b, "rt");
      }
    }
  }

  // Cycles.
  for (const component of tarjan(adj)) {
    if (component.length < 2) continue;
    counts.cyclicComponents++;
    const found = classify(component, adj);
    const cycle = found.steps.map(([n, kind]) => ({ op: nodes[n]!, edge: kind }));
    report({
      kind: found.kind,
      session: cycle[0]!.op.session,
      ops: cycle.map((s) => s.op),
      cycle,
      message: `${found.kind} cycle of ${cycle.length} (component of ${component.length}): ${
        cycle.map((s) => `${s.op.request}${s.op.part !== undefined ? `.${s.op.part}` : ""} -${s.edge}->`)
          .join(" ")
      } ${cycle[0]!.op.request}`,
    });
  }

  return { ok: anomalies.length === 0, anomalies, counts };
}

function isPrefix(a: readonly Value[], b: readonly Value[]): boolean {
  if (a.length > b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Tarjan's strongly connected components, iteratively (no recursion limit). */
function tarjan(adj: Map<Node, Set<EdgeKind>>[]): Node[][] {
  const n = adj.length;
  const indexOf = new Array<number>(n).fill(-1);
  const low = new Array<number>(n).fill(0);
  const onStack = new Array<boolean>(n).fill(false);
  const stack: Node[] = [];
  const out: Node[][] = [];
  let next = 0;
  const succ = adj.map((m) => [...m.keys()]);
  for (let root = 0; root < n; root++) {
    if (indexOf[root] !== -1) continue;
    const work: [Node, number][] = [[root, 0]];
    indexOf[root] = low[root] = next++;
    stack.push(root);
    onStack[root] = true;
    while (work.length > 0) {
      const frame = work[work.length - 1]!;
      const [v, i] = frame;
      if (i < succ[v]!.length) {
        frame[1]++;
        const w = succ[v]![i]!;
        if (indexOf[w] === -1) {
          indexOf[w] = low[w] = next++;
          stack.push(w);
          onStack[w] = true;
          work.push([w, 0]);
        } else if (onStack[w]) {
          low[v] = Math.min(low[v]!, indexOf[w]!);
        }
      } else {
        work.pop();
        if (work.length > 0) {
          const parent = work[work.length - 1]![0];
          low[parent] = Math.min(low[parent]!, low[v]!);
        }
        if (low[v] === indexOf[v]) {
          const component: Node[] = [];
          let w: Node;
          do {
            w = stack.pop()!;
            onStack[w] = false;
            component.push(w);
          } while (w !== v);
          out.push(component);
        }
      }
    }
  }
  return out;
}

/** The first edge kind in `kinds` that `allowed` permits, weakest first. */
function pick(kinds: Set<EdgeKind>, allowed: ReadonlySet<EdgeKind>): EdgeKind | undefined {
  for (const k of ["ww", "wr", "rw", "rt"] as const) if (kinds.has(k) && allowed.has(k)) return k;
  return undefined;
}

/** The shortest path from `from` to `to` inside `within`, by edges of `allowed` kinds. */
function path(
  from: Node,
  to: Node,
  within: Set<Node>,
  adj: Map<Node, Set<EdgeKind>>[],
  allowed: ReadonlySet<EdgeKind>,
): [Node, EdgeKind][] | undefined {
  const prev = new Map<Node, [Node, EdgeKind]>();
  const queue: Node[] = [from];
  const seen = new Set<Node>([from]);
  for (let qi = 0; qi < queue.length; qi++) {
    const v = queue[qi]!;
    for (const [w, kinds] of adj[v]!) {
      if (!within.has(w)) continue;
      const kind = pick(kinds, allowed);
      if (kind === undefined) continue;
      if (w === to) {
        const steps: [Node, EdgeKind][] = [[v, kind]];
        let u = v;
        while (u !== from) {
          const [p, k] = prev.get(u)!;
          steps.unshift([p, k]);
          u = p;
        }
        return steps;
      }
      if (seen.has(w)) continue;
      seen.add(w);
      prev.set(w, [v, kind]);
      queue.push(w);
    }
  }
  return undefined;
}

const LIMIT = 64; // start nodes tried per search in one component

/** Finds, in a cyclic component, the cycle with the weakest edges, and names it. */
function classify(
  component: Node[],
  adj: Map<Node, Set<EdgeKind>>[],
): { kind: CycleKind; steps: [Node, EdgeKind][] } {
  const within = new Set(component);
  const tries = component.slice(0, LIMIT);
  const cycleOf = (allowed: ReadonlySet<EdgeKind>) => {
    for (const start of tries) {
      const steps = path(start, start, within, adj, allowed);
      if (steps !== undefined) return steps;
    }
    return undefined;
  };
  const singleRw = (allowed: ReadonlySet<EdgeKind>) => {
    // One read-write edge a -> b, closed by a path b ~> a without one.
    for (const a of component) {
      for (const [b, kinds] of adj[a]!) {
        if (!within.has(b) || !kinds.has("rw")) continue;
        const back = a === b ? [] : path(b, a, within, adj, allowed);
        if (back !== undefined) return [[a, "rw"] as [Node, EdgeKind], ...back];
      }
    }
    return undefined;
  };
  for (const rt of [false, true]) {
    const suffix = rt ? "-realtime" : "";
    const base = (kinds: EdgeKind[]) => new Set<EdgeKind>(rt ? [...kinds, "rt"] : kinds);
    const g0 = cycleOf(base(["ww"]));
    if (g0) return { kind: `G0${suffix}` as CycleKind, steps: g0 };
    const g1c = cycleOf(base(["ww", "wr"]));
    if (g1c) return { kind: `G1c${suffix}` as CycleKind, steps: g1c };
    const single = singleRw(base(["ww", "wr"]));
    if (single) return { kind: `G-single${suffix}` as CycleKind, steps: single };
    const g2 = cycleOf(base(["ww", "wr", "rw"]));
    if (g2) return { kind: `G2${suffix}` as CycleKind, steps: g2 };
  }
  throw new Error("A strongly connected component without a cycle"); // unreachable
}

/**
 * One line: the verdict, what was checked and the anomalies by kind.
 *
 * @param result What {@linkcode checkHistory} returned.
 * @returns For example `valid: 812 ops (700 ok, 60 fail, 52 info), 640 reads, 0 unchecked`.
 */
export function formatResult(result: CheckResult): string {
  const c = result.counts;
  const kinds = Object.entries(c.anomalies);
  const head =
    `${result.ok ? "valid" : "INVALID"}: ${c.ops} ops (${c.ok} ok, ${c.fail} fail, ${c.info} info), ` +
    `appends ${c.appends.ok}/${c.appends.fail}/${c.appends.info} (ok/fail/info, ${c.infoCommitted} info seen), ` +
    `${c.reads} reads, ${c.finals} final lists, ${c.unchecked} unchecked, graph ${c.nodes} nodes ` +
    `${c.edges.ww}ww ${c.edges.wr}wr ${c.edges.rw}rw ${c.edges.rt}rt`;
  if (result.ok) return head;
  return `${head}; anomalies: ${kinds.map(([k, n]) => `${k} x${n}`).join(", ")}`;
}
