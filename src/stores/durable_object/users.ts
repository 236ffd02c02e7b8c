/**
 * The Durable Object store's sessions per user: a user's index lives in an object of its own,
 * named by the user's tag; listing it asks each listed session's object whether it still holds
 * a live record of that user.
 *
 * @module
 */
import { userTag } from "../../user_tag.ts";
import type { IndexEntry, Operation } from "./protocol.ts";

/**
 * How long, in milliseconds, an index entry is kept at the least even when its session's
 * object holds no record of that user: the save it was written for may still be on its way.
 */
export const INDEX_GRACE_MS = 300_000;

/**
 * The earlier layout named a user's index object `user:` and the raw id; `keysOfUser` still
 * reads it (never writes it) so that sessions indexed before the upgrade are found. The names
 * never collide: "user:" is not a prefix of "users:". Remove that read once the longest session
 * lifetime (the larger of `absoluteTimeout` and `remember.absoluteTimeout`) has passed since the
 * upgrade: every session indexed the old way has then ended, or has been saved again, which
 * indexes it in the user's new object (`withSession` names the user on every save of data
 * holding it).
 */
export const OLD_USER_OBJECT = "user:";

/**
 * The name of the object that holds a user's index: `users:` and the user's tag (the store
 * kit's rule), never the id, so that no object name carries personal data or grows with the id.
 */
export async function userObject(user: string): Promise<string> {
  return `users:${await userTag(user)}`;
}

export function isIndexEntry(value: unknown): value is IndexEntry {
  const entry = value as Partial<IndexEntry> | null;
  return typeof entry === "object" && entry !== null && typeof entry.key === "string" &&
    typeof entry.at === "number" && typeof entry.token === "string";
}

/** Sends one operation to the object named `name` and returns its answer. */
type SendTo = (name: string, operation: Operation) => Promise<Record<string, unknown>>;

/**
 * The storage keys of `user`'s sessions, each once: from the user's index object and from its
 * object of the earlier layout, those whose session objects hold a live record of `user`.
 */
export async function userKeys(sendTo: SendTo, user: string, now: () => number): Promise<string[]> {
  const [keys, old] = await Promise.all([
    keysIn(sendTo, await userObject(user), user, now),
    keysIn(sendTo, OLD_USER_OBJECT + user, user, now),
  ]);
  return [...new Set([...keys, ...old])];
}

/**
 * The keys listed in the index object `name` whose session objects hold a live record of
 * `user`; entries at least `INDEX_GRACE_MS` old that do not are removed on the way.
 */
async function keysIn(sendTo: SendTo, name: string, user: string, now: () => number): Promise<string[]> {
  const answer = await sendTo(name, { op: "keys" });
  const entries = (Array.isArray(answer.entries) ? answer.entries : []).filter(isIndexEntry);
  const owners = await Promise.all(entries.map((entry) => sendTo(entry.key, { op: "owner" })));
  const at = now();
  const keys: string[] = [];
  const stale: { key: string; token: string }[] = [];
  entries.forEach((entry, i) => {
    if (owners[i]!.user === user) keys.push(entry.key);
    else if (entry.at + INDEX_GRACE_MS <= at) stale.push({ key: entry.key, token: entry.token });
  });
  if (stale.length > 0) {
    // Housekeeping only: an entry left behind is listed no more than its session qualifies.
    await sendTo(name, { op: "unindex", entries: stale }).catch(() => {});
  }
  return keys;
}
