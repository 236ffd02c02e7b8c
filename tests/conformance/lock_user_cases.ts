// The cases of locks (`session.lock()`) and of sessions per user (the index `keysOfUser` reads)
// that the stores' own tests used to write out each in its own words, written once. A store's
// test file calls `lockUserCases` with hooks that read its layout (a lock and a user's index as
// the backend holds them), name the requests a counted client sends, and state its rules (until
// when an index entry lasts); a part whose hook a store does not give is not asserted for it, and
// a case whose hook it does not give is not run for it.
//
// Each case opens its stores in a namespace of its own (`ns`: a prefix, a table).
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { SessionConfigError, StoreUnavailableError } from "../../src/errors.ts";
import type { SaveResult, SessionStore, StoredSession } from "../../src/store.ts";
import { getSession, withSession } from "../../src/with_session.ts";
import { userSessions } from "../../src/users/options.ts";
import { record } from "../stores/remote_cases.ts";
import { Client } from "./client.ts";
import { randomKey } from "./util.ts";

type Store = SessionStore & Required<Pick<SessionStore, "touch">>;

/** A store and the names of the requests it sent, in order (the hooks choose the names). */
export interface Counted {
  store: Store;
  sent: string[];
}

/** How a store's test file plugs into the lock and user-index cases. */
export interface LockUserHooks {
  /** A store over the real backend in the namespace `ns`, on the clock `now`. */
  open(ns: string, now: () => number): Store | Promise<Store>;
  /** The same, with every request it sends named in `sent` (what `sends` below expects). */
  counted?(ns: string, now: () => number): Promise<Counted>;
  /** Frees what the cases opened. */
  close?(): void | Promise<void>;
  /** The record under `key` as the backend holds it; `undefined` when it holds none. */
  raw?(ns: string, key: string): Promise<unknown>;
  /** A refused save reports the current record (`"false"`: it answers plain `false`). */
  reportsCurrent?: boolean | "false";
  /** `cleanup()` removes lapsed locks and index entries with the expired records. */
  sweeps?: boolean;
  locks?: LockHooks;
  users?: UserHooks;
}

/** A lock as its store keeps it. */
export interface LockHooks {
  /** The lock on `key` as the backend holds it: its owner and, where kept, until when (ms). */
  entry?(ns: string, key: string): Promise<{ owner: string; until?: number } | undefined>;
  /** Until when a lock taken at `now` for `ttl` ms lasts, as the store writes it. @default now + ttl */
  until?(now: number, ttl: number): number;
  /** The ms the backend's own expiry leaves the lock: its duration rounded up, `slack` less at most. */
  expiry?: { left(ns: string, key: string): Promise<number | undefined>; slack: number };
  /** A lock lapses by the store's clock, while the backend still holds it (else by its own expiry). */
  byClock: boolean;
  /** What one lock, one unlock and one cleanup send. */
  sends?: { lock: string[]; unlock: string[]; cleanup?: string[] };
}

/** A user's index as its store keeps it. */
export interface UserHooks {
  /**
   * The user's index as the backend holds it: each storage key in it, with until when its entry
   * lasts (ms), or `null` where an entry has no time of its own (a column, an object's entry).
   */
  entries?(ns: string, user: string): Promise<Record<string, number | null>>;
  /** Until when an entry written at `now` for a record expiring at `expiresAt` lasts. */
  until?(expiresAt: number, now: number): number;
  /** The entry is written again once the record would expire later than `until - margin`. @default 0 */
  margin?: number;
  /** What the stored record notes of its index (the user or its tag, until when); `undefined`: none. */
  note?(ns: string, key: string): Promise<{ user?: string; tag?: string; until?: number } | undefined>;
  /** The ms the backend's own expiry leaves the user's entry for `key`: what it must last, within `slack`. */
  expiry?: { left(ns: string, user: string, key: string): Promise<number | undefined>; slack: number };
  /** keysOfUser lists a key only while the record its entry was written for lives. */
  liveOnly?: boolean;
  /** keysOfUser lists a key only while its record is live and the user's (it reads the record). */
  current?: boolean;
  /** Entries lapse by the store's clock (else by the backend's own expiry). */
  byClock?: boolean;
  /** The index is one item the store rewrites: lapsed entries go when it is written next. */
  prunes?: boolean;
  /** A save that names no user keeps the record indexed under its user. @default true */
  remembers?: boolean;
  /** The entry is written before the save is decided: a refused save may leave one. */
  entryFirst?: boolean;
  /** User ids besides non-strings that the store refuses with TypeError, sending nothing. */
  badIds?: string[];
  /** A store in `ns` whose users' index cannot be reached while its records can. */
  indexDown?(ns: string, now: () => number): Promise<Store>;
  /** Stores on the longest prefix that leaves room for an index key, and on one byte more. */
  room?: { fits(): Store | Promise<Store>; over(): Promise<Counted>; message: RegExp };
  /**
   * What a store sends: a create with a user (`save`), a listing (`list`), a refused save with a
   * user (`refused`), a save or touch its entry outlasts (`update`) or one it does not
   * (`reindex`), the create and touch of a session with no user (`plain`), the load of a session
   * (`read`).
   */
  sends?: { [kind in "save" | "list" | "refused" | "update" | "reindex" | "plain" | "read"]?: string[] };
}

/** A user's tag, computed here apart from the stores: SHA-256 of the id, in unpadded base64url. */
export async function tagOf(user: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(user)));
  return btoa(String.fromCharCode(...digest)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function refused(result: SaveResult, current: StoredSession | null, reportsCurrent?: boolean | "false") {
  if (reportsCurrent === "false") assert.equal(result, false);
  else if (reportsCurrent) assert.deepEqual(result, { current });
  else assert.notEqual(result, true);
}

async function error(promise: Promise<unknown>): Promise<unknown> {
  return await promise.then(() => undefined, (e: unknown) => e);
}

/** Runs the lock and user-index cases for one store under `describe(name)`. */
export function lockUserCases(name: string, hooks: LockUserHooks): void {
  describe(`${name}: locks and sessions per user`, () => {
    after(async () => {
      await hooks.close?.();
    });

    /** The counted store where there is one, else a store whose requests go unnamed. */
    async function opened(ns: string, now: () => number): Promise<Counted> {
      return await hooks.counted?.(ns, now) ?? { store: await hooks.open(ns, now), sent: [] };
    }

    const locks = hooks.locks;
    if (locks) lockCases(hooks, locks, opened);
    const users = hooks.users;
    if (users) userCases(hooks, users, opened);

    if (hooks.sweeps) {
      it("cleanup() drops lapsed locks and index entries with the expired records; count() counts neither", async () => {
        let now = Date.now();
        const { store, sent } = await opened("sweep", () => now);
        const user = `ada-${randomKey().slice(0, 8)}`;
        const index = users ? { user } : undefined;
        const [live, dead] = [randomKey(), randomKey()];
        await store.save(live, record({ user }, 1, 600_000, now), null, index);
        await store.save(dead, record({ user }, 1, 60_000, now), null, index);
        assert.equal(await store.lock!(live, "a", 600_000), true);
        assert.equal(await store.lock!(dead, "a", 1_000), true);
        assert.equal(await store.count!(), 2);
        now += 61_000;
        assert.equal(await store.count!(), 1);
        sent.length = 0;
        assert.equal(await store.cleanup!(), 1, "one record; lapsed locks and index entries go uncounted");
        if (locks?.sends?.cleanup) assert.deepEqual(sent, locks.sends.cleanup);
        if (locks?.entry) {
          assert.equal(await locks.entry("sweep", dead), undefined);
          assert.equal((await locks.entry("sweep", live))?.owner, "a");
        }
        if (hooks.raw) assert.equal(await hooks.raw("sweep", dead), undefined);
        assert.ok(await store.load(live));
        if (users?.entries) assert.deepEqual(Object.keys(await users.entries("sweep", user)), [live]);
      });
    }
  });
}

function lockCases(
  hooks: LockUserHooks,
  locks: LockHooks,
  opened: (ns: string, now: () => number) => Promise<Counted>,
): void {
  const untilOf = locks.until ?? ((now: number, ttl: number) => now + ttl);

  it("keeps a lock in an entry of its own, apart from the record: its owner, and until when by the store's clock; extended and released by its owner only", async () => {
    let now = Date.now();
    const { store, sent } = await opened("lease", () => now);
    const plain = await hooks.open("lease", () => now);
    // Every script and statement is known from here on.
    await store.lock!(randomKey(), "warm", 1_000);
    await store.unlock!(randomKey(), "warm");
    const key = randomKey();
    async function step<T>(kind: "lock" | "unlock", run: () => Promise<T>): Promise<T> {
      sent.length = 0;
      const result = await run();
      if (locks.sends) assert.deepEqual(sent, locks.sends[kind], `one ${kind}: ${locks.sends[kind]}`);
      return result;
    }
    async function holds(owner: string, at: number, ttl: number, message: string): Promise<void> {
      if (!locks.entry) return;
      const entry = await locks.entry("lease", key);
      assert.equal(entry?.owner, owner, message);
      if (entry?.until !== undefined) assert.equal(entry.until, untilOf(at, ttl), message);
      if (locks.expiry) {
        const left = await locks.expiry.left("lease", key);
        assert.ok(
          left !== undefined && left <= Math.ceil(ttl) && left >= Math.ceil(ttl) - locks.expiry.slack,
          `${message}: the backend's own expiry leaves ${left} ms`,
        );
      }
    }
    assert.equal(await step("lock", () => store.lock!(key, "first", 30_000)), true);
    await holds("first", now, 30_000, "taken");
    assert.equal(await plain.load(key), null, "a lock writes no record");
    if (hooks.raw) assert.equal(await hooks.raw("lease", key), undefined);
    if (store.count) assert.equal(await store.count(), 0, "a lock is no session");
    assert.equal(await step("lock", () => store.lock!(key, "second", 30_000)), false);
    now += 10_000;
    const at = now;
    assert.equal(await step("lock", () => store.lock!(key, "first", 90_000.5)), true, "the owner extends it");
    await holds("first", at, 90_000.5, "extended, by a fraction of a millisecond too");
    await step("unlock", () => store.unlock!(key, "second"));
    await holds("first", at, 90_000.5, "only its owner releases it");
    // The record under the same key is apart from the lock: saved and destroyed, it leaves the lock.
    assert.equal(await plain.save(key, record({ a: 1 }, 1, 600_000, now), null), true);
    await plain.destroy(key);
    await holds("first", at, 90_000.5, "destroy leaves the lock alone");
    assert.equal(await store.lock!(key, "second", 30_000), false);
    await step("unlock", () => store.unlock!(key, "first"));
    if (locks.entry) assert.equal(await locks.entry("lease", key), undefined, "released by its owner");
    assert.equal(await store.lock!(key, "second", 30_000), true, "free once its owner released it");
  });

  if (!locks.byClock) return;

  it("decides when a lock lapses by the store's clock alone, which travels with each operation", async () => {
    let now = Date.now();
    const store = await hooks.open("lapse", () => now);
    const ahead = await hooks.open("lapse", () => now + HOUR);
    const key = randomKey();
    assert.equal(await store.lock!(key, "a", 60_000), true);
    assert.equal(await store.lock!(key, "b", 60_000), false);
    assert.equal(await ahead.lock!(key, "b", 60_000), true, "an hour from now, a's lock has lapsed");
    assert.equal(
      await store.lock!(key, "a", 60_000),
      false,
      "b's lock lasts until an hour and a minute from now",
    );
    now += HOUR + 60_000 - 1; // the last millisecond of b's lock
    assert.equal(await store.lock!(key, "a", 60_000), false);
    now += 1;
    if (locks.entry) {
      assert.equal((await locks.entry("lapse", key))?.owner, "b", "the backend still holds it");
    }
    assert.equal(await store.lock!(key, "a", 60_000), true, "lapsed by the store's clock");
    if (locks.entry) assert.equal((await locks.entry("lapse", key))?.owner, "a");
  });
}

function userCases(
  hooks: LockUserHooks,
  users: UserHooks,
  opened: (ns: string, now: () => number) => Promise<Counted>,
): void {
  const sends = users.sends ?? {};

  /** Checks that `user`'s index holds `key` alone, lasting `until`, its entry written at `at`. */
  async function indexed(
    ns: string,
    user: string,
    key: string,
    until: number | undefined,
    at: number,
    label: string,
  ): Promise<void> {
    const entries = await users.entries?.(ns, user);
    if (entries) assert.deepEqual(Object.keys(entries), [key], label);
    if (entries && until !== undefined && entries[key] !== null) assert.equal(entries[key], until, label);
    if (users.note) {
      const note = await users.note(ns, key);
      assert.ok(note, `${label}: the record notes its index`);
      if (note.user !== undefined) assert.equal(note.user, user, label);
      if (note.tag !== undefined) assert.equal(note.tag, await tagOf(user), label);
      if (note.until !== undefined) assert.equal(note.until, until, label);
    }
    if (users.expiry && until !== undefined) {
      const left = await users.expiry.left(ns, user, key);
      assert.ok(
        left !== undefined && Math.abs(left - (until - at)) <= users.expiry.slack,
        `${label}: the backend keeps the entry ${left} ms, for one that must last ${
          until - at
        } from its write`,
      );
    }
  }

  it("indexes a session with its save, in the save's own request or before its record; a refused save writes no entry, and loads return the record alone", async () => {
    const now = Date.now();
    const { store, sent } = await opened("index", () => now);
    // Every script and statement is known from here on.
    await store.save(randomKey(), record({ user: "warm" }, 1, 60_000, now), null, { user: "warm" });
    await store.keysOfUser!("warm");
    const user = `ada-${randomKey().slice(0, 8)}@example.com`;
    const key = randomKey();
    const saved = record({ user }, 1, 60_000, now);
    sent.length = 0;
    assert.equal(await store.save(key, saved, null, { user }), true);
    if (sends.save) {
      assert.deepEqual(sent.splice(0), sends.save, "written with the save, or before its record");
    }
    await indexed("index", user, key, users.until?.(saved.expiresAt, now), now, "saved");
    assert.deepEqual(await store.keysOfUser!(user), [key]);
    if (sends.list) assert.deepEqual(sent.splice(0), sends.list, "listed");
    assert.deepEqual(await store.load(key), saved, "loads return the record alone");
    // A refused save writes no entry (or one that no listing shows, where the entry comes first).
    const other = randomKey();
    const created = record({}, 1, 60_000, now);
    assert.equal(await store.save(other, created, null), true);
    sent.length = 0;
    refused(
      await store.save(other, record({ user }, 2, 60_000, now), 7, { user }),
      created,
      hooks.reportsCurrent,
    );
    if (sends.refused) assert.deepEqual(sent.splice(0), sends.refused, "a refused save");
    if (users.entries && !users.entryFirst) {
      assert.deepEqual(Object.keys(await users.entries("index", user)), [key]);
    }
    assert.deepEqual(await store.load(other), created);
    // Users apart by their whole ids; index entries are no sessions.
    const longer = randomKey();
    await store.save(longer, record({ user: `${user}m` }, 1, 60_000, now), null, { user: `${user}m` });
    assert.deepEqual(await store.keysOfUser!(user), [key]);
    assert.deepEqual(await store.keysOfUser!(`${user}m`), [longer]);
    assert.deepEqual(await store.keysOfUser!(user.slice(0, -1)), []);
    if (store.count) assert.equal(await store.count(), 4, "index entries are no sessions");
  });

  it("keeps a key indexed through later saves and touches, entering it again before the record outlives its entry", async () => {
    let now = Date.now();
    const { store, sent } = await opened("carry", () => now);
    const other = await hooks.open("carry", () => now); // another process's instance
    // Every script is known from here on: a touch far past a warm-up session's index entry.
    const warm = randomKey();
    await store.save(warm, record({ user: "warm" }, 1, 60_000, now), null, { user: "warm" });
    assert.equal(await store.touch(warm, now + 600_000, 1), true);
    const user = `grace-${randomKey().slice(0, 12)}`;
    const key = randomKey();
    const remembers = users.remembers !== false;
    const named = remembers ? undefined : { user }; // where the record forgets, every save names its user
    assert.equal(await store.save(key, record({ user }, 1, 60_000, now), null, { user }), true);
    let expiresAt = now + 60_000;
    let until = users.until?.(expiresAt, now);
    let enteredAt = now;
    await indexed("carry", user, key, until, enteredAt, "saved");
    async function write(label: string, by: Store, run: (store: Store) => Promise<unknown>, next: number) {
      sent.length = 0;
      assert.equal(await run(by), true, label);
      const again = until !== undefined && until < next + (users.margin ?? 0);
      const expected = again ? sends.reindex : sends.update;
      if (expected && by === store) {
        assert.deepEqual(sent, expected, `${label}: ${again ? "entered again" : "as is"}`);
      }
      if (again) {
        until = users.until!(next, now);
        enteredAt = now;
      }
      expiresAt = next;
      await indexed("carry", user, key, until, enteredAt, label);
      assert.deepEqual(await store.keysOfUser!(user), [key], label);
    }
    now += 20_000;
    const data = (n: number) => ({ user, n });
    await write(
      "a save naming the user",
      store,
      (s) => s.save(key, record(data(1), 2, 60_000, now), 1, { user }),
      now + 60_000,
    );
    await write(
      "a save from another instance",
      other,
      (s) => s.save(key, record(data(2), 3, 70_000, now), 2, named),
      now + 70_000,
    );
    now += 20_000;
    await write(
      "a later save",
      store,
      (s) => s.save(key, record(data(3), 4, 60_000, now), 3, named),
      now + 60_000,
    );
    for (let step = 1; step <= 6; step++) {
      now += 50_000;
      await write(`touch ${step}`, store, (s) => s.touch(key, now + 60_000, 4), now + 60_000);
    }
    now += 50_000;
    await write("a touch a day ahead", store, (s) => s.touch(key, now + DAY + HOUR, 4), now + DAY + HOUR);
    assert.deepEqual((await store.load(key))?.data, data(3));
    let version = 4;
    if (!remembers) {
      // A save that names no user (a logout) leaves the record without one.
      assert.equal(await store.save(key, record({}, 5, 60_000, now), 4), true);
      version = 5;
      if (users.note) assert.equal(await users.note("carry", key), undefined);
      if (users.current) assert.deepEqual(await store.keysOfUser!(user), []);
      if (users.current && users.entries) {
        assert.deepEqual(Object.keys(await users.entries("carry", user)), []);
      }
    }
    // A save naming another user lists the key under that one; a refused save changes nothing.
    const ada = `ada-${randomKey().slice(0, 12)}`;
    const moved = record({ user: ada }, version + 1, 60_000, now);
    assert.equal(await store.save(key, moved, version, { user: ada }), true);
    assert.deepEqual(await store.keysOfUser!(ada), [key]);
    if (users.current) assert.deepEqual(await store.keysOfUser!(user), [], "no longer the user's");
    const late = record({ user }, version + 2, 60_000, now);
    refused(await store.save(key, late, version, { user }), moved, hooks.reportsCurrent);
    assert.deepEqual(await store.keysOfUser!(ada), [key]);
    if (users.current) assert.deepEqual(await store.keysOfUser!(user), []);
    // A session never saved with a user stays out of every index, touched or not.
    const plain = randomKey();
    sent.length = 0;
    assert.equal(await store.save(plain, record({}, 1, 60_000, now), null), true);
    assert.equal(await store.touch(plain, now + 120_000, 1), true);
    if (sends.plain) assert.deepEqual(sent, sends.plain, "no index read or written");
    if (users.note) assert.equal(await users.note("carry", plain), undefined);
    // Listed as long as the record lives, or its entry where that lasts longer; last, as a
    // listing on a clock past the record may clean it away.
    if (users.liveOnly || users.byClock) {
      const lapse = users.liveOnly ? moved.expiresAt : users.until!(moved.expiresAt, now);
      const later = await hooks.open("carry", () => lapse - 1);
      assert.deepEqual(await later.keysOfUser!(ada), [key], "in its last millisecond");
      const lapsed = await hooks.open("carry", () => lapse);
      assert.deepEqual(await lapsed.keysOfUser!(ada), [], "lapsed");
    }
  });

  if (users.prunes) {
    it("drops the entries no record can need any more as it writes the index, which lasts as long as its longest entry", async () => {
      let now = Date.now();
      const store = await hooks.open("prune", () => now);
      const user = `hopper-${randomKey().slice(0, 12)}`;
      const [short, long, later] = [randomKey(), randomKey(), randomKey()];
      await store.save(short, record({ user }, 1, 10_000, now), null, { user });
      await store.save(long, record({ user }, 1, 600_000, now), null, { user });
      const lapse = users.until!(now + 10_000, now);
      const longest = users.until!(now + 600_000, now);
      assert.deepEqual((await store.keysOfUser!(user)).sort(), [long, short].sort());
      if (users.expiry) {
        const left = await users.expiry.left("prune", user, long);
        assert.ok(
          left !== undefined && Math.abs(left - (longest - now)) <= users.expiry.slack,
          `the index is kept ${left} ms, its longest entry lasts ${longest - now}`,
        );
      }
      now = lapse; // the short session's entry has lapsed
      assert.deepEqual(await store.keysOfUser!(user), [long]);
      assert.deepEqual(
        Object.keys(await users.entries!("prune", user)).sort(),
        [long, short].sort(),
        "kept until the index is written",
      );
      await store.save(later, record({ user }, 1, 60_000, now), null, { user });
      assert.deepEqual(Object.keys(await users.entries!("prune", user)).sort(), [long, later].sort());
    });
  }

  it("refuses a user id that is no string, or one the backend cannot hold, before sending anything", async () => {
    const { store, sent } = await opened("badid", Date.now);
    for (const user of [7 as unknown as string, ...users.badIds ?? []]) {
      await assert.rejects(
        store.save(randomKey(), record({}), null, { user }),
        TypeError,
        JSON.stringify(user),
      );
      await assert.rejects(store.keysOfUser!(user), TypeError, JSON.stringify(user));
    }
    assert.deepEqual(sent, []);
  });

  const indexDown = users.indexDown;
  if (indexDown) {
    it("saves nothing and lists nothing when the users' index cannot be reached: StoreUnavailableError", async () => {
      const [store, partial] = [
        await hooks.open("indexdown", Date.now),
        await indexDown("indexdown", Date.now),
      ];
      const key = randomKey();
      const e = await error(partial.save(key, record({ user: "ada" }), null, { user: "ada" }));
      assert.ok(e instanceof StoreUnavailableError, `expected StoreUnavailableError, got ${e}`);
      assert.equal(await store.load(key), null);
      await assert.rejects(partial.keysOfUser!("ada"), StoreUnavailableError);
    });
  }

  const room = users.room;
  if (room) {
    it("takes the longest prefix that leaves room for an index key, and refuses a save with a user under a longer one before writing", async () => {
      const roomy = await room.fits();
      const fits = randomKey();
      assert.equal(await roomy.save(fits, record({}), null, { user: "ada" }), true);
      assert.deepEqual(await roomy.keysOfUser!("ada"), [fits]);
      const { store: strict, sent } = await room.over();
      const key = randomKey();
      const refusal = await error(strict.save(key, record({}), null, { user: "ada" }));
      assert.ok(refusal instanceof SessionConfigError, `expected SessionConfigError, got ${refusal}`);
      assert.match(refusal.message, room.message);
      assert.deepEqual(sent, [], "nothing sent");
      assert.equal(await strict.load(key), null);
    });
  }
  if (sends.save && sends.read && sends.update) {
    it("costs the indexed create at a sign-in through withSession; then one read per read, read and update per change", async () => {
      const { store, sent } = await opened("costs", Date.now);
      const user = `turing-${randomKey().slice(0, 8)}`;
      const handler = withSession(async (req: Request) => {
        const session = await getSession<{ user?: string; n?: number }>(req);
        const path = new URL(req.url).pathname;
        if (path === "/login") session.set("user", user);
        if (path === "/inc") session.update("n", (n = 0) => n + 1);
        return new Response(String(session.get("n") ?? 0));
      }, {
        store,
        secrets: "round trip test secret, at least 32 characters",
        users: userSessions({ userKey: "user" }),
      });
      const browser = new Client(handler);
      const expect = async (path: string, calls: string[]) => {
        sent.length = 0;
        await browser.text(path);
        assert.deepEqual(sent, calls, path);
      };
      await expect("/login", sends.save!);
      await expect("/read", sends.read!);
      await expect("/inc", [...sends.read!, ...sends.update!]);
      await expect("/inc", [...sends.read!, ...sends.update!]);
    });
  }
}
