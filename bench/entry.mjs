// websession as its users get it: a public specifier ("websession", "websession/redis", ...)
// resolved through the `exports` map of the package.json next to the built `dist/` that a run
// measures (BENCH_PKG, set by bench/run.ts; see bench/dist.ts). The benchmark reaches nothing
// the exports map does not name. Plain JavaScript: Node, Deno and Bun load it as is.
import { readFileSync } from "node:fs";
import process from "node:process";

/** The file a public specifier names in the package at `dir` (a directory ending in `/`). */
export function entryPath(dir, specifier) {
  const { name, exports } = JSON.parse(readFileSync(`${dir}package.json`, "utf8"));
  const subpath = specifier === name ? "." : `.${specifier.slice(name.length)}`;
  const target = exports[subpath];
  if (target === undefined) throw new Error(`${specifier} is not an entry point of ${name}`);
  return `${dir}${(typeof target === "string" ? target : target.default).slice(2)}`;
}

/** Imports a public entry point of the measured package. */
export function load(specifier, dir = process.env.BENCH_PKG) {
  if (!dir) throw new Error("BENCH_PKG is not set");
  return import(`file://${entryPath(dir, specifier)}`);
}
