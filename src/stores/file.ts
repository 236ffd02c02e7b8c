/**
 * `FileStore`: one JSON file per session in a directory. Works the same on Node, Deno and Bun
 * (`node:fs/promises`). Not for Workers.
 *
 * @module
 */
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  assertStorageKey,
  parseStoredSession,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
} from "../store.ts";

/**
 * Options of {@linkcode FileStore}.
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
 *   lockTimeoutMs: 2000,
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
   * A lock file older than this many milliseconds is taken to be left by a crashed process and
   * removed.
   * @default 10000
   */
  staleLockMs?: number;
  /**
   * How long a save waits for another process's lock before failing, in milliseconds.
   * @default 5000
   */
  lockTimeoutMs?: number;
  /**
   * Told about a session file that is not a valid record (corrupt, half-written by a crash or
   * edited by hand). The file then reads as missing.
   * @default a console.warn
   */
  onCorrupt?: (path: string) => void;
  /**
   * The clock, in milliseconds since the epoch.
   * @default Date.now
   */
  now?: () => number;
}

const SESSION_FILE = /^[A-Za-z0-9_-]{43}\.json$/;
const TEMP_FILE = /^[A-Za-z0-9_-]{43}\.[0-9a-f]{16}\.tmp$/;

function code(error: unknown): string | undefined {
  return (error as { code?: string } | null)?.code;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function randomHex(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Keeps each session in its own file, `<dir>/<storage key>.json`. Writes go to a temporary
 * file that is renamed over the old one, so a reader never sees half a record; a save is a
 * compare-and-set done under an exclusive lock file (`open(..., "wx")`), which a crashed process
 * cannot hold forever (`staleLockMs`). File names are storage keys, checked against their exact
 * alphabet, so no name can leave `dir`.
 *
 * Expired files are not removed by themselves: call `cleanup()` from a timer or cron.
 *
 * @example
 * ```ts
 * import { FileStore } from "websession/file";
 * import assert from "node:assert/strict";
 * import { mkdtemp, rm } from "node:fs/promises";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 *
 * const dir = await mkdtemp(join(tmpdir(), "sessions-"));
 * const store = new FileStore({ dir });
 * const key = "k".repeat(43);
 * const now = Date.now();
 * assert.ok(await store.save(key, { data: { a: 1 }, version: 1, createdAt: now, expiresAt: now + 60_000 }, null));
 * assert.equal((await store.load(key))?.data.a, 1);
 * assert.equal(await store.count(), 1);
 * await rm(dir, { recursive: true });
 * ```
 */
export class FileStore implements SessionStore {
  /** Compare-and-set: yes (lock file). Native expiry: no, see `cleanup()`. */
  readonly capabilities: StoreCapabilities = { compareAndSet: true, ttl: false };
  #dir: string;
  #staleMs: number;
  #timeoutMs: number;
  #onCorrupt: (path: string) => void;
  #now: () => number;
  #ready: Promise<unknown> | undefined;

  /**
   * Creates a store over a directory (created on first write).
   *
   * @param options See {@linkcode FileStoreOptions}.
   * @throws {TypeError} When `dir` is missing.
   */
  constructor(options: FileStoreOptions) {
    if (typeof options?.dir !== "string" || options.dir.length === 0) {
      throw new TypeError("Invalid FileStore options: dir must be a non-empty path");
    }
    this.#dir = options.dir;
    this.#staleMs = options.staleLockMs ?? 10_000;
    this.#timeoutMs = options.lockTimeoutMs ?? 5_000;
    this.#onCorrupt = options.onCorrupt ??
      ((path) => console.warn(`websession: ignoring a corrupt session file: "${path}"`));
    this.#now = options.now ?? Date.now;
  }

  #path(key: string): string {
    assertStorageKey(key);
    return join(this.#dir, `${key}.json`);
  }

  #mkdir(): Promise<unknown> {
    return (this.#ready ??= mkdir(this.#dir, { recursive: true, mode: 0o700 }).catch((error) => {
      this.#ready = undefined;
      throw error;
    }));
  }

  async #read(path: string): Promise<StoredSession | null> {
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (error) {
      if (code(error) === "ENOENT") return null;
      throw error;
    }
    const record = parseStoredSession(text);
    if (record === null) {
      this.#onCorrupt(path);
      return null;
    }
    return record;
  }

  async #write(path: string, record: StoredSession): Promise<void> {
    const temp = `${path.slice(0, -".json".length)}.${randomHex()}.tmp`;
    try {
      await writeFile(temp, JSON.stringify(record), { mode: 0o600 });
      await rename(temp, path);
    } catch (error) {
      await rm(temp, { force: true }).catch(() => {});
      throw error;
    }
  }

  async #locked<R>(path: string, fn: () => Promise<R>): Promise<R> {
    await this.#mkdir();
    const lock = `${path}.lock`;
    const deadline = Date.now() + this.#timeoutMs;
    for (let wait = 1;; wait = Math.min(wait * 2, 50)) {
      try {
        const handle = await open(lock, "wx", 0o600);
        await handle.close();
        break;
      } catch (error) {
        if (code(error) !== "EEXIST") throw error;
      }
      try {
        const { mtimeMs } = await stat(lock);
        if (Date.now() - mtimeMs > this.#staleMs) {
          await unlink(lock).catch(() => {}); // left by a crashed process
          continue;
        }
      } catch (error) {
        if (code(error) === "ENOENT") continue;
        throw error;
      }
      if (Date.now() > deadline) throw new Error(`Timed out waiting for the session lock "${lock}"`);
      await sleep(wait * (0.5 + Math.random()));
    }
    try {
      return await fn();
    } finally {
      await unlink(lock).catch(() => {});
    }
  }

  #live(record: StoredSession | null): StoredSession | null {
    return record !== null && record.expiresAt > this.#now() ? record : null;
  }

  /** Reads a record; `null` when missing, expired or corrupt. */
  async load(key: string): Promise<StoredSession | null> {
    return this.#live(await this.#read(this.#path(key)));
  }

  /** Compare-and-set under the session's lock file. */
  async save(key: string, record: StoredSession, expectedVersion: number | null): Promise<boolean> {
    const path = this.#path(key);
    return await this.#locked(path, async () => {
      const current = this.#live(await this.#read(path));
      if (expectedVersion === null ? current !== null : current?.version !== expectedVersion) return false;
      if (record.expiresAt <= this.#now()) await rm(path, { force: true });
      else await this.#write(path, record);
      return true;
    });
  }

  /** Removes a record; no error if absent. */
  async destroy(key: string): Promise<void> {
    const path = this.#path(key);
    await this.#locked(path, () => rm(path, { force: true }));
  }

  /** Moves an existing record's expiry; does nothing when it is missing. */
  async touch(key: string, expiresAt: number): Promise<void> {
    const path = this.#path(key);
    await this.#locked(path, async () => {
      const current = this.#live(await this.#read(path));
      if (current !== null) await this.#write(path, { ...current, expiresAt });
    });
  }

  /**
   * Removes expired and corrupt session files, and temporary files left by crashed writers.
   *
   * @returns How many session files were removed.
   */
  async cleanup(): Promise<number> {
    let removed = 0;
    for (const name of await this.#list()) {
      const path = join(this.#dir, name);
      if (TEMP_FILE.test(name)) {
        const info = await stat(path).catch(() => null);
        if (info !== null && Date.now() - info.mtimeMs > this.#staleMs) await rm(path, { force: true });
        continue;
      }
      if (!SESSION_FILE.test(name)) continue;
      if (this.#live(await this.#quietRead(path)) !== null) continue;
      const gone = await this.#locked(path, async () => {
        if (this.#live(await this.#quietRead(path)) !== null) return false;
        await rm(path, { force: true });
        return true;
      });
      if (gone) removed++;
    }
    return removed;
  }

  /** How many live sessions the directory holds (reads every file). */
  async count(): Promise<number> {
    let live = 0;
    for (const name of await this.#list()) {
      if (SESSION_FILE.test(name) && this.#live(await this.#quietRead(join(this.#dir, name))) !== null) {
        live++;
      }
    }
    return live;
  }

  async #quietRead(path: string): Promise<StoredSession | null> {
    try {
      return parseStoredSession(await readFile(path, "utf8"));
    } catch (error) {
      if (code(error) === "ENOENT") return null;
      throw error;
    }
  }

  async #list(): Promise<string[]> {
    try {
      return await readdir(this.#dir);
    } catch (error) {
      if (code(error) === "ENOENT") return [];
      throw error;
    }
  }
}
