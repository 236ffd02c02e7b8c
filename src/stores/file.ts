/**
 * `FileStore`: one JSON file per session in a directory. Works the same on Node, Deno and Bun
 * (`node:fs/promises`). Not for Workers.
 *
 * @module
 */
import {
  type FileHandle,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  unlink,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { SessionDataError } from "../errors.ts";
import {
  assertStorageKey,
  parseStoredSession,
  type SaveConflict,
  type SaveResult,
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
   * A lock file older than this many milliseconds was left by a killed process and is taken
   * over. A save that has held its lock for half this long refuses to write (it throws), so keep
   * it well above the longest save; every process sharing `dir` must use the same value.
   * @default 10000
   */
  staleLockMs?: number;
  /**
   * How long a save waits for another writer's lock before failing with an error, in
   * milliseconds.
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
const LOCK_FILE = /^[A-Za-z0-9_-]{43}\.json\.lock$/;
/** `<lock>.<lock id>.<generation>.break`: the claim of one waiter to take over one stale lock. */
const CLAIM_FILE = /^([A-Za-z0-9_-]{43}\.json\.lock)\.([0-9a-f]{32}|~[0-9]+-[0-9]+)\.[0-9]+\.break$/;
const TOKEN = /^[0-9a-f]{32}$/;

function code(error: unknown): string | undefined {
  return (error as { code?: string } | null)?.code;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function randomHex(bytes: number): string {
  const random = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(random, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function ignoreMissing(promise: Promise<unknown>): Promise<void> {
  try {
    await promise;
  } catch (error) {
    if (code(error) !== "ENOENT") throw error;
  }
}

/** A record as the JSON text of its file; `SessionDataError` when its data is not a JSON object. */
function serialize(record: StoredSession): string {
  const { data, version, createdAt, expiresAt } = record;
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new SessionDataError("Session data cannot be stored: it is not a JSON object");
  }
  let text: string | undefined;
  try {
    text = JSON.stringify(data);
  } catch (error) {
    throw new SessionDataError(
      `Session data cannot be stored as JSON: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  if (typeof text !== "string" || text[0] !== "{") {
    throw new SessionDataError("Session data cannot be stored: it is not a JSON object");
  }
  return `{"data":${text},"version":${JSON.stringify(version)},"createdAt":${
    JSON.stringify(createdAt)
  },"expiresAt":${JSON.stringify(expiresAt)}}`;
}

/** One lock file as a waiter sees it: who holds it, and since when. */
interface LockSeen {
  /** The holder's token, or, for a lock without one, its inode and time. */
  id: string;
  /** When it was written, in milliseconds since the epoch. */
  mtimeMs: number;
}

/** Reads a lock's holder and age from one open file; `null` when there is no lock. */
async function inspect(lock: string): Promise<LockSeen | null> {
  let handle: FileHandle;
  try {
    handle = await open(lock, "r");
  } catch (error) {
    if (code(error) === "ENOENT") return null;
    throw error;
  }
  try {
    const info = await handle.stat();
    const text = await handle.readFile("utf8");
    // A lock whose holder was killed before writing its token (or one written by an older
    // version) is known by its inode and time instead.
    const id = TOKEN.test(text) ? text : `~${info.ino}-${Math.trunc(info.mtimeMs)}`;
    return { id, mtimeMs: info.mtimeMs };
  } finally {
    await handle.close();
  }
}

/** A lock this store holds. */
interface Held {
  lock: string;
  token: string;
  /** When this store started taking it (before the file existed). */
  since: number;
}

/**
 * Keeps each session in its own file, `<dir>/<storage key>.json`, as JSON text (lone surrogates
 * and U+0000 are escaped, so any JavaScript string round-trips). Writes go to a temporary file
 * that is renamed over the old one, so a reader never sees half a record. A save is a
 * compare-and-set done under the session's lock file; a refused save reports the record it lost
 * to, read under the same lock.
 *
 * The lock file (`<key>.json.lock`, created with `open(..., "wx")`) holds a random token of its
 * holder, and only the holder removes it. A lock older than `staleLockMs` was left by a killed
 * process and is taken over: one waiter at a time claims that very lock (a claim file named by
 * its token, created exclusively), checks that the lock still holds that token, and removes it;
 * the others wait. A holder that has held its lock for half of `staleLockMs` refuses to write
 * (it throws) rather than risk writing after a takeover. The processes sharing a directory must
 * therefore agree on `staleLockMs` and on the time (one machine, or synchronized clocks).
 *
 * Nothing is removed by itself: call `cleanup()` from a timer or cron. It removes expired and
 * corrupt session files, and what killed processes left: their stale locks, takeover claims and
 * temporary files.
 *
 * File names are storage keys, checked against their exact alphabet, so no name can leave `dir`.
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
 * const record = { data: { a: 1 }, version: 1, createdAt: now, expiresAt: now + 60_000 };
 * assert.equal(await store.save(key, record, null), true);
 * assert.equal((await store.load(key))?.data.a, 1);
 * // A second create loses, and is told what it lost to.
 * assert.deepEqual(await store.save(key, { ...record, data: { a: 2 } }, null), { current: record });
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
   * @throws {RangeError} When `staleLockMs` or `lockTimeoutMs` is not a positive number.
   */
  constructor(options: FileStoreOptions) {
    if (typeof options?.dir !== "string" || options.dir.length === 0) {
      throw new TypeError("Invalid FileStore options: dir must be a non-empty path");
    }
    this.#dir = options.dir;
    this.#staleMs = options.staleLockMs ?? 10_000;
    this.#timeoutMs = options.lockTimeoutMs ?? 5_000;
    for (
      const [name, value] of [["staleLockMs", this.#staleMs], ["lockTimeoutMs", this.#timeoutMs]] as const
    ) {
      if (typeof value !== "number" || !(value > 0) || !Number.isFinite(value)) {
        throw new RangeError(`Invalid ${name}: "${value}" is not a positive number of milliseconds`);
      }
    }
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

  async #write(path: string, text: string, fence: () => void): Promise<void> {
    const temp = `${path.slice(0, -".json".length)}.${randomHex(8)}.tmp`;
    try {
      await writeFile(temp, text, { mode: 0o600 });
      fence();
      await rename(temp, path);
    } catch (error) {
      await rm(temp, { force: true }).catch(() => {});
      throw error;
    }
  }

  /** Runs `fn` holding the lock of `path`; `fn` calls `fence()` right before it changes a file. */
  async #locked<R>(path: string, fn: (fence: () => void) => Promise<R>): Promise<R> {
    await this.#mkdir();
    const held = await this.#acquire(`${path}.lock`);
    try {
      return await fn(() => this.#fence(held));
    } finally {
      await this.#release(held);
    }
  }

  async #acquire(lock: string): Promise<Held> {
    const deadline = Date.now() + this.#timeoutMs;
    for (let wait = 1;; wait = Math.min(wait * 2, 50)) {
      const held: Held = { lock, token: randomHex(16), since: Date.now() };
      let handle: FileHandle | undefined;
      try {
        handle = await open(lock, "wx", 0o600);
      } catch (error) {
        if (code(error) !== "EEXIST") throw error;
      }
      if (handle !== undefined) {
        try {
          await handle.writeFile(held.token);
          await handle.close();
        } catch (error) {
          await handle.close().catch(() => {});
          await unlink(lock).catch(() => {}); // just created, so still ours
          throw error;
        }
        return held;
      }
      const seen = await inspect(lock);
      if (seen === null) continue; // released meanwhile
      if (Date.now() - seen.mtimeMs > this.#staleMs && await this.#takeOver(lock, seen.id)) continue;
      if (Date.now() > deadline) throw new Error(`Timed out waiting for the session lock: "${lock}"`);
      await sleep(wait * (0.5 + Math.random()));
    }
  }

  /**
   * Removes the lock known as `id` if it is still in place, as the only one doing so: the claim
   * `<lock>.<id>.<generation>.break` is created exclusively, so one waiter takes over one stale
   * lock, and no one can remove a lock taken after it. A claim older than `staleLockMs` was left
   * by a killed waiter; the next generation's claim takes its place.
   *
   * @returns `false` when another waiter is taking it over (wait), `true` otherwise (look again).
   */
  async #takeOver(lock: string, id: string): Promise<boolean> {
    for (let generation = 0;; generation++) {
      const claim = `${lock}.${id}.${generation}.break`;
      try {
        await (await open(claim, "wx", 0o600)).close();
      } catch (error) {
        if (code(error) !== "EEXIST") throw error;
        const info = await stat(claim).catch((error) => {
          if (code(error) === "ENOENT") return null;
          throw error;
        });
        if (info === null) return true; // that takeover just ended
        if (Date.now() - info.mtimeMs > this.#staleMs) continue;
        return false;
      }
      try {
        const seen = await inspect(lock);
        if (seen !== null && seen.id === id) await ignoreMissing(unlink(lock));
      } finally {
        await unlink(claim).catch(() => {});
      }
      return true;
    }
  }

  /** Throws unless the lock was taken recently enough that no waiter can have taken it over. */
  #fence(held: Held): void {
    const elapsed = Date.now() - held.since;
    if (elapsed >= this.#staleMs / 2) {
      throw new Error(
        `Session lock held too long to write safely: "${held.lock}" for ${elapsed} ms (staleLockMs: ${this.#staleMs})`,
      );
    }
  }

  async #release(held: Held): Promise<void> {
    try {
      // Until half of staleLockMs has passed no waiter can take the lock over: it is still ours.
      if (Date.now() - held.since < this.#staleMs / 2) await unlink(held.lock);
      else await this.#takeOver(held.lock, held.token); // removed only if still ours
    } catch {
      // Removed already; a lock left behind is stale in time and cleanup() removes it.
    }
  }

  #live(record: StoredSession | null): StoredSession | null {
    return record !== null && record.expiresAt > this.#now() ? record : null;
  }

  /** Reads a record; `null` when missing, expired or corrupt. */
  async load(key: string): Promise<StoredSession | null> {
    return this.#live(await this.#read(this.#path(key)));
  }

  /**
   * Compare-and-set under the session's lock file.
   *
   * @returns `true` when written; when refused, a {@linkcode SaveConflict} with the record read
   *   under the same lock (`null` when absent, expired or corrupt).
   * @throws {SessionDataError} When `record.data` is not a JSON object `JSON.stringify` can
   *   write (a `BigInt`, a cycle); nothing is written.
   * @throws {Error} When the lock is not had within `lockTimeoutMs`, or was held too long to
   *   write safely; nothing is written.
   */
  async save(key: string, record: StoredSession, expectedVersion: number | null): Promise<SaveResult> {
    const path = this.#path(key);
    const text = serialize(record);
    return await this.#locked(path, async (fence): Promise<SaveResult> => {
      const current = this.#live(await this.#read(path));
      if (expectedVersion === null ? current !== null : current?.version !== expectedVersion) {
        const conflict: SaveConflict = { current };
        return conflict;
      }
      if (record.expiresAt <= this.#now()) {
        fence();
        await rm(path, { force: true });
      } else {
        await this.#write(path, text, fence);
      }
      return true;
    });
  }

  /** Removes a record; no error if absent. */
  async destroy(key: string): Promise<void> {
    const path = this.#path(key);
    await this.#locked(path, async (fence) => {
      fence();
      await rm(path, { force: true });
    });
  }

  /** Moves an existing record's expiry (milliseconds since the epoch); does nothing when it is missing. */
  async touch(key: string, expiresAt: number): Promise<void> {
    const path = this.#path(key);
    await this.#locked(path, async (fence) => {
      const current = this.#live(await this.#read(path));
      if (current !== null) await this.#write(path, serialize({ ...current, expiresAt }), fence);
    });
  }

  /**
   * Removes expired and corrupt session files, and what killed processes left behind: locks
   * older than `staleLockMs` (taken over as a waiting save would), claims of takeovers whose
   * lock is gone, and temporary files older than `staleLockMs`.
   *
   * @returns How many session files were removed.
   */
  async cleanup(): Promise<number> {
    const names = await this.#list();
    for (const name of names) {
      if (!LOCK_FILE.test(name)) continue;
      const lock = join(this.#dir, name);
      const seen = await inspect(lock);
      if (seen !== null && Date.now() - seen.mtimeMs > this.#staleMs) await this.#takeOver(lock, seen.id);
    }
    let removed = 0;
    for (const name of names) {
      const path = join(this.#dir, name);
      const claim = CLAIM_FILE.exec(name);
      if (claim !== null) {
        // Once its lock is gone no takeover can act on it: the claim is only litter.
        if ((await inspect(join(this.#dir, claim[1]!)))?.id !== claim[2]) await rm(path, { force: true });
        continue;
      }
      if (TEMP_FILE.test(name)) {
        const info = await stat(path).catch(() => null);
        if (info !== null && Date.now() - info.mtimeMs > this.#staleMs) await rm(path, { force: true });
        continue;
      }
      if (!SESSION_FILE.test(name)) continue;
      if (this.#live(await this.#quietRead(path)) !== null) continue;
      const gone = await this.#locked(path, async (fence) => {
        if (this.#live(await this.#quietRead(path)) !== null) return false;
        fence();
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
