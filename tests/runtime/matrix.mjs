// Which test files run on which runtime. One list, read by tests/run_all.mjs and by the workerd
// runner, so adding a test file in the right folder is enough for it to run everywhere it can.
//
// - Node runs every test file.
// - The core tests (tests/*_test.ts) are meant to run everywhere; NODE_ONLY names the few that
//   drive other processes and cannot.
// - Each store runs where its backend exists: Redis, PostgreSQL and Memcached under Node, Deno
//   and Bun (every client variant, against the machine's servers; their outage tests under Node
//   only);
//   Deno KV under Deno only; Workers KV and Durable Objects inside workerd (and, through
//   Miniflare, from Node).
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root. */
export const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** Every `*_test.ts` file directly in `dir` (relative to the root), sorted. */
export function testFiles(dir) {
  const path = join(ROOT, dir);
  if (!existsSync(path)) return [];
  return readdirSync(path)
    .filter((name) => name.endsWith("_test.ts"))
    .sort()
    .map((name) => relative(ROOT, join(path, name)));
}

/** Core test files that start servers or processes and therefore run under Node only. */
export const NODE_ONLY = [
  "tests/examples_test.ts",
  "tests/package_test.ts",
  "tests/http_serializable_test.ts",
  "tests/readme_test.ts",
];

/** Node: everything, in these folders. */
export function nodeFiles() {
  return [
    ...testFiles("tests"),
    ...testFiles("tests/stores"),
    ...testFiles("tests/faults"),
    ...testFiles("tests/runtime"),
  ];
}

function coreFiles() {
  return testFiles("tests").filter((file) => !NODE_ONLY.includes(file));
}

/**
 * Deno: the core, the in-process stores, FileStore's suites, Deno KV, Redis, PostgreSQL and
 * Memcached.
 */
export function denoFiles() {
  return [
    ...coreFiles(),
    "tests/stores/memory_test.ts",
    "tests/stores/memory_session_test.ts",
    "tests/stores/cookie_test.ts",
    "tests/runtime/file_suites.ts",
    "tests/stores/deno_kv_test.ts",
    "tests/stores/redis_test.ts",
    "tests/stores/postgres_test.ts",
    "tests/stores/memcached_test.ts",
  ];
}

/**
 * Bun: the core, the in-process stores, FileStore (SIGKILL case included), Redis, PostgreSQL and
 * Memcached.
 */
export function bunFiles() {
  return [
    ...coreFiles(),
    "tests/stores/memory_test.ts",
    "tests/stores/memory_session_test.ts",
    "tests/stores/cookie_test.ts",
    "tests/stores/file_test.ts",
    "tests/stores/redis_test.ts",
    "tests/stores/postgres_test.ts",
    "tests/stores/memcached_test.ts",
  ];
}

/** A `node:` module other than node:test and node:assert that `file` imports, if any. */
export function nodeModuleUsed(file) {
  const source = readFileSync(join(ROOT, file), "utf8");
  for (const match of source.matchAll(/(?:from|import)\s*\(?\s*["'](node:[\w/]+)["']/g)) {
    if (!["node:test", "node:assert", "node:assert/strict"].includes(match[1])) return match[1];
  }
  return undefined;
}

/**
 * workerd: the core and the in-process stores, plus the KV and Durable Object suites on real
 * bindings (tests/runtime/workerd_bindings.ts) and RedisStore over @upstash/redis and
 * PostgresStore over neon() against the real servers through bridges the runner starts in Node
 * (tests/runtime/workerd_remote.ts). A core test file that imports another `node:`
 * module cannot run without nodejs_compat and is listed in `skipped` with the reason.
 */
export function workerdFiles() {
  const files = [];
  const skipped = [];
  for (
    const file of [
      ...coreFiles(),
      "tests/stores/memory_test.ts",
      "tests/stores/memory_session_test.ts",
      "tests/stores/cookie_test.ts",
    ]
  ) {
    const used = nodeModuleUsed(file);
    if (used === undefined) files.push(file);
    else skipped.push({ file, reason: `imports ${used}` });
  }
  files.push("tests/runtime/workerd_bindings.ts", "tests/runtime/workerd_remote.ts");
  return { files, skipped };
}
