/**
 * `FileStore`: sessions as files in a directory, each version of a record a file of its own,
 * claimed by `link()`. Works the same on Node, Deno and Bun (`node:fs/promises`). Not for
 * Workers.
 *
 * @module
 */
import { link, mkdir, open, readdir, readFile, rename, rm, rmdir, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { SessionDataError } from "../errors.ts";
import {
  assertStorageKey,
  assertTouchArguments,
  parseStoredSession,
  type SaveIndex,
  type SaveResult,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
  toStoredSession,
  touchExtends,
} from "../store.ts";
import { userTag } from "../user_tag.ts";

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
 * await writeFile(join(dir, `${"k".repeat(43)}.json`), "not json"); // a file of the earlier layout
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
   * Flush each new version to the disk (`fsync` of the file before it is linked, and of its
   * directory after) before a save answers: an acknowledged save then survives a power
   * failure or a crash of the machine. Without it, a crash of the process still loses
   * nothing, but a crash of the machine may lose the last seconds of saves (a logout among
   * them). Costs about a millisecond per save on an SSD.
   * @default true
   */
  fsync?: boolean;
  /**
   * How old a temporary file, an emptied session directory or a file of the earlier layout
   * (lock, claim or lease files) must be before `cleanup()` removes it as left behind by a
   * killed process. Nothing else depends on it: no writer ever waits for another, and no
   * correctness rests on time.
   * @default 10000
   */
  staleLockMs?: number;
  /**
   * How long a save, a touch, `destroy()`, `lock()` or `unlock()` keeps trying when it keeps
   * losing its claim to other writers in ways that do not decide its outcome (a touch of the
   * version it read, a directory being removed), in milliseconds; then it fails with an error.
   * @default 5000
   */
  lockTimeoutMs?: number;
  /**
   * Told about a session file that is not a valid record (corrupt, or edited by hand), with the
   * file's path. The record then reads as missing. Given, it replaces the warning written to
   * `logger`.
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
   * The clock, in milliseconds since the epoch: decides when records and leases expire.
   * @default Date.now
   */
  now?: () => number;
}

/**
 * A lease as {@linkcode FileStore.lease} reads it: who holds it, until when, and its fencing
 * token.
 *
 * @example
 * ```ts
 * import { FileStore, type FileLease } from "websession/file";
 * import { mkdtemp, rm } from "node:fs/promises";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import assert from "node:assert/strict";
 *
 * const dir = await mkdtemp(join(tmpdir(), "websession-lease-"));
 * const store = new FileStore({ dir });
 * const key = "k".repeat(43);
 * assert.equal(await store.lock(key, "owner-1", 30_000), true);
 * const lease: FileLease | null = await store.lease(key);
 * assert.equal(lease?.owner, "owner-1");
 * assert.ok(lease!.token >= 1);
 * await store.unlock(key, "owner-1");
 * await rm(dir, { recursive: true });
 * ```
 */
export interface FileLease {
  /** Who holds it, as given to `lock()`. */
  owner: string;
  /** When it expires, in milliseconds since the epoch, by the store's clock. */
  until: number;
  /**
   * The fencing token of this holder: larger than the token of every earlier holder of the
   * lease (an extension keeps it). A write guarded by the lease passes it along; whatever
   * receives the write refuses a token lower than the highest it has seen.
   */
  token: number;
}

const KEY = /^[A-Za-z0-9_-]{43}$/;
/** A record of the earlier layout, one file per session: read, and migrated by the next save. */
const LEGACY_FILE = /^([A-Za-z0-9_-]{43})\.json$/;
/** What the earlier layout's killed processes left: locks, claims, temporary and lease files. */
const LEGACY_LITTER =
  /^[A-Za-z0-9_-]{43}\.(?:json\.lock|lease|[0-9a-f]{16}\.tmp|(?:json\.lock|lease)\..+\.break)$/;
const SLOT_FILE = /^([1-9][0-9]{0,15})\.json$/;
const TEMP_FILE = /^[0-9a-f]{16}\.tmp$/;
const TRASH_DIR = /^[A-Za-z0-9_-]{43}\.[0-9a-f]{16}\.trash$/;
/** An index marker, or one being pruned (it still counts until the prune decides). */
const MARKER = /^([A-Za-z0-9_-]{43})(?:\.[0-9a-f]{16}\.pruning)?$/;
/** A hard link to the newest slot of a directory (as far as its last writer knew): a hint. */
const HEAD = "head";
/** An empty file that superseded slots are made links of, so that they keep no data or inode. */
const HUSK = "husk";
/** The directory of the per-user index, inside `dir`: `users/<SHA-256 of the user id>/<key>`. */
const USERS = "users";
/** The directory of the leases, inside `dir`: `leases/<key>/<generation>.json`. */
const LEASES = "leases";
/** How many slots a reader steps up from a stale head before it lists the directory instead. */
const PROBES = 8;

type Value = Record<string, unknown>;

/** The newest slot of a slot directory, as read. */
interface Newest {
  /** Its number; 0 when the directory holds none yet. */
  n: number;
  /** Its content; `null` when it holds none or is not valid (see `corrupt`). */
  value: Value | null;
  /** The slot's file holds text that is not a valid slot. */
  corrupt: boolean;
}

/** What a claim came to: linked, lost to another claim of that slot, or the directory is gone. */
type Claim = "ok" | "taken" | "gone";

function code(error: unknown): string | undefined {
  return (error as { code?: string } | null)?.code;
}

function randomHex(bytes: number): string {
  const random = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(random, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function ignore(promise: Promise<unknown>, ...codes: string[]): Promise<void> {
  try {
    await promise;
  } catch (error) {
    if (!codes.includes(code(error) ?? "")) throw error;
  }
}

/** A file's text; `undefined` when it does not exist. */
async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if (code(error) === "ENOENT" || code(error) === "ENOTDIR") return undefined;
    throw error;
  }
}

/** A slot's number and content; `null` when the text is not a slot. */
function parseSlot(text: string): { n: number; value: Value } | null {
  try {
    const value = JSON.parse(text);
    if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
    const n = value.slot;
    return Number.isSafeInteger(n) && n >= 1 ? { n, value } : null;
  } catch {
    return null;
  }
}

/** A record as the JSON members of its slot; `SessionDataError` when its data is not a JSON object. */
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
  return `"data":${text},"version":${JSON.stringify(version)},"createdAt":${
    JSON.stringify(createdAt)
  },"expiresAt":${JSON.stringify(expiresAt)}`;
}

/** The record a slot holds; `null` for a slot that holds none, or one that is not well formed. */
function recordOf(value: Value): StoredSession | null {
  const { data, version, createdAt, expiresAt } = value;
  return toStoredSession({ data, version, createdAt, expiresAt });
}

/** Flushes a directory's entries to the disk. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A session's state as one read found it. */
interface Current {
  /** The newest slot of its directory; 0 when it has none (or no directory). */
  n: number;
  /** The record that slot holds (perhaps expired); `null` when none. */
  record: StoredSession | null;
  /** Its directory exists. */
  exists: boolean;
  /** Its directory was ended (destroyed, expired and cleaned up) and is being removed. */
  closed: boolean;
  /** The record comes from a file of the earlier layout. */
  legacy: boolean;
}

/**
 * Keeps sessions in a directory, every version of a record a file of its own. A save is a
 * compare-and-set that no pause, crash or timeout can break: it claims the next version's file
 * name with `link()`, which fails when the name exists, so of the writers that read one version
 * exactly one can write the next. No writer ever waits for another or takes anything over, and
 * no correctness rests on time.
 *
 * **On disk.** `<dir>/<storage key>/` holds one file per version of the session's record,
 * `<n>.json`, numbered 1, 2, 3... (a "slot"; the record's own `version` is inside, as JSON text
 * in which lone surrogates and U+0000 are escapes). A save reads the newest slot `n`, checks
 * the version, writes a temporary file in the same directory, and links it as `<n + 1>.json`;
 * `EEXIST` means another writer claimed it first, and the save is refused with the record it
 * lost to. A file is linked only once it is fully written (and, with `fsync`, flushed), so a
 * reader never sees half a record. Readers take the newest slot: the temporary file, once
 * linked, is renamed to `head` (a hint of the newest slot), and a reader steps up from it
 * while the next slot exists. Slots are never removed while their directory lives, so a name
 * can never be claimed twice; a superseded slot is made a link of one empty file (`husk`), so
 * it keeps no data. `touch` claims a slot too, with the same version and a later expiry (a
 * save that loses to it tries again on it). Ending a record (`destroy`, or `cleanup()` of an
 * expired one) claims the next slot with a closing mark, then renames the directory away and
 * deletes it: a writer stalled before the end finds its slot taken or its directory gone. Each
 * save thus adds a directory entry (an empty name) until the session ends.
 *
 * **Leases** (`lock`/`unlock`, what `session.lock()` takes) are slots too, in
 * `<dir>/leases/<storage key>/`: taking, extending, releasing or taking over an expired lease
 * each claims the next slot, so of concurrent takers in any number of processes exactly one
 * wins, however long any of them stalls. Each holder gets a fencing token
 * ({@linkcode FileStore.lease}), larger than every earlier holder's. The store contract has no
 * place to carry it: a write guarded by the lease that must be safe against a holder stalled
 * past its lease reads the token after `lock()` and passes it to whatever receives the write,
 * which refuses tokens lower than the highest it has seen (a session save needs none: it is a
 * compare-and-set already).
 *
 * **Sessions per user** (`save`'s `index`, `keysOfUser`): before claiming its slot, a save with
 * an index creates an empty marker `users/<SHA-256 of the user id, base64url>/<key>`, so the
 * index never misses a saved session (a refused save may leave one: an extra key is harmless,
 * the core checks each record it lists). `keysOfUser` lists the keys whose record is live, and
 * prunes the others' markers: it ends their record first (so that no save can land on it
 * unseen), and removes a marker only once it is sure no save is under way.
 *
 * **Upgrades.** A session written by the earlier layout, a single `<dir>/<key>.json`, is read
 * as before when no directory exists for it, and moves to the new layout with its next save or
 * touch. Stop every process of the earlier version before starting this one on the same
 * directory: the two layouts do not lock each other out.
 *
 * **What it needs of the file system**: a local disk (ext4, XFS, APFS, btrfs, tmpfs) where
 * `link()` fails atomically with `EEXIST` and `rename()` is atomic, shared only by processes of
 * one machine. Not NFS or other network file systems (their `link()` may report a failure for a
 * link it made, or succeed twice on retries), nor file systems without hard links (FAT, some
 * FUSE mounts).
 *
 * Nothing is removed by itself: call `cleanup()` from a timer or cron. It removes expired and
 * corrupt sessions, expired and released leases, index markers whose record is gone, and what
 * killed processes left (temporary files, half-removed directories).
 *
 * File names are storage keys, checked against their exact alphabet, so no name can leave `dir`.
 *
 * @example
 * ```ts
 * import { FileStore } from "websession/file";
 * import assert from "node:assert/strict";
 * import { mkdtemp, readdir, rm } from "node:fs/promises";
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
 * assert.equal(await store.save(key, { ...record, version: 2 }, 1), true);
 * assert.deepEqual((await readdir(join(dir, key))).sort(), ["1.json", "2.json", "head", "husk"]);
 * assert.equal(await store.count(), 1);
 * await rm(dir, { recursive: true });
 * ```
 */
export class FileStore implements SessionStore {
  /**
   * Compare-and-set: yes (`link()` of the next version). Native expiry: no, see `cleanup()`.
   * Leases: yes (slots too). Sessions per user: yes (marker files).
   */
  readonly capabilities: StoreCapabilities = { compareAndSet: true, ttl: false, locks: true, users: true };
  #dir: string;
  #fsync: boolean;
  #staleMs: number;
  #timeoutMs: number;
  #onCorrupt: (path: string) => void;
  #now: () => number;
  #ready: Promise<unknown> | undefined;

  /**
   * Creates a store over a directory (created on first write).
   *
   * @param options See {@linkcode FileStoreOptions}.
   * @throws {TypeError} When `dir` is missing, `fsync` is not a boolean, or `logger` has no
   *   `warn` method.
   * @throws {RangeError} When `staleLockMs` or `lockTimeoutMs` is not a positive number.
   */
  constructor(options: FileStoreOptions) {
    if (typeof options?.dir !== "string" || options.dir.length === 0) {
      throw new TypeError("Invalid FileStore options: dir must be a non-empty path");
    }
    this.#dir = options.dir;
    this.#fsync = options.fsync ?? true;
    if (typeof this.#fsync !== "boolean") {
      throw new TypeError(`Invalid fsync: "${String(this.#fsync)}" is not a boolean`);
    }
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

  #recordDir(key: string): string {
    assertStorageKey(key);
    return join(this.#dir, key);
  }

  #leaseDir(key: string): string {
    assertStorageKey(key);
    return join(this.#dir, LEASES, key);
  }

  /**
   * The index directory of a user: the store kit's `userTag` of the id's JSON text, as this
   * store has always named it (JSON escapes lone surrogates, so every string gets its own).
   */
  async #userDir(user: string): Promise<string> {
    if (typeof user !== "string") throw new TypeError("Invalid user: expected a string");
    return join(this.#dir, USERS, await userTag(JSON.stringify(user)));
  }

  #mkdir(): Promise<unknown> {
    return (this.#ready ??= mkdir(this.#dir, { recursive: true, mode: 0o700 }).catch((error) => {
      this.#ready = undefined;
      throw error;
    }));
  }

  /** Throws once an operation has kept losing its claims for longer than `lockTimeoutMs`. */
  #deadline(what: string): () => void {
    const until = Date.now() + this.#timeoutMs;
    return () => {
      if (Date.now() > until) throw new Error(`Gave up after ${this.#timeoutMs} ms of lost claims: ${what}`);
    };
  }

  // ---- Slot directories: the compare-and-set by link() that records and leases share ----

  /** The newest slot of a slot directory; `null` when the directory does not exist. */
  async #newest(dir: string): Promise<Newest | null> {
    for (let attempt = 0;; attempt++) {
      let text = await readText(join(dir, HEAD));
      let n = text === undefined ? 0 : parseSlot(text)?.n ?? 0;
      if (n === 0) {
        const names = await this.#list(dir);
        if (names === null) return null;
        n = Math.max(0, ...names.map((name) => Number(SLOT_FILE.exec(name)?.[1] ?? 0)));
        if (n === 0) return { n: 0, value: null, corrupt: false };
        text = undefined;
      }
      // The head may lag (a writer stalled before moving it): step up while the next slot exists.
      for (let step = 0;; step++) {
        const next = await readText(join(dir, `${n + 1}.json`));
        if (next === undefined) break;
        n++;
        text = next;
        if (step === PROBES) {
          const names = (await this.#list(dir)) ?? [];
          n = Math.max(n, ...names.map((name) => Number(SLOT_FILE.exec(name)?.[1] ?? 0)));
          text = undefined;
        }
      }
      let parsed = text === undefined ? null : parseSlot(text);
      if (parsed?.n !== n) {
        text = await readText(join(dir, `${n}.json`));
        if (text === undefined) {
          if (attempt < 3) continue; // the directory was renamed away meanwhile: look again
          return null;
        }
        parsed = parseSlot(text);
      }
      if (parsed === null || parsed.n !== n) {
        // Emptied as superseded between the two reads, or not a slot at all.
        if (await readText(join(dir, `${n + 1}.json`)) !== undefined && attempt < 100) continue;
        return { n, value: null, corrupt: text !== "" };
      }
      return { n, value: parsed.value, corrupt: false };
    }
  }

  /** Writes a new file completely (flushed with `fsync`); the name must not exist. */
  async #writeNew(path: string, text: string): Promise<void> {
    const handle = await open(path, "wx", 0o600);
    try {
      await handle.writeFile(text);
      if (this.#fsync) await handle.sync();
    } catch (error) {
      await handle.close().catch(() => {});
      await unlink(path).catch(() => {});
      throw error;
    }
    await handle.close();
  }

  /**
   * Claims slot `n` of `dir` for `members` (the JSON members after `"slot":n`): writes a
   * temporary file and links it as `<n>.json`, which fails if any writer claimed `n` before.
   */
  async #claim(dir: string, n: number, members: string): Promise<Claim> {
    const temp = join(dir, `${randomHex(8)}.tmp`);
    try {
      await this.#writeNew(temp, `{"slot":${n},${members}}`);
    } catch (error) {
      if (code(error) === "ENOENT" || code(error) === "ENOTDIR") return "gone";
      throw error;
    }
    try {
      await link(temp, join(dir, `${n}.json`));
    } catch (error) {
      await unlink(temp).catch(() => {});
      if (code(error) === "EEXIST") return "taken";
      if (code(error) === "ENOENT") return "gone"; // renamed away, or its temporary file cleaned up
      throw error;
    }
    if (this.#fsync) await syncDir(dir);
    await rename(temp, join(dir, HEAD)).catch(() => unlink(temp).catch(() => {}));
    return "ok";
  }

  /**
   * Makes superseded slot `n` a link of the directory's empty husk: its name stays (so it can
   * never be claimed again), its data goes. Best effort: a slot left full only costs space.
   */
  async #husk(dir: string, n: number): Promise<void> {
    const husk = join(dir, HUSK);
    const temp = join(dir, `${randomHex(8)}.tmp`);
    try {
      try {
        await link(husk, temp);
      } catch (error) {
        if (code(error) !== "ENOENT") throw error;
        await (await open(husk, "a", 0o600)).close();
        await link(husk, temp);
      }
      await rename(temp, join(dir, `${n}.json`));
    } catch {
      await unlink(temp).catch(() => {});
    }
  }

  /** Ends a slot directory whose newest slot is `n`: claims `n + 1` with a closing mark, then removes it. */
  async #close(dir: string, n: number, members = ""): Promise<Claim> {
    const outcome = await this.#claim(dir, n + 1, `"closed":true${members}`);
    if (outcome === "ok") await this.#remove(dir);
    return outcome;
  }

  /**
   * Removes a closed slot directory: renames it away (no claim can land in it after that),
   * checks that what it moved is the closed directory, and deletes it. A directory that came
   * back to life meanwhile (a stalled remover moving its successor) is put back.
   */
  async #remove(dir: string): Promise<void> {
    const trash = `${dir}.${randomHex(8)}.trash`;
    try {
      await rename(dir, trash);
    } catch (error) {
      if (code(error) === "ENOENT") return;
      throw error;
    }
    const moved = await this.#newest(trash);
    if (moved !== null && moved.n > 0 && moved.value?.closed !== true) {
      try {
        await rename(trash, dir);
      } catch {
        // Another directory took its place at once: keep both, cleanup() removes neither.
        this.#onCorrupt(trash);
      }
      return;
    }
    await rm(trash, { recursive: true, force: true });
  }

  // ---- Records ----

  /** A session's record as it stands, from its directory or else from the earlier layout's file. */
  async #current(key: string): Promise<Current> {
    const dir = this.#recordDir(key);
    for (let attempt = 0;; attempt++) {
      const newest = await this.#newest(dir);
      // A directory with no version yet may be a record of the earlier layout being moved.
      if (newest !== null && newest.n > 0) {
        const { n, value, corrupt } = newest;
        let record = value === null ? null : recordOf(value);
        const closed = value?.closed === true;
        if (corrupt || (value !== null && !closed && record === null)) {
          this.#onCorrupt(join(dir, `${n}.json`));
          record = null;
        }
        return { n, record, exists: true, closed, legacy: false };
      }
      const path = join(this.#dir, `${key}.json`);
      const text = await readText(path);
      const exists = newest !== null;
      if (text === undefined) {
        // Moved to its directory meanwhile? Then read that.
        if (attempt < 3 && (exists ? (await this.#newest(dir))?.n : await this.#list(dir))) continue;
        return { n: 0, record: null, exists, closed: false, legacy: false };
      }
      const record = parseStoredSession(text);
      if (record === null) this.#onCorrupt(path);
      return { n: 0, record, exists, closed: false, legacy: record !== null };
    }
  }

  #live(record: StoredSession | null): StoredSession | null {
    return record !== null && record.expiresAt > this.#now() ? record : null;
  }

  /**
   * Claims the next slot of a session for `members`. Makes the directory first when there is
   * none; a record of the earlier layout is removed once its successor is linked.
   */
  async #write(key: string, current: Current, members: string, marker?: string): Promise<Claim> {
    const dir = this.#recordDir(key);
    if (!current.exists) await ignore(mkdir(dir, { mode: 0o700 }), "EEXIST");
    // Marked after the directory exists (see #prune), before the claim: never missed.
    if (marker !== undefined) await mark(marker);
    const outcome = await this.#claim(dir, current.n + 1, members);
    if (outcome === "ok") {
      if (current.legacy) await ignore(unlink(join(this.#dir, `${key}.json`)), "ENOENT");
      if (current.n > 0) await this.#husk(dir, current.n);
    }
    return outcome;
  }

  /** Reads a record; `null` when missing, expired, ended or corrupt. */
  async load(key: string): Promise<StoredSession | null> {
    return this.#live((await this.#current(key)).record);
  }

  /**
   * Compare-and-set by claiming the next version's file. With `index`, the key is added to the
   * user's index (a marker file) before the claim.
   *
   * @returns `true` when written; when refused, a {@linkcode SaveConflict} with the record it
   *   lost to (`null` when absent, expired, ended or corrupt).
   * @throws {SessionDataError} When `record.data` is not a JSON object `JSON.stringify` can
   *   write (a `BigInt`, a cycle); nothing is written.
   * @throws {TypeError} When the key is malformed, or `index.user` is not a string.
   * @throws {Error} When the file system fails.
   */
  async save(
    key: string,
    record: StoredSession,
    expectedVersion: number | null,
    index?: SaveIndex,
  ): Promise<SaveResult> {
    const dir = this.#recordDir(key);
    const members = serialize(record);
    const marker = index === undefined ? undefined : join(await this.#userDir(index?.user), key);
    await this.#mkdir();
    const check = this.#deadline(`saving "${dir}"`);
    for (let current = await this.#current(key);; check()) {
      const live = this.#live(current.record);
      if (expectedVersion === null ? live !== null : live?.version !== expectedVersion) {
        return { current: live };
      }
      if (current.closed) {
        await this.#remove(dir); // ended: created anew once its directory is gone
        current = await this.#current(key);
        continue;
      }
      const outcome = await this.#write(key, current, members, marker);
      if (outcome === "ok") return true;
      // Lost the claim: to a save (refused above), a touch of the version read (try again on
      // it), or an end of the record; or the directory went away meanwhile.
      current = await this.#current(key);
    }
  }

  /**
   * Ends a record: claims its next slot with a closing mark and removes its directory (and a
   * record of the earlier layout); no error if absent. A writer stalled before it finds its
   * claim taken or the directory gone. Index markers go with the next `keysOfUser` or `cleanup()`.
   */
  async destroy(key: string): Promise<void> {
    const dir = this.#recordDir(key);
    await ignore(unlink(join(this.#dir, `${key}.json`)), "ENOENT");
    const check = this.#deadline(`destroying "${dir}"`);
    for (;; check()) {
      const current = await this.#current(key);
      if (!current.exists) return;
      if (current.closed) return await this.#remove(dir);
      if (await this.#close(dir, current.n) === "ok") return;
    }
  }

  /**
   * Extends a record's expiry, keeping its data and version, if it is live, at `version`, not
   * ended and expiring before `expiresAt`: claims the next slot with the same record and the
   * later expiry, so the check and the write are one atomic step.
   *
   * @returns `true` when extended; `false` when nothing was written.
   * @throws {TypeError} When the key, `expiresAt` or `version` is malformed.
   */
  async touch(key: string, expiresAt: number, version: number): Promise<boolean> {
    this.#recordDir(key);
    assertTouchArguments(expiresAt, version);
    const check = this.#deadline(`touching "${key}"`);
    for (;; check()) {
      const current = await this.#current(key);
      const live = this.#live(current.record);
      if (current.closed || !touchExtends(live, expiresAt, version)) return false;
      if (await this.#write(key, current, serialize({ ...live!, expiresAt })) === "ok") return true;
    }
  }

  // ---- Leases ----

  /**
   * Takes the lease named `key` for `owner`, for `ttlMs` milliseconds from now by the store's
   * clock; `owner` taking it again extends it. Of concurrent takers, across processes, exactly
   * one wins: each claims the lease's next generation with `link()`.
   *
   * @param key A storage key.
   * @param owner Who takes it: any non-empty string, compared exactly.
   * @param ttlMs How long it lasts unless released, in milliseconds.
   * @returns `true` when taken or extended; `false` while another owner holds a live lease.
   * @throws {TypeError} When the key is malformed or `owner` is not a non-empty string.
   * @throws {RangeError} When `ttlMs` is not a positive number.
   * @throws {Error} When the file system fails.
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
    const dir = this.#leaseDir(key);
    if (typeof owner !== "string" || owner === "") {
      throw new TypeError("Invalid lease owner: expected a non-empty string");
    }
    if (typeof ttlMs !== "number" || !(ttlMs > 0) || !Number.isFinite(ttlMs)) {
      throw new RangeError(`Invalid ttlMs: "${ttlMs}" is not a positive number of milliseconds`);
    }
    await this.#mkdir();
    const check = this.#deadline(`taking the lease "${dir}"`);
    let floor = 0;
    for (;; check()) {
      const newest = await this.#newest(dir);
      const seen = newest?.value ?? null;
      const token = typeof seen?.token === "number" ? seen.token : 0;
      if (seen?.closed === true) {
        floor = Math.max(floor, token + 1);
        await this.#remove(dir);
        continue;
      }
      const held = typeof seen?.owner === "string" && typeof seen.until === "number" &&
        seen.until > this.#now();
      if (held && seen.owner !== owner) return false;
      if (newest === null) await ignore(mkdir(join(this.#dir, LEASES), { mode: 0o700 }), "EEXIST");
      if (newest === null) await ignore(mkdir(dir, { mode: 0o700 }), "EEXIST");
      const n = newest?.n ?? 0;
      // A new holder's token is above every earlier one's; in a new directory, above the clock's
      // microseconds (and the closed directory's last token), so tokens keep rising across it.
      const mine = seen?.owner === owner
        ? token
        : n > 0 && token > 0
        ? token + 1
        : Math.max(Date.now() * 1000, floor);
      const members = `"owner":${JSON.stringify(owner)},"until":${this.#now() + ttlMs},"token":${mine}`;
      const outcome = await this.#claim(dir, n + 1, members);
      if (outcome === "ok") {
        if (n > 0) await this.#husk(dir, n);
        return true;
      }
    }
  }

  /**
   * Releases the lease named `key` if, and only if, `owner` holds it (an expired lease it held
   * included), by claiming its next generation; does nothing otherwise.
   *
   * @param key A storage key.
   * @param owner The owner given to `lock`.
   * @throws {TypeError} When the key is malformed.
   * @throws {Error} When the file system fails.
   */
  async unlock(key: string, owner: string): Promise<void> {
    const dir = this.#leaseDir(key);
    const check = this.#deadline(`releasing the lease "${dir}"`);
    for (;; check()) {
      const newest = await this.#newest(dir);
      if (newest === null || newest.value?.owner !== owner) return;
      const outcome = await this.#claim(dir, newest.n + 1, `"released":true,"token":${newest.value.token}`);
      if (outcome === "ok") return await this.#husk(dir, newest.n);
    }
  }

  /**
   * The live lease named `key`, with its fencing token; `null` when none is held. FileStore's
   * own: the store contract has no place for a token (see the class's docs).
   *
   * @param key A storage key.
   * @returns The lease, or `null`.
   * @throws {TypeError} When the key is malformed.
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
   * await store.lock(key, "a", 1_000);
   * const first = (await store.lease(key))!.token;
   * clock += 1_000; // a's lease expires: b takes it over, with a larger token
   * await store.lock(key, "b", 1_000);
   * const second = (await store.lease(key))!;
   * assert.equal(second.owner, "b");
   * assert.ok(second.token > first); // a write fenced with a's token is refused from now on
   * await rm(dir, { recursive: true });
   * ```
   */
  async lease(key: string): Promise<FileLease | null> {
    const value = (await this.#newest(this.#leaseDir(key)))?.value;
    const { owner, until, token } = value ?? {};
    if (typeof owner !== "string" || typeof until !== "number" || typeof token !== "number") return null;
    return until > this.#now() ? { owner, until, token } : null;
  }

  // ---- Sessions per user ----

  /**
   * The storage keys in a user's index whose record is live. Markers whose record is gone are
   * removed on the way.
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
    const dir = await this.#userDir(user);
    const names = (await this.#list(dir)) ?? [];
    const keys = [...new Set(names.map((name) => MARKER.exec(name)?.[1]).filter((key) => key !== undefined))];
    const kept = await Promise.all(keys.map((key) => this.#prune(dir, key, names)));
    return keys.filter((_, i) => kept[i]);
  }

  /**
   * Keeps a key's index marker while its record lives; otherwise removes it, safely against a
   * save under way. The record's directory is ended first (a save that had marked and not yet
   * claimed then finds its claim taken, and starts again: it makes a new directory, then marks
   * again). The marker is renamed aside (it still counts), the record looked at once more, and
   * the marker removed only if there is still no directory, or a closed one; else put back.
   *
   * @returns `true` when the record is live (the key is kept).
   */
  async #prune(users: string, key: string, names: string[]): Promise<boolean> {
    const dir = this.#recordDir(key);
    const current = await this.#current(key);
    if (this.#live(current.record) !== null) return true;
    if (current.legacy) await ignore(unlink(join(this.#dir, `${key}.json`)), "ENOENT");
    if (current.exists && !current.closed && await this.#close(dir, current.n) !== "ok") return false;
    const marker = join(users, key);
    const aside: string[] = [];
    for (const name of names.filter((name) => MARKER.exec(name)?.[1] === key)) {
      const path = join(users, name === key ? `${key}.${randomHex(8)}.pruning` : name);
      if (name === key) {
        try {
          await rename(marker, path);
        } catch (error) {
          if (code(error) === "ENOENT") continue;
          throw error;
        }
      }
      aside.push(path);
    }
    const again = await this.#current(key);
    const gone = !again.exists || again.closed;
    for (const path of aside) {
      await ignore(gone ? unlink(path) : rename(path, marker), "ENOENT");
    }
    return !gone && this.#live(again.record) !== null;
  }

  // ---- Maintenance ----

  /**
   * Removes expired, ended and corrupt sessions, expired and released leases, index markers
   * whose record is gone (and emptied user directories), and what killed processes left
   * behind once older than `staleLockMs`: temporary files, directories half removed, empty
   * session directories, and the lock, claim and lease files of the earlier layout.
   *
   * @returns How many sessions were removed.
   */
  async cleanup(): Promise<number> {
    let removed = 0;
    const old = async (path: string) => {
      const info = await stat(path).catch(() => null);
      return info !== null && Date.now() - info.mtimeMs > this.#staleMs;
    };
    for (const name of (await this.#list(this.#dir)) ?? []) {
      const path = join(this.#dir, name);
      if (KEY.test(name)) {
        const current = await this.#current(name);
        if (!current.exists) continue;
        if (current.closed) {
          await this.#remove(path);
        } else if (this.#live(current.record) === null && (current.n > 0 || await old(path))) {
          if (await this.#close(path, current.n) === "ok" && current.n > 0) removed++;
        } else {
          for (const temp of ((await this.#list(path)) ?? []).filter((name) => TEMP_FILE.test(name))) {
            if (await old(join(path, temp))) await ignore(unlink(join(path, temp)), "ENOENT");
          }
        }
      } else if (LEGACY_FILE.test(name)) {
        const key = LEGACY_FILE.exec(name)![1]!;
        const moved = ((await this.#newest(join(this.#dir, key)))?.n ?? 0) > 0;
        const record = moved ? null : parseStoredSession((await readText(path)) ?? "");
        if (moved || this.#live(record) === null) {
          await ignore(unlink(path), "ENOENT");
          if (!moved) removed++;
        }
      } else if ((TRASH_DIR.test(name) || LEGACY_LITTER.test(name)) && await old(path)) {
        await rm(path, { recursive: true, force: true });
      }
    }
    const leases = join(this.#dir, LEASES);
    for (const name of (await this.#list(leases)) ?? []) {
      const path = join(leases, name);
      if (KEY.test(name)) {
        const newest = await this.#newest(path);
        const seen = newest?.value;
        if (newest === null) continue;
        if (seen?.closed === true) {
          await this.#remove(path);
        } else if (
          newest.n > 0
            ? seen?.released === true || !(typeof seen?.until === "number" && seen.until > this.#now())
            : await old(path)
        ) {
          await this.#close(path, newest.n, typeof seen?.token === "number" ? `,"token":${seen.token}` : "");
        }
      } else if (TRASH_DIR.test(name) && await old(path)) {
        await rm(path, { recursive: true, force: true });
      }
    }
    const users = join(this.#dir, USERS);
    for (const name of (await this.#list(users)) ?? []) {
      if (!KEY.test(name)) continue;
      const dir = join(users, name);
      const markers = (await this.#list(dir)) ?? [];
      const keys = new Set(
        markers.map((marker) => MARKER.exec(marker)?.[1]).filter((key) => key !== undefined),
      );
      for (const key of keys) await this.#prune(dir, key, markers);
      // Only an empty directory goes; a save marking a key in it meanwhile creates it again.
      await rmdir(dir).catch(() => {});
    }
    return removed;
  }

  /** How many live sessions the directory holds (reads each session's newest version). */
  async count(): Promise<number> {
    let live = 0;
    const names = (await this.#list(this.#dir)) ?? [];
    const dirs = new Set(names.filter((name) => KEY.test(name)));
    for (const name of names) {
      const key = KEY.test(name) ? name : LEGACY_FILE.exec(name)?.[1];
      if (key === undefined || (key !== name && dirs.has(key))) continue;
      if (this.#live((await this.#current(key)).record) !== null) live++;
    }
    return live;
  }

  /** A directory's names; `null` when it does not exist. */
  async #list(dir: string): Promise<string[] | null> {
    try {
      return await readdir(dir);
    } catch (error) {
      if (code(error) === "ENOENT" || code(error) === "ENOTDIR") return null;
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
    await mkdir(join(marker, ".."), { recursive: true, mode: 0o700 });
  }
}
