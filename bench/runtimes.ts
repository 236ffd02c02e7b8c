// The three runtimes the benchmark runs code on, and how to start a TypeScript file on each: Node
// through tsx, Deno and Bun from the binaries their npm packages install (what `npx deno` and
// `npx bun` run, without npx's own start-up).
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

export const ROOT: string = fileURLToPath(new URL("..", import.meta.url));
const BIN = `${ROOT}node_modules/.bin/`;

/** A runtime's name as the tables show it. */
export type RuntimeName = "Node" | "Deno" | "Bun";
export const RUNTIMES: RuntimeName[] = ["Node", "Deno", "Bun"];

/**
 * The command that runs `file` (relative to the repository) on a runtime.
 *
 * @param options `v8Flags`: V8 flags (Node and Deno only; Bun has no V8).
 */
export function command(
  runtime: RuntimeName,
  file: string,
  args: string[] = [],
  options: { v8Flags?: string[] } = {},
): [string, string[]] {
  const flags = options.v8Flags ?? [];
  switch (runtime) {
    case "Node":
      return [process.execPath, [...flags, "--import", "tsx", file, ...args]];
    case "Deno":
      return [`${BIN}deno`, [
        "run",
        "-A",
        ...(flags.length > 0 ? [`--v8-flags=${flags.join(",")}`] : []),
        file,
        ...args,
      ]];
    case "Bun":
      return [`${BIN}bun`, [file, ...args]];
  }
}

const versions = new Map<RuntimeName, string>();

/** The runtime's version, or "?" when it does not start. */
export function versionOf(runtime: RuntimeName): string {
  let version = versions.get(runtime);
  if (version !== undefined) return version;
  try {
    version = runtime === "Node"
      ? process.version.slice(1)
      : runtime === "Deno"
      ? /deno (\S+)/.exec(execFileSync(`${BIN}deno`, ["--version"], { encoding: "utf8" }))?.[1] ?? "?"
      : execFileSync(`${BIN}bun`, ["--version"], { encoding: "utf8" }).trim();
  } catch {
    version = "?";
  }
  versions.set(runtime, version);
  return version;
}
