// Run by `npm test` before the suites, and by `npm start` (`node tests/check_install.mjs start`)
// before the Node example: when the dev dependencies are missing (a fresh clone before
// `npm install`), say so once instead of failing on an import with ERR_MODULE_NOT_FOUND.
// Uses nothing but Node itself, so it runs before anything is installed.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const require = createRequire(join(root, "package.json"));

const start = process.argv[2] === "start";
/** The dev dependencies `npm test` (runners and runtimes) or `npm start` cannot start without. */
const NEEDED = start ? ["tsx"] : ["tsx", "typescript", "deno", "bun", "miniflare"];

const missing = NEEDED.filter((name) => {
  try {
    require.resolve(`${name}/package.json`);
    return false;
  } catch {
    return true;
  }
});

if (!existsSync(join(root, "node_modules")) || missing.length > 0) {
  const what = missing.length === NEEDED.length || !existsSync(join(root, "node_modules"))
    ? "the dev dependencies are not installed"
    : `missing dev dependencies: ${missing.map((name) => `"${name}"`).join(", ")}`;
  const task = start ? "start the example" : "run the tests";
  process.stderr.write(
    `Cannot ${task}: ${what}. Run npm install first, then npm ${start ? "start" : "test"}\n`,
  );
  process.exit(1);
}
