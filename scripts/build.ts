/**
 * Builds the npm package: empties `dist/`, compiles `mod.ts` and `src/` with
 * `tsc -p tsconfig.build.json` (ES modules and declarations; `rewriteRelativeImportExtensions`
 * turns the sources' `./x.ts` imports into `./x.js`), then gives the declaration files the same
 * `.js` specifiers, which tsc leaves as `.ts` (TypeScript itself reads either, other tools do not).
 *
 * Run: `node --import tsx scripts/build.ts` (or `npm run build`).
 *
 * @module
 */
import { execFileSync } from "node:child_process";
import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import process from "node:process";
import { pathToFileURL } from "node:url";

const RELATIVE_TS = /(\bfrom\s*|\bimport\s*\(\s*)(["'])(\.\.?\/[^"'\n]*?)\.ts\2/g;

/** Rewrites relative `.ts` specifiers of `import`/`export ... from` and `import()` types to `.js`. */
export function rewriteDeclaration(text: string): string {
  return text.replace(
    RELATIVE_TS,
    (_match, lead: string, quote: string, path: string) => `${lead}${quote}${path}.js${quote}`,
  );
}

/**
 * Builds `dist/` in `root`.
 *
 * @returns The declaration files, relative to `root/dist`.
 */
export async function buildPackage(root: string): Promise<string[]> {
  const dist = join(root, "dist");
  await rm(dist, { recursive: true, force: true });
  const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
  execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json")], {
    cwd: root,
    stdio: "inherit",
  });
  const declarations = (await readdir(dist, { recursive: true }))
    .map((path) => path.split("\\").join("/"))
    .filter((path) => path.endsWith(".d.ts"))
    .sort();
  for (const path of declarations) {
    const file = join(dist, path);
    const text = await readFile(file, "utf8");
    const rewritten = rewriteDeclaration(text);
    if (rewritten !== text) await writeFile(file, rewritten);
  }
  return declarations;
}

function isMain(): boolean {
  const script = process.argv[1];
  return script !== undefined && import.meta.url === pathToFileURL(script).href;
}

if (isMain()) {
  const root = resolve(import.meta.dirname, "..");
  const declarations = await buildPackage(root);
  console.log(`dist/: ${declarations.length} modules with declarations`);
}
