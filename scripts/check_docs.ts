/**
 * Lists the exported symbols of every entry point (from `deno.json` exports, via `deno doc
 * --json`) whose JSDoc is missing or has no `@example`. Examples themselves run with
 * `npm run test:doc` (`deno test --doc`).
 *
 * Run: `node --import tsx scripts/check_docs.ts [--strict]`. Exit 1 when a symbol has no JSDoc
 * or a function or class has no example; with `--strict`, also when a type has no example.
 *
 * @module
 */
import { execFileSync } from "node:child_process";
import { join, relative, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { entryPoints } from "./check_exports.ts";

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

if (isMain()) {
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
  if (failed) process.exit(1);
}
