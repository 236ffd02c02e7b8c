// Which test files run where (tests/runtime/matrix.mjs), checked against the test folders: the
// adapter tests run under Node, Deno and Bun; the fault tests and the one that runs Vitest under
// Node only; the framework recipe tests (tests/frameworks/) under none of these entries; and
// workerd leaves out, with the reason, every file that imports something it cannot run.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import {
  bunFiles,
  denoFiles,
  NODE_ONLY,
  nodeFiles,
  ROOT,
  workerdBlocker,
  workerdFiles,
  workersStoreFiles,
  // @ts-expect-error: a plain JavaScript module shared with tests/run_all.mjs
} from "./matrix.mjs";

interface Workerd {
  files: string[];
  skipped: { file: string; reason: string }[];
}

/** The `*_test.ts` files under `dir` at any depth, relative to the root. */
function testsUnder(dir: string): string[] {
  return (readdirSync(join(ROOT, dir), { recursive: true }) as string[])
    .map((path) => `${dir}/${path.split("\\").join("/")}`)
    .filter((path) => path.endsWith("_test.ts"))
    .sort();
}

const workerd = workerdFiles() as Workerd;
const lists: Record<string, string[]> = {
  node: nodeFiles(),
  deno: denoFiles(),
  bun: bunFiles(),
  workerd: workerd.files,
  "workerd (skipped)": workerd.skipped.map((entry) => entry.file),
};

describe("test matrix", () => {
  it("lists only files that exist, each once per runtime", () => {
    for (const [runtime, files] of Object.entries(lists)) {
      assert.deepEqual(files.filter((file) => !existsSync(join(ROOT, file))), [], runtime);
      assert.equal(new Set(files).size, files.length, `${runtime} lists a file twice`);
    }
  });

  it("runs every adapter test under Node, Deno and Bun", () => {
    const adapters = testsUnder("tests/adapters");
    assert.ok(adapters.includes("tests/adapters/hono_test.ts"));
    assert.ok(adapters.includes("tests/adapters/react_router_test.ts"));
    for (const runtime of ["node", "deno", "bun"]) {
      assert.deepEqual(adapters.filter((file) => !lists[runtime]!.includes(file)), [], runtime);
    }
  });

  it("considers every adapter test for workerd, and says why one is left out", () => {
    for (const file of testsUnder("tests/adapters")) {
      const listed = workerd.files.includes(file);
      const skipped = workerd.skipped.find((entry) => entry.file === file);
      assert.ok(listed !== (skipped !== undefined), `${file}: listed or skipped, exactly one`);
      if (skipped !== undefined) assert.equal(skipped.reason, workerdBlocker(file));
    }
    // The Hono test serves over HTTP with @hono/node-server; its type-only node:net import does not count.
    assert.match(workerdBlocker("tests/adapters/hono_test.ts") ?? "", /^imports @hono\/node-server: /);
  });

  it("runs CookieStore's tests of its programs (tests/stores/cookie/) wherever its own file runs", () => {
    const programs = testsUnder("tests/stores/cookie");
    assert.ok(programs.includes("tests/stores/cookie/chunks_test.ts"));
    for (const runtime of ["node", "deno", "bun", "workerd"]) {
      assert.ok(lists[runtime]!.includes("tests/stores/cookie_test.ts"), runtime);
      assert.deepEqual(programs.filter((file) => !lists[runtime]!.includes(file)), [], runtime);
    }
  });

  it("runs the Workers stores' tests of their programs under Node 20 and the current Node, as their own files", () => {
    const files = workersStoreFiles() as string[];
    for (const store of ["cloudflare_kv", "durable_object"]) {
      const programs = testsUnder(`tests/stores/${store}`);
      assert.ok(programs.length > 0, store);
      assert.ok(files.includes(`tests/stores/${store}_test.ts`), store);
      assert.deepEqual(programs.filter((file) => !files.includes(file)), [], store);
    }
    // The current Node runs Node's files but NODE_ONLY.
    assert.deepEqual(files.filter((file) => !lists["node"]!.includes(file) || NODE_ONLY.includes(file)), []);
  });

  it("runs the tests of a store's programs (tests/stores/<store>/) exactly where the store's own file runs", () => {
    // A folder whose files belong to two files of their own names them: tests/stores/migrating/
    // holds the moving backend's tests (the move from CookieStore, under Node, Deno and Bun) and
    // MigratingStore's (Node 20 only).
    const stores: [folder: string, own: string, only?: string[]][] = [
      ["postgres", "tests/stores/postgres_test.ts"],
      ["memcached", "tests/stores/memcached_test.ts"],
      ["deno_kv", "tests/stores/deno_kv_test.ts"],
      ["redis", "tests/stores/redis_cluster_test.ts"],
      ["tiered", "tests/stores/tiered_test.ts"],
      ["migrating", "tests/stores/cookie_migration_test.ts", ["tests/stores/migrating/moving_test.ts"]],
      ["migrating", "tests/stores/migrating_test.ts", ["tests/stores/migrating/migrating_test.ts"]],
    ];
    const claimed = new Set<string>();
    for (const [folder, own, only] of stores) {
      const programs = only ?? testsUnder(`tests/stores/${folder}`);
      assert.ok(programs.length > 0, folder);
      assert.deepEqual(
        programs.filter((file) => !testsUnder(`tests/stores/${folder}`).includes(file)),
        [],
        folder,
      );
      for (const file of programs) claimed.add(file);
      for (const [runtime, files] of Object.entries(lists)) {
        const expected = files.includes(own) ? programs : [];
        assert.deepEqual(programs.filter((file) => files.includes(file)), expected, `${runtime}: ${folder}`);
      }
    }
    // Every file in such a folder is one of its store's.
    for (const folder of new Set(stores.map(([folder]) => folder))) {
      assert.deepEqual(testsUnder(`tests/stores/${folder}`).filter((file) => !claimed.has(file)), [], folder);
    }
  });

  it("runs the fault tests under Node only", () => {
    const faults = testsUnder("tests/faults");
    assert.ok(faults.length > 0);
    assert.deepEqual(faults.filter((file) => !lists["node"]!.includes(file)), []);
    for (const runtime of ["deno", "bun", "workerd", "workerd (skipped)"]) {
      assert.deepEqual(lists[runtime]!.filter((file) => file.startsWith("tests/faults/")), [], runtime);
    }
  });

  it("runs Vitest from Node only, and never a Vitest file as a node:test file", () => {
    assert.deepEqual(testsUnder("tests/vitest"), ["tests/vitest/vitest_test.ts"]);
    assert.ok(lists["node"]!.includes("tests/vitest/vitest_test.ts"));
    for (const [runtime, files] of Object.entries(lists)) {
      assert.deepEqual(files.filter((file) => file.endsWith(".test.ts")), [], runtime);
    }
    for (const runtime of ["deno", "bun", "workerd", "workerd (skipped)"]) {
      assert.deepEqual(lists[runtime]!.filter((file) => file.startsWith("tests/vitest/")), [], runtime);
    }
  });

  it("leaves the framework recipe tests out of every runtime", () => {
    assert.ok(testsUnder("tests/frameworks").length > 0, "there are framework tests to leave out");
    for (const [runtime, files] of Object.entries(lists)) {
      assert.deepEqual(files.filter((file) => file.startsWith("tests/frameworks/")), [], runtime);
    }
  });
});
