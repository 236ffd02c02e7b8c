/**
 * What `TieredStore` keeps in its cache: an entry holding the durable record (or a mark left by a
 * destroy) inside a record of the cache's own, and the rule for when a copy may replace it.
 *
 * @module
 */
import { isEnded, type StoredSession, toStoredSession } from "../../store.ts";

/** What the cache holds under a key: the durable record, or a mark that it must not be trusted. */
export type Entry = { record: StoredSession } | { forgottenAt: number };

/** The cache's record holding `entry`, one version past what it replaces. */
export function wrap(
  entry: Entry,
  held: StoredSession | null,
  createdAt: number,
  expiresAt: number,
): StoredSession {
  return {
    data: entry as unknown as Record<string, unknown>,
    version: held === null ? 1 : held.version + 1,
    createdAt,
    expiresAt,
  };
}

/** Reads a cache record back; `null` for one this store did not write. */
export function entryOf(held: StoredSession): Entry | null {
  const data = held.data as Record<string, unknown>;
  if (typeof data.forgottenAt === "number") return { forgottenAt: data.forgottenAt };
  const record = toStoredSession(data.record);
  return record === null ? null : { record };
}

/**
 * Whether `record`, read or written by a durable operation that started at `basis`, may replace
 * the cache's `entry`: a newer version; the same version, live, expiring later (a touch); or a
 * mark left before the operation started.
 */
export function supersedes(record: StoredSession, basis: number, entry: Entry): boolean {
  if ("forgottenAt" in entry) return basis > entry.forgottenAt;
  const held = entry.record;
  if (record.version !== held.version) return record.version > held.version;
  return !isEnded(held) && !isEnded(record) && record.expiresAt > held.expiresAt;
}
