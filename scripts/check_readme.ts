/**
 * Checks the TypeScript blocks of a Markdown file (the README) the way a reader would use them:
 * every ```ts block is type-checked against the package's own sources, and the blocks marked
 * runnable are run, against the real services where they need them.
 *
 * How a block is checked is said by an HTML comment right before it (blank lines may come
 * between), invisible on the rendered page:
 *
 * - no comment, or `<!-- check: types -->`: type-checked only;
 * - `<!-- check: run -->`: type-checked, then run from a directory of its own, with `PORT` (free),
 *   `SESSION_SECRET`, `REDIS_URL`, `DATABASE_URL` and `MEMCACHED_SERVER` set; it must exit with
 *   0 within a minute;
 * - `<!-- check: skip: the reason -->`: not checked at all (a reason is required);
 * - a runtime after the mode, `<!-- check: types deno -->`: `node` (the default: tsc with the
 *   project's NodeNext settings and Node's types, run with tsx), `bundler` (the same with
 *   `moduleResolution: "bundler"`, as in apps built by Vite or Next.js: relative imports without
 *   extensions), `deno` (`deno check`, run with `deno run -A`), `bun` (tsc with Node's types and
 *   the little of Bun's the examples declare, run with `bun`), `workers` (tsc with the Web
 *   platform's types only, never run).
 *
 * The comment may hold hidden lines of code after its first line: lines before a `---` line are
 * put before the block (declarations the fragment takes as given), lines after it are put after
 * the block (assertions, closing a client). Errors in them are reported at their README line.
 *
 * A block whose first line is a comment naming a file (`// app/sessions.server.ts`) is written
 * to that path, next to the named blocks right before it, so blocks that import each other
 * (`import { options } from "./sessions.server"`) are checked together; a repeated path starts
 * a new group. `websession` and its subpaths resolve to the sources, through the same names as
 * `deno.json`'s import map; every other import resolves from `node_modules`.
 *
 * Run: `node --import tsx scripts/check_readme.ts [file.md]` (default `README.md`). Exit 1 when
 * a block fails. `tests/readme_test.ts` runs the same checks under `npm test`.
 *
 * @module
 */
import { spawn } from "node:child_process";
import { type AddressInfo, createServer } from "node:net";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";

/** Where a block is checked and run. */
export type BlockRuntime = "node" | "bundler" | "deno" | "bun" | "workers";

/** What is done with a block. */
export type BlockMode = "types" | "run" | "skip";

/** One fenced TypeScript block of the Markdown file, with what its directive asks. */
export interface ReadmeBlock {
  /** The Markdown file's line of the block's first line of code (1-based). */
  line: number;
  /** The fence's language (`ts`, `tsx`, `typescript`). */
  lang: string;
  /** The code, without the fence and without the fence's indentation. */
  code: string;
  /** What is done with it. */
  mode: BlockMode;
  /** Where it is checked and run. */
  runtime: BlockRuntime;
  /** Why it is skipped (`mode: "skip"` only). */
  reason?: string;
  /** Hidden lines put before the code, and the Markdown line of the first one. */
  before: { code: string; line: number };
  /** Hidden lines put after the code, and the Markdown line of the first one. */
  after: { code: string; line: number };
  /** The path its first line names (`// app/root.tsx`), if any. */
  file?: string;
  /** The nearest heading above it. */
  heading: string;
}

/** A directive or fence the parser could not make sense of. */
export class ReadmeSyntaxError extends Error {
  /** The Markdown line. */
  line: number;
  constructor(line: number, message: string) {
    super(`Line ${line}: ${message}`);
    this.name = "ReadmeSyntaxError";
    this.line = line;
  }
}

const TS_LANGS = new Set(["ts", "typescript", "tsx", "mts"]);
const RUNTIMES = new Set<BlockRuntime>(["node", "bundler", "deno", "bun", "workers"]);
const FILE_COMMENT = /^\/\/\s*((?:[\w.@+-]+\/)*[\w@+-][\w.@+-]*\.(?:ts|tsx|mts))(?=\s|:|$)/;

interface Directive {
  mode: BlockMode;
  runtime: BlockRuntime;
  reason?: string;
  before: { code: string; line: number };
  after: { code: string; line: number };
  /** The line where the comment ended. */
  end: number;
  /** The line where it started. */
  start: number;
}

function parseDirective(lines: string[], start: number): Directive {
  // lines[start] begins with "<!-- check:"; find the end of the comment.
  let end = start;
  while (end < lines.length && !lines[end]!.includes("-->")) end++;
  if (end === lines.length) {
    throw new ReadmeSyntaxError(start + 1, "a check comment is never closed with -->");
  }
  const text = lines.slice(start, end + 1);
  const first = text[0]!.replace(/^\s*<!--\s*check:\s*/, "").replace(/-->\s*$/, "").trim();
  const body = text.slice(1);
  if (body.length > 0) {
    const last = body.length - 1;
    if (body[last]!.trim() !== "-->") {
      throw new ReadmeSyntaxError(
        start + 1,
        "put the --> that closes a check comment with hidden lines on a line of its own",
      );
    }
    body.pop();
  }
  let mode: BlockMode;
  let runtime: BlockRuntime = "node";
  let reason: string | undefined;
  const skip = /^skip\b:?\s*(.*)$/.exec(first);
  if (skip) {
    mode = "skip";
    reason = skip[1]!.trim();
    if (reason === "") {
      throw new ReadmeSyntaxError(start + 1, "a skipped block needs a reason: <!-- check: skip: why -->");
    }
  } else {
    const words = first.split(/\s+/).filter((word) => word !== "");
    const [what, where, ...rest] = words;
    if (what !== "types" && what !== "run") {
      throw new ReadmeSyntaxError(start + 1, `unknown check "${what ?? ""}": use types, run or skip`);
    }
    mode = what;
    if (where !== undefined) {
      if (!RUNTIMES.has(where as BlockRuntime)) {
        throw new ReadmeSyntaxError(
          start + 1,
          `unknown runtime "${where}": use node, bundler, deno, bun or workers`,
        );
      }
      runtime = where as BlockRuntime;
    }
    if (rest.length > 0) {
      throw new ReadmeSyntaxError(start + 1, `unexpected words after the runtime: "${rest.join(" ")}"`);
    }
    if (mode === "run" && runtime === "workers") {
      throw new ReadmeSyntaxError(
        start + 1,
        "Workers blocks are type-checked only: use <!-- check: types workers -->",
      );
    }
  }
  const split = body.findIndex((line) => line.trim() === "---");
  const beforeLines = split === -1 ? body : body.slice(0, split);
  const afterLines = split === -1 ? [] : body.slice(split + 1);
  if (mode === "skip" && body.length > 0) {
    throw new ReadmeSyntaxError(start + 1, "a skipped block takes no hidden lines");
  }
  return {
    mode,
    runtime,
    ...(reason === undefined ? {} : { reason }),
    before: { code: beforeLines.join("\n"), line: start + 2 },
    after: { code: afterLines.join("\n"), line: start + 2 + (split === -1 ? body.length : split + 1) },
    end,
    start,
  };
}

/**
 * Finds every TypeScript block of a Markdown text and what its check comment asks.
 *
 * @param text The Markdown.
 * @returns The blocks, in order.
 * @throws {ReadmeSyntaxError} For a malformed check comment, one that no TypeScript block
 * follows, or an unclosed fence.
 */
export function parseReadme(text: string): ReadmeBlock[] {
  const lines = text.split(/\r?\n/);
  const blocks: ReadmeBlock[] = [];
  let heading = "";
  let pending: Directive | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const fence = /^(\s{0,3})(`{3,}|~{3,})\s*([\w-]*)(.*)$/.exec(line);
    if (fence) {
      const [, indent, marker, lang] = fence as unknown as [string, string, string, string];
      const start = i;
      let end = i + 1;
      const closing = new RegExp(`^\\s{0,3}${marker[0] === "`" ? "`" : "~"}{${marker.length},}\\s*$`);
      while (end < lines.length && !closing.test(lines[end]!)) end++;
      if (end === lines.length) throw new ReadmeSyntaxError(start + 1, "a code fence is never closed");
      const code = lines.slice(start + 1, end).map((
        l,
      ) => (l.startsWith(indent) ? l.slice(indent.length) : l.trimStart()))
        .join("\n");
      if (TS_LANGS.has(lang)) {
        const directive = pending;
        const named = FILE_COMMENT.exec(code.split("\n")[0] ?? "");
        blocks.push({
          line: start + 2,
          lang,
          code,
          mode: directive?.mode ?? "types",
          runtime: directive?.runtime ?? "node",
          ...(directive?.reason === undefined ? {} : { reason: directive.reason }),
          before: directive?.before ?? { code: "", line: start + 1 },
          after: directive?.after ?? { code: "", line: end + 1 },
          ...(named ? { file: named[1]! } : {}),
          heading,
        });
      } else if (pending !== undefined) {
        throw new ReadmeSyntaxError(
          pending.start + 1,
          `a check comment is followed by a "${lang || "plain"}" block, not TypeScript`,
        );
      }
      pending = undefined;
      i = end;
      continue;
    }
    if (/^\s*<!--\s*check:/.test(line)) {
      if (pending !== undefined) {
        throw new ReadmeSyntaxError(pending.start + 1, "a check comment is followed by another");
      }
      pending = parseDirective(lines, i);
      i = pending.end;
      continue;
    }
    if (line.trim() === "") continue;
    if (pending !== undefined) {
      throw new ReadmeSyntaxError(pending.start + 1, "a check comment must come right before its code block");
    }
    const title = /^#{1,6}\s+(.*)$/.exec(line);
    if (title) heading = title[1]!.trim();
  }
  if (pending !== undefined) {
    throw new ReadmeSyntaxError(pending.start + 1, "a check comment is followed by no code block");
  }
  return blocks;
}

/** A block written out as a file, and how that file's lines map back to the Markdown. */
export interface WrittenBlock {
  block: ReadmeBlock;
  /** Absolute path of the file. */
  path: string;
  /** For each line of the file (0-based), the Markdown line it came from. */
  lines: number[];
  /** The tsconfig.json of the program that checks it (none for Deno blocks). */
  tsconfig?: string;
}

/** A type error or a failed run, placed at a Markdown line. */
export interface BlockProblem {
  /** The Markdown line. */
  line: number;
  /** What went wrong. */
  message: string;
}

/** What checking one block found. */
export interface BlockResult {
  block: ReadmeBlock;
  /** Type errors, at their Markdown lines. */
  typeErrors: BlockProblem[];
  /** Whether it ran and exited with 0 (`undefined` when not run). */
  ran?: { ok: boolean; output: string };
}

/** The import map of `deno.json` for `websession` and its subpaths, as tsconfig `paths`. */
function packagePaths(root: string, from: string): Record<string, string[]> {
  const deno = JSON.parse(readFileSync(join(root, "deno.json"), "utf8")) as {
    imports: Record<string, string>;
  };
  const paths: Record<string, string[]> = {};
  for (const [name, target] of Object.entries(deno.imports)) {
    if (name !== "websession" && !name.startsWith("websession/")) continue;
    paths[name] = [relative(from, join(root, target)).split("\\").join("/")];
  }
  return paths;
}

/** Groups blocks into projects: consecutive blocks under one heading that name files share one directory. */
function groupBlocks(blocks: readonly ReadmeBlock[]): ReadmeBlock[][] {
  const groups: ReadmeBlock[][] = [];
  let current: ReadmeBlock[] | undefined;
  for (const block of blocks) {
    const joins = block.file !== undefined && current !== undefined && current[0]!.file !== undefined &&
      current[0]!.runtime === block.runtime && current[0]!.heading === block.heading &&
      !current.some((other) => other.file === block.file);
    if (joins) current!.push(block);
    else groups.push(current = [block]);
    if (block.file === undefined) current = undefined;
  }
  return groups;
}

/** Declarations that reach every file of a program (`declare global`, a global namespace). */
const GLOBAL_DECLARATION = /^\s*declare\s+(?:global\b|namespace\s|module\s)/m;

function configFor(root: string, base: string, runtime: BlockRuntime, files: readonly string[]): object {
  const extra = runtime === "bun" ? [join(root, "examples", "bun", "bun_globals.d.ts")] : [];
  return {
    extends: relative(base, join(root, "tsconfig.json")).split("\\").join("/"),
    compilerOptions: {
      paths: packagePaths(root, base),
      jsx: "react-jsx",
      types: runtime === "workers" ? [] : ["node"],
      noEmit: true,
      ...(runtime === "bundler" ? { module: "preserve", moduleResolution: "bundler" } : {}),
    },
    include: [],
    files: [...extra, ...files].map((path) => relative(base, path).split("\\").join("/")),
  };
}

/**
 * Writes the checked blocks out as files under `dir/<runtime>/<n>/`, with a `tsconfig.json` per
 * runtime that maps `websession` to the sources (Deno blocks use `deno.json`). A group whose
 * blocks declare globals (`declare global`, SvelteKit's `App.Locals`) gets a program of its own,
 * so its declarations reach no other block. A block named `*.d.ts` is written as `*_d.ts`,
 * since tsc does not check declaration files under `skipLibCheck`.
 *
 * @param blocks The blocks (skipped ones are left out).
 * @param root The package root (holds `deno.json`, `tsconfig.json`, `node_modules`).
 * @param dir The directory to write into; emptied first.
 * @returns The files written.
 */
export function writeBlocks(blocks: readonly ReadmeBlock[], root: string, dir: string): WrittenBlock[] {
  rmSync(dir, { recursive: true, force: true });
  const written: WrittenBlock[] = [];
  const groups = groupBlocks(blocks.filter((block) => block.mode !== "skip"));
  const shared = new Map<BlockRuntime, WrittenBlock[]>();
  groups.forEach((group, n) => {
    const runtime = group[0]!.runtime;
    const base = join(dir, runtime, String(n + 1));
    const isolated = runtime !== "deno" &&
      group.some((block) =>
        GLOBAL_DECLARATION.test(`${block.before.code}\n${block.code}\n${block.after.code}`)
      );
    const mine: WrittenBlock[] = [];
    for (const block of group) {
      const ext = block.lang === "tsx" ? "tsx" : "ts";
      const name = (block.file ?? `readme_${block.line}.${ext}`).replace(/\.d\.ts$/, "_d.ts");
      const path = join(base, name);
      const parts: Array<{ code: string; line: number }> = [];
      if (block.before.code !== "") parts.push(block.before);
      parts.push({ code: block.code, line: block.line });
      if (block.after.code !== "") parts.push(block.after);
      const lines: number[] = [];
      const text: string[] = [];
      for (const part of parts) {
        part.code.split("\n").forEach((codeLine, i) => {
          text.push(codeLine);
          lines.push(part.line + i);
        });
      }
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, text.join("\n") + "\n");
      const tsconfig = runtime === "deno"
        ? undefined
        : isolated
        ? join(base, "tsconfig.json")
        : join(dir, runtime, "tsconfig.json");
      const w: WrittenBlock = { block, path, lines, ...(tsconfig === undefined ? {} : { tsconfig }) };
      written.push(w);
      mine.push(w);
    }
    if (isolated) {
      writeFileSync(
        join(base, "tsconfig.json"),
        JSON.stringify(configFor(root, base, runtime, mine.map((w) => w.path)), null, 2) + "\n",
      );
    } else if (runtime !== "deno") {
      shared.set(runtime, [...(shared.get(runtime) ?? []), ...mine]);
    }
  });
  for (const [runtime, files] of shared) {
    const base = join(dir, runtime);
    writeFileSync(
      join(base, "tsconfig.json"),
      JSON.stringify(configFor(root, base, runtime, files.map((w) => w.path)), null, 2) + "\n",
    );
  }
  return written;
}

interface Exec {
  code: number;
  output: string;
  timedOut: boolean;
}

function exec(
  command: string,
  args: string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs: number },
): Promise<Exec> {
  return new Promise((done) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        child.kill("SIGKILL");
      }
    }, options.timeoutMs);
    child.on("error", (error) => (output += `\n${error.message}\n`));
    child.on("close", (code) => {
      clearTimeout(timer);
      done({ code: code ?? 1, output, timedOut });
    });
  });
}

function bin(root: string, name: string): string {
  return join(root, "node_modules", ".bin", name);
}

/** The block written to `path`, if any. */
function blockAt(written: readonly WrittenBlock[], path: string): WrittenBlock | undefined {
  return written.find((w) => w.path === path);
}

/**
 * Type-checks the written blocks: one `tsc` run per runtime (Node, bundler, Bun, Workers), one
 * `deno check` for the Deno blocks.
 *
 * @returns The type errors of each block, at Markdown lines, and the checker's output when it
 * failed without reporting an error in a block.
 */
export async function typeCheck(
  written: readonly WrittenBlock[],
  root: string,
): Promise<{ errors: Map<WrittenBlock, BlockProblem[]>; unplaced: string[] }> {
  const errors = new Map<WrittenBlock, BlockProblem[]>();
  const unplaced: string[] = [];
  const add = (path: string, line: number, message: string): void => {
    const w = blockAt(written, path);
    if (w === undefined) {
      unplaced.push(`${relative(root, path)}:${line}: ${message}`);
      return;
    }
    const list = errors.get(w) ?? [];
    list.push({ line: w.lines[line - 1] ?? w.block.line, message });
    errors.set(w, list);
  };
  const runs: Promise<void>[] = [];
  const programs = [...new Set(written.flatMap((w) => (w.tsconfig === undefined ? [] : [w.tsconfig])))];
  for (const tsconfig of programs) {
    const members = written.filter((w) => w.tsconfig === tsconfig);
    runs.push(
      exec(bin(root, "tsc"), ["-p", tsconfig, "--pretty", "false"], { cwd: root, timeoutMs: 300_000 })
        .then((result) => {
          let last: { path: string; line: number; message: string } | undefined;
          const flush = (): void => {
            if (last !== undefined) add(last.path, last.line, last.message);
            last = undefined;
          };
          for (const line of result.output.split("\n")) {
            const m = /^(.+?)\((\d+),(\d+)\): error (TS\d+: .*)$/.exec(line);
            if (m) {
              flush();
              last = { path: resolve(root, m[1]!), line: Number(m[2]), message: m[4]! };
            } else if (last !== undefined && /^\s+\S/.test(line)) {
              last.message += `\n${line}`;
            } else flush();
          }
          flush();
          if (result.code !== 0 && !members.some((w) => errors.has(w))) {
            unplaced.push(`tsc -p ${relative(root, tsconfig)} failed:\n${result.output.trim()}`);
          }
        }),
    );
  }
  const denoFiles = written.filter((w) => w.block.runtime === "deno");
  if (denoFiles.length > 0) {
    runs.push(
      exec(bin(root, "deno"), ["check", "--quiet", ...denoFiles.map((w) => w.path)], {
        cwd: root,
        timeoutMs: 300_000,
      })
        .then((result) => {
          let message: string | undefined;
          for (const line of result.output.split("\n")) {
            const m = /^(TS\d+) \[ERROR\]: (.*)$/.exec(line);
            if (m) message = `${m[1]}: ${m[2]}`;
            const at = /^\s+at (file:\/\/\S+?):(\d+):(\d+)\s*$/.exec(line);
            if (at && message !== undefined) {
              add(fileURLToPath(at[1]!), Number(at[2]), message);
              message = undefined;
            }
          }
          if (result.code !== 0 && !denoFiles.some((w) => errors.has(w))) {
            unplaced.push(`deno check failed:\n${result.output.trim()}`);
          }
        }),
    );
  }
  await Promise.all(runs);
  return { errors, unplaced };
}

/** The environment runnable blocks see: the loopback services, and a secret. */
export function runEnvironment(): NodeJS.ProcessEnv {
  return {
    REDIS_URL: process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
    DATABASE_URL: process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test",
    MEMCACHED_SERVER: process.env.MEMCACHED_SERVER ?? "127.0.0.1:11211",
    SESSION_SECRET: "a README example secret, at least 32 characters",
  };
}

/** A TCP port free on loopback right now. */
function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.unref();
    server.on("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => done(port));
    });
  });
}

/**
 * Runs one written block (`mode: "run"`) in its runtime, from the block's own directory (so
 * what it writes, such as `.sessions/`, stays there), with {@linkcode runEnvironment} and a free
 * `PORT`.
 *
 * @returns Whether it exited with 0 within `timeoutMs`, and what it printed.
 */
export async function runBlock(
  w: WrittenBlock,
  root: string,
  timeoutMs = 60_000,
): Promise<{ ok: boolean; output: string }> {
  const env = { ...runEnvironment(), PORT: String(await freePort()) };
  const cwd = dirname(w.path);
  let result: Exec;
  switch (w.block.runtime) {
    case "node":
    case "bundler":
      result = await exec(process.execPath, ["--import", "tsx", w.path], {
        cwd,
        env: { ...env, ...(w.tsconfig === undefined ? {} : { TSX_TSCONFIG_PATH: w.tsconfig }) },
        timeoutMs,
      });
      break;
    case "deno":
      result = await exec(
        bin(root, "deno"),
        ["run", "-A", "--unstable-kv", "--config", join(root, "deno.json"), w.path],
        { cwd, env, timeoutMs },
      );
      break;
    case "bun":
      // Bun reads the tsconfig.json nearest the file, whose `paths` map `websession`.
      result = await exec(bin(root, "bun"), [w.path], { cwd, env, timeoutMs });
      break;
    default:
      return { ok: false, output: `Blocks for ${w.block.runtime} are not run` };
  }
  const output = result.timedOut
    ? `${result.output}\n(killed after ${timeoutMs / 1000} s: it did not exit)`
    : result.output;
  return { ok: result.code === 0 && !result.timedOut, output };
}

/** A short name for a block in reports: its line, heading and first line. */
export function describeBlock(block: ReadmeBlock): string {
  const first = block.code.split("\n").find((line) => line.trim() !== "") ?? "";
  return `line ${block.line} (${block.heading}): ${first.length > 60 ? `${first.slice(0, 57)}...` : first}`;
}

/**
 * Checks every TypeScript block of a Markdown file: type-checks all but the skipped ones and
 * runs those marked `run`.
 *
 * @param file The Markdown file.
 * @param root The package root.
 * @param dir Where the blocks are written (emptied first).
 * @returns One result per block that is not skipped, the skipped blocks, and type-checker
 * output that belongs to no block.
 */
export async function checkReadme(
  file: string,
  root: string,
  dir = join(root, ".tmp", "readme"),
): Promise<{ results: BlockResult[]; skipped: ReadmeBlock[]; unplaced: string[] }> {
  const blocks = parseReadme(readFileSync(file, "utf8"));
  const written = writeBlocks(blocks, root, dir);
  const { errors, unplaced } = await typeCheck(written, root);
  const results: BlockResult[] = [];
  for (const w of written) {
    const result: BlockResult = { block: w.block, typeErrors: errors.get(w) ?? [] };
    if (w.block.mode === "run" && result.typeErrors.length === 0) result.ran = await runBlock(w, root);
    results.push(result);
  }
  return { results, skipped: blocks.filter((block) => block.mode === "skip"), unplaced };
}

function isMain(): boolean {
  const script = process.argv[1];
  return script !== undefined && import.meta.url === pathToFileURL(script).href;
}

if (isMain()) {
  const root = resolve(import.meta.dirname, "..");
  const file = resolve(process.argv[2] ?? join(root, "README.md"));
  const { results, skipped, unplaced } = await checkReadme(file, root);
  let failed = unplaced.length > 0;
  const name = relative(process.cwd(), file);
  for (const result of results) {
    const what = result.ran === undefined ? "types" : "types, run";
    const bad = result.typeErrors.length > 0 || (result.ran !== undefined && !result.ran.ok);
    failed ||= bad;
    console.log(`${bad ? "FAIL" : "ok  "} [${result.block.runtime} ${what}] ${describeBlock(result.block)}`);
    for (const error of result.typeErrors) {
      console.log(`  ${name}:${error.line}: ${error.message.replace(/\n/g, "\n    ")}`);
    }
    if (result.ran !== undefined && !result.ran.ok) {
      console.log(`  run failed:\n    ${result.ran.output.trim().replace(/\n/g, "\n    ")}`);
    }
  }
  for (const block of skipped) console.log(`skip ${describeBlock(block)}: ${block.reason}`);
  for (const text of unplaced) console.log(`outside the blocks: ${text}`);
  const ran = results.filter((r) => r.ran !== undefined).length;
  console.log(`${results.length} blocks type-checked, ${ran} run, ${skipped.length} skipped`);
  if (failed) process.exit(1);
}
