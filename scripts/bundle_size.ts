/**
 * Bundles each entry point the way a Workers build would (esbuild, minified, ESM, browser
 * platform with the `workerd`/`worker`/`browser` conditions) and prints raw and gzip sizes:
 * the core (`websession`, which includes MemoryStore), each store subpath alone, each store
 * subpath together with the core, and a minimal worker that uses withSession with MemoryStore.
 *
 * It also guards what gets bundled: the core pulls in no package at all (no `jose`, no driver)
 * and no store but MemoryStore; a store subpath pulls in no package except `jose` for the cookie
 * store, and imports nothing external except `node:*` for the file store. An optional peer
 * dependency (`peerDependenciesMeta[name].optional` in `package.json`: `@opentelemetry/api`) is
 * the user's package: it is left external, never bundled, listed in the report, and may be
 * imported only by the subpath made for it (`./otel`).
 *
 * Run: `node --import tsx scripts/bundle_size.ts [--json]` (exit 1 when a guard fails).
 *
 * @module
 */
import { build, type Metafile } from "esbuild";
import { gzipSync } from "node:zlib";
import { relative, resolve, sep } from "node:path";
import process from "node:process";
import { pathToFileURL } from "node:url";
import { entryPoints, readOptionalPeers } from "./check_exports.ts";

/** What one bundle weighs and what went into it. */
export interface BundleFigure {
  /** A label: `"."`, `"./cookie"`, `". + ./cookie"`, `"worker"`. */
  name: string;
  /** Minified size in bytes. */
  raw: number;
  /** gzip (level 9) size in bytes. */
  gzip: number;
  /** Bundled source files under the package root, relative, with `/` separators. */
  files: string[];
  /** Of `files`, those that left code in the bundle (the rest were read, and shaken out whole). */
  bundled: string[];
  /** npm packages bundled in (from `node_modules`). */
  packages: string[];
  /** Imports left external (e.g. `node:fs/promises`, `@opentelemetry/api`). */
  externals: string[];
  /** Optional peer dependencies the bundle imports, left external (not counted in its size). */
  peers: string[];
  /** The minified code. */
  code: string;
}

/** Packages each subpath may bundle; every other subpath, the core included, may bundle none. */
export const ALLOWED_PACKAGES: ReadonlyMap<string, readonly string[]> = new Map([["./cookie", ["jose"]]]);

/** External imports each subpath may keep (as a prefix); every other subpath may keep none. */
export const ALLOWED_EXTERNALS: ReadonlyMap<string, readonly string[]> = new Map([
  ["./file", ["node:"]],
  // The conformance suite is for a store's tests: it runs on node:test and node:assert.
  ["./conformance", ["node:"]],
]);

/** Optional peer dependencies each subpath may import; every other subpath, the core included, none. */
export const ALLOWED_PEERS: ReadonlyMap<string, readonly string[]> = new Map([
  ["./otel", ["@opentelemetry/api"]],
]);

/**
 * Features an application turns on by importing them (an option value that carries its code, or
 * a subpath): none of their files may be in the core's or the minimal Worker's bundle. Sessions
 * per user (`userSessions()`), the header transport, rich values, CSRF, the testing kit, the admin
 * handler, OpenTelemetry and step-up checks.
 */
export const FEATURE_FILES: readonly string[] = [
  "src/users.ts",
  "src/users/",
  "src/metadata.ts",
  "src/user_tag.ts",
  "src/transport.ts",
  "src/serializer.ts",
  "src/csrf.ts",
  "src/csrf/",
  "src/testing.ts",
  "src/admin.ts",
  "src/otel.ts",
  "src/sign_in.ts",
];

/**
 * The minimal Worker's budget, gzip bytes: a change that makes every Worker heavier has to
 * raise it on purpose (bench/RESULTS.md and the docs give the figures it is compared with).
 */
export const WORKER_GZIP_BUDGET = 19_500;

const WORKER_ENTRY = `
import { getSession, MemoryStore, withSession } from "./mod.ts";
const store = new MemoryStore();
export default {
  fetch: withSession(async (request) => {
    const session = await getSession(request);
    session.update("visits", (n = 0) => n + 1);
    return new Response(String(session.get("visits")));
  }, { store, secrets: ["a secret of at least thirty-two characters"] }),
};
`;

/** `@scope/name/sub` → `@scope/name`, `name/sub` → `name`; `undefined` for `node:*` and relative paths. */
function packageOfSpecifier(specifier: string): string | undefined {
  if (specifier.startsWith(".") || specifier.startsWith("/") || specifier.includes(":")) return undefined;
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
}

function packageOf(path: string): string | undefined {
  const parts = path.split(/[\\/]/);
  const at = parts.lastIndexOf("node_modules");
  if (at === -1) return undefined;
  const first = parts[at + 1] ?? "";
  return first.startsWith("@") ? `${first}/${parts[at + 2]}` : first;
}

async function bundle(
  root: string,
  name: string,
  contents: string,
  optionalPeers: readonly string[],
): Promise<BundleFigure> {
  const result = await build({
    stdin: { contents, resolveDir: root, sourcefile: "entry.ts", loader: "ts" },
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    conditions: ["workerd", "worker", "browser"],
    target: "es2022",
    external: ["node:*", ...optionalPeers], // a package name also covers its subpaths
    legalComments: "none",
    write: false,
    metafile: true,
    logLevel: "silent",
  });
  const output = result.outputFiles[0];
  if (output === undefined) throw new Error(`esbuild produced no output for "${name}"`);
  const metafile: Metafile = result.metafile;
  const inputs = Object.keys(metafile.inputs).filter((input) => input !== "<stdin>");
  const absolute = inputs.map((input) => resolve(process.cwd(), input));
  const files = absolute
    .filter((path) => packageOf(path) === undefined)
    .map((path) => relative(root, path).split(sep).join("/"))
    .sort();
  const kept = new Set(
    Object.values(metafile.outputs).flatMap((out) =>
      Object.entries(out.inputs).filter(([, input]) => input.bytesInOutput > 0).map(([path]) =>
        relative(root, resolve(process.cwd(), path)).split(sep).join("/")
      )
    ),
  );
  const bundled = files.filter((file) => kept.has(file));
  const packages = [...new Set(absolute.map(packageOf).filter((p): p is string => p !== undefined))].sort();
  const externals = [
    ...new Set(
      Object.values(metafile.outputs).flatMap((out) =>
        out.imports.filter((entry) => entry.external).map((entry) => entry.path)
      ),
    ),
  ].sort();
  const peers = [
    ...new Set(
      externals.map(packageOfSpecifier).filter((p): p is string =>
        p !== undefined && optionalPeers.includes(p)
      ),
    ),
  ].sort();
  return {
    name,
    raw: output.contents.byteLength,
    gzip: gzipSync(output.contents, { level: 9 }).byteLength,
    files,
    bundled,
    packages,
    externals,
    peers,
    code: output.text,
  };
}

/**
 * Bundles every entry point of the package in `root` (read from `deno.json` exports), leaving
 * its optional peer dependencies (from `package.json`) external.
 *
 * @returns One figure per bundle: the core, each store subpath alone, each with the core, and a
 * minimal worker.
 */
export async function measureBundles(root: string): Promise<BundleFigure[]> {
  const entries = entryPoints(root);
  const core = entries.find((entry) => entry.subpath === ".");
  if (core === undefined) throw new Error('deno.json exports no "." entry point');
  const peers = readOptionalPeers(root);
  const figures: BundleFigure[] = [];
  for (const entry of entries) {
    figures.push(await bundle(root, entry.subpath, `export * from ${JSON.stringify(entry.source)};`, peers));
  }
  for (const entry of entries) {
    if (entry === core) continue;
    const contents = `export * from ${JSON.stringify(core.source)};\nexport * from ${
      JSON.stringify(entry.source)
    };`;
    figures.push(await bundle(root, `. + ${entry.subpath}`, contents, peers));
  }
  figures.push(await bundle(root, "worker", WORKER_ENTRY, peers));
  return figures;
}

/**
 * Checks the guards on bundles from {@linkcode measureBundles}.
 *
 * @returns One line per violation; empty when every guard holds.
 */
export function checkBundles(figures: readonly BundleFigure[]): string[] {
  const problems: string[] = [];
  for (const figure of figures) {
    const subpaths = figure.name === "worker" ? ["."] : figure.name.split(" + ");
    const allowedPackages = subpaths.flatMap((subpath) => ALLOWED_PACKAGES.get(subpath) ?? []);
    const allowedExternals = subpaths.flatMap((subpath) => ALLOWED_EXTERNALS.get(subpath) ?? []);
    const allowedPeers = subpaths.flatMap((subpath) => ALLOWED_PEERS.get(subpath) ?? []);
    for (const name of figure.packages) {
      if (!allowedPackages.includes(name)) problems.push(`"${figure.name}" bundles the package "${name}"`);
    }
    for (const peer of figure.peers) {
      if (!allowedPeers.includes(peer)) problems.push(`"${figure.name}" imports the optional peer "${peer}"`);
    }
    for (const path of figure.externals) {
      const peer = packageOfSpecifier(path);
      if (peer !== undefined && figure.peers.includes(peer)) continue; // judged above
      if (!allowedExternals.some((prefix) => path.startsWith(prefix))) {
        problems.push(`"${figure.name}" imports "${path}"`);
      }
    }
    if (subpaths.length === 1 && subpaths[0] === ".") {
      for (const file of figure.files) {
        if (file.startsWith("src/stores/") && file !== "src/stores/memory.ts") {
          problems.push(`"${figure.name}" bundles the store "${file}"`);
        }
      }
      if (/jose/i.test(figure.code)) problems.push(`"${figure.name}" mentions "jose" in its code`);
    }
    if (figure.name === "worker") {
      for (const file of figure.bundled) {
        if (
          FEATURE_FILES.some((feature) => feature.endsWith("/") ? file.startsWith(feature) : file === feature)
        ) {
          problems.push(`"${figure.name}" bundles "${file}", a feature only an import of it should bring`);
        }
      }
    }
    if (figure.name === "worker" && figure.gzip > WORKER_GZIP_BUDGET) {
      problems.push(`"worker" is ${figure.gzip} B gzip, over its budget of ${WORKER_GZIP_BUDGET} B`);
    }
  }
  return problems;
}

function kib(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

/**
 * Formats figures as a Markdown table: sizes, the packages bundled in, and the optional peers
 * imported but left external (the user's own copy; not in the sizes).
 */
export function formatTable(figures: readonly BundleFigure[]): string {
  const rows = figures.map((figure) =>
    `| \`${figure.name}\` | ${figure.raw} B (${kib(figure.raw)}) | ${figure.gzip} B (${kib(figure.gzip)}) | ${
      figure.packages.join(", ") || "none"
    } | ${figure.peers.join(", ") || "none"} |`
  );
  return [
    "| bundle | minified | gzip -9 | packages bundled | optional peers (external) |",
    "| --- | ---: | ---: | --- | --- |",
    ...rows,
  ].join("\n");
}

function isMain(): boolean {
  const script = process.argv[1];
  return script !== undefined && import.meta.url === pathToFileURL(script).href;
}

if (isMain()) {
  const root = resolve(import.meta.dirname ?? process.cwd(), "..");
  const figures = await measureBundles(root);
  if (process.argv.includes("--json")) {
    console.log(JSON.stringify(figures.map(({ code: _code, ...rest }) => rest), null, 2));
  } else {
    console.log(formatTable(figures));
  }
  const problems = checkBundles(figures);
  if (problems.length > 0) {
    for (const problem of problems) console.error(problem);
    process.exit(1);
  }
}
