/**
 * The cookie store's revocation store: per session, the version (and a fingerprint of the data)
 * of its live seal, or a tombstone; per user, with `userKey`, a generation that `endUser` moves
 * on. Keys are hashes of the id and of the user id, never the ids.
 *
 * @module
 */
import { SessionConflictError, SessionError, StoreUnavailableError } from "../../errors.ts";
import {
  checkedSaveResult,
  ENDED_BY_KEY,
  ENDED_KEY,
  endedRemotely,
  type InvalidSeal,
  isEnded,
  type SaveResult,
  type SessionStore,
  type StoredSession,
} from "../../store.ts";
import { invalid } from "./invalid.ts";
import { sha256 } from "./keys.ts";
import type { CachedToken, Decoded } from "./tokens.ts";

/** Compare-and-set attempts on the revocation store before giving up. */
const MAX_REVOCATION_ATTEMPTS = 4;
/**
 * How long a user's generation is kept after it last moved, in milliseconds: 400 days, the
 * longest a seal sealed before then can live (`withSession` refuses an `idleTimeout` over 400
 * days, what browsers keep a cookie, RFC 6265bis §5.5).
 */
const GENERATION_MS = 400 * 24 * 3600 * 1000;
/** Domain separation of a user's generation key from session keys (`SHA-256(id)`). */
const GENERATION_PREFIX = "websession/cookie-store/user-generation\u0000";

/** The revocation store's keys of a seal and its data's fingerprint, computed while it is sealed. */
export type Fingerprints = Promise<[key: string, digest: string, userGeneration: string | undefined]>;

/** The revocation store's key of a session: `SHA-256(id)` in base64url, never the id itself. */
function revocationKey(id: string): Promise<string> {
  return sha256(id);
}

/**
 * The revocation store's key of a user's generation: `SHA-256` of a fixed prefix and the user id
 * in base64url, never the id itself, and never a session's key.
 */
function generationKey(user: string): Promise<string> {
  return sha256(GENERATION_PREFIX + user);
}

/** A user's generation from its record: `0` when it has none (never ended, or expired). */
function generationOf(record: StoredSession | null): number {
  const g = record?.data.g;
  return typeof g === "number" && Number.isFinite(g) ? g : 0;
}

/**
 * Whether a seal, as its session's record in the revocation store describes it (`null`: not
 * recorded, generation 0), is still under its user's current generation (`generation`, `null`
 * when the user's sessions were never ended): made since the generation moved on, or the
 * session `endUser` kept when it did (or the seal a `regenerate()` made of it: `from`).
 */
function sealedUnder(sealed: StoredSession | null, generation: StoredSession | null, key: string): boolean {
  const current = generationOf(generation);
  const g = generationOf(sealed);
  if (g >= current) return true;
  const { keep, kept } = generation!.data;
  // The kept session, or the seal a regenerate made of it (`from`).
  const named = keep === key || (typeof keep === "string" && keep === sealed?.data.from);
  return named && typeof kept === "number" && g >= kept;
}

/** A seal of a session ended with every session of its user (`endUser`), as `check` answers. */
function remotelyEnded(generation: StoredSession): InvalidSeal {
  return {
    invalid: "ended",
    at: atOf(generation),
    remote: true,
    detail: invalid("every session of its user was ended"),
  };
}

/** When a revocation record was written (ms since the epoch), if it says. */
function atOf(record: StoredSession): number | undefined {
  const at = record.data.at;
  return typeof at === "number" && Number.isFinite(at) ? at : undefined;
}

/** A fingerprint of the data, telling two seals of one version apart in the revocation store. */
function dataDigest(data: StoredSession["data"]): Promise<string> {
  return sha256(JSON.stringify(data));
}

function unavailable(message: string, error: unknown): SessionError {
  return error instanceof SessionError ? error : new StoreUnavailableError(message, { cause: error });
}

function changed(version: number): SessionConflictError {
  return new SessionConflictError(
    `Session changed concurrently: version "${version}" was sealed by another request`,
  );
}

/**
 * The version the next attempt to record `record` expects, given the record as it stands
 * (`undefined`: not read; the version before this one is assumed), or `"done"` when another
 * request sealed this very version with the same data and this seal is `repeatable` (see
 * `SealedSessionStore.seal`). Throws `SessionConflictError` when the session ended or moved past
 * this seal, or another request sealed this version first and this one is not repeatable.
 */
function expectedFor(
  current: StoredSession | null | undefined,
  record: StoredSession,
  digest: string,
  assumed: number | null,
  repeatable: boolean,
): number | null | "done" {
  // Unknown to the store (sealed before it was configured, or lost): create.
  if (current === null) return null;
  if (current === undefined) return assumed;
  if (isEnded(current)) {
    throw new SessionConflictError("Session ended: it was destroyed or regenerated by another request");
  }
  if (current.version > record.version) throw changed(current.version);
  if (current.version === record.version) {
    // Another request sealed this version first. With the same data (concurrent expiry
    // refreshes, re-seals after a rotation, a setting saved twice) either seal is the session as
    // it stands, unless this one carries a change that one does not make (two increments from
    // the same value: `repeatable` false).
    if (repeatable && (current.data as { digest?: unknown }).digest === digest) return "done";
    throw changed(current.version);
  }
  return current.version; // the store is behind this seal's lineage: catch it up
}

/**
 * What a seal of a user's session records beside its version: the user's generation key, the
 * generation it is made under, and the session it was regenerated from (`from`), if any.
 *
 * The generation is the user's current one (`generation`) or, for a regenerate's seal carrying
 * on a session of the same user (`replaced`, that session's tombstone under `replacedKey`), the
 * generation that session was live under when it was revoked, if older: an `endUser` between
 * the two writes then ends the new seal too, as it would have ended the old. `from` names that
 * session (kept by every later seal of this one, `previous` the record as it stands), so that an
 * `endUser` keeping it (`except`) keeps its successor: the same browser, rotated.
 */
function markOf(
  user: string,
  generation: number,
  previous: StoredSession | null,
  replaced: StoredSession | null,
  replacedKey: string | undefined,
): { user: string; g: number; from?: string } {
  if (replaced !== null && isEnded(replaced) && replaced.data.user === user) {
    const g = replaced.data.g;
    const carried = typeof g === "number" && Number.isFinite(g) ? Math.min(generation, g) : generation;
    return { user, g: carried, from: replacedKey! };
  }
  const from = previous !== null && !isEnded(previous) ? previous.data.from : undefined;
  return typeof from === "string" ? { user, g: generation, from } : { user, g: generation };
}

/** The record moving a user's generation on, keeping the session `keep` names, if any. */
function nextGeneration(current: StoredSession | null, keep: string | undefined, now: number): StoredSession {
  const previous = generationOf(current);
  const data: Record<string, unknown> = { g: Math.max(now, previous + 1), at: now };
  if (keep !== undefined) {
    // The kept session may still carry the generation an earlier "all but this one" kept.
    const kept = current?.data.keep === keep && typeof current.data.kept === "number"
      ? current.data.kept
      : previous;
    data.keep = keep;
    data.kept = kept;
  }
  return {
    data,
    version: (current?.version ?? 0) + 1,
    createdAt: current?.createdAt ?? now,
    expiresAt: Math.max(current?.expiresAt ?? 0, now + GENERATION_MS),
  };
}

/** A revocation store, with the session key that holds the user's id, if any. */
export class Revocation {
  #store: SessionStore;
  #userKey: string | undefined;
  #now: () => number;

  constructor(store: SessionStore, userKey: string | undefined, now: () => number) {
    this.#store = store;
    this.#userKey = userKey;
    this.#now = now;
  }

  /** The keys and fingerprint `record` needs, started at once (awaited by `record`). */
  fingerprints(id: string, record: StoredSession): Fingerprints {
    const user = this.#userOf(record);
    const fingerprints: Fingerprints = Promise.all([
      revocationKey(id),
      dataDigest(record.data),
      user === undefined ? undefined : generationKey(user),
    ]);
    fingerprints.catch(() => {}); // awaited later, unless sealing fails first
    return fingerprints;
  }

  /**
   * Records a seal as its session's live one (with `userKey`, under its user's generation,
   * refusing a session whose user's sessions were ended since it was last sealed), and notes
   * the keys in the seal's cache entry.
   */
  async record(
    fingerprints: Fingerprints,
    record: StoredSession,
    entry: CachedToken,
    options: { replaces?: string; repeatable?: boolean } = {},
  ): Promise<void> {
    const [key, digest, userGeneration] = await fingerprints;
    const { replaces, repeatable = true } = options;
    if (this.#userKey === undefined) {
      await this.#publish(key, digest, record, {}, undefined, repeatable);
    } else {
      const replacedKey = replaces === undefined || userGeneration === undefined
        ? undefined
        : await revocationKey(replaces);
      const [current, generation, replaced] = await Promise.all([
        this.#load(key),
        userGeneration === undefined ? null : this.#load(userGeneration),
        replacedKey === undefined ? null : this.#load(replacedKey),
      ]);
      await this.#refuseEndedUser(key, current, userGeneration, generation);
      const mark = userGeneration === undefined
        ? {}
        : markOf(userGeneration, generationOf(generation), current, replaced, replacedKey);
      await this.#publish(key, digest, record, mark, current, repeatable);
      entry.generationKey = userGeneration ?? null;
    }
    entry.revocationKey = key;
  }

  /**
   * Replaces a session's record by a tombstone (see `CookieStore.revoke`): `"ended"` when it was
   * one already, `"missing"` when there was no record (the tombstone is written all the same).
   * `carried` (the data a regenerate carries on, as loaded): refused (`SessionConflictError`) when
   * a seal newer than `record.version`, of other data, is recorded.
   */
  async revoke(
    id: string,
    record: StoredSession,
    carried?: StoredSession["data"],
  ): Promise<void | "ended" | "missing"> {
    const [key, loaded] = await Promise.all([
      revocationKey(id),
      carried === undefined ? undefined : dataDigest(carried),
    ]);
    let current = await this.#load(key);
    for (let attempt = 0; attempt < MAX_REVOCATION_ATTEMPTS; attempt++) {
      if (isEnded(current)) return "ended";
      // A regenerate carries on the data it loaded: a newer seal of other data would be lost
      // (one of the same data, an expiry refresh, loses nothing).
      if (
        loaded !== undefined && current !== null && current.version > record.version &&
        (current.data as { digest?: unknown }).digest !== loaded
      ) {
        throw changed(current.version);
      }
      // Every session of its user was ended (`endUser`) while the request ran: ended already.
      const under = await this.#generationUnder(key, current);
      if (under === "ended") return "ended";
      const now = this.#now();
      const expiresAt = Math.max(record.expiresAt, current?.expiresAt ?? 0);
      if (expiresAt <= now) return current === null ? "missing" : undefined; // refused as expired already
      const tombstone: StoredSession = {
        // Nothing of the session was recorded (its record lapsed, or the store lost it): the
        // browser may hold a newer cookie, which this end leaves alone, or this one, which then
        // must not be refused as "in flight" during the grace: ended with no grace, as from
        // elsewhere. Else the user's generation it was live under, for a regenerate's new seal.
        data: current === null
          ? { [ENDED_KEY]: true, at: now, [ENDED_BY_KEY]: "remote" }
          : carried === undefined
          ? { [ENDED_KEY]: true, at: now, ...under, [ENDED_BY_KEY]: "destroy" }
          : { [ENDED_KEY]: true, at: now, ...under },
        version: (current?.version ?? 0) + 1,
        createdAt: current?.createdAt ?? now,
        expiresAt,
      };
      const result = await this.#save(key, tombstone, current?.version ?? null);
      if (result === true) return current === null ? "missing" : undefined;
      current = result === false ? await this.#load(key) : result.current;
    }
    throw new StoreUnavailableError(
      `Revocation store refused the tombstone: ${MAX_REVOCATION_ATTEMPTS} compare-and-set attempts lost`,
    );
  }

  /** Moves a user's generation on (see `CookieStore.endUser`); the caller checked `userKey`. */
  async endUser(user: string, options: { except?: string }): Promise<void> {
    if (typeof user !== "string" || user === "") {
      throw new TypeError(`Invalid user: "${String(user)}" is not a non-empty string`);
    }
    const except = options?.except;
    if (except !== undefined && (typeof except !== "string" || except === "")) {
      throw new TypeError(`Invalid except: "${String(except)}" is not a session id`);
    }
    const [key, keep] = await Promise.all([
      generationKey(user),
      except === undefined ? undefined : revocationKey(except),
    ]);
    let current = await this.#load(key);
    for (let attempt = 0; attempt < MAX_REVOCATION_ATTEMPTS; attempt++) {
      const next = nextGeneration(current, keep, this.#now());
      const result = await this.#save(key, next, current?.version ?? null);
      if (result === true) return;
      current = result === false ? await this.#load(key) : result.current;
    }
    throw new StoreUnavailableError(
      `Revocation store refused the user's generation: ${MAX_REVOCATION_ATTEMPTS} compare-and-set attempts lost`,
    );
  }

  /** Checks a decoded seal against the revocation store; `undefined` when it may open. */
  async check(decoded: Decoded): Promise<InvalidSeal | undefined> {
    const { entry, opened } = decoded;
    await this.#keysOf(decoded);
    const userGeneration = entry.generationKey ?? null;
    const [latest, generation] = await Promise.all([
      this.#load(entry.revocationKey!),
      userGeneration === null ? null : this.#load(userGeneration),
    ]);
    if (latest !== null && isEnded(latest)) {
      return {
        invalid: "ended",
        at: atOf(latest),
        ...(endedRemotely(latest) ? { remote: true } : {}),
        ...((latest.data as Record<string, unknown>)[ENDED_BY_KEY] === "destroy" ? { destroyed: true } : {}),
        detail: invalid("the session was destroyed or regenerated"),
      };
    }
    if (latest !== null && latest.version > opened.record.version) {
      // Its session's newest seal was ended with every session of its user (`endUser`): ended
      // from elsewhere, with no grace, whichever seal of it comes.
      if (generation !== null && !sealedUnder(latest, generation, entry.revocationKey!)) {
        return remotelyEnded(generation);
      }
      return {
        invalid: "superseded",
        at: atOf(latest),
        session: opened,
        detail: invalid(`version "${opened.record.version}" was superseded by version "${latest.version}"`),
      };
    }
    if (generation !== null) {
      // The generation this seal was made under: what the store recorded for its version, else
      // none (sealed before the store knew it): ended by any generation.
      const sealed = latest !== null && latest.version === opened.record.version ? latest : null;
      if (!sealedUnder(sealed, generation, entry.revocationKey!)) return remotelyEnded(generation);
    }
    return undefined;
  }

  /**
   * The user's generation a session's live seal (`current`, its record here) is still under, as
   * `{ user, g }` for its tombstone; `"ended"` when every session of its user was ended since it
   * was sealed; nothing when it holds no user (or the store has no `userKey`).
   */
  async #generationUnder(
    key: string,
    current: StoredSession | null,
  ): Promise<{ user: string; g: number } | "ended" | undefined> {
    const user = current?.data.user;
    if (this.#userKey === undefined || current === null || typeof user !== "string") return undefined;
    const generation = await this.#load(user);
    if (!sealedUnder(current, generation, key)) return "ended";
    return { user, g: generationOf(generation) };
  }

  /** Computes the keys a decoded seal is checked under, unless its cache entry has them. */
  async #keysOf({ entry, opened }: Decoded): Promise<void> {
    if (
      entry.revocationKey !== undefined && (this.#userKey === undefined || entry.generationKey !== undefined)
    ) {
      return;
    }
    const user = this.#userOf(opened.record);
    const [key, userGeneration] = await Promise.all([
      entry.revocationKey ?? revocationKey(opened.id),
      user === undefined ? null : generationKey(user),
    ]);
    entry.revocationKey = key;
    if (this.#userKey !== undefined) entry.generationKey = userGeneration;
  }

  /**
   * Refuses to seal again a session whose previous seal (`current`, its record in the
   * revocation store) belongs to a user whose sessions were all ended since: a request that was
   * in flight when `endUser` ran. `userGeneration` and `generation` are the new record's user's
   * key and generation record, read already.
   */
  async #refuseEndedUser(
    key: string,
    current: StoredSession | null,
    userGeneration: string | undefined,
    generation: StoredSession | null,
  ): Promise<void> {
    if (current === null || isEnded(current)) return; // unknown, or ended: #publish decides
    const previousUser = current.data.user;
    if (typeof previousUser !== "string") return;
    const previous = previousUser === userGeneration ? generation : await this.#load(previousUser);
    if (!sealedUnder(current, previous, key)) {
      throw new SessionConflictError("Session ended: every session of its user was ended by another request");
    }
  }

  /**
   * Records `record.version` as the live seal of the session under `key`, by compare-and-set on
   * the version before it; `digest` fingerprints the data, `mark` names the user's generation the
   * seal was made under. `known` is the record as just read (`undefined`: not read; the first
   * attempt then assumes the version before this one). `repeatable`: see `expectedFor`.
   */
  async #publish(
    key: string,
    digest: string,
    record: StoredSession,
    mark: { user?: string; g?: number; from?: string },
    known: StoredSession | null | undefined,
    repeatable: boolean,
  ): Promise<void> {
    const latest: StoredSession = {
      data: { digest, at: this.#now(), ...mark },
      version: record.version,
      createdAt: record.createdAt,
      expiresAt: record.expiresAt,
    };
    let expected: number | null = record.version > 1 ? record.version - 1 : null;
    let current = known;
    for (let attempt = 0; attempt < MAX_REVOCATION_ATTEMPTS; attempt++) {
      const next = expectedFor(current, record, digest, expected, repeatable);
      if (next === "done") return;
      expected = next;
      const result = await this.#save(key, latest, expected);
      if (result === true) return;
      current = result === false ? await this.#load(key) : result.current;
    }
    throw new SessionConflictError(
      `Session changed concurrently: ${MAX_REVOCATION_ATTEMPTS} compare-and-set attempts lost`,
    );
  }

  /** The user id `record` holds under `userKey`, if the store has one and it is a string. */
  #userOf(record: StoredSession): string | undefined {
    const name = this.#userKey;
    if (name === undefined || !Object.hasOwn(record.data, name)) return undefined;
    const user = record.data[name];
    return typeof user === "string" && user !== "" ? user : undefined;
  }

  async #load(key: string): Promise<StoredSession | null> {
    try {
      return await this.#store.load(key);
    } catch (error) {
      throw unavailable("Revocation store failed to load", error);
    }
  }

  async #save(key: string, record: StoredSession, expected: number | null): Promise<SaveResult> {
    try {
      return checkedSaveResult(await this.#store.save(key, record, expected));
    } catch (error) {
      throw unavailable("Revocation store failed to save", error);
    }
  }
}
