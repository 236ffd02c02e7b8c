/**
 * Locks in Memcached (`session.lock()`), each held until its `ttlMs` runs out: an item
 * of their own per session (`prefix` + storage key + `:lease`) holding `{ owner, expiresAt }`,
 * taken with `add` (or `cas` over an expired lock or the owner's own) and released with `cas`. Docs: docs/stores/memcached.md.
 *
 * @module
 */
import type { Commands } from "./client.ts";
import { exptimeOf } from "./item.ts";

/** How many times a take retries when the lock keeps vanishing between `add` and `gets`. */
const TAKE_ATTEMPTS = 3;

/** Writes the lock item `item` for `owner` for `ttlMs` ms; `false` while another owner holds it. */
export async function takeLock(
  commands: Commands,
  item: string,
  owner: string,
  ttlMs: number,
  now: () => number,
): Promise<boolean> {
  const start = now();
  const expiresAt = start + ttlMs;
  const value = JSON.stringify({ owner, expiresAt });
  const exptime = exptimeOf(expiresAt, start);
  for (let attempt = 0; attempt < TAKE_ATTEMPTS; attempt++) {
    if (await commands.add(item, value, exptime) === "STORED") return true;
    const found = await readLock(commands, item);
    if (found === "missing") continue; // released or expired since the add: try again
    if (found === "corrupt") return false;
    if (found.lock.owner !== owner && found.lock.expiresAt > now()) return false;
    const reply = await commands.cas(item, value, found.cas, exptime);
    if (reply === "STORED") return true;
    if (reply === "EXISTS") return false;
  }
  return false;
}

/** Releases the lock item `item` if `owner` holds it: `cas` to an already expired item. */
export async function releaseLock(commands: Commands, item: string, owner: string): Promise<void> {
  const found = await readLock(commands, item);
  if (typeof found === "string" || found.lock.owner !== owner) return;
  await commands.cas(item, "{}", found.cas, -1);
}

/** The lock item `item` with its CAS token, `"missing"`, or `"corrupt"`. */
async function readLock(
  commands: Commands,
  item: string,
): Promise<{ lock: { owner: unknown; expiresAt: number }; cas: string } | "missing" | "corrupt"> {
  const hit = await commands.gets(item);
  if (hit === undefined || hit.value === undefined || hit.value === null) return "missing";
  let lock: unknown = hit.value;
  try {
    if (typeof lock === "string") lock = JSON.parse(lock);
    else if (lock instanceof Uint8Array) lock = JSON.parse(new TextDecoder().decode(lock));
  } catch {
    return "corrupt";
  }
  const { owner, expiresAt } = (lock ?? {}) as { owner?: unknown; expiresAt?: unknown };
  if (typeof owner !== "string" || typeof expiresAt !== "number" || !Number.isFinite(expiresAt)) {
    return "corrupt";
  }
  return { lock: { owner, expiresAt }, cas: hit.cas };
}
