/**
 * Checks the documentation: lists the exported symbols of every entry point (from `deno.json`
 * exports, via `deno doc --json`) whose JSDoc is missing or has no `@example`, then checks the
 * README's TypeScript blocks (type-checked against the sources, the runnable ones run; see
 * `scripts/check_readme.ts`). JSDoc examples themselves run with `npm run test:doc` (`deno test
 * --doc`); `npm test` runs the README check as `tests/readme_test.ts`.
 *
 * Run: `node --import tsx scripts/check_docs.ts [--strict] [--readme-only]`. Exit 1 when a
 * symbol has no JSDoc, a function or class has no example (with `--strict`, also a type), or a
 * README block fails.
 *
 * @module
 */
import { execFileSync } from "node:child_process";
import { join, relative, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { entryPoints } from "./check_exports.ts";
import { checkReadme, describeBlock } from "./check_readme.ts";

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
        const tags = declaration.jsDoc?.tags ?? [];
        entries.push({
          name: symbol.name,
          kind: declaration.kind,
          location,
          documented: (declaration.jsDoc?.doc ?? "").trim() !== "",
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

function isMain(): boolean {
  const script = process.argv[1];
  return script !== undefined && import.meta.url === pathToFileURL(script).href;
}

/** Checks the README's blocks and prints one line per block; returns whether all passed. */
async function readmeOk(root: string): Promise<boolean> {
  const { results, skipped, unplaced } = await checkReadme(join(root, "README.md"), root);
  let ok = unplaced.length === 0;
  for (const result of results) {
    const bad = result.typeErrors.length > 0 || (result.ran !== undefined && !result.ran.ok);
    ok &&= !bad;
    if (!bad) continue;
    console.log(`README block failed: ${describeBlock(result.block)}`);
    for (const error of result.typeErrors) console.log(`  README.md:${error.line}: ${error.message}`);
    if (result.ran !== undefined && !result.ran.ok) console.log(`  run failed:\n${result.ran.output.trim()}`);
  }
  for (const text of unplaced) console.log(`README check: ${text}`);
  const ran = results.filter((result) => result.ran !== undefined).length;
  console.log(`README: ${results.length} blocks type-checked, ${ran} run, ${skipped.length} skipped`);
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
