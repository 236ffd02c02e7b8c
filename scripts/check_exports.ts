/**
 * Checks that the npm package (`package.json`) and the JSR package (`deno.json`) publish the same
 * entry points: the same subpath keys, each built from the same source file, the same version,
 * the same runtime dependencies and optional peer dependencies (same npm range in the `deno.json`
 * import map), and a `deno.json` import map that resolves the npm name (used by the JSDoc
 * examples) to the same sources. A peer dependency must be optional.
 *
 * Run: `node --import tsx scripts/check_exports.ts [dir]` (exit 1 and one line per problem).
 *
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { pathToFileURL } from "node:url";

/** Subpaths npm exports that are files, not modules: no JSR counterpart. */
export const ASSET_EXPORTS: ReadonlyMap<string, string> = new Map([
  ["./package.json", "./package.json"],
  ["./postgres.sql", "./src/stores/postgres.sql"],
]);

/** One module entry point, as both packages should publish it. */
export interface EntryPoint {
  /** The subpath key, e.g. `"."` or `"./cookie"`. */
  subpath: string;
  /** The TypeScript source, relative to the package root, e.g. `"./src/stores/cookie.ts"`. */
  source: string;
}

type Json = Record<string, unknown>;

function readJson(path: string): Json {
  return JSON.parse(readFileSync(path, "utf8")) as Json;
}

function isRecord(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** `./dist/src/stores/file.js` → `./src/stores/file.ts` (the build keeps the source layout). */
function sourceOfBuilt(target: string, extension: ".js" | ".d.ts"): string | undefined {
  if (!target.startsWith("./dist/") || !target.endsWith(extension)) return undefined;
  return `./${target.slice("./dist/".length, -extension.length)}.ts`;
}

/**
 * Lists the module entry points of `deno.json`, the source of truth for which file each subpath
 * publishes.
 */
export function entryPoints(root: string): EntryPoint[] {
  const deno = readJson(join(root, "deno.json"));
  const exports = deno["exports"];
  if (!isRecord(exports)) return [];
  return Object.entries(exports).map(([subpath, source]) => ({ subpath, source: String(source) }));
}

/**
 * Compares `package.json` and `deno.json` in `root`.
 *
 * @returns One human-readable line per disagreement; empty when they agree.
 */
export function checkExports(root: string): string[] {
  const problems: string[] = [];
  const pkg = readJson(join(root, "package.json"));
  const deno = readJson(join(root, "deno.json"));

  const npmExports = pkg["exports"];
  const jsrExports = deno["exports"];
  if (!isRecord(npmExports)) return ['package.json: "exports" must be an object of subpaths'];
  if (!isRecord(jsrExports)) return ['deno.json: "exports" must be an object of subpaths'];

  for (const [subpath, target] of Object.entries(npmExports)) {
    const asset = ASSET_EXPORTS.get(subpath);
    if (asset !== undefined) {
      if (target !== asset) problems.push(`package.json: "${subpath}" must point at "${asset}"`);
      else if (!existsSync(join(root, asset))) {
        problems.push(`package.json: "${subpath}": missing file "${asset}"`);
      }
      continue;
    }
    if (!(subpath in jsrExports)) {
      problems.push(`deno.json: missing subpath "${subpath}" (package.json exports it)`);
      continue;
    }
    const source = String(jsrExports[subpath]);
    if (!isRecord(target)) {
      problems.push(`package.json: "${subpath}" must be an object with "types" and "default" conditions`);
      continue;
    }
    const conditions = Object.keys(target);
    if (conditions.join() !== "types,default") {
      problems.push(
        `package.json: "${subpath}" conditions must be exactly "types" then "default": found "${
          conditions.join(", ")
        }"`,
      );
    }
    const fromTypes = sourceOfBuilt(String(target["types"]), ".d.ts");
    const fromDefault = sourceOfBuilt(String(target["default"]), ".js");
    if (fromTypes !== source) {
      problems.push(`"${subpath}": package.json types "${target["types"]}" is not built from "${source}"`);
    }
    if (fromDefault !== source) {
      problems.push(
        `"${subpath}": package.json default "${target["default"]}" is not built from "${source}"`,
      );
    }
  }

  for (const [subpath, source] of Object.entries(jsrExports)) {
    if (!(subpath in npmExports)) {
      problems.push(`package.json: missing subpath "${subpath}" (deno.json exports it)`);
    }
    if (typeof source !== "string" || !source.endsWith(".ts")) {
      problems.push(`deno.json: "${subpath}" must point at a .ts source`);
    } else if (!existsSync(join(root, source))) {
      problems.push(`deno.json: "${subpath}": missing file "${source}"`);
    }
  }

  if (pkg["version"] !== deno["version"]) {
    problems.push(`version differs: package.json "${pkg["version"]}", deno.json "${deno["version"]}"`);
  }
  if (typeof deno["name"] !== "string" || !deno["name"].endsWith(`/${pkg["name"]}`)) {
    problems.push(`deno.json: name "${deno["name"]}" should be "@<scope>/${pkg["name"]}"`);
  }
  if (pkg["license"] !== deno["license"]) {
    problems.push(`license differs: package.json "${pkg["license"]}", deno.json "${deno["license"]}"`);
  }

  // The import map: the npm name resolves to the sources (JSDoc examples import "websession/..."),
  // and every runtime dependency is the same npm range.
  const imports = isRecord(deno["imports"]) ? deno["imports"] : {};
  const name = String(pkg["name"]);
  for (const [subpath, source] of Object.entries(jsrExports)) {
    const specifier = name + subpath.slice(1);
    if (imports[specifier] !== source) {
      problems.push(`deno.json: imports["${specifier}"] must be "${source}": found "${imports[specifier]}"`);
    }
  }
  for (const specifier of Object.keys(imports)) {
    if (
      (specifier === name || specifier.startsWith(`${name}/`)) &&
      !(`.${specifier.slice(name.length)}` in jsrExports)
    ) {
      problems.push(`deno.json: imports["${specifier}"] maps a subpath that is not exported`);
    }
  }
  const dependencies = isRecord(pkg["dependencies"]) ? pkg["dependencies"] : {};
  for (const [dependency, range] of Object.entries(dependencies)) {
    if (imports[dependency] !== `npm:${dependency}@${range}`) {
      problems.push(
        `deno.json: imports["${dependency}"] must be "npm:${dependency}@${range}": found "${
          imports[dependency]
        }"`,
      );
    }
  }
  // An optional peer (`@opentelemetry/api` for `./otel`) is the user's package, imported only by the
  // subpath that needs it; a required peer would force it on every user, drivers included.
  const optional = optionalPeers(pkg);
  const peers = isRecord(pkg["peerDependencies"]) ? pkg["peerDependencies"] : {};
  for (const [peer, range] of Object.entries(peers)) {
    if (!optional.includes(peer)) {
      problems.push(
        `package.json: peer dependency "${peer}" must be optional: set peerDependenciesMeta["${peer}"].optional to true`,
      );
    }
    // Deno's npm specifiers take one range: for a union (`^7.9.0 || ^8.0.0`), its first member.
    const denoRange = String(range).split("||")[0]!.trim();
    if (imports[peer] !== `npm:${peer}@${denoRange}`) {
      problems.push(
        `deno.json: imports["${peer}"] must be "npm:${peer}@${denoRange}": found "${imports[peer]}"`,
      );
    }
  }
  const meta = isRecord(pkg["peerDependenciesMeta"]) ? pkg["peerDependenciesMeta"] : {};
  for (const peer of Object.keys(meta)) {
    if (!(peer in peers)) {
      problems.push(`package.json: peerDependenciesMeta["${peer}"] names no peer dependency`);
    }
  }
  for (const field of ["optionalDependencies", "bundleDependencies", "bundledDependencies"]) {
    if (field in pkg) problems.push(`package.json: "${field}" is not expected (drivers are the user's)`);
  }
  return problems;
}

/**
 * Lists the optional peer dependencies of a `package.json`: the names in `peerDependencies` whose
 * `peerDependenciesMeta[name].optional` is `true`.
 *
 * @param pkg The parsed `package.json`.
 * @returns The package names, sorted.
 */
export function optionalPeers(pkg: Record<string, unknown>): string[] {
  const peers = isRecord(pkg["peerDependencies"]) ? pkg["peerDependencies"] : {};
  const meta = isRecord(pkg["peerDependenciesMeta"]) ? pkg["peerDependenciesMeta"] : {};
  return Object.keys(peers)
    .filter((peer) => {
      const entry = meta[peer];
      return isRecord(entry) && entry["optional"] === true;
    })
    .sort();
}

/** Reads the optional peer dependencies of the package in `root` (see {@linkcode optionalPeers}). */
export function readOptionalPeers(root: string): string[] {
  return optionalPeers(readJson(join(root, "package.json")));
}

function isMain(): boolean {
  const script = process.argv[1];
  return script !== undefined && import.meta.url === pathToFileURL(script).href;
}

if (isMain()) {
  const root = process.argv[2] ?? process.cwd();
  const problems = checkExports(root);
  if (problems.length > 0) {
    for (const problem of problems) console.error(problem);
    process.exit(1);
  }
  const subpaths = entryPoints(root).map((entry) => entry.subpath);
  console.log(`package.json and deno.json agree on ${subpaths.length} subpaths: ${subpaths.join(" ")}`);
}
