// The built package a run measures: `mod.ts` and `src/` of one commit (HEAD by default, or
// BENCH_SOURCE=<revision>), extracted with `git archive` into .tmp/dist-<commit>/ and compiled there
// by the repository's own build (`scripts/build.ts`, what `npm run build` runs), so that a run
// measures exactly one commit's JavaScript while the working tree moves on, and never TypeScript
// through a loader. Built once per commit.
import { execFile } from "node:child_process";
import { mkdir, rm, stat, symlink } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const run = promisify(execFile);

/** A built commit. */
export interface Built {
  commit: string;
  subject: string;
  /** The directory holding `dist/` (and `node_modules` linked to the repository's). */
  dir: string;
  /** `dist/` itself, ending in `/`. */
  dist: string;
  buildSeconds: number;
}

/**
 * Builds `revision` (default HEAD) with the repository's build script, once per commit.
 *
 * @throws Error when git does not know the revision or the build fails.
 */
export async function buildRevision(revision = process.env.BENCH_SOURCE || "HEAD"): Promise<Built> {
  const git = async (args: string[]) => (await run("git", args, { cwd: ROOT })).stdout.trim();
  const commit = await git(["rev-parse", "--verify", `${revision}^{commit}`]);
  const subject = await git(["log", "-1", "--format=%s", commit]);
  const dir = join(ROOT, ".tmp", `dist-${commit.slice(0, 12)}`);
  const dist = join(dir, "dist") + "/";
  const begin = performance.now();
  if (!(await stat(join(dist, "mod.js")).then(() => true, () => false))) {
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    const archive = `${dir}.tar`;
    await run("git", [
      "archive",
      "--format=tar",
      "-o",
      archive,
      commit,
      "mod.ts",
      "src",
      "scripts/build.ts",
      "tsconfig.json",
      "tsconfig.build.json",
      "package.json",
    ], { cwd: ROOT });
    await run("tar", ["-xf", archive, "-C", dir]);
    await rm(archive, { force: true });
    await symlink(join(ROOT, "node_modules"), join(dir, "node_modules"));
    // What `npm run build` runs, in the extracted copy.
    await run(process.execPath, ["--import", "tsx", "scripts/build.ts"], { cwd: dir, maxBuffer: 2 ** 24 });
  }
  return { commit, subject, dir, dist, buildSeconds: (performance.now() - begin) / 1000 };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(JSON.stringify(await buildRevision(process.argv[2])));
}
