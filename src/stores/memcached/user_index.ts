/**
 * The Memcached store's index of each user's sessions: one item per user (`prefix` + `user:` +
 * the user's tag) mapping storage keys to until when each entry lasts, written by
 * compare-and-set. Docs: docs/stores/memcached.md (sessions per user).
 *
 * @module
 */
import { SessionTooLargeError } from "../../errors.ts";
import { userTag } from "../../user_tag.ts";
import { addItem, casItem, type Commands, type StoreReply, type Versioned } from "./client.ts";
import { exptimeOf, STORAGE_KEY, USER_INFIX } from "./item.ts";

// How long, in milliseconds, an entry keeps trying to land in a user's index while other
// processes' writes win the compare-and-set, before its save fails. Liveness only: an entry that
// lands is written by compare-and-set, never on the strength of a timer.
const INDEX_DEADLINE_MS = 10_000;

/** Full-jitter exponential backoff between lost compare-and-sets of an index: at most 50 ms. */
function pause(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(50, 2 ** attempt)));
}

/** The JSON length of one index entry, `"<key>":<until>`. */
function entryLength(key: string, until: number): number {
  return key.length + 3 + String(until).length;
}

/** One save's entry waiting to land in its user's index. */
interface Pending {
  key: string;
  until: number;
  /** When it gives up (`performance.now()`). */
  deadline: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/** Writes and reads the users' index items, one write in flight per item in this process. */
export class UserIndex {
  #commands: Commands;
  #prefix: string;
  #maxIndexBytes: number;
  #onCorrupt: (key: string, error: Error) => void;
  #now: () => number;
  /** Entries waiting to be written, per user's index item: one write in flight per item. */
  #indexLanes = new Map<string, Pending[]>();

  constructor(
    commands: Commands,
    prefix: string,
    maxIndexBytes: number,
    onCorrupt: (key: string, error: Error) => void,
    now: () => number,
  ) {
    this.#commands = commands;
    this.#prefix = prefix;
    this.#maxIndexBytes = maxIndexBytes;
    this.#onCorrupt = onCorrupt;
    this.#now = now;
  }

  /** The storage keys in `user`'s index whose entries have not expired (one `get`). */
  async keysOf(user: string): Promise<string[]> {
    const name = USER_INFIX + await userTag(user);
    const value = await this.#commands.get(this.#prefix + name);
    if (value === undefined || value === null) return [];
    const entries = this.#parseIndex(name, value);
    if (entries === undefined) return [];
    const now = this.#now();
    const keys: string[] = [];
    for (const [key, until] of entries) if (until > now) keys.push(key);
    return keys;
  }

  /**
   * Enters `key` in the index of the user whose id hashes to `user`, lasting until `until`.
   *
   * The index is one item, written by compare-and-set, so writers of one user's index contend.
   * Two things keep every entry landing however many sign in at once:
   *
   * - In this process, entries for one index go through one lane: while a write of the item is
   *   in flight, the entries that arrive wait, and the next write (`gets`, then `cas`, or `add`
   *   when the item is missing) carries all of them. 200 simultaneous sign-ins of one user cost a
   *   handful of writes, not 200 writers fighting over one CAS token.
   * - Across processes, a write that loses the compare-and-set is retried on the item as it now
   *   stands, with jittered exponential backoff, for as long as it takes up to
   *   `INDEX_DEADLINE_MS` for each entry; only then does that entry's save fail (with
   *   an `Error`, so the request answers 503 rather than leave a session out of the index).
   *
   * Each write keeps the entries there, with this lane's added or extended and the expired ones
   * dropped; the item's exptime follows its longest entry. An entry never gets shorter.
   */
  enter(user: string, key: string, until: number): Promise<void> {
    const name = USER_INFIX + user;
    const item = this.#prefix + name;
    return new Promise<void>((resolve, reject) => {
      const entry: Pending = { key, until, deadline: performance.now() + INDEX_DEADLINE_MS, resolve, reject };
      const queue = this.#indexLanes.get(item);
      if (queue !== undefined) {
        queue.push(entry);
        return;
      }
      const own = [entry];
      this.#indexLanes.set(item, own);
      void this.#drain(name, item, own);
    });
  }

  /** Writes a lane's entries into the index item until none is left waiting. */
  async #drain(name: string, item: string, queue: Pending[]): Promise<void> {
    for (let lost = 0; queue.length > 0;) {
      let hit: Versioned | undefined;
      try {
        hit = await this.#commands.gets(item);
      } catch (error) {
        for (const entry of queue.splice(0)) entry.reject(error);
        break;
      }
      const batch = queue.splice(0);
      let reply: StoreReply;
      try {
        reply = await this.#writeIndex(name, item, hit, batch);
      } catch (error) {
        for (const entry of batch) entry.reject(error);
        continue;
      }
      if (reply === "STORED") {
        lost = 0;
        for (const entry of batch) entry.resolve();
        continue;
      }
      // Another process wrote the index in between: try again on what it wrote.
      const now = performance.now();
      const retry = batch.filter((entry) => {
        if (entry.deadline > now) return true;
        entry.reject(
          new Error(
            `Memcached index of a user kept changing: its compare-and-set lost for ${
              INDEX_DEADLINE_MS / 1000
            } s at "${item}"`,
          ),
        );
        return false;
      });
      queue.unshift(...retry);
      if (queue.length > 0) await pause(++lost);
    }
    this.#indexLanes.delete(item);
  }

  /**
   * One write of the index item read as `hit` (`undefined`: missing), with `batch` entered.
   * Entries already there for as long are settled at once, as are those that would not fit
   * (`SessionTooLargeError`); `"STORED"` when nothing was left to write.
   */
  async #writeIndex(
    name: string,
    item: string,
    hit: Versioned | undefined,
    batch: Pending[],
  ): Promise<StoreReply> {
    const now = this.#now();
    const empty = hit === undefined || hit.value === undefined || hit.value === null;
    const entries = empty ? new Map<string, number>() : this.#parseIndex(name, hit!.value) ?? new Map();
    const fresh = new Map<string, number>();
    for (const entry of batch) {
      if ((entries.get(entry.key) ?? -Infinity) >= entry.until) continue;
      if ((fresh.get(entry.key) ?? -Infinity) < entry.until) fresh.set(entry.key, entry.until);
    }
    if (fresh.size === 0) return "STORED";
    const kept: Record<string, number> = {};
    let last = 0;
    let count = 0;
    let length = 2; // {}
    for (const [other, otherUntil] of entries) {
      if (otherUntil <= now || fresh.has(other)) continue;
      kept[other] = otherUntil;
      if (otherUntil > last) last = otherUntil;
      length += entryLength(other, otherUntil) + (count++ === 0 ? 0 : 1);
    }
    for (const [key, until] of fresh) {
      const grown = length + entryLength(key, until) + (count === 0 ? 0 : 1);
      if (grown > this.#maxIndexBytes) {
        const error = new SessionTooLargeError(
          `Too many sessions for one user: the index "${name}" would take "${grown}" bytes, at most "${this.#maxIndexBytes}" fit in one Memcached item`,
        );
        for (let i = batch.length - 1; i >= 0; i--) {
          if (batch[i]!.key === key) batch.splice(i, 1)[0]!.reject(error);
        }
        continue;
      }
      kept[key] = until;
      if (until > last) last = until;
      length = grown;
      count++;
    }
    if (batch.length === 0) return "STORED";
    const value = JSON.stringify(kept);
    const exptime = exptimeOf(last, now);
    return hit === undefined
      ? await addItem(this.#commands, item, value, exptime)
      : await casItem(this.#commands, item, value, hit.cas, exptime);
  }

  /** The entries of an index item (storage key → until), or `undefined` when corrupt (reported). */
  #parseIndex(name: string, value: unknown): Map<string, number> | undefined {
    let raw = value;
    try {
      if (typeof raw === "string") raw = JSON.parse(raw);
      else if (raw instanceof Uint8Array) raw = JSON.parse(new TextDecoder().decode(raw));
    } catch {
      raw = undefined;
    }
    const entries = new Map<string, number>();
    let ok = typeof raw === "object" && raw !== null && !Array.isArray(raw);
    if (ok) {
      for (const [key, until] of Object.entries(raw as Record<string, unknown>)) {
        if (!STORAGE_KEY.test(key) || typeof until !== "number" || !Number.isFinite(until)) {
          ok = false;
          break;
        }
        entries.set(key, until);
      }
    }
    if (ok) return entries;
    this.#onCorrupt(
      name,
      new TypeError(`Corrupt user index: not a map of storage keys to times at "${this.#prefix + name}"`),
    );
    return undefined;
  }
}
