// A Workers KV stand-in that serves stale reads, wrapped around a real KV binding. Miniflare's KV
// is strongly consistent; Workers KV is not: a location that cached a key keeps answering its old
// value for up to about a minute after a write elsewhere. This wrapper brings that back, in small:
// for `windowMs` after each write (put or delete) of a key, a read answers the value the key held
// before that write with probability `share`. Everything else goes to the real binding.
//
// The state it keeps is plain data in module scope (shared by the isolate's requests, as a
// location's cache is); no request ever waits on another request's I/O through it.
import type { KvNamespaceLike, KvPutOptionsLike } from "../../src/stores/cloudflare_kv.ts";

/** How stale the stand-in is. */
export interface StaleKvOptions {
  /** For how long after a write reads may still see the value before it (ms). */
  windowMs: number;
  /** The share of reads inside the window that see the value before the write (0 to 1). */
  share: number;
  /** Random numbers in [0, 1). @default Math.random */
  random?: () => number;
}

/** What the stand-in did, for the driver's report. */
export interface StaleKvCounts {
  reads: number;
  staleReads: number;
  writes: number;
}

interface Shadow {
  /** The value before the last write (`null`: absent). */
  before: string | null;
  /** Until when reads may still see it (ms since the epoch). */
  until: number;
}

/** A KV namespace whose reads lag its writes, in front of `inner`. */
export function staleKv(
  inner: KvNamespaceLike,
  options: StaleKvOptions,
): KvNamespaceLike & { counts: StaleKvCounts } {
  const random = options.random ?? Math.random;
  const shadows = new Map<string, Shadow>();
  const counts: StaleKvCounts = { reads: 0, staleReads: 0, writes: 0 };

  async function remember(key: string): Promise<void> {
    const before = await inner.get(key, "text");
    shadows.set(key, { before, until: Date.now() + options.windowMs });
  }

  return {
    counts,
    async get(key: string, type: "text"): Promise<string | null> {
      counts.reads++;
      const shadow = shadows.get(key);
      if (shadow !== undefined) {
        if (shadow.until <= Date.now()) shadows.delete(key);
        else if (random() < options.share) {
          counts.staleReads++;
          return shadow.before;
        }
      }
      return await inner.get(key, type);
    },
    async put(key: string, value: string, putOptions?: KvPutOptionsLike): Promise<void> {
      counts.writes++;
      await remember(key);
      await inner.put(key, value, putOptions);
    },
    async delete(key: string): Promise<void> {
      counts.writes++;
      await remember(key);
      await inner.delete(key);
    },
    list(listOptions) {
      return inner.list(listOptions);
    },
  };
}
