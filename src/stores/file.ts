/**
 * `FileStore`: one JSON file per session in a directory. Works the same on Node, Deno and Bun
 * (`node:fs/promises`). Not for Workers.
 *
 * @module
 */
import { createHash } from "node:crypto";
import {
  type FileHandle,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  rmdir,
  stat,
  unlink,
  writeFile,
} from "node:fs/promises";
import { dirname, join } from "node:path";
import { SessionDataError } from "../errors.ts";
import {
  assertStorageKey,
  parseStoredSession,
  type SaveConflict,
  type SaveIndex,
  type SaveResult,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
} from "../store.ts";

/**
 * Where a {@linkcode FileStore} writes its warnings: `console`, the `logger` given to
 * `withSession`, or any object with a `warn` method.
 *
 * @example
 * ```ts
 * import { FileStore, type FileStoreLogger } from "websession/file";
 * import assert from "node:assert/strict";
 * import { mkdtemp, rm, writeFile } from "node:fs/promises";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 *
 * const warnings: string[] = [];
 * const logger: FileStoreLogger = { warn: (message) => void warnings.push(String(message)) };
 * const dir = await mkdtemp(join(tmpdir(), "sessions-"));
 * const store = new FileStore({ dir, logger });
 * await writeFile(join(dir, `${"k".repeat(43)}.json`), "not json");
 * assert.equal(await store.load("k".repeat(43)), null);
 * assert.match(warnings[0]!, /corrupt session file/);
 * await rm(dir, { recursive: true });
 * ```
 */
export interface FileStoreLogger {
  /** A warning: a file the store had to ignore. */
  warn(...args: unknown[]): void;
}

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
   * it well above the longest save; every process sharing `dir` must use the same value. A
   * lease file that cannot be read (its taker was killed before writing it) is free after this
   * long too.
   * @default 10000
   */
  staleLockMs?: number;
  /**
   * How long a save waits for another writer's lock before failing with an error, in
   * milliseconds; also the longest `lock()` and `unlock()` wait for another call that is
   * replacing the same lease.
   * @default 5000
   */
  lockTimeoutMs?: number;
  /**
   * Told about a session file that is not a valid record (corrupt, half-written by a crash or
   * edited by hand), with the file's path. The file then reads as missing. Given, it replaces
   * the warning written to `logger`.
   * @default a warning to `logger`
   */
  onCorrupt?: (path: string) => void;
  /**
   * Where warnings go (a corrupt session file, unless `onCorrupt` is given): pass the same
   * logger as `withSession`'s to route them with the rest.
   * @default console
   */
  logger?: FileStoreLogger;
  /**
   * The clock, in milliseconds since the epoch: decides when records and leases expire. Lock
   * staleness is judged by file times, on the system clock.
   * @default Date.now
   */
  now?: () => number;
}

const KEY = /^[A-Za-z0-9_-]{43}$/;
const SESSION_FILE = /^[A-Za-z0-9_-]{43}\.json$/;
const TEMP_FILE = /^[A-Za-z0-9_-]{43}\.[0-9a-f]{16}\.tmp$/;
const LOCK_FILE = /^[A-Za-z0-9_-]{43}\.json\.lock$/;
const LEASE_FILE = /^[A-Za-z0-9_-]{43}\.lease$/;
/**
 * `<file>.<file id>.<generation>.break`: the claim of one process to act on one version of a lock
 * (take it over) or of a lease (take it over, extend it, release it).
 */
const CLAIM_FILE =
  /^([A-Za-z0-9_-]{43}\.(?:json\.lock|lease))\.([0-9a-f]{32}|~[0-9]+-[0-9]+)\.[0-9]+\.break$/;
const TOKEN = /^[0-9a-f]{32}$/;
/** The directory of the per-user index, inside `dir`: `users/<SHA-256 of the user id>/<key>`. */
const USERS = "users";

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

/** One lease file as read: its version's id, and its owner and expiry when it parses. */
interface LeaseSeen {
  /** Its token, or, for a file that does not parse, its inode and time. */
  id: string;
  /** Who holds it; `undefined` when the file does not parse (being written, or left half-made). */
  owner?: string;
  /** When it expires, in milliseconds since the epoch by the store's clock. */
  until?: number;
  /** When it was written, in milliseconds since the epoch by the system clock. */
  mtimeMs: number;
}

/** Reads a lease from one open file; `null` when there is none. */
async function readLease(lease: string): Promise<LeaseSeen | null> {
  let handle: FileHandle;
  try {
    handle = await open(lease, "r");
  } catch (error) {
    if (code(error) === "ENOENT") return null;
    throw error;
  }
  try {
    const info = await handle.stat();
    const text = await handle.readFile("utf8");
    let parsed: { token?: unknown; owner?: unknown; until?: unknown } | undefined;
    try {
      parsed = JSON.parse(text);
    } catch {
      // Not written yet, or left half-written by a killed process.
    }
    if (
      typeof parsed?.token === "string" && TOKEN.test(parsed.token) && typeof parsed.owner === "string" &&
      typeof parsed.until === "number"
    ) {
      return { id: parsed.token, owner: parsed.owner, until: parsed.until, mtimeMs: info.mtimeMs };
    }
    return { id: `~${info.ino}-${Math.trunc(info.mtimeMs)}`, mtimeMs: info.mtimeMs };
  } finally {
    await handle.close();
  }
}

async function lockId(lock: string): Promise<string | null> {
  return (await inspect(lock))?.id ?? null;
}

async function leaseId(lease: string): Promise<string | null> {
  return (await readLease(lease))?.id ?? null;
}

function leaseText(owner: string, until: number): string {
  return JSON.stringify({ token: randomHex(16), owner, until });
}

/** What a claim on one version of a file came to. */
type Claimed = "acted" | "changed" | "busy";

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
 * Leases (`lock`/`unlock`, what `session.lock()` takes) are files of their own, `<key>.lease`,
 * apart from the records and from the write locks. A lease is created with `open(..., "wx")`
 * and holds a random token, its owner and its expiry (by the `now` clock). Every change to an
 * existing lease, taking over an expired one, its owner extending or releasing it, is made
 * under a claim on that lease's token, the same exclusive claim files as a lock takeover: of
 * concurrent takers exactly one wins, and nobody replaces or removes a lease taken after the
 * one they read. Only its owner releases a live lease; an expired one is taken over by the next
 * taker, or removed by `cleanup()`. A lease file that does not parse (its taker was killed
 * between creating and writing it) is held until it is `staleLockMs` old.
 *
 * Sessions per user (`save`'s `index`, `keysOfUser`): a save with an index creates an empty
 * marker file `users/<SHA-256 of the user id, base64url>/<key>` under the session's lock, after
 * the version check and before the record is written, so the index never misses a saved
 * session, and a refused save adds nothing. `keysOfUser` lists the markers and removes those
 * whose record is gone (expired, destroyed, corrupt), checking again under the session's lock so
 * that a save in progress keeps its marker. A marker stays while its record lives, even after
 * the record's user changed: the core checks each record it lists.
 *
 * Nothing is removed by itself: call `cleanup()` from a timer or cron. It removes expired and
 * corrupt session files, expired leases, index markers whose record is gone, and what killed
 * processes left: their stale locks, takeover claims and temporary files.
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
  /**
   * Compare-and-set: yes (lock file). Native expiry: no, see `cleanup()`. Leases: yes (lease
   * files). Sessions per user: yes (marker files).
   */
  readonly capabilities: StoreCapabilities = { compareAndSet: true, ttl: false, locks: true, users: true };
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
   * @throws {TypeError} When `dir` is missing, or `logger` has no `warn` method.
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
    const logger = options.logger ?? console;
    if (typeof logger?.warn !== "function") {
      throw new TypeError("Invalid logger: expected an object with warn(), such as console");
    }
    this.#onCorrupt = options.onCorrupt ??
      ((path) => logger.warn(`websession: ignoring a corrupt session file: "${path}"`));
    this.#now = options.now ?? Date.now;
  }

  #path(key: string): string {
    assertStorageKey(key);
    return join(this.#dir, `${key}.json`);
  }

  #leasePath(key: string): string {
    assertStorageKey(key);
    return join(this.#dir, `${key}.lease`);
  }

  /** The index directory of a user: the SHA-256 of the id's JSON text (every string distinct). */
  #userDir(user: string): string {
    if (typeof user !== "string") throw new TypeError("Invalid user: expected a string");
    const hash = createHash("sha256").update(JSON.stringify(user), "utf8").digest("base64url");
    return join(this.#dir, USERS, hash);
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

  /** Replaces `path` (a session or lease file) with `text` through a renamed temporary file. */
  async #write(path: string, text: string, fence: () => void): Promise<void> {
    const temp = `${path.replace(/\.(?:json|lease)$/, "")}.${randomHex(8)}.tmp`;
    try {
      await writeFile(temp, text, { mode: 0o600 });
      fence();
      await rename(temp, path);
    } catch (error) {
      await rm(temp, { force: true }).catch(() => {});
      throw error;
    }
  }

  /**
   * Runs `fn` holding the lock of `path`; `fn` calls `fence()` right before it changes a file.
   * Waits at most `timeoutMs` for the lock.
   */
  async #locked<R>(
    path: string,
    fn: (fence: () => void) => Promise<R>,
    timeoutMs: number = this.#timeoutMs,
  ): Promise<R> {
    await this.#mkdir();
    const held = await this.#acquire(`${path}.lock`, timeoutMs);
    try {
      return await fn(() => this.#fence(held));
    } finally {
      await this.#release(held);
    }
  }

  async #acquire(lock: string, timeoutMs: number): Promise<Held> {
    const deadline = Date.now() + timeoutMs;
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
      if (
        Date.now() - seen.mtimeMs > this.#staleMs &&
        await this.#claimed(lock, seen.id, lockId, () => ignoreMissing(unlink(lock))) !== "busy"
      ) continue;
      if (Date.now() > deadline) throw new Error(`Timed out waiting for the session lock: "${lock}"`);
      await sleep(wait * (0.5 + Math.random()));
    }
  }

  /**
   * Runs `act` on `file` if it is still the version known as `id`, as the only one doing so: the
   * claim `<file>.<id>.<generation>.break` is created exclusively, so one process acts on one
   * version of a lock or lease, and no one acts on a version written after the one it read. A
   * claim older than `staleLockMs` was left by a killed process; the next generation's claim
   * takes its place. A claim held for half of `staleLockMs` acts no more.
   *
   * @returns `"acted"`; `"changed"` when the file is no longer that version (look again); or
   *   `"busy"` when another process holds the claim.
   */
  async #claimed(
    file: string,
    id: string,
    current: (file: string) => Promise<string | null>,
    act: () => Promise<void>,
  ): Promise<Claimed> {
    for (let generation = 0;; generation++) {
      const claim = `${file}.${id}.${generation}.break`;
      const since = Date.now();
      try {
        await (await open(claim, "wx", 0o600)).close();
      } catch (error) {
        if (code(error) !== "EEXIST") throw error;
        const info = await stat(claim).catch((error) => {
          if (code(error) === "ENOENT") return null;
          throw error;
        });
        if (info === null) return "changed"; // that claim just ended
        if (Date.now() - info.mtimeMs > this.#staleMs) continue;
        return "busy";
      }
      try {
        if (await current(file) !== id) return "changed";
        if (Date.now() - since >= this.#staleMs / 2) return "changed"; // too late to act safely
        await act();
        return "acted";
      } finally {
        await unlink(claim).catch(() => {});
      }
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
      else await this.#claimed(held.lock, held.token, lockId, () => ignoreMissing(unlink(held.lock)));
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
   * Compare-and-set under the session's lock file. With `index`, the key is added to the user's
   * index (a marker file) before the record is written; a refused save adds nothing.
   *
   * @returns `true` when written; when refused, a {@linkcode SaveConflict} with the record read
   *   under the same lock (`null` when absent, expired or corrupt).
   * @throws {SessionDataError} When `record.data` is not a JSON object `JSON.stringify` can
   *   write (a `BigInt`, a cycle); nothing is written.
   * @throws {TypeError} When the key is malformed, or `index.user` is not a string.
   * @throws {Error} When the lock is not had within `lockTimeoutMs`, or was held too long to
   *   write safely; nothing is written.
   */
  async save(
    key: string,
    record: StoredSession,
    expectedVersion: number | null,
    index?: SaveIndex,
  ): Promise<SaveResult> {
    const path = this.#path(key);
    const text = serialize(record);
    const marker = index === undefined ? undefined : join(this.#userDir(index?.user), key);
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
        if (marker !== undefined) await mark(marker);
        await this.#write(path, text, fence);
      }
      return true;
    });
  }

  /** Removes a record; no error if absent. Its index markers go with the next `keysOfUser` or `cleanup()`. */
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

  /** A lease nobody holds any more: past its expiry, or unreadable for longer than `staleLockMs`. */
  #leaseFree(seen: LeaseSeen): boolean {
    return seen.until !== undefined ? seen.until <= this.#now() : Date.now() - seen.mtimeMs > this.#staleMs;
  }

  /**
   * Takes the lease named `key` (the file `<key>.lease`) for `owner`, for `ttlMs` milliseconds
   * from now by the store's clock; `owner` taking it again extends it. Of concurrent takers,
   * across processes, exactly one wins.
   *
   * @param key A storage key.
   * @param owner Who takes it: any non-empty string, compared exactly.
   * @param ttlMs How long it lasts unless released, in milliseconds.
   * @returns `true` when taken or extended; `false` while another owner holds a live lease, or
   *   is taking over an expired one.
   * @throws {TypeError} When the key is malformed or `owner` is not a non-empty string.
   * @throws {RangeError} When `ttlMs` is not a positive number.
   * @throws {Error} When the file system fails, or the owner's own lease stays claimed by another
   *   call past `lockTimeoutMs`.
   * @example
   * ```ts
   * import { FileStore } from "websession/file";
   * import assert from "node:assert/strict";
   * import { mkdtemp, rm } from "node:fs/promises";
   * import { tmpdir } from "node:os";
   * import { join } from "node:path";
   *
   * let clock = 1_000_000;
   * const dir = await mkdtemp(join(tmpdir(), "sessions-"));
   * const store = new FileStore({ dir, now: () => clock });
   * const key = "k".repeat(43);
   * assert.equal(await store.lock(key, "request-1", 30_000), true);
   * assert.equal(await store.lock(key, "request-2", 30_000), false); // held
   * clock += 30_000; // request-1 never released it: it expires by itself
   * assert.equal(await store.lock(key, "request-2", 30_000), true);
   * await store.unlock(key, "request-1"); // not the owner any more: nothing happens
   * assert.equal(await store.lock(key, "request-3", 30_000), false);
   * await store.unlock(key, "request-2");
   * assert.equal(await store.lock(key, "request-3", 30_000), true);
   * await rm(dir, { recursive: true });
   * ```
   */
  async lock(key: string, owner: string, ttlMs: number): Promise<boolean> {
    const lease = this.#leasePath(key);
    if (typeof owner !== "string" || owner === "") {
      throw new TypeError("Invalid lease owner: expected a non-empty string");
    }
    if (typeof ttlMs !== "number" || !(ttlMs > 0) || !Number.isFinite(ttlMs)) {
      throw new RangeError(`Invalid ttlMs: "${ttlMs}" is not a positive number of milliseconds`);
    }
    await this.#mkdir();
    const deadline = Date.now() + this.#timeoutMs;
    for (let wait = 1;; wait = Math.min(wait * 2, 50)) {
      let handle: FileHandle | undefined;
      try {
        handle = await open(lease, "wx", 0o600);
      } catch (error) {
        if (code(error) !== "EEXIST") throw error;
      }
      if (handle !== undefined) {
        try {
          await handle.writeFile(leaseText(owner, this.#now() + ttlMs));
          await handle.close();
        } catch (error) {
          await handle.close().catch(() => {});
          await unlink(lease).catch(() => {}); // just created, so still ours
          throw error;
        }
        return true;
      }
      const seen = await readLease(lease);
      if (seen === null) continue; // released meanwhile
      const mine = seen.owner === owner;
      if (!mine && !this.#leaseFree(seen)) return false;
      const outcome = await this.#claimed(
        lease,
        seen.id,
        leaseId,
        () => this.#write(lease, leaseText(owner, this.#now() + ttlMs), () => {}),
      );
      if (outcome === "acted") return true;
      if (outcome === "busy" && !mine) return false; // another taker is taking it over
      if (Date.now() > deadline) throw new Error(`Timed out waiting to take the session lease: "${lease}"`);
      if (outcome === "busy") await sleep(wait * (0.5 + Math.random()));
    }
  }

  /**
   * Releases the lease named `key` if, and only if, `owner` holds it (an expired lease it held
   * included); does nothing otherwise. Gives up silently after `lockTimeoutMs` while another
   * call is replacing the lease: it expires by itself.
   *
   * @param key A storage key.
   * @param owner The owner given to `lock`.
   * @throws {TypeError} When the key is malformed.
   * @throws {Error} When the file system fails.
   */
  async unlock(key: string, owner: string): Promise<void> {
    const lease = this.#leasePath(key);
    const deadline = Date.now() + this.#timeoutMs;
    for (let wait = 1;; wait = Math.min(wait * 2, 50)) {
      const seen = await readLease(lease);
      if (seen === null || seen.owner !== owner) return;
      const outcome = await this.#claimed(lease, seen.id, leaseId, () => ignoreMissing(unlink(lease)));
      if (outcome === "acted" || Date.now() > deadline) return;
      if (outcome === "busy") await sleep(wait * (0.5 + Math.random()));
    }
  }

  /**
   * The storage keys in a user's index: each session saved with `index: { user }` whose record
   * still exists, and perhaps a few whose record is being written or changed hands. Markers whose
   * record is gone are removed on the way.
   *
   * @param user The user's id, any string.
   * @returns The keys, in no particular order.
   * @throws {TypeError} When `user` is not a string.
   * @throws {Error} When the file system fails.
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
   * const [phone, laptop] = ["p".repeat(43), "l".repeat(43)];
   * const now = Date.now();
   * const record = { data: { user: "ada" }, version: 1, createdAt: now, expiresAt: now + 60_000 };
   * await store.save(phone, record, null, { user: "ada" });
   * await store.save(laptop, record, null, { user: "ada" });
   * assert.deepEqual((await store.keysOfUser("ada")).sort(), [laptop, phone]);
   * await store.destroy(laptop);
   * assert.deepEqual(await store.keysOfUser("ada"), [phone]); // its marker went with it
   * assert.deepEqual(await store.keysOfUser("grace"), []);
   * await rm(dir, { recursive: true });
   * ```
   */
  async keysOfUser(user: string): Promise<string[]> {
    const dir = this.#userDir(user);
    const keys = (await this.#list(dir)).filter((name) => KEY.test(name));
    const gone = await Promise.all(keys.map((key) => this.#prune(join(dir, key), key)));
    return keys.filter((_, i) => !gone[i]);
  }

  /**
   * Removes an index marker whose record is gone. A record that looks gone may be a save in
   * progress that has written its marker already: the marker is removed only under the
   * session's lock, taken without waiting, and kept when in doubt (an extra key is harmless).
   *
   * @returns `true` when the marker was removed.
   */
  async #prune(marker: string, key: string): Promise<boolean> {
    const path = join(this.#dir, `${key}.json`);
    if (this.#live(await this.#quietRead(path)) !== null) return false;
    try {
      return await this.#locked(path, async (fence) => {
        if (this.#live(await this.#quietRead(path)) !== null) return false;
        fence();
        await ignoreMissing(unlink(marker));
        return true;
      }, 0);
    } catch {
      return false;
    }
  }

  /**
   * Removes expired and corrupt session files, expired leases, index markers whose record is
   * gone (and emptied user directories), and what killed processes left behind: locks older
   * than `staleLockMs` (taken over as a waiting save would), claims whose lock or lease has
   * changed, and temporary files older than `staleLockMs`.
   *
   * @returns How many session files were removed.
   */
  async cleanup(): Promise<number> {
    const names = await this.#list(this.#dir);
    for (const name of names) {
      if (LOCK_FILE.test(name)) {
        const lock = join(this.#dir, name);
        const seen = await inspect(lock);
        if (seen !== null && Date.now() - seen.mtimeMs > this.#staleMs) {
          await this.#claimed(lock, seen.id, lockId, () => ignoreMissing(unlink(lock)));
        }
      } else if (LEASE_FILE.test(name)) {
        const lease = join(this.#dir, name);
        const seen = await readLease(lease);
        if (seen !== null && this.#leaseFree(seen)) {
          await this.#claimed(lease, seen.id, leaseId, () => ignoreMissing(unlink(lease)));
        }
      }
    }
    let removed = 0;
    for (const name of names) {
      const path = join(this.#dir, name);
      const claim = CLAIM_FILE.exec(name);
      if (claim !== null) {
        // Once its file has changed no claim can act on it: the claim is only litter.
        const file = join(this.#dir, claim[1]!);
        const id = await (claim[1]!.endsWith(".lease") ? leaseId(file) : lockId(file));
        if (id !== claim[2]) await rm(path, { force: true });
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
    const users = join(this.#dir, USERS);
    for (const name of await this.#list(users)) {
      if (!KEY.test(name)) continue;
      const dir = join(users, name);
      for (const key of await this.#list(dir)) if (KEY.test(key)) await this.#prune(join(dir, key), key);
      // Only an empty directory goes; a save marking a key in it meanwhile creates it again.
      await rmdir(dir).catch(() => {});
    }
    return removed;
  }

  /** How many live sessions the directory holds (reads every file). */
  async count(): Promise<number> {
    let live = 0;
    for (const name of await this.#list(this.#dir)) {
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

  async #list(dir: string): Promise<string[]> {
    try {
      return await readdir(dir);
    } catch (error) {
      if (code(error) === "ENOENT" || code(error) === "ENOTDIR") return [];
      throw error;
    }
  }
}

/**
 * Creates an empty index marker (mode 0600) and its directory (mode 0700) when missing; a
 * `cleanup()` removing the emptied directory at the same moment makes it try again.
 */
async function mark(marker: string): Promise<void> {
  for (let attempt = 1;; attempt++) {
    try {
      await (await open(marker, "a", 0o600)).close();
      return;
    } catch (error) {
      if (code(error) !== "ENOENT" || attempt >= 5) throw error;
    }
    await mkdir(dirname(marker), { recursive: true, mode: 0o700 });
  }
}
