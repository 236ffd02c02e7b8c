// The list-append checker on hand-made histories: a valid one passes (with refused,
// indeterminate and early-saving requests in it), and each kind of anomaly is found and named.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  type AnomalyKind,
  checkHistory,
  formatResult,
  type MicroOp,
  type Op,
  type Outcome,
} from "./checker.ts";

let next = 0;
/** An op; times default to a slot of its own (so nothing overlaps unless told). */
function op(
  txn: MicroOp[],
  outcome: Outcome = "ok",
  extra: Partial<Op> = {},
): Op {
  const n = ++next;
  return {
    client: "c",
    request: `r${n}`,
    session: "s",
    start: n * 10,
    end: n * 10 + 5,
    txn,
    outcome,
    ...extra,
  };
}
const append = (value: number, key = "l"): MicroOp => ({ f: "append", key, value });
const read = (value: number[] | null, key = "l"): MicroOp => ({ f: "read", key, value });
const kinds = (history: Op[], options?: Parameters<typeof checkHistory>[1]): AnomalyKind[] =>
  checkHistory(history, options).anomalies.map((a) => a.kind).sort();

describe("checkHistory", () => {
  it("passes a valid history with refused, indeterminate and early-saving requests", () => {
    const history = [
      op([append(1)]),
      op([read([1]), append(2)]), // get + set
      op([append(3)], "fail"), // refused: never seen
      op([append(4)], "info"), // indeterminate, landed
      op([append(5)], "info"), // indeterminate, did not land
      op([read([1, 2, 4])]),
      op([append(6)], "ok", { request: "early", part: 0 }),
      op([append(7)], "fail", { request: "early", part: 1 }), // the part after save() refused
      op([read(null)], "info"),
      op([read([1, 2, 4, 6])], "ok", { final: true }),
      // Another session, its own list.
      op([append(8)], "ok", { session: "t" }),
      op([read([8])], "ok", { session: "t", final: true }),
    ];
    const result = checkHistory(history);
    assert.deepEqual(result.anomalies, []);
    assert.equal(result.ok, true);
    assert.equal(result.counts.ops, 12);
    assert.deepEqual(result.counts.appends, { ok: 4, fail: 2, info: 2 });
    assert.equal(result.counts.infoCommitted, 1);
    assert.equal(result.counts.finals, 2);
    assert.equal(result.counts.unchecked, 0);
    assert.ok(result.counts.edges.ww >= 3 && result.counts.edges.wr >= 2);
    assert.match(formatResult(result), /^valid: 12 ops \(7 ok, 2 fail, 3 info\)/);
  });

  it("passes overlapping writers whose order the list shows", () => {
    // Two concurrent update() appends: either order is serial.
    const a = op([append(1)], "ok", { start: 0, end: 100 });
    const b = op([append(2)], "ok", { start: 0, end: 100 });
    const r = op([read([2, 1])], "ok", { start: 200, end: 210, final: true });
    assert.deepEqual(kinds([a, b, r]), []);
  });

  it("finds an acknowledged append that is not in the final read", () => {
    const result = checkHistory([op([append(1)]), op([append(2)]), op([read([1])], "ok", { final: true })]);
    assert.deepEqual(result.anomalies.map((a) => [a.kind, a.value]), [["lost", 2]]);
    assert.deepEqual(result.counts.anomalies, { lost: 1 });
    assert.match(formatResult(result), /^INVALID: .*anomalies: lost x1$/);
  });

  it("finds a refused append that a read saw", () => {
    assert.deepEqual(kinds([op([append(1)], "fail"), op([read([1])], "ok", { final: true })]), [
      "failed-present",
    ]);
  });

  it("finds a value twice in a read (an indeterminate append that landed twice)", () => {
    const result = checkHistory([op([append(1)], "info"), op([read([1, 1])], "ok", { final: true })]);
    assert.deepEqual(result.anomalies.map((a) => a.kind), ["duplicate"]);
    assert.equal(result.anomalies[0]!.value, 1);
  });

  it("finds a read that is not a prefix of the final list", () => {
    const history = [
      op([append(1)]),
      op([append(2)]),
      op([read([2])]),
      op([read([1, 2])], "ok", { final: true }),
    ];
    assert.deepEqual(kinds(history), ["non-prefix"]);
  });

  it("finds a read that goes back in time", () => {
    const history = [
      op([append(1)]),
      op([read([1])]),
      op([read([])]),
      op([read([1])], "ok", { final: true }),
    ];
    // Also a dependency cycle with real time: the empty read began after the append ended.
    assert.deepEqual(kinds(history), ["G-single-realtime", "stale-read"]);
    assert.deepEqual(kinds(history, { realtime: false }), ["stale-read"]);
  });

  it("finds a value nobody appended, and one read in the wrong session", () => {
    const history = [
      op([append(1)], "ok", { session: "t" }),
      op([read([9, 1])], "ok", { final: true }),
      op([read([1])], "ok", { session: "t", final: true }),
    ];
    assert.deepEqual(kinds(history), ["misplaced", "phantom"]);
  });

  it("finds a G0 cycle: two lists ordered the two ways", () => {
    const t1 = op([append(1, "x"), append(4, "y")], "ok", { start: 0, end: 50 });
    const t2 = op([append(2, "x"), append(3, "y")], "ok", { start: 0, end: 50 });
    const result = checkHistory([
      t1,
      t2,
      op([read([1, 2], "x"), read([3, 4], "y")], "ok", { final: true }),
    ]);
    assert.deepEqual(result.anomalies.map((a) => a.kind), ["G0"]);
    assert.deepEqual(new Set(result.anomalies[0]!.ops), new Set([t1, t2]));
    assert.deepEqual(result.anomalies[0]!.cycle!.map((s) => s.edge), ["ww", "ww"]);
  });

  it("finds a G1c cycle: each saw the other's write", () => {
    const t1 = op([append(1, "x"), read([2], "y")], "ok", { start: 0, end: 50 });
    const t2 = op([append(2, "y"), read([1], "x")], "ok", { start: 0, end: 50 });
    const result = checkHistory([t1, t2, op([read([1], "x"), read([2], "y")], "ok", { final: true })]);
    assert.deepEqual(result.anomalies.map((a) => a.kind), ["G1c"]);
    assert.match(result.anomalies[0]!.message, /G1c cycle of 2/);
  });

  it("finds a G-single cycle: a lost update by get + set that both landed", () => {
    const t1 = op([read([]), append(1)], "ok", { start: 0, end: 50 });
    const t2 = op([read([]), append(2)], "ok", { start: 0, end: 50 });
    const result = checkHistory([t1, t2, op([read([1, 2])], "ok", { final: true })]);
    assert.deepEqual(result.anomalies.map((a) => a.kind), ["G-single"]);
    assert.deepEqual(result.anomalies[0]!.cycle!.map((s) => s.edge).sort(), ["rw", "ww"]);
  });

  it("finds a G2 cycle: write skew", () => {
    const t1 = op([read([], "x"), append(1, "y")], "ok", { start: 0, end: 50 });
    const t2 = op([read([], "y"), append(2, "x")], "ok", { start: 0, end: 50 });
    const result = checkHistory([t1, t2, op([read([2], "x"), read([1], "y")], "ok", { final: true })]);
    assert.deepEqual(result.anomalies.map((a) => a.kind), ["G2"]);
    assert.deepEqual(result.anomalies[0]!.cycle!.map((s) => s.edge), ["rw", "rw"]);
  });

  it("counts an indeterminate append that a read saw as committed in the graph", () => {
    // The info op's append is seen, and it saw [] before it: with t2 also reading [] and both
    // landing, a lost update among them.
    const t1 = op([read(null), append(1)], "info", { start: 0, end: Infinity });
    const t2 = op([read([]), append(2)], "ok", { start: 0, end: 50 });
    const result = checkHistory([t1, t2, op([read([1, 2])], "ok", { start: 100, end: 110, final: true })]);
    assert.deepEqual(result.anomalies.map((a) => a.kind), ["G-single"]);
    assert.equal(result.counts.infoCommitted, 1);
  });

  it("counts appends with no final read as unchecked, and judges nothing about them", () => {
    const result = checkHistory([op([append(1)]), op([append(2)], "fail")]);
    assert.equal(result.ok, true);
    assert.equal(result.counts.unchecked, 2);
  });

  it("refuses a malformed history", () => {
    assert.throws(() => checkHistory([op([append(1)]), op([append(1)])]), /appended twice/);
  });

  it("lists at most maxPerKind anomalies of a kind, and counts them all", () => {
    const history = [
      op([append(1)]),
      op([append(2)]),
      op([append(3)]),
      op([read([])], "ok", { final: true }),
    ];
    const result = checkHistory(history, { maxPerKind: 1 });
    assert.equal(result.anomalies.length, 1);
    assert.deepEqual(result.counts.anomalies, { lost: 3 });
    assert.match(formatResult(result), /lost x3$/);
  });

  it("handles a large valid history", () => {
    // 2,000 appends of 200 overlapping clients, reads along the way: linear, no anomaly.
    const history: Op[] = [];
    const list: number[] = [];
    for (let i = 0; i < 2_000; i++) {
      list.push(i);
      history.push({
        client: `c${i % 200}`,
        request: `a${i}`,
        session: "s",
        start: i,
        end: i + 3,
        outcome: "ok",
        txn: [append(i)],
      });
      if (i % 10 === 9) {
        history.push({
          client: "r",
          request: `q${i}`,
          session: "s",
          start: i + 3.5,
          end: i + 4,
          outcome: "ok",
          txn: [read([...list])],
        });
      }
    }
    history.push({
      client: "r",
      request: "final",
      session: "s",
      start: 5_000,
      end: 5_001,
      outcome: "ok",
      final: true,
      txn: [read(list)],
    });
    const result = checkHistory(history);
    assert.deepEqual(result.anomalies, []);
    assert.equal(result.counts.nodes, 2_201);
  });
});
