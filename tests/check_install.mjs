// Run by `npm start` (`node tests/check_install.mjs start`) before the Node example, and by `npm test`
// and the other scripts that need the test toolchain (`node tests/check_install.mjs`) before them.
//
// `npm install` at the root installs the library's dependency and what the demo and the library's own
// type-check need (a few dozen MB). The test toolchain (Deno, Bun, Miniflare, the drivers, the
// framework recipes, Playwright, the benchmarks' peers) is the package tests/toolchain, with its own
// lock file. Without an argument this script:
//   1. says to run `npm install` first when the root's dev dependencies are missing (a fresh clone);
//   2. installs the toolchain with `npm ci` from its lock file when it is missing or differs from
//      that lock (once: one line says so before it starts); nothing else reaches the network;
//   3. links each of the toolchain's top-level packages, and its `.bin` commands, into the root
//      node_modules where the root has none of that name, so that every file of the repository
//      (tests/, bench/, examples/, scripts/, the copies the framework tests build) resolves them
//      as before, and the root's own packages stay the only copy of their name there.
// A later `npm install` at the root removes those links as extraneous; the next run makes them again.
// Uses nothing but Node itself, so it runs before anything is installed.
import { spawnSync } from "node:child_process";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  unlinkSync,
} from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** The toolchain's package (its package.json and package-lock.json are committed). */
export const TOOLCHAIN = join(ROOT, "tests", "toolchain");
const ROOT_MODULES = join(ROOT, "node_modules");
const TOOL_MODULES = join(TOOLCHAIN, "node_modules");

/** The root's dev dependencies that `npm test` (the runner) or `npm start` cannot start without. */
function checkRoot(start) {
  const require = createRequire(join(ROOT, "package.json"));
  const needed = start ? ["tsx"] : ["tsx", "typescript"];
  const missing = needed.filter((name) => {
    try {
      require.resolve(`${name}/package.json`);
      return false;
    } catch {
      return true;
    }
  });
  if (existsSync(ROOT_MODULES) && missing.length === 0) return true;
  const what = missing.length === needed.length || !existsSync(ROOT_MODULES)
    ? "the dev dependencies are not installed"
    : `missing dev dependencies: ${missing.map((name) => `"${name}"`).join(", ")}`;
  // The npm script that runs this (`npm run lint` runs it too), to name it back.
  const script = process.env.npm_lifecycle_event;
  const again = start ? "npm start" : script && script !== "test" ? `npm run ${script}` : "npm test";
  const task = start ? "start the example" : script && script !== "test" ? `run ${script}` : "run the tests";
  process.stderr.write(`Cannot ${task}: ${what}. Run npm install first, then ${again}\n`);
  return false;
}

/**
 * The toolchain's packages that its lock file names and its node_modules lacks, or holds at another
 * version (by npm's own record of the install, node_modules/.package-lock.json). Packages for another
 * platform (with `os` or `cpu`) and optional ones are not required.
 */
export function staleToolchain() {
  const lock = JSON.parse(readFileSync(join(TOOLCHAIN, "package-lock.json"), "utf8")).packages ?? {};
  const record = join(TOOL_MODULES, ".package-lock.json");
  const installed = existsSync(record) ? JSON.parse(readFileSync(record, "utf8")).packages ?? {} : {};
  return Object.entries(lock).filter(([path, entry]) =>
    path !== "" && !entry.optional && !entry.devOptional && !entry.os && !entry.cpu &&
    installed[path]?.version !== entry.version
  ).map(([path]) => path);
}

/** `npm ci` in tests/toolchain, from its lock file. Throws when npm fails. */
export function installToolchain() {
  const started = Date.now();
  console.log("Installing the test toolchain (once): npm ci in tests/toolchain, from its lock file");
  // Under `npm test`, npm_execpath is the npm that runs the script: use the same one.
  const npm = process.env.npm_execpath && /npm-cli\.js$/.test(process.env.npm_execpath)
    ? [process.execPath, [process.env.npm_execpath]]
    : ["npm", []];
  // Without the npm_* variables of the npm that runs `npm test`: they carry the root's settings
  // (npm_config_omit=peer from its .npmrc), and the toolchain needs its peers installed.
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)));
  const result = spawnSync(npm[0], [...npm[1], "ci", "--no-audit", "--no-fund", "--loglevel=error"], {
    cwd: TOOLCHAIN,
    env,
    stdio: "inherit",
  });
  if (result.status !== 0) {
    throw new Error(`npm ci in tests/toolchain failed (${result.error?.message ?? `exit ${result.status}`})`);
  }
  console.log(`Test toolchain installed in ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

function lexists(path) {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The top-level package names under a node_modules directory (scoped ones as "@scope/name"). */
function topLevel(modules) {
  const names = [];
  for (const entry of readdirSync(modules)) {
    if (entry.startsWith(".")) continue;
    if (entry.startsWith("@")) {
      for (const inner of readdirSync(join(modules, entry))) names.push(`${entry}/${inner}`);
    } else names.push(entry);
  }
  return names;
}

function link(target, path) {
  mkdirSync(dirname(path), { recursive: true });
  symlinkSync(relative(dirname(path), target), path);
}

/**
 * Links the toolchain's top-level packages and `.bin` commands into the root node_modules where the
 * root has none of that name, and removes links into the toolchain whose target is gone. Returns
 * how many links it made.
 */
export function linkToolchain() {
  let made = 0;
  for (const name of topLevel(TOOL_MODULES)) {
    const path = join(ROOT_MODULES, name);
    if (!lexists(path)) {
      link(join(TOOL_MODULES, name), path);
      made++;
    }
  }
  const bins = join(TOOL_MODULES, ".bin");
  if (existsSync(bins)) {
    for (const name of readdirSync(bins)) {
      const path = join(ROOT_MODULES, ".bin", name);
      if (!lexists(path)) {
        link(join(bins, name), path);
        made++;
      }
    }
  }
  // A link left from an earlier toolchain whose package is gone now.
  const rootBins = existsSync(join(ROOT_MODULES, ".bin")) ? readdirSync(join(ROOT_MODULES, ".bin")) : [];
  for (const name of [...topLevel(ROOT_MODULES), ...rootBins.map((bin) => `.bin/${bin}`)]) {
    const path = join(ROOT_MODULES, name);
    if (!lstatSync(path).isSymbolicLink() || existsSync(path)) continue;
    if (resolve(dirname(path), readlinkSync(path)).startsWith(TOOLCHAIN)) unlinkSync(path);
  }
  return made;
}

/** Steps 2 and 3 above: the toolchain installed as its lock file says, and linked into the root. */
export function ensureToolchain() {
  if (staleToolchain().length > 0) installToolchain();
  linkToolchain();
}

function main() {
  const mode = process.argv[2];
  if (!checkRoot(mode === "start")) process.exit(1);
  if (mode === "start") return;
  try {
    ensureToolchain();
  } catch (error) {
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) main();
