/**
 * Locks in the file store (`session.lock()`), each held until its `ttlMs` runs out. A lock is a
 * series of generations, slot directories with names never used twice,
 * `<dir>/locks/<storage key>/<16 hex>/`, where taking, extending, releasing or taking over an
 * expired lock each claims the next slot, so of concurrent takers exactly one wins however long
 * any of them stalls. A process that wakes from a stall can only ever reach the generation it
 * read (or find it gone): no generation is moved, removed or claimed by a name another one may
 * have taken since. Each holder gets a fencing token above every earlier holder's; the last
 * token of a removed generation is kept in `<dir>/locks/tokens/`. Docs: docs/stores/file.md#locks.
 *
 * @module
 */
import { mkdir, open, rename, rm, rmdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import { code, ignore, list, randomHex } from "./fs.ts";
import type { Newest, Slots, Value } from "./slots.ts";

/**
 * A lock as {@linkcode FileStore.heldLock} reads it: who holds it, until when, and its fencing
 * token. Docs: docs/stores/file.md#locks.
 *
 * @example
 * ```ts
 * import { FileStore, type FileLock } from "websession/file";
 * import { mkdtemp, rm } from "node:fs/promises";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import assert from "node:assert/strict";
 *
 * const dir = await mkdtemp(join(tmpdir(), "websession-lock-"));
 * const store = new FileStore({ dir });
 * const key = "k".repeat(43);
 * assert.equal(await store.lock(key, "owner-1", 30_000), true);
 * const lock: FileLock | null = await store.heldLock(key);
 * assert.equal(lock?.owner, "owner-1");
 * assert.ok(lock!.token >= 1);
 * await store.unlock(key, "owner-1");
 * await rm(dir, { recursive: true });
 * ```
 */
export interface FileLock {
  /** Who holds it, as given to `lock()`. */
  owner: string;
  /** When it expires, in milliseconds since the epoch, by the store's clock. */
  until: number;
  /**
   * The fencing token of this holder: larger than the token of every earlier holder of the
   * lock (an extension keeps it). A write guarded by the lock passes it along; whatever
   * receives the write refuses a token lower than the highest it has seen.
   */
  token: number;
}

/**
 * The earlier name of {@linkcode FileLock}, kept for one release.
 *
 * @deprecated Use {@linkcode FileLock}.
 * @example
 * ```ts
 * import type { FileLease, FileLock } from "websession/file";
 * import assert from "node:assert/strict";
 *
 * const lock: FileLock = { owner: "owner-1", until: Date.now() + 30_000, token: 1 };
 * const same: FileLease = lock; // the same type
 * assert.equal(same.token, 1);
 * ```
 */
export type FileLease = FileLock;

/** A generation directory's name. */
export const GENERATION = /^[0-9a-f]{16}$/;
/** A name in the token directory: the last token of a removed generation. */
const TOKEN_FILE = /^[1-9][0-9]{0,15}$/;

/** Where a lock lives. */
export interface LockPaths {
  /** `<dir>/locks/<key>`: the lock's generations. */
  dir: string;
  /** `<dir>/locks/tokens`: the last tokens of removed generations (the largest is kept). */
  tokens: string;
  /** `<dir>/leases/<key>`: the lock of the earlier layout, honoured while it is held. */
  legacy: string;
}

/** What taking a lock needs besides its paths. */
export interface Take {
  slots: Slots;
  owner: string;
  ttlMs: number;
  now: () => number;
  /** Throws once the taker has kept losing its claims for too long. */
  check: () => void;
}

/** A generation of a lock and its newest slot as read. */
interface Generation {
  path: string;
  newest: Newest;
}

/** A slot's token; 0 when it has none. */
function tokenOf(value: Value | null | undefined): number {
  return typeof value?.token === "number" ? value.token : 0;
}

/** The slot names a live lock. */
function held(value: Value | null | undefined, now: number): value is Value & { owner: string } {
  return typeof value?.owner === "string" && typeof value.until === "number" && value.until > now &&
    value.released !== true && value.closed !== true;
}

/** Neither closed nor empty: the lock of its generation (one that is confirmed, slot 2 on, or pending). */
function isOpen(generation: Generation): boolean {
  return generation.newest.n > 0 && generation.newest.value?.closed !== true;
}

/** The generations of a lock, each with its newest slot. */
async function generations(slots: Slots, dir: string): Promise<Generation[]> {
  const found: Generation[] = [];
  for (const name of ((await list(dir)) ?? []).filter((name) => GENERATION.test(name))) {
    const newest = await slots.newest(join(dir, name));
    if (newest !== null) found.push({ path: join(dir, name), newest });
  }
  return found;
}

/** The largest token kept of removed generations; 0 when none. */
export async function tokenFloor(tokens: string): Promise<number> {
  return Math.max(0, ...((await list(tokens)) ?? []).filter((name) => TOKEN_FILE.test(name)).map(Number));
}

/** Keeps `token` as a removed generation's last token (an empty file named by it). */
export async function keepToken(tokens: string, token: number): Promise<void> {
  if (!(token > 0) || token <= await tokenFloor(tokens)) return;
  await ignore(mkdir(tokens, { recursive: true, mode: 0o700 }), "EEXIST");
  await (await open(join(tokens, String(token)), "a", 0o600)).close();
}

/** Removes every kept token below the largest (which stays: nothing removes the largest it sees). */
export async function pruneTokens(tokens: string): Promise<void> {
  const names = ((await list(tokens)) ?? []).filter((name) => TOKEN_FILE.test(name));
  const top = Math.max(0, ...names.map(Number));
  for (const name of names) if (Number(name) < top) await ignore(unlink(join(tokens, name)), "ENOENT");
}

/**
 * The largest token any holder of the lock had, as far as `found` and the kept tokens tell.
 * The kept tokens are read last: a generation removed after it was listed kept its token first.
 */
async function highest(paths: LockPaths, found: Generation[], legacy: Newest | null): Promise<number> {
  const tokens = [...found.map((generation) => tokenOf(generation.newest.value)), tokenOf(legacy?.value)];
  return Math.max(...tokens, await tokenFloor(paths.tokens));
}

/**
 * Starts a new generation for `owner`, when no generation is open: claims its slot 1 (pending),
 * then looks at the other generations. Any other open one (a rival doing the same, who then sees
 * this one) or a token not above every earlier one makes it close its own and lose; else it
 * confirms with slot 2. Of two rivals, the later to claim sees the earlier: never both win.
 */
async function start(paths: LockPaths, taker: Take, legacy: Newest | null): Promise<boolean> {
  const { slots, owner, ttlMs, now } = taker;
  const token = Math.max(
    Date.now() * 1000,
    await highest(paths, await generations(slots, paths.dir), legacy) + 1,
  );
  const members = () => `"owner":${JSON.stringify(owner)},"until":${now() + ttlMs},"token":${token}`;
  await ignore(mkdir(paths.dir, { recursive: true, mode: 0o700 }), "EEXIST");
  const path = join(paths.dir, randomHex(8));
  try {
    await mkdir(path, { mode: 0o700 });
  } catch (error) {
    if (code(error) === "ENOENT") return false; // the emptied lock directory was removed meanwhile
    throw error;
  }
  if (await slots.claim(path, 1, members()) !== "ok") return false;
  const others = (await generations(slots, paths.dir)).filter((generation) => generation.path !== path);
  if (others.some(isOpen) || await highest(paths, others, await slots.newest(paths.legacy)) >= token) {
    await slots.close(path, 1, `,"token":${token}`, true);
    return false;
  }
  if (await slots.claim(path, 2, members()) !== "ok") return false; // closed meanwhile, as expired
  await slots.husk(path, 1);
  return true;
}

/** Takes or extends the lock for `owner`; `false` while another owner holds it. */
export async function take(paths: LockPaths, taker: Take): Promise<boolean> {
  const { slots, owner, ttlMs, now, check } = taker;
  for (let lost = 0;; check()) {
    const legacy = await slots.newest(paths.legacy);
    if (held(legacy?.value, now()) && legacy.value.owner !== owner) return false;
    const live = (await generations(slots, paths.dir)).filter(isOpen);
    const current = live.find((generation) => generation.newest.n >= 2);
    if (current !== undefined) {
      const { n, value } = current.newest;
      const mine = value?.owner === owner;
      if (!mine && held(value, now())) return false;
      const token = mine ? tokenOf(value) : tokenOf(value) + 1;
      const members = `"owner":${JSON.stringify(owner)},"until":${now() + ttlMs},"token":${token}`;
      if (await slots.claim(current.path, n + 1, members) === "ok") {
        await slots.husk(current.path, n);
        return true;
      }
      continue;
    }
    // Pending generations: held until they expire, then closed (their taker stalled or was killed).
    const pending = live.filter((generation) => generation.newest.n === 1);
    if (pending.some((generation) => held(generation.newest.value, now()))) return false;
    for (const { path, newest } of pending) {
      await slots.close(path, 1, `,"token":${tokenOf(newest.value)}`, true);
    }
    if (pending.length === 0) {
      if (await start(paths, taker, legacy)) return true;
      // Rivals that started together all see one another and all step back: wait a random
      // while, longer after each round lost (at most 100 ms), so that one of them goes first.
      await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(100, 5 * 2 ** lost++)));
    }
  }
}

/** Releases the lock if, and only if, `owner` holds it (an expired one included). */
export async function release(
  paths: LockPaths,
  slots: Slots,
  owner: string,
  check: () => void,
): Promise<void> {
  for (const dir of [paths.legacy, ...(await generations(slots, paths.dir)).map((g) => g.path)]) {
    for (;; check()) {
      const newest = await slots.newest(dir);
      if (newest === null || newest.n < (dir === paths.legacy ? 1 : 2)) break;
      if (newest.value?.owner !== owner || newest.value.released === true || newest.value.closed === true) {
        break;
      }
      const outcome = await slots.claim(dir, newest.n + 1, `"released":true,"token":${newest.value.token}`);
      if (outcome === "ok") {
        await slots.husk(dir, newest.n);
        break;
      }
    }
  }
}

/** The live lock; `null` when none is held. */
export async function read(paths: LockPaths, slots: Slots, now: number): Promise<FileLock | null> {
  const found = (await generations(slots, paths.dir)).filter((g) => isOpen(g) && g.newest.n >= 2);
  for (const value of [...found.map((g) => g.newest.value), (await slots.newest(paths.legacy))?.value]) {
    if (held(value, now) && typeof value.token === "number") {
      return { owner: value.owner, until: value.until as number, token: value.token };
    }
  }
  return null;
}

/**
 * Cleans one lock's directory: closes an expired, released or stale pending generation, keeps
 * the last token of each closed one and removes it by its own name (never used again, so a
 * stalled cleanup moves nothing else), removes empty generations older than `old` says (a
 * taker stalled before its first claim finds its generation gone, and starts another), and
 * the lock's directory once empty (`rmdir` removes only an empty one).
 */
export async function cleanLock(
  paths: LockPaths,
  slots: Slots,
  now: number,
  old: (path: string) => Promise<boolean>,
): Promise<void> {
  for (const { path, newest } of await generations(slots, paths.dir)) {
    const value = newest.value;
    if (newest.n === 0) {
      if (!await old(path)) continue;
    } else if (value?.closed !== true) {
      if (held(value, now)) continue;
      if (await slots.close(path, newest.n, `,"token":${tokenOf(value)}`, true) !== "ok") continue;
    }
    await keepToken(paths.tokens, tokenOf(value));
    const trash = `${paths.dir}.${path.slice(-16)}.trash`;
    await ignore(rename(path, trash), "ENOENT");
    await rm(trash, { recursive: true, force: true });
  }
  await rmdir(paths.dir).catch(() => {});
}
