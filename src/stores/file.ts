/**
 * `FileStore`: sessions as files in a directory, each version of a record a file of its own,
 * claimed by `link()`. Works the same on Node, Deno and Bun (`node:fs/promises`). Not for
 * Workers. Docs: docs/stores/file.md.
 *
 * @module
 */
import { mkdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import {
  assertLockArguments,
  assertStorageKey,
  assertTouchArguments,
  type SaveIndex,
  type SaveResult,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
  touchExtends,
} from "../store.ts";
import { userTag } from "../user_tag.ts";
import { cleanup, KEY, LEGACY_FILE } from "./file/cleanup.ts";
import { ignore, list } from "./file/fs.ts";
import { type FileLock, type LockPaths, read, release, take } from "./file/locks.ts";
import { type FileStoreOptions, resolveOptions } from "./file/options.ts";
import { MARKER, Records, serialize } from "./file/records.ts";
import { Slots } from "./file/slots.ts";

export type { FileLease, FileLock } from "./file/locks.ts";
export type { FileStoreOptions } from "./file/options.ts";

/** The directory of the per-user index, inside `dir`: `users/<SHA-256 of the user id>/<key>`. */
const USERS = "users";
/**
 * The directory of the locks, inside `dir`: `locks/<key>/<generation>/<n>.json`, each generation
 * named once; and `locks/tokens/`, the last token of removed generations.
 */
const LOCKS = "locks";
/** The locks of the earlier layout, `leases/<key>/<n>.json`: honoured while held, then removed. */
const LEASES = "leases";

/**
 * Keeps sessions in a directory, every version of a record a file of its own
 * (`<dir>/<storage key>/<n>.json`). A save is a compare-and-set that no pause, crash or timeout
 * can break: it claims the next version's file name with `link()`, which fails when the name
 * exists, so of the writers that read one version exactly one writes the next. No writer waits
 * for another, and no correctness rests on time. Locks and the per-user index are files too.
 * Nothing expires by itself: call `cleanup()` from a timer. Needs a local disk (not NFS) shared
 * by one machine's processes. Docs (layout, locks, upgrades, limits): docs/stores/file.md.
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
   * Locks: yes (slots too). Sessions per user: yes (marker files).
   */
  readonly capabilities: StoreCapabilities = { compareAndSet: true, ttl: false, locks: true, users: true };
  #dir: string;
  #staleMs: number;
  #timeoutMs: number;
  #now: () => number;
  #ready: Promise<unknown> | undefined;
  #slots: Slots;
  #records: Records;

  /**
   * Creates a store over a directory (created on first write).
   *
   * @param options See {@linkcode FileStoreOptions}.
   * @throws {TypeError} When `dir` is missing, `fsync` is not a boolean, or `logger` has no
   *   `warn` method.
   * @throws {RangeError} When `staleLockMs` or `lockTimeoutMs` is not a positive number.
   */
  constructor(options: FileStoreOptions) {
    const { dir, fsync, staleMs, timeoutMs, onCorrupt, now } = resolveOptions(options);
    this.#dir = dir;
    this.#staleMs = staleMs;
    this.#timeoutMs = timeoutMs;
    this.#now = now;
    this.#slots = new Slots(fsync, onCorrupt);
    this.#records = new Records(this.#dir, this.#slots, onCorrupt, () => this.#now());
  }

  /** Reads a record; `null` when missing, expired, ended or corrupt. */
  async load(key: string): Promise<StoredSession | null> {
    return this.#records.live((await this.#records.current(key)).record);
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
    const records = this.#records;
    const dir = records.dir(key);
    const members = serialize(record);
    const marker = index === undefined ? undefined : join(await this.#userDir(index?.user), key);
    await this.#mkdir();
    const check = this.#deadline(`saving "${dir}"`);
    for (let current = await records.current(key);; check()) {
      const live = records.live(current.record);
      if (expectedVersion === null ? live !== null : live?.version !== expectedVersion) {
        return { current: live };
      }
      if (current.closed) {
        await this.#slots.remove(dir); // ended: created anew once its directory is gone
        current = await records.current(key);
        continue;
      }
      const outcome = await records.write(key, current, members, marker);
      if (outcome === "ok") return true;
      // Lost the claim: to a save (refused above), a touch of the version read (try again on
      // it), or an end of the record; or the directory went away meanwhile.
      current = await records.current(key);
    }
  }

  /**
   * Ends a record: claims its next slot with a closing mark and removes its directory (and a
   * record of the earlier layout); no error if absent. A writer stalled before it finds its
   * claim taken or the directory gone. Index markers go with the next `keysOfUser` or `cleanup()`.
   */
  async destroy(key: string): Promise<void> {
    const dir = this.#records.dir(key);
    await ignore(unlink(this.#records.legacyFile(key)), "ENOENT");
    const check = this.#deadline(`destroying "${dir}"`);
    for (;; check()) {
      const current = await this.#records.current(key);
      if (!current.exists) return;
      if (current.closed) return await this.#slots.remove(dir);
      if (await this.#slots.close(dir, current.n) === "ok") return;
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
    this.#records.dir(key);
    assertTouchArguments(expiresAt, version);
    const check = this.#deadline(`touching "${key}"`);
    for (;; check()) {
      const current = await this.#records.current(key);
      const live = this.#records.live(current.record);
      if (current.closed || !touchExtends(live, expiresAt, version)) return false;
      if (await this.#records.write(key, current, serialize({ ...live!, expiresAt })) === "ok") return true;
    }
  }

  /**
   * Locks `key` for `owner`, for `ttlMs` milliseconds from now by the store's
   * clock, after which it expires; `owner` taking it again extends it. Of concurrent takers,
   * across processes, exactly one wins: each claims the lock's next generation with `link()`.
   *
   * @param key A storage key.
   * @param owner Who takes it: any non-empty string, compared exactly.
   * @param ttlMs How long it lasts unless released, in milliseconds.
   * @returns `true` when taken or extended; `false` while another owner holds a live lock.
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
    const paths = this.#lockPaths(key);
    assertLockArguments(owner, ttlMs);
    await this.#mkdir();
    const check = this.#deadline(`taking the lock "${paths.dir}"`);
    return await take(paths, { slots: this.#slots, owner, ttlMs, now: () => this.#now(), check });
  }

  /**
   * Releases the lock named `key` if, and only if, `owner` holds it (an expired lock it held
   * included), by claiming its next generation; does nothing otherwise.
   *
   * @param key A storage key.
   * @param owner The owner given to `lock`.
   * @throws {TypeError} When the key is malformed or `owner` is not a non-empty string.
   * @throws {Error} When the file system fails.
   */
  async unlock(key: string, owner: string): Promise<void> {
    const paths = this.#lockPaths(key);
    assertLockArguments(owner);
    await release(paths, this.#slots, owner, this.#deadline(`releasing the lock "${paths.dir}"`));
  }

  /**
   * The live lock named `key`, with its fencing token; `null` when none is held. FileStore's
   * own: the store contract has no place for a token (docs/stores/file.md#locks).
   *
   * @param key A storage key.
   * @returns The lock, or `null`.
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
   * const first = (await store.heldLock(key))!.token;
   * clock += 1_000; // a's lock expires: b takes it over, with a larger token
   * await store.lock(key, "b", 1_000);
   * const second = (await store.heldLock(key))!;
   * assert.equal(second.owner, "b");
   * assert.ok(second.token > first); // a write fenced with a's token is refused from now on
   * await rm(dir, { recursive: true });
   * ```
   */
  async heldLock(key: string): Promise<FileLock | null> {
    return await read(this.#lockPaths(key), this.#slots, this.#now());
  }

  /**
   * @deprecated Use {@linkcode FileStore.heldLock}.
   * @param key A storage key.
   * @returns The lock, or `null`.
   */
  async lease(key: string): Promise<FileLock | null> {
    return await this.heldLock(key);
  }

  /**
   * The storage keys in a user's index whose record is live. Markers whose record is gone are
   * removed on the way (their record ended first, so no save can land on it unseen).
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
    const names = (await list(dir)) ?? [];
    const keys = [...new Set(names.map((name) => MARKER.exec(name)?.[1]).filter((key) => key !== undefined))];
    const kept = await Promise.all(keys.map((key) => this.#records.prune(dir, key, names)));
    return keys.filter((_, i) => kept[i]);
  }

  /**
   * Removes expired, ended and corrupt sessions, expired and released locks, index markers
   * whose record is gone (and emptied user directories), and what killed processes left
   * behind once older than `staleLockMs`: temporary files, directories half removed, empty
   * session directories, and the lock, claim and `.lease` files of the earlier layout.
   *
   * @returns How many sessions were removed.
   * @throws {Error} When the file system fails.
   */
  async cleanup(): Promise<number> {
    return await cleanup({
      dir: this.#dir,
      locks: join(this.#dir, LOCKS),
      leases: join(this.#dir, LEASES),
      users: join(this.#dir, USERS),
      slots: this.#slots,
      records: this.#records,
      now: () => this.#now(),
      staleMs: this.#staleMs,
    });
  }

  /** How many live sessions the directory holds (reads each session's newest version). */
  async count(): Promise<number> {
    let live = 0;
    const names = (await list(this.#dir)) ?? [];
    const dirs = new Set(names.filter((name) => KEY.test(name)));
    for (const name of names) {
      const key = KEY.test(name) ? name : LEGACY_FILE.exec(name)?.[1];
      if (key === undefined || (key !== name && dirs.has(key))) continue;
      if (this.#records.live((await this.#records.current(key)).record) !== null) live++;
    }
    return live;
  }

  #lockPaths(key: string): LockPaths {
    assertStorageKey(key);
    const locks = join(this.#dir, LOCKS);
    return { dir: join(locks, key), tokens: join(locks, "tokens"), legacy: join(this.#dir, LEASES, key) };
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
}
