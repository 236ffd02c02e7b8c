// Runs the core, session and store suites inside workerd (Miniflare): the test files are bundled
// with esbuild into one module Worker whose `node:test` is the tiny collector in test_shim.ts.
// Twice: with `nodejs_compat` (assertions by workerd's own node:assert) and without it (the
// assert shim; the bundle then must not import a single `node:` module, which proves the core
// and the stores under test need nothing from Node). RedisStore over @upstash/redis and
// PostgresStore over neon() reach the real Redis and PostgreSQL through bridges started here, in
// Node, for each run (tests/runtime/workerd_remote_backends.ts).
//
// Usage: node --import tsx tests/runtime/workerd.ts [--compat | --no-compat]   (default: both)
// Prints one line per test and ends with "workerd: N passed, N failed, N skipped".
import { fileURLToPath } from "node:url";
import { build, type Plugin } from "esbuild";
import { Log, LogLevel, Miniflare } from "miniflare";
// @ts-expect-error: a plain JavaScript module shared with tests/run_all.mjs
import { ROOT, workerdFiles } from "./matrix.mjs";
import { type RemoteBackends, startRemoteBackends } from "./workerd_remote_backends.ts";

/** The newest date this Miniflare's workerd accepts is 2026-05-03. */
export const COMPATIBILITY_DATE = "2026-05-01";

/** A whole run must end within this (it takes about 20 s). */
const RUN_TIMEOUT_MS = 240_000;

const here = (name: string) => fileURLToPath(new URL(name, import.meta.url));

interface Totals {
  pass: number;
  fail: number;
  skip: number;
}

/** Points `node:test` (and, without nodejs_compat, `node:assert`) at the shims. */
function shims(compat: boolean): Plugin {
  return {
    name: "runtime-shims",
    setup(build) {
      build.onResolve({ filter: /^node:test$/ }, () => ({ path: here("./test_shim.ts") }));
      build.onResolve(
        { filter: /^node:assert(\/strict)?$/ },
        (args) => compat ? { path: args.path, external: true } : { path: here("./assert_shim.ts") },
      );
      // Anything else from Node stays an import: workerd then resolves it, or refuses to load.
      build.onResolve({ filter: /^node:/ }, (args) => ({ path: args.path, external: true }));
    },
  };
}

/** Bundles the Worker and the test files into one ES module. */
export async function bundle(compat: boolean, files: string[]): Promise<string> {
  const entry = [
    ...files.map((file) => `import ${JSON.stringify(`${ROOT}/${file}`)};`),
    `export { default, SessionDurableObject } from ${JSON.stringify(here("./workerd_worker.ts"))};`,
  ].join("\n");
  const result = await build({
    stdin: { contents: entry, resolveDir: ROOT, loader: "ts", sourcefile: "workerd_entry.ts" },
    bundle: true,
    format: "esm",
    platform: "neutral",
    mainFields: ["module", "main"],
    conditions: ["workerd", "worker", "browser"],
    target: "es2022",
    // The package says `sideEffects: false`; test files are imported for their side effects.
    ignoreAnnotations: true,
    write: false,
    logLevel: "silent",
    plugins: [shims(compat)],
  });
  return result.outputFiles[0]!.text;
}

/** The `node:` modules a bundle still imports. */
export function nodeImports(script: string): string[] {
  const found = new Set<string>();
  // Doc comments the bundle keeps hold example code: only code lines count.
  const code = script.split("\n").filter((line) => !/^\s*(\*|\/\/|\/\*)/.test(line)).join("\n");
  for (const match of code.matchAll(/(?:from|import)\s*\(?\s*["'](node:[\w/]+)["']/g)) found.add(match[1]!);
  return [...found].sort();
}

interface Line {
  type: "test" | "summary" | "crash";
  name?: string;
  status?: "pass" | "fail" | "skip" | "todo";
  durationMs?: number;
  message?: string;
  pass?: number;
  fail?: number;
  skip?: number;
}

function print(line: Line, label: string): void {
  const time = line.durationMs ? ` (${line.durationMs}ms)` : "";
  if (line.status === "pass") console.log(`  ok   ${line.name}${time}`);
  else if (line.status === "skip" || line.status === "todo") {
    console.log(`  skip ${line.name} # ${line.status.toUpperCase()} ${line.message ?? ""}`);
  } else {
    console.log(`  FAIL ${line.name}${time}`);
    for (const text of (line.message ?? "").split("\n")) console.log(`       ${text}`);
    console.log(`       [${label}]`);
  }
}

/** Runs every bundled test once in a fresh Miniflare and returns the counts. */
export async function runWorkerd(compat: boolean): Promise<Totals> {
  const label = compat ? "workerd with nodejs_compat" : "workerd without nodejs_compat";
  const { files, skipped } = workerdFiles() as {
    files: string[];
    skipped: { file: string; reason: string }[];
  };
  console.log(`# ${label}: ${files.length} files, compatibility date ${COMPATIBILITY_DATE}`);
  for (const { file, reason } of skipped) console.log(`# not bundled: ${file} (${reason})`);
  const script = await bundle(compat, files);
  const imports = nodeImports(script);
  if (!compat && imports.length > 0) {
    console.log(`  FAIL the bundle imports Node modules without nodejs_compat: ${imports.join(", ")}`);
    return { pass: 0, fail: 1, skip: 0 };
  }
  console.log(
    `# bundle: ${(script.length / 1024).toFixed(0)} KiB, node: imports: ${imports.join(", ") || "none"}`,
  );

  const totals: Totals = { pass: 0, fail: 0, skip: 0 };
  let remote: RemoteBackends | undefined;
  try {
    remote = await startRemoteBackends(compat ? "compat" : "nocompat");
  } catch (error) {
    // The remote-store suites then fail in their `before` hooks; the rest still runs.
    console.log(`  FAIL the Upstash and Neon bridges did not start: ${String(error)}`);
    totals.fail++;
  }
  const mf = new Miniflare({
    modules: true,
    script,
    compatibilityDate: COMPATIBILITY_DATE,
    compatibilityFlags: compat ? ["nodejs_compat"] : [],
    kvNamespaces: ["SESSIONS_KV"],
    durableObjects: { SESSIONS_DO: "SessionDurableObject" },
    bindings: { ...remote?.bindings },
    log: new Log(LogLevel.WARN),
    cf: false,
  });
  let summary: Totals | undefined;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), RUN_TIMEOUT_MS);
  try {
    await mf.ready;
    const response = await mf.dispatchFetch("http://runner/run", { signal: abort.signal });
    if (!response.ok || response.body === null) {
      throw new Error(`The runner Worker answered ${response.status}: ${await response.text()}`);
    }
    const decoder = new TextDecoder();
    let buffered = "";
    const handle = (text: string) => {
      if (text.trim() === "") return;
      const line = JSON.parse(text) as Line;
      if (line.type === "test") {
        print(line, label);
        if (line.status === "pass") totals.pass++;
        else if (line.status === "fail") totals.fail++;
        else totals.skip++;
      } else if (line.type === "summary") {
        summary = { pass: line.pass!, fail: line.fail!, skip: line.skip! };
      } else {
        console.log(`  FAIL the run crashed: ${line.message}`);
        totals.fail++;
      }
    };
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      buffered += decoder.decode(chunk, { stream: true });
      let newline: number;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        handle(buffered.slice(0, newline));
        buffered = buffered.slice(newline + 1);
      }
    }
    handle(buffered);
    if (summary === undefined) {
      console.log("  FAIL the run ended without its summary (the Worker stopped early)");
      totals.fail++;
    }
  } catch (error) {
    console.log(
      `  FAIL ${label}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
    );
    totals.fail++;
  } finally {
    clearTimeout(timer);
    await mf.dispose();
    for (const check of (await remote?.finish()) ?? []) {
      print(
        { type: "test", name: check.name, status: check.ok ? "pass" : "fail", message: check.message },
        label,
      );
      if (check.ok) totals.pass++;
      else totals.fail++;
    }
  }
  console.log(`# ${label}: ${totals.pass} passed, ${totals.fail} failed, ${totals.skip} skipped`);
  return totals;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const modes = args.includes("--compat") ? [true] : args.includes("--no-compat") ? [false] : [true, false];
  const all: Totals = { pass: 0, fail: 0, skip: 0 };
  for (const compat of modes) {
    const totals = await runWorkerd(compat);
    all.pass += totals.pass;
    all.fail += totals.fail;
    all.skip += totals.skip;
  }
  console.log(`workerd: ${all.pass} passed, ${all.fail} failed, ${all.skip} skipped`);
  process.exitCode = all.fail > 0 || all.pass === 0 ? 1 : 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
