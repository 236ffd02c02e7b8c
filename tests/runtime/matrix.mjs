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
// - The adapter tests (tests/adapters/*_test.ts: Hono, React Router) run under Node, Deno and
//   Bun, and in workerd those that nothing keeps out (see `workerdBlocker`).
// - The fault tests (tests/faults/*_test.ts) kill servers and processes: Node only.
// - tests/vitest/vitest_test.ts runs Vitest on the files beside it (`*.test.ts`): Node only.
// - The framework recipe tests (tests/frameworks/) build and serve whole apps; they have their own
//   entry and are not listed here.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
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

/**
 * Test files that run under Node 20 only: core files that start servers or processes, and store
 * compositions whose suites say nothing new about the runtime (they run the same store code as
 * the stores' own suites, which do run on every runtime).
 */
export const NODE_ONLY = [
  "tests/examples_test.ts",
  "tests/package_test.ts",
  "tests/http_serializable_test.ts",
  "tests/readme_test.ts",
  "tests/structure_test.ts",
  "tests/stores/tiered_test.ts",
  ...testFiles("tests/stores/tiered"),
  "tests/stores/migrating_test.ts",
  "tests/stores/migrating/migrating_test.ts",
];

/**
 * The move from CookieStore: its own file (the shared session suite through the moving backend,
 * and the move through openSession, cookie names, options), and the tests of the moving backend
 * (src/backends/moving.ts) in tests/stores/migrating/moving_test.ts. Core code: they run under
 * Node, Deno and Bun. The rest of tests/stores/migrating/ (src/stores/migrating.ts) runs where
 * tests/stores/migrating_test.ts runs: Node 20 only, as tests/stores/tiered/ with
 * tests/stores/tiered_test.ts.
 */
export function cookieMigrationFiles() {
  return ["tests/stores/cookie_migration_test.ts", "tests/stores/migrating/moving_test.ts"];
}

/** The adapter tests: each framework adapter with the real framework. */
export function adapterFiles() {
  return testFiles("tests/adapters");
}

/**
 * CookieStore's tests: its own file, and one per program of its source folder (src/stores/cookie/),
 * in tests/stores/cookie/. They run wherever the store's file runs.
 */
export function cookieStoreFiles() {
  return ["tests/stores/cookie_test.ts", ...testFiles("tests/stores/cookie")];
}

/**
 * CloudflareKvStore's and DurableObjectStore's tests: each store's own file, and one per program
 * of its source folder (src/stores/cloudflare_kv/, src/stores/durable_object/) in a folder named
 * after the store. They reach Miniflare from Node, so they run under every Node; inside workerd,
 * the shared suites run on the bindings themselves (tests/runtime/workerd_bindings.ts).
 */
export function workersStoreFiles() {
  return [
    "tests/stores/cloudflare_kv_test.ts",
    ...testFiles("tests/stores/cloudflare_kv"),
    "tests/stores/durable_object_test.ts",
    ...testFiles("tests/stores/durable_object"),
  ];
}

/**
 * PostgresStore's tests: its own file (the shared suites), and one per program of its source
 * folder (src/stores/postgres/), in tests/stores/postgres/. They run wherever the store's file runs.
 */
export function postgresStoreFiles() {
  return ["tests/stores/postgres_test.ts", ...testFiles("tests/stores/postgres")];
}

/**
 * MemcachedStore's tests: its own file (the shared suites), and one per program of its source
 * folder (src/stores/memcached/), in tests/stores/memcached/. They run wherever the store's file runs.
 */
export function memcachedStoreFiles() {
  return ["tests/stores/memcached_test.ts", ...testFiles("tests/stores/memcached")];
}

/**
 * DenoKvStore's tests: its own file (the shared suites), and one per program of its source folder
 * (src/stores/deno_kv/), in tests/stores/deno_kv/. Elsewhere than Deno, each says so with one
 * skipped test.
 */
export function denoKvStoreFiles() {
  return ["tests/stores/deno_kv_test.ts", ...testFiles("tests/stores/deno_kv")];
}

/** Node: everything, in these folders (tests/vitest: the one that runs `vitest run` there). */
export function nodeFiles() {
  return [
    ...testFiles("tests"),
    ...testFiles("tests/stores"),
    ...testFiles("tests/stores/cookie"),
    ...testFiles("tests/stores/cloudflare_kv"),
    ...testFiles("tests/stores/durable_object"),
    ...testFiles("tests/stores/postgres"),
    ...testFiles("tests/stores/memcached"),
    ...testFiles("tests/stores/redis"),
    ...testFiles("tests/stores/deno_kv"),
    ...testFiles("tests/stores/tiered"),
    ...testFiles("tests/stores/migrating"),
    ...testFiles("tests/adapters"),
    ...testFiles("tests/faults"),
    ...testFiles("tests/races"),
    ...testFiles("tests/runtime"),
    ...testFiles("tests/vitest"),
  ];
}

function coreFiles() {
  return testFiles("tests").filter((file) => !NODE_ONLY.includes(file));
}

/**
 * Deno: the core, the adapters, the in-process stores, FileStore's suites, Deno KV, the move from
 * CookieStore (core code: the moving backend), Redis, PostgreSQL and Memcached.
 */
export function denoFiles() {
  return [
    ...coreFiles(),
    ...adapterFiles(),
    "tests/stores/memory_test.ts",
    "tests/stores/memory_session_test.ts",
    ...cookieStoreFiles(),
    "tests/runtime/file_suites.ts",
    ...denoKvStoreFiles(),
    ...cookieMigrationFiles(),
    "tests/stores/redis_test.ts",
    ...postgresStoreFiles(),
    ...memcachedStoreFiles(),
  ];
}

/**
 * Bun: the core, the adapters, the in-process stores, FileStore (SIGKILL case included), the move
 * from CookieStore (core code: the moving backend), Redis, PostgreSQL and Memcached.
 */
export function bunFiles() {
  return [
    ...coreFiles(),
    ...adapterFiles(),
    "tests/stores/memory_test.ts",
    "tests/stores/memory_session_test.ts",
    ...cookieStoreFiles(),
    "tests/stores/file_test.ts",
    ...cookieMigrationFiles(),
    "tests/stores/redis_test.ts",
    ...postgresStoreFiles(),
    ...memcachedStoreFiles(),
  ];
}

/**
 * Packages that keep a test file out of workerd, with why. A test file that imports one runs in
 * Node, Deno and Bun only.
 */
export const NOT_IN_WORKERD = new Map([
  ["ioredis", "speaks Redis over node:net sockets"],
  ["redis", "node-redis speaks Redis over node:net sockets"],
  ["pg", "speaks PostgreSQL over node:net sockets"],
  ["postgres", "postgres.js speaks PostgreSQL over node:net sockets"],
  ["memcache-client", "speaks Memcached over node:net sockets"],
  ["@hono/node-server", "serves over node:http, which workerd does not have"],
  [
    "react-router",
    "its route loader calls import() on a computed path, and Miniflare refuses a `script` that does " +
    "(the runner would have to pass the bundle in `modules`)",
  ],
]);

/**
 * What keeps `file` out of workerd, if anything: a `node:` module it imports (other than
 * node:test and node:assert; type-only imports are erased and do not count), or a package from
 * {@link NOT_IN_WORKERD}.
 *
 * @returns The reason, e.g. `"imports node:fs/promises"`, or `undefined`.
 */
export function workerdBlocker(file, seen = new Set()) {
  if (seen.has(file)) return undefined;
  seen.add(file);
  const source = readFileSync(join(ROOT, file), "utf8");
  const pattern = /(?:^|[;\s])(?:import|export)\s*(type\s+)?(?:[^"';]*?\sfrom\s*)?\(?\s*["']([^"']+)["']/g;
  for (const match of source.matchAll(pattern)) {
    const [, typeOnly, specifier] = match;
    if (typeOnly !== undefined) continue;
    if (specifier.startsWith("node:")) {
      if (!["node:test", "node:assert", "node:assert/strict"].includes(specifier)) {
        return `imports ${specifier}`;
      }
      continue;
    }
    for (const [name, why] of NOT_IN_WORKERD) {
      if (specifier === name || specifier.startsWith(`${name}/`)) return `imports ${specifier}: ${why}`;
    }
    // A test helper it imports (not the library: src/ must run in workerd) blocks it as well.
    if (specifier.startsWith(".")) {
      const helper = join(dirname(file), specifier);
      if (helper.startsWith("tests/") && existsSync(join(ROOT, helper))) {
        const reason = workerdBlocker(helper, seen);
        if (reason !== undefined) return `${reason} (through ${helper})`;
      }
    }
  }
  return undefined;
}

/**
 * workerd: the core, the adapters and the in-process stores, plus the KV and Durable Object
 * suites on real bindings (tests/runtime/workerd_bindings.ts) and RedisStore over @upstash/redis
 * and PostgresStore over neon() against the real servers through bridges the runner starts in
 * Node (tests/runtime/workerd_remote.ts). A test file that imports another `node:` module, or a
 * package listed in {@link NOT_IN_WORKERD}, cannot run there and is listed in `skipped` with the
 * reason (see {@link workerdBlocker}).
 */
export function workerdFiles() {
  const files = [];
  const skipped = [];
  for (
    const file of [
      ...coreFiles(),
      ...adapterFiles(),
      "tests/stores/memory_test.ts",
      "tests/stores/memory_session_test.ts",
      ...cookieStoreFiles(),
    ]
  ) {
    const reason = workerdBlocker(file);
    if (reason === undefined) files.push(file);
    else skipped.push({ file, reason });
  }
  files.push("tests/runtime/workerd_bindings.ts", "tests/runtime/workerd_remote.ts");
  return { files, skipped };
}
