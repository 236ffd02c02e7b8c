/**
 * The few file-system steps the file store builds on, with the error codes it expects.
 *
 * @module
 */
import { open, readdir, readFile, unlink } from "node:fs/promises";

/** An error's `code` (`ENOENT`, `EEXIST`, ...), if it has one. */
export function code(error: unknown): string | undefined {
  return (error as { code?: string } | null)?.code;
}

/** `bytes` random bytes in hex: names of temporary files. */
export function randomHex(bytes: number): string {
  const random = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(random, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Awaits `promise`, ignoring a failure with one of `codes`. */
export async function ignore(promise: Promise<unknown>, ...codes: string[]): Promise<void> {
  try {
    await promise;
  } catch (error) {
    if (!codes.includes(code(error) ?? "")) throw error;
  }
}

/** A file's text; `undefined` when it does not exist. */
export async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if (code(error) === "ENOENT" || code(error) === "ENOTDIR") return undefined;
    throw error;
  }
}

/** A directory's names; `null` when it does not exist. */
export async function list(dir: string): Promise<string[] | null> {
  try {
    return await readdir(dir);
  } catch (error) {
    if (code(error) === "ENOENT" || code(error) === "ENOTDIR") return null;
    throw error;
  }
}

/** Flushes a directory's entries to the disk. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes a new file completely (flushed when `fsync`); the name must not exist. */
export async function writeNew(path: string, text: string, fsync: boolean): Promise<void> {
  const handle = await open(path, "wx", 0o600);
  try {
    await handle.writeFile(text);
    if (fsync) await handle.sync();
  } catch (error) {
    await handle.close().catch(() => {});
    await unlink(path).catch(() => {});
    throw error;
  }
  await handle.close();
}
