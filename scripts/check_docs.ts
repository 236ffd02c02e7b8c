/**
 * Checks the documentation: lists the exported symbols of every entry point (from `deno.json`
 * exports, via `deno doc --json`) whose JSDoc is missing or has no `@example`, then checks the
 * Markdown (`README.md` and every `.md` file under `docs/`): every relative link resolves to a file and, with a
 * `#fragment`, to a heading of it (links into `docs/api/` against the generated API reference,
 * see `scripts/api_docs.ts`), and every TypeScript block is type-checked against the sources, the
 * runnable ones run (see `scripts/check_readme.ts`). JSDoc examples themselves run with `npm run
 * test:doc` (`deno test --doc`); `npm test` runs the Markdown checks as `tests/readme_test.ts`.
 *
 * Run: `node --import tsx scripts/check_docs.ts [--strict] [--readme-only]`. Exit 1 when a
 * symbol has no JSDoc, a function or class has no example (with `--strict`, also a type), a link
 * is broken or a block fails (`--readme-only`: the Markdown checks alone).
 *
 * @module
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { entryPoints } from "./check_exports.ts";
import { buildApiDocs, checkApiLinks } from "./api_docs.ts";
import {
  type BlockResult,
  describeBlock,
  parseReadme,
  type ReadmeBlock,
  runBlock,
  typeCheck,
  writeBlocks,
} from "./check_readme.ts";

/** One exported declaration and what its JSDoc holds. */
export interface DocEntry {
  /** The exported name. */
  name: string;
  /** `function`, `class`, `interface`, `typeAlias`, `variable`, ... */
  kind: string;
  /** Where it is declared, relative to the package root, with its line. */
  location: string;
  /** Whether it has JSDoc text. */
  documented: boolean;
  /** Whether its JSDoc has an `@example`. */
  example: boolean;
}

interface DocNode {
  name: string;
  declarations: {
    kind: string;
    location: { filename: string; line: number };
    jsDoc?: { doc?: string; tags?: { kind: string }[] };
    /** A `reference`: a re-export of a symbol another entry point documents, and where it is. */
    def?: { target?: { filename: string; line: number } };
  }[];
}

/** Reads the documentation of every entry point of the package in `root` with `deno doc`. */
export function readDocs(root: string): DocEntry[] {
  const deno = join(root, "node_modules", ".bin", "deno");
  const files = entryPoints(root).map((entry) => entry.source);
  const json = execFileSync(deno, ["doc", "--json", ...files], {
    cwd: root,
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
    stdio: ["ignore", "pipe", "ignore"],
    env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
  });
  const parsed = JSON.parse(json) as { nodes: Record<string, { symbols: DocNode[] }> };
  // A symbol that two entry points export is declared under one; the other holds a `reference`,
  // which deno doc and JSR render with the declaration's own JSDoc: judge it by that.
  const declared = new Map<string, DocNode["declarations"][number]>();
  for (const module of Object.values(parsed.nodes)) {
    for (const symbol of module.symbols) {
      for (const declaration of symbol.declarations) {
        const { filename, line } = declaration.location;
        if (declaration.kind !== "reference") declared.set(`${filename}:${line}`, declaration);
      }
    }
  }
  const seen = new Set<string>();
  const entries: DocEntry[] = [];
  for (const module of Object.values(parsed.nodes)) {
    for (const symbol of module.symbols) {
      for (const declaration of symbol.declarations) {
        const file = relative(root, fileURLToPath(declaration.location.filename)).split("\\").join("/");
        const location = `${file}:${declaration.location.line}`;
        const key = `${symbol.name}@${location}`;
        if (seen.has(key)) continue;
        seen.add(key);
        const target = declaration.def?.target;
        const shown = target === undefined
          ? declaration
          : declared.get(`${target.filename}:${target.line}`) ?? declaration;
        const tags = shown.jsDoc?.tags ?? [];
        entries.push({
          name: symbol.name,
          kind: shown.kind,
          location,
          documented: (shown.jsDoc?.doc ?? "").trim() !== "",
          example: tags.some((tag) => tag.kind === "example"),
        });
      }
    }
  }
  return entries.sort((a, b) => a.location.localeCompare(b.location, "en", { numeric: true }));
}

/** What {@linkcode checkDocs} found. */
export interface DocProblems {
  /** Symbols with no JSDoc text. */
  undocumented: DocEntry[];
  /** Functions, classes and variables with no `@example`. */
  valuesWithoutExample: DocEntry[];
  /** Interfaces and type aliases with no `@example`. */
  typesWithoutExample: DocEntry[];
}

/** Sorts the gaps in `entries` by how much they matter. */
export function checkDocs(entries: readonly DocEntry[]): DocProblems {
  const isType = (entry: DocEntry): boolean => entry.kind === "interface" || entry.kind === "typeAlias";
  return {
    undocumented: entries.filter((entry) => !entry.documented),
    valuesWithoutExample: entries.filter((entry) => !entry.example && !isType(entry)),
    typesWithoutExample: entries.filter((entry) => !entry.example && isType(entry)),
  };
}

/** The Markdown files the checks cover: `README.md`, then every `.md` file under `docs/` (not the generated `docs/api/`). */
export function docFiles(root: string): string[] {
  const files = ["README.md"];
  const walk = (dir: string): void => {
    if (!existsSync(join(root, dir))) return;
    for (
      const entry of readdirSync(join(root, dir), { withFileTypes: true }).sort((a, b) =>
        a.name.localeCompare(b.name)
      )
    ) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory()) {
        if (path !== "docs/api") walk(path);
      } else if (entry.name.endsWith(".md")) files.push(path);
    }
  };
  walk("docs");
  return files;
}

/** A TypeScript block of one of the Markdown files, and which file. */
export interface DocBlock extends ReadmeBlock {
  /** The Markdown file, relative to the package root. */
  doc: string;
}

/**
 * Parses the TypeScript blocks of every file of {@linkcode docFiles}. A block's `heading` is
 * prefixed with its file (`docs/stores/redis.md › Redis`), so blocks that name files are grouped
 * only with blocks of the same file.
 *
 * @throws {ReadmeSyntaxError} For a malformed check comment (its message names the line; the
 * error's `doc` names the file).
 */
export function parseDocs(root: string, files: readonly string[] = docFiles(root)): DocBlock[] {
  return files.flatMap((doc) => {
    let blocks: ReadmeBlock[];
    try {
      blocks = parseReadme(readFileSync(join(root, doc), "utf8"));
    } catch (error) {
      if (error instanceof Error) error.message = `${doc}: ${error.message}`;
      throw error;
    }
    return blocks.map((block) => ({ ...block, doc, heading: `${doc} › ${block.heading}` }));
  });
}

/**
 * The anchor GitHub gives a heading (github-slugger): the heading's text without its Markdown,
 * lower-cased, punctuation but `-` and `_` removed, spaces made `-`.
 */
export function slug(heading: string): string {
  const text = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1") // links and images: their text
    .replace(/<[^>]+>/g, "") // inline HTML
    .replace(/[`*~]/g, ""); // code, emphasis
  return text.trim().toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, "").replace(/ /g, "-");
}

/** The anchors of a Markdown text's headings, numbered as GitHub numbers repeats (`x`, `x-1`). */
export function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fence: string | undefined;
  for (const line of markdown.split(/\r?\n/)) {
    const marker = /^\s{0,3}(`{3,}|~{3,})/.exec(line)?.[1];
    if (marker !== undefined) {
      if (fence === undefined) fence = marker[0]!.repeat(marker.length);
      else if (marker.startsWith(fence)) fence = undefined;
      continue;
    }
    if (fence !== undefined) continue;
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const base = slug(heading);
    const n = seen.get(base);
    seen.set(base, (n ?? -1) + 1);
    anchors.add(n === undefined ? base : `${base}-${n + 1}`);
  }
  for (const [, id] of markdown.matchAll(/<a\s+(?:name|id)="([^"]+)"/g)) anchors.add(id!);
  return anchors;
}

/** A relative link of a Markdown file that does not resolve. */
export interface BrokenLink {
  /** The Markdown file, relative to the package root. */
  doc: string;
  /** Its line (1-based). */
  line: number;
  /** The link as written. */
  link: string;
  /** Why it does not resolve. */
  reason: string;
}

/** The links of a Markdown text outside code (fenced blocks and code spans), with their lines. */
export function linksOf(markdown: string): Array<{ line: number; link: string }> {
  const links: Array<{ line: number; link: string }> = [];
  let fence: string | undefined;
  markdown.split(/\r?\n/).forEach((text, i) => {
    const marker = /^\s{0,3}(`{3,}|~{3,})/.exec(text)?.[1];
    if (marker !== undefined) {
      if (fence === undefined) fence = marker[0]!.repeat(marker.length);
      else if (marker.startsWith(fence)) fence = undefined;
      return;
    }
    if (fence !== undefined || /^\s*<!--/.test(text)) return;
    const prose = text.replace(/`[^`]*`/g, (code) => " ".repeat(code.length));
    for (const m of prose.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
      links.push({ line: i + 1, link: m[1]! });
    }
    for (const m of prose.matchAll(/^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/g)) {
      links.push({ line: i + 1, link: m[1]! });
    }
  });
  return links;
}

/**
 * Checks every relative link of the given Markdown files: the file (or directory) it names must
 * exist, and a `#fragment` must be the anchor of a heading of the Markdown file it names (of the
 * same file, for a bare `#fragment`). Links into `docs/api/` (the generated API reference) are
 * looked up in `apiDir` when given, else in `docs/api/` itself. Absolute URLs are not fetched.
 */
export function checkLinks(
  root: string,
  files: readonly string[] = docFiles(root),
  apiDir?: string,
): BrokenLink[] {
  const broken: BrokenLink[] = [];
  const anchors = new Map<string, Set<string>>();
  const anchorsIn = (path: string): Set<string> => {
    let found = anchors.get(path);
    if (found === undefined) anchors.set(path, found = anchorsOf(readFileSync(path, "utf8")));
    return found;
  };
  const api = resolve(root, "docs", "api");
  for (const doc of files) {
    const source = join(root, doc);
    for (const { line, link } of linksOf(readFileSync(source, "utf8"))) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(link) || link.startsWith("//")) continue; // https:, mailto:
      const hash = link.indexOf("#");
      const pathPart = decodeURIComponent(hash === -1 ? link : link.slice(0, hash));
      const fragment = hash === -1 ? undefined : decodeURIComponent(link.slice(hash + 1));
      let target = pathPart === "" ? source : resolve(dirname(source), pathPart);
      if (apiDir !== undefined && (target === api || target.startsWith(api + "/"))) {
        target = join(apiDir, relative(api, target));
      }
      const report = (reason: string): void => void broken.push({ doc, line, link, reason });
      if (!target.startsWith(resolve(root)) && !target.startsWith(resolve(apiDir ?? root))) {
        report("points outside the repository");
      } else if (!existsSync(target)) {
        report("no such file");
      } else if (fragment !== undefined && fragment !== "") {
        if (statSync(target).isDirectory() || !target.endsWith(".md")) {
          if (target.endsWith(".html") && !readFileSync(target, "utf8").includes(`id="${fragment}"`)) {
            report(`no id "${fragment}" in the page`);
          }
        } else if (!anchorsIn(target).has(fragment)) {
          report(`no heading with the anchor "#${fragment}" in ${relative(root, target)}`);
        }
      }
    }
  }
  return broken;
}

/** What {@linkcode checkDocBlocks} found for one block. */
export interface DocBlockResult extends BlockResult {
  block: DocBlock;
}

/**
 * Checks every TypeScript block of the given Markdown files together, as
 * {@linkcode checkReadme} does for one: type-checks all but the skipped ones, runs those marked
 * `run`.
 */
export async function checkDocBlocks(
  root: string,
  files: readonly string[] = docFiles(root),
  dir = join(root, ".tmp", "docs"),
): Promise<{ results: DocBlockResult[]; skipped: DocBlock[]; unplaced: string[] }> {
  const blocks = parseDocs(root, files);
  const written = writeBlocks(blocks, root, dir);
  const { errors, unplaced } = await typeCheck(written, root);
  const results: DocBlockResult[] = [];
  for (const w of written) {
    const result: DocBlockResult = { block: w.block as DocBlock, typeErrors: errors.get(w) ?? [] };
    if (w.block.mode === "run" && result.typeErrors.length === 0) result.ran = await runBlock(w, root);
    results.push(result);
  }
  return { results, skipped: blocks.filter((block) => block.mode === "skip"), unplaced };
}

function isMain(): boolean {
  const script = process.argv[1];
  return script !== undefined && import.meta.url === pathToFileURL(script).href;
}

/** Checks the Markdown's links and blocks and prints what failed; returns whether all passed. */
async function readmeOk(root: string): Promise<boolean> {
  const api = join(root, ".tmp", "api");
  buildApiDocs(root, api); // links into docs/api/ are checked against a fresh build
  const broken = checkLinks(root, docFiles(root), api);
  for (const b of broken) console.log(`broken link: ${b.doc}:${b.line}: ${b.link} (${b.reason})`);
  const apiBroken = checkApiLinks(api);
  for (const line of apiBroken) console.log(`broken link in the API reference: ${line}`);
  const { results, skipped, unplaced } = await checkDocBlocks(root);
  let ok = unplaced.length === 0 && broken.length === 0 && apiBroken.length === 0;
  for (const result of results) {
    const bad = result.typeErrors.length > 0 || (result.ran !== undefined && !result.ran.ok);
    ok &&= !bad;
    if (!bad) continue;
    console.log(`block failed: ${describeBlock(result.block)}`);
    for (const error of result.typeErrors) {
      console.log(`  ${result.block.doc}:${error.line}: ${error.message}`);
    }
    if (result.ran !== undefined && !result.ran.ok) console.log(`  run failed:\n${result.ran.output.trim()}`);
  }
  for (const text of unplaced) console.log(`docs check: ${text}`);
  const ran = results.filter((result) => result.ran !== undefined).length;
  console.log(
    `${
      docFiles(root).length
    } Markdown files: ${broken.length} broken links; ${results.length} blocks type-checked, ${ran} run, ${skipped.length} skipped`,
  );
  return ok;
}

if (isMain() && process.argv.includes("--readme-only")) {
  if (!(await readmeOk(resolve(import.meta.dirname, "..")))) process.exit(1);
} else if (isMain()) {
  const root = resolve(import.meta.dirname, "..");
  const entries = readDocs(root);
  const problems = checkDocs(entries);
  const show = (title: string, list: DocEntry[]): void => {
    if (list.length === 0) return;
    console.log(`${title} (${list.length}):`);
    for (const entry of list) console.log(`  ${entry.name} (${entry.kind}) ${entry.location}`);
  };
  show("no JSDoc", problems.undocumented);
  show("function or class without @example", problems.valuesWithoutExample);
  show("type without @example", problems.typesWithoutExample);
  const withExample = entries.filter((entry) => entry.example).length;
  console.log(`${entries.length} exported symbols, ${withExample} with an @example`);
  const strict = process.argv.includes("--strict");
  const failed = problems.undocumented.length > 0 || problems.valuesWithoutExample.length > 0 ||
    (strict && problems.typesWithoutExample.length > 0);
  const readmePassed = await readmeOk(root);
  if (failed || !readmePassed) process.exit(1);
}
