/**
 * Slot directories: the compare-and-set by `link()` that the file store's records and locks
 * share. A directory holds one file per version, `<n>.json` (a "slot"); claiming slot `n + 1`
 * links a fully written temporary file under that name, which fails with `EEXIST` when any
 * other writer claimed it first. Docs: docs/stores/file.md.
 *
 * @module
 */
import { link, open, rename, rm, unlink } from "node:fs/promises";
import { join } from "node:path";
import { code, list, randomHex, readText, syncDir, writeNew } from "./fs.ts";

/** A slot file's name. */
export const SLOT_FILE = /^([1-9][0-9]{0,15})\.json$/;
/** A hard link to the newest slot of a directory (as far as its last writer knew): a hint. */
const HEAD = "head";
/** An empty file that superseded slots are made links of, so that they keep no data or inode. */
const HUSK = "husk";
/** The codes of a full disk (or quota): what needs no space still works. */
const FULL = ["ENOSPC", "EDQUOT"];
/** How many slots a reader steps up from a stale head before it lists the directory instead. */
const PROBES = 8;

/** A slot's JSON object. */
export type Value = Record<string, unknown>;

/** The newest slot of a slot directory, as read. */
export interface Newest {
  /** Its number; 0 when the directory holds none yet. */
  n: number;
  /** Its content; `null` when it holds none or is not valid (see `corrupt`). */
  value: Value | null;
  /** The slot's file holds text that is not a valid slot. */
  corrupt: boolean;
}

/** What a claim came to: linked, lost to another claim of that slot, or the directory is gone. */
export type Claim = "ok" | "taken" | "gone";

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

/** The highest slot number among `names`; 0 when none. */
function highest(names: string[]): number {
  return Math.max(0, ...names.map((name) => Number(SLOT_FILE.exec(name)?.[1] ?? 0)));
}

/** Reads, claims, empties and removes slot directories. */
export class Slots {
  #fsync: boolean;
  #onCorrupt: (path: string) => void;

  /**
   * @param fsync Flush each claimed slot and its directory to the disk.
   * @param onCorrupt Told of a directory left beside its successor (see `remove`).
   */
  constructor(fsync: boolean, onCorrupt: (path: string) => void) {
    this.#fsync = fsync;
    this.#onCorrupt = onCorrupt;
  }

  /** The newest slot of a slot directory; `null` when the directory does not exist. */
  async newest(dir: string): Promise<Newest | null> {
    for (let attempt = 0;; attempt++) {
      let text = await readText(join(dir, HEAD));
      let n = text === undefined ? 0 : parseSlot(text)?.n ?? 0;
      if (n === 0) {
        const names = await list(dir);
        if (names === null) return null;
        n = highest(names);
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
          n = Math.max(n, highest((await list(dir)) ?? []));
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
        // A link of the slot below (or of an emptied one): the closing mark of a full disk.
        if (parsed !== null && parsed.n < n) {
          return { n, value: { ...parsed.value, closed: true }, corrupt: false };
        }
        return { n, value: text === "" ? { closed: true } : null, corrupt: text !== "" };
      }
      return { n, value: parsed.value, corrupt: false };
    }
  }

  /**
   * Claims slot `n` of `dir` for `members` (the JSON members after `"slot":n`): writes a
   * temporary file and links it as `<n>.json`, which fails if any writer claimed `n` before.
   */
  async claim(dir: string, n: number, members: string): Promise<Claim> {
    const temp = join(dir, `${randomHex(8)}.tmp`);
    try {
      await writeNew(temp, `{"slot":${n},${members}}`, this.#fsync);
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
  async husk(dir: string, n: number): Promise<void> {
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

  /**
   * Ends a slot directory whose newest slot is `n`: claims `n + 1` with a closing mark, then
   * removes it (unless `keep`). On a full disk, where the mark cannot be written, slot `n` is
   * linked as `n + 1` instead (a link needs no space, and is the same compare-and-set): a slot
   * holding an earlier slot's content reads as closed.
   */
  async close(dir: string, n: number, members = "", keep = false): Promise<Claim> {
    let outcome: Claim;
    try {
      outcome = await this.claim(dir, n + 1, `"closed":true${members}`);
    } catch (error) {
      if (n === 0 || !FULL.includes(code(error) ?? "")) throw error;
      outcome = await this.#linkClosed(dir, n);
    }
    if (outcome === "ok" && !keep) await this.remove(dir);
    return outcome;
  }

  /** Claims slot `n + 1` as a link of slot `n`: a closing mark that takes no space. */
  async #linkClosed(dir: string, n: number): Promise<Claim> {
    try {
      await link(join(dir, `${n}.json`), join(dir, `${n + 1}.json`));
    } catch (error) {
      if (code(error) === "EEXIST") return "taken";
      if (code(error) === "ENOENT") return "gone";
      throw error;
    }
    if (this.#fsync) await syncDir(dir).catch(() => {});
    return "ok";
  }

  /**
   * Removes a closed slot directory: renames it away (no claim can land in it after that),
   * checks that what it moved is the closed directory, and deletes it. A directory that came
   * back to life meanwhile (a stalled remover moving its successor) is put back.
   */
  async remove(dir: string): Promise<void> {
    const trash = `${dir}.${randomHex(8)}.trash`;
    try {
      await rename(dir, trash);
    } catch (error) {
      if (code(error) === "ENOENT") return;
      throw error;
    }
    const moved = await this.newest(trash);
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
}
