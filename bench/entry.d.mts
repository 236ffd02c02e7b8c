// Types of bench/entry.mjs for the TypeScript files of the benchmark.
export function entryPath(dir: string, specifier: string): string;
// deno-lint-ignore no-explicit-any
export function load(specifier: string, dir?: string): Promise<any>;
