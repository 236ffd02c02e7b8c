/**
 * Builds the API reference from the JSDoc with `deno doc --html`: one page per exported symbol of
 * every entry point of `deno.json` (`websession`, `websession/redis`, ...), into `docs/api/` by
 * default (git ignores it: `docs/.gitignore`). Then checks that every relative link of the
 * generated pages resolves to a file of the reference.
 *
 * Run: `node --import tsx scripts/api_docs.ts [outDir]`. Exit 1 when `deno doc` fails or a link of
 * the reference is broken. `tests/readme_test.ts` builds it into a temporary directory under
 * `npm test` and checks the Markdown's links into it.
 *
 * @module
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import process from "node:process";
import { pathToFileURL } from "node:url";
import { entryPoints } from "./check_exports.ts";

/** The title `deno doc` gives the reference. */
export const API_NAME = "websession";

/**
 * Writes the API reference of the package in `root` to `outDir` (emptied first).
 *
 * @returns The files written, relative to `outDir`.
 * @throws {Error} When `deno doc` fails (its output is in the message).
 */
export function buildApiDocs(root: string, outDir: string): string[] {
  rmSync(outDir, { recursive: true, force: true });
  const deno = join(root, "node_modules", ".bin", "deno");
  const sources = entryPoints(root).map((entry) => entry.source);
  try {
    execFileSync(deno, ["doc", "--html", `--name=${API_NAME}`, `--output=${outDir}`, ...sources], {
      cwd: root,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
    });
  } catch (error) {
    const { stdout = "", stderr = "" } = error as { stdout?: string; stderr?: string };
    throw new Error(`deno doc --html failed:\n${stdout}${stderr}`, { cause: error });
  }
  return listFiles(outDir);
}

/** Every file under `dir`, relative to it, with `/` separators. */
export function listFiles(dir: string): string[] {
  const files: string[] = [];
  const walk = (at: string): void => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      const path = join(at, entry.name);
      if (entry.isDirectory()) walk(path);
      else files.push(relative(dir, path).split("\\").join("/"));
    }
  };
  walk(dir);
  return files.sort();
}

/** Decodes the HTML character references `deno doc` writes in attribute values. */
function unescapeHtml(text: string): string {
  return text
    .replace(/&#x([0-9a-f]+);/gi, (_, hex: string) => String.fromCodePoint(parseInt(hex, 16)))
    .replace(/&#(\d+);/g, (_, dec: string) => String.fromCodePoint(Number(dec)))
    .replace(/&quot;/g, '"').replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

/**
 * Checks the relative links (`href`, `src`) of the HTML pages under `dir`: each must name a file
 * under `dir`. Fragments, absolute URLs and `data:`/`javascript:` links are not checked.
 *
 * @returns One line per broken link: the page, and the link.
 */
export function checkApiLinks(dir: string): string[] {
  const problems: string[] = [];
  for (const file of listFiles(dir).filter((name) => name.endsWith(".html"))) {
    const html = readFileSync(join(dir, file), "utf8");
    for (const [, raw] of html.matchAll(/\s(?:href|src)="([^"]*)"/g)) {
      const link = unescapeHtml(raw!).split("#")[0]!.split("?")[0]!;
      if (link === "" || /^[a-z][a-z0-9+.-]*:/i.test(link) || link.startsWith("//")) continue;
      const target = resolve(dirname(join(dir, file)), decodeURIComponent(link));
      if (!target.startsWith(resolve(dir)) || !existsSync(target)) problems.push(`${file}: ${raw}`);
    }
  }
  return problems;
}

function isMain(): boolean {
  const script = process.argv[1];
  return script !== undefined && import.meta.url === pathToFileURL(script).href;
}

if (isMain()) {
  const root = resolve(import.meta.dirname, "..");
  const out = resolve(process.argv[2] ?? join(root, "docs", "api"));
  const files = buildApiDocs(root, out);
  const broken = checkApiLinks(out);
  for (const line of broken) console.log(`broken link: ${line}`);
  console.log(`API reference: ${files.length} files in ${relative(process.cwd(), out) || "."}`);
  if (broken.length > 0) process.exit(1);
}
