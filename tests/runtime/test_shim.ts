// A tiny stand-in for `node:test` in runtimes that have none (workerd): the same test files
// register their cases through `describe`/`it`/`before`/`after`/`beforeEach`/`afterEach`, and
// `run()` executes them in order, reporting each result to a callback. Only what the suites use
// is here: nested suites, hooks, `t.skip()`/`t.todo()`, the `skip`/`todo`/`only`/`timeout`
// options and `.skip`/`.todo`/`.only` shorthands. Suites register synchronously, as node:test's do.

/** What a test function receives (a subset of node:test's TestContext). */
export interface TestContext {
  readonly name: string;
  readonly fullName: string;
  readonly signal: AbortSignal;
  skip(message?: string): void;
  todo(message?: string): void;
  diagnostic(message: string): void;
}

/** The options node:test accepts that this collector honours. */
export interface TestOptions {
  skip?: boolean | string;
  todo?: boolean | string;
  only?: boolean;
  /** Milliseconds; the collector's default is {@link DEFAULT_TIMEOUT}. */
  timeout?: number;
  concurrency?: number | boolean;
}

type TestFn = (t: TestContext) => unknown;
type SuiteFn = () => unknown;
type HookFn = () => unknown;

/** One finished test as `run` reports it. */
export interface TestResult {
  /** Names from the outermost suite to the test, joined with " > ". */
  name: string;
  status: "pass" | "fail" | "skip" | "todo";
  durationMs: number;
  /** Why it was skipped, or what failed (message and stack). */
  message?: string;
}

/** Every test is bounded: one that runs longer fails. */
export const DEFAULT_TIMEOUT = 60_000;

interface TestNode {
  kind: "test";
  name: string;
  fn: TestFn | undefined;
  options: TestOptions;
}

interface SuiteNode {
  kind: "suite";
  name: string;
  options: TestOptions;
  children: Array<TestNode | SuiteNode>;
  before: HookFn[];
  after: HookFn[];
  beforeEach: HookFn[];
  afterEach: HookFn[];
}

function newSuite(name: string, options: TestOptions): SuiteNode {
  return { kind: "suite", name, options, children: [], before: [], after: [], beforeEach: [], afterEach: [] };
}

/** One registry of suites and tests, with node:test's registration functions and a runner. */
export interface Collector {
  describe: Register<SuiteFn>;
  suite: Register<SuiteFn>;
  it: Register<TestFn>;
  test: Register<TestFn>;
  /** Runs once before the tests of the current suite (or of the whole run at top level). */
  before(fn: HookFn): void;
  /** Runs once after the tests of the current suite, even when some failed. */
  after(fn: HookFn): void;
  /** Runs before each test of the current suite and of its nested suites. */
  beforeEach(fn: HookFn): void;
  /** Runs after each test of the current suite and of its nested suites. */
  afterEach(fn: HookFn): void;
  /** Runs every registered test in order; `report` hears of each one as it finishes. */
  run(report: (result: TestResult) => void): Promise<Totals>;
}

/** How many tests passed, failed, and were skipped (todo counts as skipped). */
export interface Totals {
  pass: number;
  fail: number;
  skip: number;
}

function parseArgs<F>(args: unknown[]): { name: string; options: TestOptions; fn: F | undefined } {
  let name = "<anonymous>";
  let options: TestOptions = {};
  let fn: F | undefined;
  for (const arg of args) {
    if (typeof arg === "string") name = arg;
    else if (typeof arg === "function") fn = arg as F;
    else if (arg !== null && typeof arg === "object") options = arg as TestOptions;
  }
  if (fn !== undefined && name === "<anonymous>" && (fn as { name?: string }).name) {
    name = (fn as { name: string }).name;
  }
  return { name, options, fn };
}

type Register<F> = {
  (name: string, fn?: F): void;
  (name: string, options: TestOptions, fn?: F): void;
  (fn: F): void;
  skip: (...args: unknown[]) => void;
  todo: (...args: unknown[]) => void;
  only: (...args: unknown[]) => void;
};

function withShorthands<F>(register: (args: unknown[], extra: TestOptions) => void): Register<F> {
  const fn = ((...args: unknown[]) => register(args, {})) as Register<F>;
  fn.skip = (...args: unknown[]) => register(args, { skip: true });
  fn.todo = (...args: unknown[]) => register(args, { todo: true });
  fn.only = (...args: unknown[]) => register(args, { only: true });
  return fn;
}

/** A fresh, independent registry (the module's own functions use one made at load). */
export function collect(): Collector {
  const root = newSuite("", {});
  let current = root;
  let onlyUsed = false;

  const describe = withShorthands<SuiteFn>((args, extra) => {
    const { name, options, fn } = parseArgs<SuiteFn>(args);
    const suite = newSuite(name, { ...options, ...extra });
    if (suite.options.only) onlyUsed = true;
    current.children.push(suite);
    const parent = current;
    current = suite;
    try {
      const result = fn?.();
      if (result && typeof (result as Promise<unknown>).then === "function") {
        throw new TypeError(`Suite "${name}" returned a promise: register tests synchronously`);
      }
    } finally {
      current = parent;
    }
  });

  const it = withShorthands<TestFn>((args, extra) => {
    const { name, options, fn } = parseArgs<TestFn>(args);
    const merged = { ...options, ...extra };
    if (merged.only) onlyUsed = true;
    current.children.push({ kind: "test", name, fn, options: merged });
  });

  return {
    describe,
    suite: describe,
    it,
    test: it,
    before: (fn) => void current.before.push(fn),
    after: (fn) => void current.after.push(fn),
    beforeEach: (fn) => void current.beforeEach.push(fn),
    afterEach: (fn) => void current.afterEach.push(fn),
    run: (report) => runTree(root, onlyUsed, report),
  };
}

function describeError(error: unknown): string {
  if (error instanceof Error) {
    const stack = error.stack ?? "";
    const head = `${error.name}: ${error.message}`;
    return stack.includes(error.message) ? stack : `${head}\n${stack}`;
  }
  return String(error);
}

async function bounded<T>(
  promise: Promise<T>,
  ms: number,
  what: string,
  abort?: AbortController,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      abort?.abort();
      reject(new Error(`${what} timed out after ${ms} ms`));
    }, ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function skipReason(options: TestOptions): string | undefined {
  if (options.skip) return typeof options.skip === "string" ? options.skip : "skipped";
  return undefined;
}

function hasOnly(node: TestNode | SuiteNode): boolean {
  if (node.options.only) return true;
  return node.kind === "suite" && node.children.some(hasOnly);
}

async function runTree(
  root: SuiteNode,
  onlyUsed: boolean,
  report: (result: TestResult) => void,
): Promise<Totals> {
  const totals = { pass: 0, fail: 0, skip: 0 };
  const emit = (result: TestResult) => {
    if (result.status === "pass") totals.pass++;
    else if (result.status === "fail") totals.fail++;
    else totals.skip++;
    report(result);
  };

  function forEachTest(node: SuiteNode, path: string[], visit: (name: string) => void): void {
    for (const child of node.children) {
      if (child.kind === "test") visit([...path, child.name].join(" > "));
      else forEachTest(child, [...path, child.name], visit);
    }
  }

  async function runHooks(hooks: HookFn[], what: string): Promise<void> {
    for (const hook of hooks) await bounded(Promise.resolve().then(hook), DEFAULT_TIMEOUT, what);
  }

  async function runTest(
    node: TestNode,
    path: string[],
    eachBefore: HookFn[][],
    eachAfter: HookFn[][],
  ): Promise<void> {
    const name = [...path, node.name].join(" > ");
    const reason = skipReason(node.options);
    if (reason !== undefined) {
      emit({ name, status: "skip", durationMs: 0, message: reason });
      return;
    }
    if (node.options.todo || node.fn === undefined) {
      emit({
        name,
        status: "todo",
        durationMs: 0,
        message: typeof node.options.todo === "string" ? node.options.todo : "todo",
      });
      return;
    }
    const started = Date.now();
    let skipped: string | undefined;
    let todo: string | undefined;
    const abort = new AbortController();
    const context: TestContext = {
      name: node.name,
      fullName: name,
      signal: abort.signal,
      skip: (message?: string) => void (skipped = message ?? "skipped"),
      todo: (message?: string) => void (todo = message ?? "todo"),
      diagnostic: () => {},
    };
    let failure: unknown;
    let failed = false;
    try {
      for (const hooks of eachBefore) await runHooks(hooks, "beforeEach hook");
      const fn = node.fn;
      await bounded(
        Promise.resolve().then(() => fn(context)),
        node.options.timeout ?? DEFAULT_TIMEOUT,
        `Test "${name}"`,
        abort,
      );
    } catch (error) {
      failed = true;
      failure = error;
    }
    for (const hooks of [...eachAfter].reverse()) {
      try {
        await runHooks(hooks, "afterEach hook");
      } catch (error) {
        if (!failed) {
          failed = true;
          failure = error;
        }
      }
    }
    const durationMs = Date.now() - started;
    if (skipped !== undefined) emit({ name, status: "skip", durationMs, message: skipped });
    else if (todo !== undefined && !failed) emit({ name, status: "todo", durationMs, message: todo });
    else if (failed) emit({ name, status: "fail", durationMs, message: describeError(failure) });
    else emit({ name, status: "pass", durationMs });
  }

  /** `included`: an enclosing suite is marked `only` (or nothing is), so every child runs. */
  async function runSuite(
    node: SuiteNode,
    path: string[],
    eachBefore: HookFn[][],
    eachAfter: HookFn[][],
    included: boolean,
  ): Promise<void> {
    const reason = skipReason(node.options);
    if (reason !== undefined) {
      forEachTest(node, path, (name) => emit({ name, status: "skip", durationMs: 0, message: reason }));
      return;
    }
    const before = [...eachBefore, node.beforeEach];
    const after = [...eachAfter, node.afterEach];
    const where = path.length > 0 ? path.join(" > ") : "top level";
    try {
      await runHooks(node.before, `before hook of ${where}`);
    } catch (error) {
      const message = `before hook failed: ${describeError(error)}`;
      forEachTest(node, path, (name) => emit({ name, status: "fail", durationMs: 0, message }));
      await runHooks(node.after, `after hook of ${where}`).catch(() => {});
      return;
    }
    for (const child of node.children) {
      if (!included && !hasOnly(child)) continue;
      if (child.kind === "test") await runTest(child, path, before, after);
      else {await runSuite(
          child,
          [...path, child.name],
          before,
          after,
          included || child.options.only === true,
        );}
    }
    try {
      await runHooks(node.after, `after hook of ${where}`);
    } catch (error) {
      emit({ name: `${where} (after hook)`, status: "fail", durationMs: 0, message: describeError(error) });
    }
  }

  await runSuite(root, [], [], [], !onlyUsed);
  return totals;
}

const main = collect();

/** Registers a suite; its function runs now, registering what it contains. */
export const describe: Register<SuiteFn> = main.describe;
/** Registers a test in the current suite. */
export const it: Register<TestFn> = main.it;
/** node:test's other name for `it`. */
export const test: Register<TestFn> = main.it;
/** node:test's other name for `describe`. */
export const suite: Register<SuiteFn> = main.describe;
/** Runs once before the tests of the current suite (or of the whole run at top level). */
export const before: Collector["before"] = main.before;
/** Runs once after the tests of the current suite, even when some failed. */
export const after: Collector["after"] = main.after;
/** Runs before each test of the current suite and of its nested suites. */
export const beforeEach: Collector["beforeEach"] = main.beforeEach;
/** Runs after each test of the current suite and of its nested suites. */
export const afterEach: Collector["afterEach"] = main.afterEach;
/** Runs every test registered through this module's functions. */
export const run: Collector["run"] = main.run;
