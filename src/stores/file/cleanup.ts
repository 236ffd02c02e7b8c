/**
 * The file store's `cleanup()`: expired, ended and corrupt sessions, expired and released
 * locks, index markers whose record is gone, and what killed processes left behind.
 * Docs: docs/stores/file.md#cleanup.
 *
 * @module
 */
import { rm, rmdir, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { parseStoredSession } from "../../store.ts";
import { ignore, list, readText } from "./fs.ts";
import { cleanLock, keepToken, pruneTokens } from "./locks.ts";
import { MARKER, type Records } from "./records.ts";
import type { Slots } from "./slots.ts";

/** A storage key: the name of a session's or a lock's directory, or of a user's index. */
export const KEY = /^[A-Za-z0-9_-]{43}$/;
/** A record of the earlier layout, one file per session: read, and migrated by the next save. */
export const LEGACY_FILE = /^([A-Za-z0-9_-]{43})\.json$/;
/** What the earlier layout's killed processes left: locks, claims, temporary and `.lease` files. */
const LEGACY_LITTER =
  /^[A-Za-z0-9_-]{43}\.(?:json\.lock|lease|[0-9a-f]{16}\.tmp|(?:json\.lock|lease)\..+\.break)$/;
const TEMP_FILE = /^[0-9a-f]{16}\.tmp$/;
const TRASH_DIR = /^[A-Za-z0-9_-]{43}\.[0-9a-f]{16}\.trash$/;

/** What a cleanup works on. */
export interface Cleanup {
  /** The store's directory. */
  dir: string;
  /** The directory of the locks, of the earlier layout's locks, and of the per-user index. */
  locks: string;
  leases: string;
  users: string;
  slots: Slots;
  records: Records;
  now: () => number;
  /** How old (ms, by the file's mtime) what a killed process left must be to be removed. */
  staleMs: number;
}

/**
 * Runs every step on every entry: an entry that fails (unreadable, say) is skipped, and the
 * first error is thrown once the rest is done. Resolves to how many sessions were removed.
 */
export async function cleanup(at: Cleanup): Promise<number> {
  const old = async (path: string): Promise<boolean> => {
    const info = await stat(path).catch(() => null);
    return info !== null && Date.now() - info.mtimeMs > at.staleMs;
  };
  const errors: unknown[] = [];
  const each = async (names: string[] | null, step: (name: string) => Promise<unknown>) => {
    for (const name of names ?? []) await step(name).catch((error) => void errors.push(error));
  };
  const listed = async (dir: string): Promise<string[] | null> => {
    try {
      return await list(dir);
    } catch (error) {
      errors.push(error);
      return null;
    }
  };
  let removed = 0;
  await each(await listed(at.dir), async (name) => {
    const path = join(at.dir, name);
    if (KEY.test(name)) {
      if (await cleanSession(at, name, path, old)) removed++;
    } else if (LEGACY_FILE.test(name)) {
      if (await cleanLegacy(at, name, path)) removed++;
    } else if ((TRASH_DIR.test(name) || LEGACY_LITTER.test(name)) && await old(path)) {
      await rm(path, { recursive: true, force: true });
    }
  });
  const tokens = join(at.locks, "tokens");
  await each(await listed(at.locks), async (name) => {
    const path = join(at.locks, name);
    if (KEY.test(name)) {
      await cleanLock({ dir: path, tokens, legacy: join(at.leases, name) }, at.slots, at.now(), old);
    } else if (TRASH_DIR.test(name) && await old(path)) {
      await rm(path, { recursive: true, force: true });
    }
  });
  await pruneTokens(tokens).catch((error) => void errors.push(error));
  await each(await listed(at.leases), (name) => cleanLegacyLock(at, name, tokens, old));
  await each(await listed(at.users), (name) => cleanUser(at, name));
  if (errors.length > 0) throw errors[0];
  return removed;
}

type Old = (path: string) => Promise<boolean>;

/** Ends an expired or corrupt session, finishes removing an ended one, or drops old temporary files. */
async function cleanSession(at: Cleanup, key: string, path: string, old: Old): Promise<boolean> {
  const current = await at.records.current(key);
  if (!current.exists) return false;
  if (current.closed) {
    await at.slots.remove(path);
  } else if (at.records.live(current.record) === null && (current.n > 0 || await old(path))) {
    return await at.slots.close(path, current.n) === "ok" && current.n > 0;
  } else {
    for (const temp of ((await list(path)) ?? []).filter((name) => TEMP_FILE.test(name))) {
      if (await old(join(path, temp))) await ignore(unlink(join(path, temp)), "ENOENT");
    }
  }
  return false;
}

/** Removes an earlier layout's file that has moved to its directory, or whose record is not live. */
async function cleanLegacy(at: Cleanup, name: string, path: string): Promise<boolean> {
  const key = LEGACY_FILE.exec(name)![1]!;
  const moved = ((await at.slots.newest(join(at.dir, key)))?.n ?? 0) > 0;
  const record = moved ? null : parseStoredSession((await readText(path)) ?? "");
  if (!moved && at.records.live(record) !== null) return false;
  await ignore(unlink(path), "ENOENT");
  return !moved;
}

/** Ends an expired or released lock of the earlier layout (`leases/`), keeping its last token. */
async function cleanLegacyLock(at: Cleanup, name: string, tokens: string, old: Old): Promise<void> {
  const path = join(at.leases, name);
  if (KEY.test(name)) {
    const newest = await at.slots.newest(path);
    const seen = newest?.value;
    if (newest === null) return;
    const token = typeof seen?.token === "number" ? seen.token : 0;
    if (seen?.closed === true) {
      await keepToken(tokens, token);
      await at.slots.remove(path);
    } else if (
      newest.n > 0
        ? seen?.released === true || !(typeof seen?.until === "number" && seen.until > at.now())
        : await old(path)
    ) {
      await keepToken(tokens, token);
      await at.slots.close(path, newest.n, token > 0 ? `,"token":${token}` : "");
    }
  } else if (TRASH_DIR.test(name) && await old(path)) {
    await rm(path, { recursive: true, force: true });
  }
}

/** Prunes a user's index markers, and removes the index directory once empty. */
async function cleanUser(at: Cleanup, name: string): Promise<void> {
  if (!KEY.test(name)) return;
  const dir = join(at.users, name);
  const markers = (await list(dir)) ?? [];
  const keys = new Set(
    markers.map((marker) => MARKER.exec(marker)?.[1]).filter((key) => key !== undefined),
  );
  for (const key of keys) await at.records.prune(dir, key, markers);
  // Only an empty directory goes; a save marking a key in it meanwhile creates it again.
  await rmdir(dir).catch(() => {});
}
