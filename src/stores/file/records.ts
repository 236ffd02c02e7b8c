/**
 * The file store's session records: each session a slot directory `<dir>/<storage key>/`, read
 * and written through {@linkcode Slots}, with the earlier layout's single `<key>.json` read until
 * its next save; and the per-user index markers. Docs: docs/stores/file.md.
 *
 * @module
 */
import { mkdir, open, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import {
  assertStorageKey,
  parseStoredSession,
  type StoredSession,
  stringifyData,
  toStoredSession,
} from "../../store.ts";
import { code, ignore, list, randomHex, readText } from "./fs.ts";
import type { Claim, Slots, Value } from "./slots.ts";

/** An index marker, or one being pruned (it still counts until the prune decides). */
export const MARKER = /^([A-Za-z0-9_-]{43})(?:\.[0-9a-f]{16}\.pruning)?$/;

/** A session's state as one read found it. */
export interface Current {
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

/** A record as the JSON members of its slot; `SessionDataError` when its data is not a JSON object. */
export function serialize(record: StoredSession): string {
  const { data, version, createdAt, expiresAt } = record;
  const text = stringifyData(data);
  return `"data":${text},"version":${JSON.stringify(version)},"createdAt":${
    JSON.stringify(createdAt)
  },"expiresAt":${JSON.stringify(expiresAt)}`;
}

/** The record a slot holds; `null` for a slot that holds none, or one that is not well formed. */
function recordOf(value: Value): StoredSession | null {
  const { data, version, createdAt, expiresAt } = value;
  return toStoredSession({ data, version, createdAt, expiresAt });
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

/** Reads and writes the session records under `dir`. */
export class Records {
  #dir: string;
  #slots: Slots;
  #onCorrupt: (path: string) => void;
  #now: () => number;

  constructor(dir: string, slots: Slots, onCorrupt: (path: string) => void, now: () => number) {
    this.#dir = dir;
    this.#slots = slots;
    this.#onCorrupt = onCorrupt;
    this.#now = now;
  }

  /** A session's slot directory. @throws {TypeError} When `key` is not a storage key. */
  dir(key: string): string {
    assertStorageKey(key);
    return join(this.#dir, key);
  }

  /** The earlier layout's file of a session. */
  legacyFile(key: string): string {
    return join(this.#dir, `${key}.json`);
  }

  /** `record` when it is live by the store's clock, else `null`. */
  live(record: StoredSession | null): StoredSession | null {
    return record !== null && record.expiresAt > this.#now() ? record : null;
  }

  /** A session's record as it stands, from its directory or else from the earlier layout's file. */
  async current(key: string): Promise<Current> {
    const dir = this.dir(key);
    for (let attempt = 0;; attempt++) {
      const newest = await this.#slots.newest(dir);
      // A directory with no version yet may be a record of the earlier layout being moved.
      if (newest !== null && newest.n > 0) {
        const { n, value, corrupt } = newest;
        const closed = value?.closed === true;
        let record = value === null || closed ? null : recordOf(value);
        if (corrupt || (value !== null && !closed && record === null)) {
          this.#onCorrupt(join(dir, `${n}.json`));
          record = null;
        }
        return { n, record, exists: true, closed, legacy: false };
      }
      const path = this.legacyFile(key);
      const text = await readText(path);
      const exists = newest !== null;
      if (text === undefined) {
        // Moved to its directory meanwhile? Then read that.
        if (attempt < 3 && (exists ? (await this.#slots.newest(dir))?.n : await list(dir))) continue;
        return { n: 0, record: null, exists, closed: false, legacy: false };
      }
      const record = parseStoredSession(text);
      if (record === null) this.#onCorrupt(path);
      return { n: 0, record, exists, closed: false, legacy: record !== null };
    }
  }

  /**
   * Claims the next slot of a session for `members`. Makes the directory first when there is
   * none; a record of the earlier layout is removed once its successor is linked.
   */
  async write(key: string, current: Current, members: string, marker?: string): Promise<Claim> {
    const dir = this.dir(key);
    if (!current.exists) await ignore(mkdir(dir, { mode: 0o700 }), "EEXIST");
    // Marked after the directory exists (see prune), before the claim: never missed.
    if (marker !== undefined) await mark(marker);
    const outcome = await this.#slots.claim(dir, current.n + 1, members);
    if (outcome === "ok") {
      if (current.legacy) await ignore(unlink(this.legacyFile(key)), "ENOENT");
      if (current.n > 0) await this.#slots.husk(dir, current.n);
    }
    return outcome;
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
  async prune(users: string, key: string, names: string[]): Promise<boolean> {
    const dir = this.dir(key);
    const current = await this.current(key);
    if (this.live(current.record) !== null) return true;
    if (current.legacy) await ignore(unlink(this.legacyFile(key)), "ENOENT");
    if (current.exists && !current.closed && await this.#slots.close(dir, current.n) !== "ok") return false;
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
    const again = await this.current(key);
    const gone = !again.exists || again.closed;
    for (const path of aside) {
      await ignore(gone ? unlink(path) : rename(path, marker), "ENOENT");
    }
    return !gone && this.live(again.record) !== null;
  }
}
