/**
 * The file store's options and their checks. Docs: docs/stores/file.md.
 *
 * @module
 */
import type { SessionLogger } from "../../session_options.ts";
import { type StoreHookOptions, storeHooks } from "../../store.ts";

/**
 * Options of {@linkcode FileStore}. Docs: docs/stores/file.md (the options table).
 *
 * @example
 * ```ts
 * import { FileStore, type FileStoreOptions } from "websession/file";
 * import assert from "node:assert/strict";
 * import { mkdtemp, rm, writeFile } from "node:fs/promises";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 *
 * const corrupt: string[] = [];
 * const options: FileStoreOptions = {
 *   dir: await mkdtemp(join(tmpdir(), "sessions-")),
 *   fsync: false, // sessions may be lost in a power failure, not in a crash of the process
 *   onCorrupt: (path) => void corrupt.push(path),
 * };
 * const store = new FileStore(options);
 * const key = "k".repeat(43);
 * await writeFile(join(options.dir, `${key}.json`), "{half a rec"); // say, edited by hand
 * assert.equal(await store.load(key), null); // reads as missing, and is reported
 * assert.deepEqual(corrupt, [join(options.dir, `${key}.json`)]);
 * await rm(options.dir, { recursive: true });
 * ```
 */
export interface FileStoreOptions {
  /** The directory to keep session files in; created (mode 0700) when missing. */
  dir: string;
  /**
   * Flush each new version to the disk before a save answers, so an acknowledged save survives
   * a power failure (about a millisecond per save on an SSD).
   * @default true
   */
  fsync?: boolean;
  /**
   * How old (ms) what a killed process left must be before `cleanup()` removes it; nothing
   * else depends on it.
   * @default 10000
   */
  staleLockMs?: number;
  /**
   * How long (ms) an operation keeps trying while it loses claims that do not decide its
   * outcome; then it fails with an error.
   * @default 5000
   */
  lockTimeoutMs?: number;
  /**
   * Told the path of a session file that is not a valid record (it reads as missing);
   * replaces the warning to `logger`.
   * @default a warning to `logger`
   */
  onCorrupt?: (path: string) => void;
  /**
   * Where warnings go; pass `withSession`'s logger.
   * @default console
   */
  logger?: Pick<SessionLogger, "warn">;
  /**
   * The clock, in milliseconds since the epoch: decides when records and locks expire.
   * @default Date.now
   */
  now?: () => number;
}

/** The options checked, with their defaults. */
export interface ResolvedOptions {
  dir: string;
  fsync: boolean;
  staleMs: number;
  timeoutMs: number;
  onCorrupt: (path: string) => void;
  now: () => number;
}

/**
 * Checks `options` and fills in the defaults.
 *
 * @throws {TypeError} When `dir` is missing, `fsync` is not a boolean, or `logger` has no
 *   `warn` method.
 * @throws {RangeError} When `staleLockMs` or `lockTimeoutMs` is not a positive number.
 */
export function resolveOptions(options: FileStoreOptions): ResolvedOptions {
  if (typeof options?.dir !== "string" || options.dir.length === 0) {
    throw new TypeError("Invalid FileStore options: dir must be a non-empty path");
  }
  const fsync = options.fsync ?? true;
  if (typeof fsync !== "boolean") {
    throw new TypeError(`Invalid fsync: "${String(fsync)}" is not a boolean`);
  }
  const staleMs = options.staleLockMs ?? 10_000;
  const timeoutMs = options.lockTimeoutMs ?? 5_000;
  for (const [name, value] of [["staleLockMs", staleMs], ["lockTimeoutMs", timeoutMs]] as const) {
    if (typeof value !== "number" || !(value > 0) || !Number.isFinite(value)) {
      throw new RangeError(`Invalid ${name}: "${value}" is not a positive number of milliseconds`);
    }
  }
  const { now, onCorrupt } = storeHooks(options as StoreHookOptions, "session file");
  return { dir: options.dir, fsync, staleMs, timeoutMs, onCorrupt, now };
}
