// Which websession code a run measures. By default the working tree; with BENCH_SOURCE=<revision>
// (any name git understands: a commit, a tag, HEAD~3) the `mod.ts` and `src/` of that revision,
// extracted read-only with `git archive` into .tmp/source-<commit>/, so that "before" figures can
// be taken again at any time while the working tree moves on.
import { execFile } from "node:child_process";
import { mkdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const run = promisify(execFile);

async function git(args: string[], trim = true): Promise<string> {
  const { stdout } = await run("git", args, { cwd: ROOT, maxBuffer: 64 * 2 ** 20 });
  return trim ? stdout.trim() : stdout;
}

/** The code a run measures. */
export interface Source {
  /** For the report: the commit, its subject line, and whether the working tree differs from it. */
  label: string;
  /** The directory to pass on as BENCH_SOURCE_DIR; `undefined` for the working tree. */
  dir?: string;
}

/**
 * Resolves BENCH_SOURCE: extracts that revision's `mod.ts` and `src/` (once per commit) and
 * returns its directory, or describes the working tree when BENCH_SOURCE is unset.
 *
 * @throws Error when git does not know the revision.
 */
export async function resolveSource(revision = process.env.BENCH_SOURCE): Promise<Source> {
  if (revision === undefined || revision === "") {
    const head = await git(["log", "-1", "--format=%h %s"]).catch(() => "?");
    const dirty = (await git(["status", "--porcelain", "--", "mod.ts", "src"], false).catch(() => ""))
      .split("\n").filter(Boolean).map((line) => line.slice(3));
    return {
      label: `the working tree at \`${head.split(" ")[0]}\` (${head.slice(head.indexOf(" ") + 1)})` +
        (dirty.length > 0 ? `, with uncommitted changes to ${dirty.map((f) => `\`${f}\``).join(", ")}` : ""),
    };
  }
  const commit = await git(["rev-parse", "--verify", `${revision}^{commit}`]);
  const subject = await git(["log", "-1", "--format=%s", commit]);
  const dir = join(ROOT, ".tmp", `source-${commit.slice(0, 12)}`);
  const ready = await stat(join(dir, "mod.ts")).then(() => true, () => false);
  if (!ready) {
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    const archive = join(ROOT, ".tmp", `source-${commit.slice(0, 12)}.tar`);
    await run("git", ["archive", "--format=tar", "-o", archive, commit, "mod.ts", "src"], { cwd: ROOT });
    await run("tar", ["-xf", archive, "-C", dir]);
    await rm(archive, { force: true });
  }
  return { label: `commit \`${commit.slice(0, 7)}\` (${subject})`, dir };
}
