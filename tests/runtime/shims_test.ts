// The workerd stand-ins checked against the real thing under Node: the assert shim agrees with
// node:assert/strict on what passes and what fails, and the collector runs hooks, skips and
// failures the way node:test does.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import shim, { AssertionError } from "./assert_shim.ts";
import { collect } from "./test_shim.ts";

class Custom extends Error {
  override name = "Custom";
  code = "E_CUSTOM";
}

const cycle: Record<string, unknown> = { a: 1 };
cycle.self = cycle;
const cycle2: Record<string, unknown> = { a: 1 };
cycle2.self = cycle2;
const withProto = JSON.parse('{"__proto__": {"x": 1}, "y": 2}');
const withProto2 = JSON.parse('{"__proto__": {"x": 1}, "y": 2}');
const withProtoOther = JSON.parse('{"__proto__": {"x": 2}, "y": 2}');
const sym = Symbol("s");

/** Pairs for deepEqual: every one is judged the same by both implementations. */
const deepCases: Array<[string, unknown, unknown]> = [
  ["equal primitives", 1, 1],
  ["NaN", NaN, NaN],
  ["+0 and -0", 0, -0],
  ["number and string", 1, "1"],
  ["null and undefined", null, undefined],
  ["plain objects", { a: 1, b: [1, 2, { c: "x" }] }, { b: [1, 2, { c: "x" }], a: 1 }],
  ["a missing key", { a: 1 }, { a: 1, b: undefined }],
  ["different prototypes", Object.create(null), {}],
  ["arrays of different length", [1, 2], [1, 2, 3]],
  ["array and object", [1], { 0: 1 }],
  ["dates", new Date(5), new Date(5)],
  ["different dates", new Date(5), new Date(6)],
  ["regexps", /a/g, /a/g],
  ["different regexp flags", /a/g, /a/i],
  ["maps", new Map([["a", { x: 1 }]]), new Map([["a", { x: 1 }]])],
  ["different maps", new Map([["a", 1]]), new Map([["a", 2]])],
  ["sets", new Set([1, "a"]), new Set(["a", 1])],
  ["different sets", new Set([1]), new Set([2])],
  ["typed arrays", new Uint8Array([1, 2]), new Uint8Array([1, 2])],
  ["different typed arrays", new Uint8Array([1, 2]), new Uint8Array([1, 3])],
  ["typed array kinds", new Uint8Array([1]), new Int8Array([1])],
  ["errors", new TypeError("x"), new TypeError("x")],
  ["different error messages", new TypeError("x"), new TypeError("y")],
  ["cycles", cycle, cycle2],
  ["own __proto__ keys", withProto, withProto2],
  ["different own __proto__ values", withProto, withProtoOther],
  ["symbol keys", { [sym]: 1 }, { [sym]: 1 }],
  ["different symbol keys", { [sym]: 1 }, { [sym]: 2 }],
  ["boxed numbers", Object(1), Object(1)],
  ["different boxed numbers", Object(1), Object(2)],
];

function outcome(fn: () => unknown): string {
  try {
    fn();
    return "pass";
  } catch (error) {
    return error instanceof Error ? `throws ${error.name}` : "throws";
  }
}

async function asyncOutcome(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
    return "pass";
  } catch (error) {
    return error instanceof Error ? `throws ${error.name}` : "throws";
  }
}

describe("assert shim", () => {
  it("judges deepEqual and notDeepEqual as node:assert/strict does", () => {
    for (const [name, a, b] of deepCases) {
      assert.equal(outcome(() => shim.deepEqual(a, b)), outcome(() => assert.deepEqual(a, b)), name);
      assert.equal(outcome(() => shim.notDeepEqual(a, b)), outcome(() => assert.notDeepEqual(a, b)), name);
    }
  });

  it("judges equal, notEqual, ok, match and doesNotMatch as node:assert/strict does", () => {
    const cases: Array<[string, () => unknown, () => unknown]> = [
      ["equal same", () => shim.equal(1, 1), () => assert.equal(1, 1)],
      ["equal NaN", () => shim.equal(NaN, NaN), () => assert.equal(NaN, NaN)],
      ["equal loose", () => shim.equal(1, "1" as unknown), () => assert.equal(1, "1" as unknown)],
      ["equal objects", () => shim.equal({}, {}), () => assert.equal({}, {})],
      ["notEqual", () => shim.notEqual(1, 2), () => assert.notEqual(1, 2)],
      ["notEqual same", () => shim.notEqual(1, 1), () => assert.notEqual(1, 1)],
      ["ok 0", () => shim.ok(0), () => assert.ok(0)],
      ["ok 'x'", () => shim.ok("x"), () => assert.ok("x")],
      ["callable", () => shim(""), () => assert("")],
      ["match", () => shim.match("abc", /b/), () => assert.match("abc", /b/)],
      ["match fails", () => shim.match("abc", /x/), () => assert.match("abc", /x/)],
      ["doesNotMatch", () => shim.doesNotMatch("abc", /x/), () => assert.doesNotMatch("abc", /x/)],
      ["doesNotMatch fails", () => shim.doesNotMatch("abc", /b/), () => assert.doesNotMatch("abc", /b/)],
      ["fail", () => shim.fail("no"), () => assert.fail("no")],
    ];
    for (const [name, mine, node] of cases) assert.equal(outcome(mine), outcome(node), name);
  });

  it("matches thrown errors by class, RegExp, object and validator as node:assert/strict does", async () => {
    const thrower = (error: unknown) => () => {
      throw error;
    };
    const expectations: Array<[string, unknown, unknown]> = [
      ["class", new TypeError("bad"), TypeError],
      ["wrong class", new RangeError("bad"), TypeError],
      ["subclass", new Custom("c"), Error],
      ["regexp", new Error("Invalid key: x"), /Invalid key/],
      ["wrong regexp", new Error("fine"), /Invalid/],
      ["object", new Custom("c"), { name: "Custom", code: "E_CUSTOM" }],
      ["wrong object", new Custom("c"), { code: "E_OTHER" }],
      ["object with regexp", new Custom("message here"), { message: /here/ }],
      ["validator true", new Custom("c"), (e: unknown) => e instanceof Custom],
      ["no expectation", new Error("x"), undefined],
    ];
    for (const [name, error, expected] of expectations) {
      const args = (expected === undefined ? [] : [expected]) as [];
      assert.equal(
        outcome(() => shim.throws(thrower(error), ...args)),
        outcome(() => assert.throws(thrower(error), ...args)),
        `throws: ${name}`,
      );
      assert.equal(
        await asyncOutcome(() => shim.rejects(Promise.reject(error), ...args)),
        await asyncOutcome(() => assert.rejects(Promise.reject(error), ...args)),
        `rejects: ${name}`,
      );
    }
    assert.throws(() => shim.throws(() => {}), AssertionError);
    await assert.rejects(shim.rejects(Promise.resolve()), AssertionError);
    await assert.rejects(shim.rejects(async () => {}), AssertionError);
    assert.throws(() => shim.doesNotThrow(thrower(new Error("x"))), AssertionError);
    await assert.rejects(shim.doesNotReject(Promise.reject(new Error("x"))), AssertionError);
  });

  it("throws AssertionError with the caller's message, or the caller's Error itself", () => {
    assert.throws(() => shim.equal(1, 2, "numbers differ"), {
      name: "AssertionError",
      message: "numbers differ",
      code: "ERR_ASSERTION",
    });
    const own = new RangeError("mine");
    assert.throws(() => shim.ok(false, own), (e) => e === own);
    assert.throws(() => shim.deepEqual({ a: 1 }, { a: 2 }), /strictly deep-equal/);
  });
});

describe("test collector", () => {
  it("runs hooks in node:test's order and reports passes, failures and skips", async () => {
    const order: string[] = [];
    const { describe: d, it: t, before: b, after: a, beforeEach: be, afterEach: ae, run } = collect();
    b(() => void order.push("root before"));
    a(() => void order.push("root after"));
    d("outer", () => {
      b(() => void order.push("outer before"));
      be(() => void order.push("outer beforeEach"));
      ae(() => void order.push("outer afterEach"));
      a(() => void order.push("outer after"));
      t("passes", () => void order.push("passes"));
      t("fails", () => {
        order.push("fails");
        throw new Error("boom");
      });
      t("skips itself", (ctx) => ctx.skip("not here"));
      t("skipped by option", { skip: "no" }, () => void order.push("never"));
      t.skip("skipped by shorthand", () => void order.push("never"));
      d("inner", () => {
        be(() => void order.push("inner beforeEach"));
        ae(() => void order.push("inner afterEach"));
        t("deep", async () => {
          await new Promise((resolve) => setTimeout(resolve, 5));
          order.push("deep");
        });
      });
    });
    const results: Array<[string, string]> = [];
    const totals = await run((r) => void results.push([r.name, r.status]));
    assert.deepEqual(results, [
      ["outer > passes", "pass"],
      ["outer > fails", "fail"],
      ["outer > skips itself", "skip"],
      ["outer > skipped by option", "skip"],
      ["outer > skipped by shorthand", "skip"],
      ["outer > inner > deep", "pass"],
    ]);
    assert.deepEqual(totals, { pass: 2, fail: 1, skip: 3 });
    assert.deepEqual(order, [
      "root before",
      "outer before",
      "outer beforeEach",
      "passes",
      "outer afterEach",
      "outer beforeEach",
      "fails",
      "outer afterEach",
      "outer beforeEach",
      "outer afterEach",
      "outer beforeEach",
      "inner beforeEach",
      "deep",
      "inner afterEach",
      "outer afterEach",
      "outer after",
      "root after",
    ]);
  });

  it("fails every test of a suite whose before hook fails, and still runs its after hooks", async () => {
    const { describe: d, it: t, before: b, after: a, run } = collect();
    let cleaned = false;
    d("broken", () => {
      b(() => {
        throw new Error("cannot connect");
      });
      a(() => void (cleaned = true));
      t("one", () => {});
      t("two", () => {});
    });
    d("fine", () => t("three", () => {}));
    const results: Array<[string, string, string | undefined]> = [];
    await run((r) => void results.push([r.name, r.status, r.message?.split("\n")[0]]));
    assert.deepEqual(results, [
      ["broken > one", "fail", "before hook failed: Error: cannot connect"],
      ["broken > two", "fail", "before hook failed: Error: cannot connect"],
      ["fine > three", "pass", undefined],
    ]);
    assert.equal(cleaned, true);
  });

  it("fails a test that outlives its timeout, and reports a failing after hook", async () => {
    const { describe: d, it: t, after: a, run } = collect();
    d("slow", () => {
      a(() => {
        throw new Error("teardown failed");
      });
      t("hangs", { timeout: 50 }, () => new Promise(() => {}));
    });
    const results: Array<[string, string]> = [];
    const totals = await run((r) => void results.push([r.name, r.status]));
    assert.deepEqual(results, [["slow > hangs", "fail"], ["slow (after hook)", "fail"]]);
    assert.equal(totals.fail, 2);
  });

  it("runs only the tests marked only, when any is", async () => {
    const { describe: d, it: t, run } = collect();
    d("a", () => {
      t("not this", () => {});
      t.only("this", () => {});
    });
    d("b", () => t("nor this", () => {}));
    const names: string[] = [];
    await run((r) => void names.push(r.name));
    assert.deepEqual(names, ["a > this"]);
  });
});
