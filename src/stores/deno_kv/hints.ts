/**
 * What `DenoKvStore` remembers of the entries it last read or wrote, so that an update right after
 * a load is one commit guarded by the versionstamp seen, with no read.
 *
 * @module
 */

/** An entry as last seen: its record's version and expiry, its versionstamp, its indexed user. */
export interface Seen {
  version: number;
  versionstamp: string;
  expiresAt: number;
  /** The user the record is indexed under, carried to every later write of it. */
  user: string | undefined;
}

/** Versionstamps kept per generation; two generations bound the memory the hints take. */
const HINTS_PER_GENERATION = 4096;

/** The entries last seen, by storage key, in two generations (young, old) swapped when full. */
export class Hints {
  #young = new Map<string, Seen>();
  #old = new Map<string, Seen>();

  /** What was last seen of `key`, if remembered. */
  get(key: string): Seen | undefined {
    return this.#young.get(key) ?? this.#old.get(key);
  }

  /** Remembers what was seen of `key`. */
  remember(key: string, seen: Seen): void {
    if (this.#young.size >= HINTS_PER_GENERATION && !this.#young.has(key)) {
      this.#old = this.#young;
      this.#young = new Map();
    }
    this.#young.set(key, seen);
  }

  /** Forgets `key`. */
  forget(key: string): void {
    this.#young.delete(key);
    this.#old.delete(key);
  }
}
