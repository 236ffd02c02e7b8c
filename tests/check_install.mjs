// Run by `npm test` before the suites: when the dev dependencies are missing (a fresh clone
// before `npm install`), say so once instead of letting every test file fail on its imports.
// Uses nothing but Node itself, so it runs before anything is installed.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const require = createRequire(join(root, "package.json"));

/** The dev dependencies `npm test` cannot start without (runners and runtimes). */
const NEEDED = ["tsx", "typescript", "deno", "bun", "miniflare"];

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
  process.stderr.write(`Cannot run the tests: ${what}. Run npm install first, then npm test\n`);
  process.exit(1);
}
