// The cases that several stores' own tests used to write out each in its own words, written
// once: corrupt records and the logger, data errors, the text a store keeps, outages, expiry by
// the store's clock, touch, expired saves, locks and sessions per user; then what the backend
// holds and when it drops it, compare-and-set answers, round trips, driver errors, namespaces
// and construction. A store's test file calls `storeCases` with hooks that reach behind the
// store (its raw records, its locks, a counted client); a case whose hook a store does not give
// is not run for it.
//
// Each case opens its stores in a namespace of its own (`ns`: a prefix, a table), so that what it
// counts and lists is its own.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { SessionDataError, SessionTooLargeError, StoreUnavailableError } from "../../src/errors.ts";
import {
  ENDED_AT_KEY,
  ENDED_KEY,
  isEnded,
  type SaveResult,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
} from "../../src/store.ts";
import {
  NUMBERS,
  raceOfCreates,
  raceOfReportedConflicts,
  record,
  STORABLE,
  storeThroughSession,
  UNSTORABLE,
} from "../stores/remote_cases.ts";
import { assertRoundTrips, type ExpectedCalls } from "./round_trips.ts";
import { randomKey, sleep } from "./util.ts";
import { sessionSuite } from "./session_suite.ts";
import { storeSuite } from "./store_suite.ts";
import { endUserSessions, getSession, listUserSessions, withSession } from "../../mod.ts";
import { userSessions } from "../../src/users/options.ts";

/** What a case may ask of the store it opens. */
export interface OpenOptions {
  /** The store's clock. */
  now?: () => number;
  onCorrupt?: (key: string, error: Error) => void;
  logger?: { warn(...args: unknown[]): void };
}

type Store = SessionStore & Required<Pick<SessionStore, "touch">>;

/** How a store's test file plugs into the shared cases. */
export interface StoreCaseHooks {
  /** A store over the real backend, in the namespace `ns` (a prefix, a table) of its own. */
  open(ns: string, options?: OpenOptions): Store | Promise<Store>;
  /** Frees what the cases opened (tables, connections). */
  close?(): void | Promise<void>;
  /**
   * A refused save reports the current record (else it may answer plain `false`; `"false"`: it
   * always does, as Workers KV, which cannot compare-and-set).
   */
  reportsCurrent?: boolean | "false";
  /** But a save that races another may be refused with plain `false` (Memcached's gets and cas). */
  racesAnswerFalse?: boolean;
  /** The record under `key` as the backend holds it, parsed; `undefined` when it holds none. */
  raw?(ns: string, key: string): Promise<Record<string, unknown> | undefined>;
  /** The milliseconds the backend's own expiry leaves the record under `key`, in steps of `ttlGrain`. */
  ttl?(ns: string, key: string): Promise<number | undefined>;
  ttlGrain?: number;
  /** A store in `ns` whose every request to the backend is counted (else `calls.open` counts). */
  counted?(ns: string): Promise<{ store: Store; sent(): number }>;
  /** Clock skews (ms) under which expiry is checked to follow the store's clock alone. */
  skews?: number[];
  /** Records the backend can hold that are no record: written raw, read as missing. */
  corrupt?: {
    /** Raw values, each written by `write` and read as corrupt. */
    forms: string[];
    write(ns: string, key: string, form: string): Promise<void>;
    /** The raw value again: when given, an update (and, with `keptOnCreate`, a create) must leave it. */
    read?(ns: string, key: string): Promise<string | undefined>;
    keptOnCreate?: boolean;
    /** What the logger's warning says. */
    warning: RegExp;
  };
  /**
   * A store whose backend cannot be reached, and how to let go of it. With `raises`, the store
   * itself raises StoreUnavailableError (else it lets the driver's error through, and the core
   * tells an outage by it).
   */
  unreachable?(): Promise<{ store: SessionStore; close(): void | Promise<void>; raises?: boolean }>;
  /** Whether the data's keys come back in the order they were saved (PostgreSQL `jsonb`: not). */
  keepsKeyOrder?: boolean;
  /**
   * Records at the store's size limit: each of `fits` is stored; each of `over` is refused with
   * SessionTooLargeError (its message matching) before anything reaches the backend.
   */
  size?: {
    fits: StoredSession[];
    over: [record: StoredSession, message?: RegExp][];
    /** The user's id counts in the limit: the first of `fits`, saved with a user, is refused too. */
    userCounts?: boolean;
  };
  /**
   * Whether the store keeps lone surrogates and U+0000 (else it refuses them: PostgreSQL, whose
   * `count()` then shows that nothing was written).
   */
  keepsAnyText?: boolean;
  /** A save whose record has already expired deletes the record at the expected version. */
  expiredSave?: boolean;
  /**
   * `touch` answers false on a tombstone (told by its data's top-level key), which then loads as
   * saved (`"kept"`: loads as ended, with an expiry the store chose).
   */
  tombstoneTouch?: boolean | "kept";
  /** Locks: the error a bad duration raises, and the lock's owner as the backend holds it. */
  locks?: {
    /** Checks a lock key made of a storage key that is none. */
    checksKey?: boolean;
    owner?(ns: string, key: string): Promise<string | undefined>;
    /** A lock lapses by the store's clock (else by the backend's own time to live). */
    byClock?: boolean;
  };
  /** count() follows the store's clock (else it counts what the backend still holds). */
  countsByClock?: boolean;
  /** `ttl` reads the very lifetime the store gave the backend (a recorded `expireIn`). */
  ttlExact?: boolean;
  /** The backend drops a record by its own time to live within a step of `ttlGrain` (else lazily). */
  vanishes?: boolean;
  /** A create racing another may be refused with plain `false` (PostgreSQL: a row its statement cannot see). */
  createsAnswerFalse?: boolean;
  /**
   * The backend calls of a store in `ns`, recorded by name (a command, a statement's verb), and
   * those each kind of request costs; `requests` counts the requests of an HTTP bridge between,
   * which must equal the calls.
   */
  calls?: {
    open(ns: string): Promise<{ store: Store; sent: string[]; requests?: () => number }>;
    expected: ExpectedCalls & {
      /**
       * A create refused by a live record, and an update refused by a stale or missing one (by
       * default, what a create and an update cost).
       */
      refusedCreate?: string[];
      refusedUpdate?: string[];
    };
  };
  /**
   * Makes the backend fail every operation on `key` in `ns` with an error of its own, whose
   * message matches `message`; `intact` tells that the store left what caused it as it was.
   */
  driverError?: {
    cause(ns: string, key: string): Promise<void>;
    message: RegExp;
    intact?(ns: string, key: string): Promise<boolean>;
  };
  /** Values past what the backend can hold (a version past its integer, an expiry past its time). */
  outOfRange?: { version: number; expiresAt: number };
  /** Every store opened reaches the same records, whatever its namespace (Durable Objects). */
  oneNamespace?: boolean;
  /** A store given no namespace option, and the record it keeps under `key` in its default one. */
  byDefault?: {
    open(): Store | Promise<Store>;
    raw(key: string): Promise<Record<string, unknown> | undefined>;
  };
  /** The capabilities a store claims, and the optional methods it must not have. */
  claims?: { capabilities: StoreCapabilities; lacks: string[] };
  /**
   * Constructions each refused with the error named (TypeError when none is), or taken (`null`:
   * the edge of what it takes).
   */
  badOptions?:
    readonly (readonly [label: string, construct: () => unknown, error?: ErrorConstructor | null])[];
  /** Sessions per user: every raw key name in `ns`, to show no user id is spelled in one. */
  users?: {
    rawKeys?(ns: string): Promise<string[]>;
    /** keysOfUser lists live records only (others may list a key until its index entry lapses). */
    liveOnly?: boolean;
    /** Index entries lapse by the store's clock (else by the backend's own expiry). */
    byClock?: boolean;
    /** A store in `ns` on a connection of its own, as another process would have one. */
    apart?(ns: string): Promise<{ store: Store; close(): void | Promise<void> }>;
    /** The storage keys the backend holds under the user's tag (the current layout), read raw. */
    tagKeys?(ns: string, user: string): Promise<string[]>;
    /** The layout of an earlier version, which names the user by its id: still read. */
    oldLayout?: {
      /** Writes the record and its index entry as the earlier version did. */
      write(ns: string, user: string, key: string, record: StoredSession): Promise<void>;
      /** The storage keys indexed under `user` in the old layout, read raw. */
      entries(ns: string, user: string): Promise<string[]>;
      /** Removes an old entry as if it lapsed (where a record that remembers its user moves). */
      lapse?(ns: string, user: string, key: string): Promise<void>;
    };
  };
}

function refused(
  result: SaveResult,
  current: StoredSession | null,
  reportsCurrent: boolean | "false",
  message?: string,
) {
  // With no message, assert's own (undefined is its default).
  const says = message as string;
  if (reportsCurrent === "false") assert.equal(result, false, says);
  else if (reportsCurrent) assert.deepEqual(result, { current }, says);
  else assert.notEqual(result, true, says);
}

async function error(promise: Promise<unknown>): Promise<unknown> {
  return await promise.then(() => undefined, (e: unknown) => e);
}

/**
 * The store contract, the session suite and the shared cases, on one set of hooks: each in a
 * namespace of its own ("contract", "sessions", then one per case).
 */
export function storeSuites(name: string, hooks: StoreCaseHooks): void {
  const reportsCurrent = hooks.reportsCurrent === true && !hooks.racesAnswerFalse;
  storeSuite(name, { open: () => hooks.open("contract"), reportsCurrent });
  sessionSuite(name, { open: () => hooks.open("sessions") });
  storeCases(name, hooks);
}

/** Runs the shared cases for one store under `describe(name)`. */
export function storeCases(name: string, hooks: StoreCaseHooks): void {
  const calls = hooks.calls;
  if (hooks.counted === undefined && calls !== undefined) {
    hooks = {
      ...hooks,
      counted: async (ns) => {
        const { store, sent } = await calls.open(ns);
        return { store, sent: () => sent.length };
      },
    };
  }
  describe(`${name}: shared store cases`, () => {
    after(async () => {
      await hooks.close?.();
    });

    backendCases(hooks);

    const corrupt = hooks.corrupt;
    if (corrupt) {
      it("reads a corrupt record as missing, reports it, and never overwrites it", async () => {
        const reports: [string, Error][] = [];
        const store = await hooks.open("corrupt", { onCorrupt: (key, e) => void reports.push([key, e]) });
        const keys = corrupt.forms.map(() => randomKey());
        for (const [i, form] of corrupt.forms.entries()) await corrupt.write("corrupt", keys[i]!, form);
        for (const key of keys) assert.equal(await store.load(key), null);
        assert.deepEqual(reports.map(([key]) => key), keys);
        assert.ok(reports.every(([, e]) => e instanceof TypeError));
        if (corrupt.read) {
          assert.equal(await store.save(keys[0]!, record({ a: 1 }, 2), 1), false);
          if (corrupt.keptOnCreate) assert.equal(await store.save(keys[0]!, record({ a: 1 }), null), false);
          assert.equal(await corrupt.read("corrupt", keys[0]!), corrupt.forms[0]);
        }
      });

      it("writes its warnings to the logger it is given, and refuses one without warn()", async () => {
        const warnings: unknown[][] = [];
        const store = await hooks.open("logger", { logger: { warn: (...args) => void warnings.push(args) } });
        const key = randomKey();
        await corrupt.write("logger", key, corrupt.forms[0]!);
        assert.equal(await store.load(key), null);
        assert.equal(warnings.length, 1);
        assert.match(String(warnings[0]![0]), corrupt.warning);
        await assert.rejects(async () => await hooks.open("logger", { logger: {} as Console }), TypeError);
      });
    }

    it("refuses data JSON cannot write with SessionDataError and bad times with TypeError, sending nothing", async () => {
      const opened = await hooks.open("data");
      const counted = await hooks.counted?.("data");
      const store = counted?.store ?? opened;
      const cycle: Record<string, unknown> = {};
      cycle.self = cycle;
      const key = randomKey();
      for (const data of [{ big: 1n }, cycle, [] as unknown as Record<string, unknown>]) {
        const e = await error(store.save(key, record(data), null));
        assert.ok(e instanceof SessionDataError, String(e));
        assert.ok(!(e instanceof StoreUnavailableError));
      }
      await assert.rejects(store.save(key, { ...record({}), createdAt: NaN }, null), TypeError);
      await assert.rejects(store.save(key, { ...record({}), expiresAt: NaN }, null), TypeError);
      for (
        const [expiresAt, version] of [[NaN, 1], [Infinity, 1], [Date.now() + 60_000, 0], [Date.now(), 1.5]]
      ) {
        await assert.rejects(store.touch(key, expiresAt!, version!), TypeError);
      }
      if (counted) assert.equal(counted.sent(), 0);
      if (hooks.raw) assert.equal(await hooks.raw("data", key), undefined);
    });

    it(
      hooks.keepsAnyText === false
        ? "keeps the valid neighbours of what it refuses, and numbers, exactly"
        : "keeps lone surrogates, NUL, line breaks and their neighbours exactly, in keys and values, in key order",
      async () => {
        const store = await hooks.open("text");
        const cases: [string, Record<string, unknown>][] = [
          ["valid pairs and neighbours", STORABLE],
          ["numbers at the edges of a double", NUMBERS],
        ];
        if (hooks.keepsAnyText !== false) {
          cases.push(...UNSTORABLE.map(([label, data]): [string, Record<string, unknown>] => [label, data]), [
            "line breaks, separators and mixed text",
            {
              lone: "a\ud800b\udc00",
              lines: "one\r\ntwo\nthree\r",
              sep: "\u2028\u2029",
              "\u0000\ud800": ["\udbff"],
            },
          ]);
        }
        for (const [label, data] of cases) {
          const key = randomKey();
          const saved = record(data);
          assert.equal(await store.save(key, saved, null), true, label);
          const loaded = await store.load(key);
          assert.deepEqual(loaded, saved, label);
          if (hooks.keepsKeyOrder !== false) {
            assert.deepEqual(Object.keys(loaded!.data), Object.keys(data), label);
          }
          // The same through a refused save's report, and after a touch.
          const result = await store.save(key, record({}, 6), 5);
          if (hooks.reportsCurrent === true) assert.deepEqual(result, { current: saved }, label);
          else refused(result, null, hooks.reportsCurrent ?? false);
          assert.equal(await store.touch(key, saved.expiresAt + 1_000, 1), true, label);
          assert.deepEqual((await store.load(key))?.data, data, label);
        }
      },
    );

    const size = hooks.size;
    if (size) {
      it("refuses a record over its size limit before sending it, counting bytes, and stores the largest that fits", async () => {
        const store = await hooks.open("size");
        const kept = randomKey();
        const small = record({ small: true });
        assert.equal(await store.save(kept, small, null), true);
        for (const fits of size.fits) {
          const key = randomKey();
          assert.equal(await store.save(key, fits, null), true, `${JSON.stringify(fits).length} characters`);
          assert.deepEqual((await store.load(key))?.data, fits.data);
        }
        const counted = await hooks.counted?.("size");
        for (const [over, message] of size.over) {
          const key = randomKey();
          const e = await error((counted?.store ?? store).save(key, over, null));
          assert.ok(e instanceof SessionTooLargeError, `expected SessionTooLargeError, got ${e}`);
          if (message) assert.match(e.message, message);
          if (counted) assert.equal(counted.sent(), 0, "nothing may be sent");
          assert.equal(await store.load(key), null);
          if (hooks.raw) assert.equal(await hooks.raw("size", key), undefined);
          // An update as large is refused too, and the record it would replace is kept.
          await assert.rejects(store.save(kept, { ...over, version: 2 }, 1), SessionTooLargeError);
          assert.deepEqual(await store.load(kept), small);
        }
        if (size.userCounts) {
          const key = randomKey();
          const e = await error((counted?.store ?? store).save(key, size.fits[0]!, null, { user: "ada" }));
          assert.ok(
            e instanceof SessionTooLargeError,
            `with a user: expected SessionTooLargeError, got ${e}`,
          );
          if (counted) assert.equal(counted.sent(), 0, "nothing may be sent");
          assert.equal(await store.load(key), null);
        }
      });
    }

    if (hooks.keepsAnyText !== false) {
      it("keeps a lone surrogate and NUL that a handler stores through withSession", async () => {
        const value = { lone: "\ud800", reversed: "\udc00\ud800", nul: "a\u0000b", ["k\udfff"]: "🎉" };
        const { status, errors, readBack } = await storeThroughSession(await hooks.open("session"), value);
        assert.deepEqual(errors, []);
        assert.equal(status, 200);
        assert.deepEqual(JSON.parse(readBack!), value);
      });
    }

    const unreachable = hooks.unreachable;
    if (unreachable) {
      it("raises StoreUnavailableError, never null, when the backend cannot be reached; withSession answers 503", async () => {
        const { store, close, raises } = await unreachable();
        try {
          const e = await error(store.load(randomKey()));
          assert.ok(e instanceof Error, `expected an error, got ${e}`);
          if (raises) {
            assert.ok(e instanceof StoreUnavailableError, `expected StoreUnavailableError, got ${e}`);
            assert.ok(e.cause instanceof Error, String(e.cause));
          }
          await assert.rejects(
            store.save(randomKey(), record({}), null),
            raises ? StoreUnavailableError : Error,
          );
          const { status, errors } = await storeThroughSession(store, "fine");
          assert.equal(status, 503);
          assert.ok(errors.length > 0 && errors.every((e) => e instanceof StoreUnavailableError));
        } finally {
          await close();
        }
      });
    }

    it("lets the store's clock alone decide expiry, whatever the backend still holds", async () => {
      for (const skew of hooks.skews ?? [0]) {
        const ns = `clock${skew < 0 ? "behind" : skew > 0 ? "ahead" : ""}`;
        let now = Date.now() + skew;
        const store = await hooks.open(ns, { now: () => now });
        const counts = hooks.countsByClock !== false && "count" in store && typeof store.count === "function";
        const count = () => (store as { count(): Promise<number> }).count();
        const cleans = "cleanup" in store && typeof store.cleanup === "function";
        const cleanup = () => (store as { cleanup(): Promise<number> }).cleanup();
        const key = randomKey();
        const first = record({ a: 1 }, 1, 60_000, now);
        assert.equal(await store.save(key, first, null), true);
        if (counts) assert.equal(await count(), 1);
        // A store on the backend's own clock reads the record by that clock: live or expired.
        const plain = await hooks.open(ns);
        assert.deepEqual(await plain.load(key), first.expiresAt > Date.now() ? first : null, `skew ${skew}`);
        // The backend's time to live is counted on the store's clock, whatever the backend's says.
        const ttl = await hooks.ttl?.(ns, key);
        if (hooks.ttl) {
          assert.ok(
            ttl !== undefined && ttl > 0 && ttl <= 60_000 + (hooks.ttlGrain ?? 0),
            `ttl ${ttl} with a skew of ${skew} ms`,
          );
        }

        now = first.expiresAt - 1; // its last live millisecond
        assert.deepEqual(await store.load(key), first);
        if (counts) assert.equal(await count(), 1);
        if (cleans) assert.equal(await cleanup(), 0);
        refused(
          await store.save(key, record({ a: 2 }, 1, 60_000, now), null),
          first,
          hooks.reportsCurrent ?? false,
        );
        const second = record({ a: 2 }, 2, 60_000, now);
        assert.equal(await store.save(key, second, 1), true);
        assert.equal(await store.touch(key, second.expiresAt + 1, 2), true);
        const touched = { ...second, expiresAt: second.expiresAt + 1 };
        assert.deepEqual(await store.load(key), touched);

        now = touched.expiresAt; // expired by the store's clock
        if (hooks.raw) assert.ok(await hooks.raw(ns, key), "the backend still holds the record");
        assert.equal(await store.load(key), null);
        if (counts) assert.equal(await count(), 0);
        refused(
          await store.save(key, record({ a: 3 }, 3, 60_000, now), 2),
          null,
          hooks.reportsCurrent ?? false,
        );
        assert.equal(await store.touch(key, now + 60_000, 2), false); // never revives it
        if (hooks.raw) assert.equal((await hooks.raw(ns, key))?.expiresAt, touched.expiresAt);
        now = touched.expiresAt - 1;
        assert.deepEqual(await store.load(key), touched);
        now = touched.expiresAt;
        if (cleans) {
          assert.equal(await cleanup(), 1);
          if (hooks.raw) assert.equal(await hooks.raw(ns, key), undefined);
        }

        // An expired record is replaced by a create as if absent.
        const stale = record({ stale: true }, 4, 1, now);
        assert.equal(await store.save(key, stale, null), true);
        now = stale.expiresAt;
        const fresh = record({ fresh: true }, 1, 60_000, now);
        assert.equal(await store.save(key, fresh, null), true);
        assert.deepEqual(await store.load(key), fresh);
        if (counts) assert.equal(await count(), 1);
      }
    });

    it("touch rewrites only expiresAt, never shortens, and leaves a tombstone as it is", async () => {
      const store = await hooks.open("touch");
      const key = randomKey();
      const saved = record({ keep: "ü ✓", list: [1, 2, 3], "a,b": "c,d" }, 1, 10_000);
      await store.save(key, saved, null);
      const later = saved.expiresAt + 600_000;
      assert.equal(await store.touch(key, later, 2), false, "a touch at another version");
      assert.equal(await store.touch(key, later, 1), true);
      const touched = { ...saved, expiresAt: later };
      assert.deepEqual(await store.load(key), touched);
      if (hooks.raw) assert.deepEqual(await hooks.raw("touch", key), touched);
      if (hooks.ttl) {
        const ttl = await hooks.ttl("touch", key);
        assert.ok(ttl !== undefined && ttl > 600_000, `ttl ${ttl}`);
      }
      // An expiry already past never deletes the record (a touch never shortens one).
      assert.equal(await store.touch(key, Date.now() - 1, 1), false);
      assert.deepEqual(await store.load(key), touched);
      if (hooks.ttl) assert.ok((await hooks.ttl("touch", key))! > 600_000);
      if (!hooks.tombstoneTouch) return;
      // A tombstone is told by its data's top-level key, with its other keys in any order; a
      // nested or quoted "__ended" is data like any other.
      const nested = randomKey();
      const live = record({ note: { [ENDED_KEY]: true }, text: `"${ENDED_KEY}":true` }, 1, 60_000);
      await store.save(nested, live, null);
      assert.equal(await store.touch(nested, live.expiresAt + 60_000, 1), true);
      const ended = { ...live, data: { [ENDED_AT_KEY]: Date.now(), [ENDED_KEY]: true }, version: 2 };
      assert.equal(await store.save(nested, ended, 1), true);
      assert.equal(await store.touch(nested, ended.expiresAt + 600_000, 2), false);
      const loaded = await store.load(nested);
      assert.ok(isEnded(loaded));
      // Workers KV keeps a tombstone for at least its tombstoneTtl, later than saved.
      if (hooks.tombstoneTouch === "kept") return;
      assert.deepEqual(loaded, ended);
      if (hooks.raw) assert.deepEqual(await hooks.raw("touch", nested), ended);
    });

    if (hooks.expiredSave) {
      it("an already expired save deletes the record at the expected version and is done", async () => {
        const store = await hooks.open("expired");
        const key = randomKey();
        const live = record({ a: 1 });
        await store.save(key, live, null);
        const expired = {
          data: { a: 2 },
          version: 2,
          createdAt: Date.now() - 10_000,
          expiresAt: Date.now() - 1,
        };
        refused(await store.save(key, expired, 7), live, hooks.reportsCurrent ?? false);
        refused(await store.save(key, expired, null), live, hooks.reportsCurrent ?? false);
        assert.ok(await store.load(key));
        assert.equal(await store.save(key, expired, 1), true);
        if (hooks.raw) assert.equal(await hooks.raw("expired", key), undefined);
        assert.equal(await store.save(key, expired, null), true);
        if (hooks.raw) assert.equal(await hooks.raw("expired", key), undefined);
        refused(await store.save(key, expired, 1), null, hooks.reportsCurrent ?? false);
      });
    }

    const locks = hooks.locks;
    if (locks) {
      it("keeps a lock by the store's clock, extended and released by its owner only, writing no record", async () => {
        let now = Date.now();
        const store = await hooks.open("lock", { now: () => now });
        const owner = (key: string) => locks.owner?.("lock", key);
        const key = randomKey();
        assert.equal(await store.lock!(key, "first", 30_000), true);
        if (locks.owner) assert.equal(await owner(key), "first");
        assert.equal(await store.lock!(key, "second", 30_000), false);
        now += 10_000;
        assert.equal(await store.lock!(key, "first", 30_000), true, "the owner extends it");
        if (locks.byClock !== false) {
          now += 29_999; // the extended lock's last millisecond
          assert.equal(await store.lock!(key, "second", 30_000), false);
        }
        await store.unlock!(key, "second");
        if (locks.owner) assert.equal(await owner(key), "first", "only its owner releases it");
        if (locks.byClock !== false) {
          now += 1; // lapsed by the store's clock, whatever the backend's says
          if (locks.owner) assert.equal(await owner(key), "first", "the backend still holds it");
        } else await store.unlock!(key, "first");
        assert.equal(await store.lock!(key, "second", 60_000), true);
        await store.unlock!(key, "first"); // no longer its owner: nothing happens
        if (locks.owner) assert.equal(await owner(key), "second");
        assert.equal(await store.lock!(key, "first", 60_000), false);
        await store.unlock!(key, "second");
        if (locks.owner) assert.equal(await owner(key), undefined);
        assert.equal(await store.lock!(key, "first", 60_000), true);
        // The record under the same key is apart from the lock.
        assert.equal(await store.load(key), null);
        if (hooks.raw) assert.equal(await hooks.raw("lock", key), undefined);
      });

      it("of 20 takers across two store instances, exactly one wins", async () => {
        const [first, second] = [await hooks.open("race"), await hooks.open("race")];
        const key = randomKey();
        const taken = await Promise.all(
          Array.from({ length: 20 }, (_, i) => (i % 2 ? first : second).lock!(key, `owner-${i}`, 5_000)),
        );
        assert.equal(taken.filter(Boolean).length, 1);
      });

      it("refuses a bad owner or duration before reaching the backend", async () => {
        const opened = await hooks.open("lock");
        const counted = await hooks.counted?.("lock");
        const store = counted?.store ?? opened;
        // One rule for every store (assertLockArguments in the store kit).
        for (const owner of ["", 1 as never]) {
          await assert.rejects(store.lock!(randomKey(), owner, 1_000), TypeError);
          await assert.rejects(store.unlock!(randomKey(), owner), TypeError);
        }
        await assert.rejects(store.lock!(randomKey(), "a", "1000" as never), TypeError);
        for (const ttl of [0, -1, NaN, Infinity]) {
          await assert.rejects(store.lock!(randomKey(), "a", ttl), RangeError);
        }
        if (locks.checksKey !== false) await assert.rejects(store.lock!("../x", "a", 1_000), TypeError);
        if (counted) assert.equal(counted.sent(), 0);
      });
    }

    const users = hooks.users;
    if (users) {
      it("indexes a user's sessions: lists exactly them, live ones only, writing no entry on a refused save", async () => {
        let now = Date.now();
        const store = await hooks.open("users", { now: () => now });
        const user = `ada-${randomKey().slice(0, 8)}`;
        const [a, b, other] = [randomKey(), randomKey(), randomKey()];
        const saved = record({ user }, 1, 60_000, now);
        assert.equal(await store.save(a, saved, null, { user }), true);
        assert.equal(await store.save(b, record({ user }, 1, 1_000, now), null, { user }), true);
        assert.deepEqual(await store.load(a), saved, "loads return the record alone");
        assert.deepEqual([...await store.keysOfUser!(user)].sort(), [a, b].sort());
        // A refused save writes no entry.
        await store.save(other, record({}, 1, 60_000, now), null);
        assert.notEqual(await store.save(other, record({ user }, 2, 60_000, now), 7, { user }), true);
        // Users apart, by their whole ids.
        await store.save(randomKey(), record({}, 1, 60_000, now), null, { user: `${user}:b` });
        assert.deepEqual(await store.keysOfUser!(user.slice(0, -1)), []);
        now += 1_000; // b expires by the store's clock
        if (users.liveOnly) {
          assert.deepEqual(await store.keysOfUser!(user), [a], "no expired session is listed");
        }
        // Through later saves and touches, the key stays listed as long as its record lives.
        assert.equal(await store.save(a, record({ user, n: 1 }, 2, 60_000, now), 1, { user }), true);
        assert.equal(await store.touch(a, now + 600_000, 2), true);
        now += 599_000;
        if (users.byClock) assert.deepEqual(await store.keysOfUser!(user), [a]);
        else assert.ok((await store.keysOfUser!(user)).includes(a));
        if (users.byClock) {
          now += 86_400_000; // long past every record and index entry
          assert.deepEqual(await store.keysOfUser!(user), []);
        }
        await assert.rejects(store.keysOfUser!(1 as never), TypeError);
        await assert.rejects(store.save(randomKey(), record({}), null, { user: 7 as never }), TypeError);
      });

      it("signs one user in 200 times at once through withSession: every sign-in lands and is listed", async () => {
        const store = await hooks.open("crowd");
        const user = `babbage-${randomKey()}`;
        const options = {
          store,
          secrets: "a secret of at least thirty-two characters",
          users: userSessions({ userKey: "user" }),
        };
        const login = withSession(async (req: Request) => {
          (await getSession<{ user?: string }>(req)).set("user", user);
          return new Response("in");
        }, options);
        const responses = await Promise.all(
          Array.from({ length: 200 }, () => login(new Request("https://app.example/login"))),
        );
        const statuses = new Map<number, number>();
        for (const response of responses) {
          statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
        }
        assert.deepEqual([...statuses], [[200, 200]], "every sign-in answered 200");
        assert.equal(new Set(responses.map((r) => r.headers.get("set-cookie"))).size, 200);
        assert.equal((await store.keysOfUser!(user)).length, 200);
        assert.equal((await listUserSessions(options, user)).length, 200);
      });

      it("signs one user in 200 times at once from 8 processes' stores: every save lands and is listed", async () => {
        const user = `byron-${randomKey()}`;
        const keys = Array.from({ length: 200 }, () => randomKey());
        const apart = users.apart ??
          (async (ns: string) => ({ store: await hooks.open(ns), close: () => {} }));
        const processes = await Promise.all(Array.from({ length: 8 }, () => apart("crowd")));
        try {
          const results = await Promise.allSettled(
            keys.map((key, i) => processes[i % 8]!.store.save(key, record({ user }), null, { user })),
          );
          const failed = results.filter((r) => r.status === "rejected" || r.value !== true);
          assert.equal(
            failed.length,
            0,
            `failed: ${failed.length} of 200, first ${JSON.stringify(failed[0])}`,
          );
          assert.deepEqual((await processes[0]!.store.keysOfUser!(user)).sort(), [...keys].sort());
        } finally {
          for (const { close } of processes) await close();
        }
      });

      // An email with Unicode and ":" characters: personal data, and a separator of old layouts.
      const EMAIL = "zoë.o'brien:ops@bücher.example";
      const options = (store: SessionStore) => ({
        store,
        secrets: ["a secret of at least thirty-two characters"],
        users: userSessions({ userKey: "user" }),
      });

      it("names a user by its tag in every key, never by its id, and writes nothing in an old layout", async () => {
        const store = await hooks.open("names");
        const user = `${EMAIL}#${randomKey().slice(0, 8)}`;
        const [a, b] = [randomKey(), randomKey()];
        await store.save(a, record({ user }), null, { user });
        await store.save(b, record({ user }), null, { user });
        assert.equal(await store.save(a, record({ user, n: 1 }, 2), 1, { user }), true);
        assert.equal(await store.touch(b, Date.now() + 3 * 86_400_000, 1), true);
        assert.deepEqual((await store.keysOfUser!(user)).sort(), [a, b].sort());
        assert.equal(await endUserSessions(options(store), { user }), 2);
        if (users.tagKeys) assert.deepEqual((await users.tagKeys("names", user)).sort(), [a, b].sort());
        for (const name of await users.rawKeys?.("names") ?? []) {
          for (const part of [user, EMAIL, "zoë", "bücher", encodeURIComponent("zoë"), "o'brien"]) {
            assert.equal(name.includes(part), false, `${JSON.stringify(part)} shows in the key ${name}`);
          }
        }
        const old = users.oldLayout;
        if (old) assert.deepEqual(await old.entries("names", user), [], "nothing written in the old layout");
      });

      it("indexes a user id of any length", async () => {
        const store = await hooks.open("long");
        const user = `${"ü".repeat(4_000)}:${randomKey()}@example.com`;
        const key = randomKey();
        assert.equal(await store.save(key, record({ user }), null, { user }), true);
        assert.deepEqual(await store.keysOfUser!(user), [key]);
        assert.deepEqual((await listUserSessions(options(store), user)).map((s) => s.key), [key]);
        if (users.tagKeys) assert.deepEqual(await users.tagKeys("long", user), [key]);
        for (const name of await users.rawKeys?.("long") ?? []) {
          assert.equal(name.includes("üü"), false, name);
        }
      });

      const old = users.oldLayout;
      if (old) {
        it("still finds and ends sessions indexed in the old layout; a record that remembers its user keeps its place", async () => {
          const store = await hooks.open("old");
          const user = `${EMAIL}#${randomKey().slice(0, 8)}`;
          const [a, b] = [randomKey(), randomKey()];
          // Written by hand as the earlier version wrote them.
          for (const key of [a, b]) await old.write("old", user, key, record({ user }));
          assert.deepEqual((await store.keysOfUser!(user)).sort(), [a, b].sort());
          // A save naming the user (as withSession's do) indexes it under the user's tag.
          assert.equal(await store.save(a, record({ user, n: 1 }, 2), 1, { user }), true);
          assert.ok((await users.tagKeys!("old", user)).includes(a));
          // A save that names no user: the record remembers its user.
          assert.equal(await store.save(b, record({ user, n: 1 }, 2), 1), true);
          if (old.lapse) {
            // Indexed anew by its tag, so that it outlives its old entry.
            assert.ok((await users.tagKeys!("old", user)).includes(b));
            await old.lapse("old", user, b);
          }
          assert.deepEqual((await store.keysOfUser!(user)).sort(), [a, b].sort(), "each key once");
          assert.equal((await listUserSessions(options(store), user)).length, 2);
          assert.equal(await endUserSessions(options(store), { user }), 2);
          assert.ok(isEnded(await store.load(a)));
          assert.ok(isEnded(await store.load(b)));
          assert.equal((await listUserSessions(options(store), user)).length, 0);
          assert.deepEqual(
            (await old.entries("old", user)).sort(),
            (old.lapse ? [a] : [a, b]).sort(),
            "only the hand-written entries",
          );
        });
      }
    }
  });
}

/**
 * The cases about the backend behind the store: what it holds and when it drops it, the answers
 * of its compare-and-set, what each request costs, its own errors, namespaces and construction.
 */
function backendCases(hooks: StoreCaseHooks): void {
  const reportsCurrent = hooks.reportsCurrent ?? false;
  const raw = hooks.raw;
  if (raw) {
    it("stores the record as JSON under its key in its namespace, with the backend's own expiry from expiresAt, moved by touch", async () => {
      const now = Date.now();
      const store = await hooks.open("stored", { now: () => now });
      const key = randomKey();
      const saved = record({ user: "ada", n: [1, { x: null }] }, 1, 30_000, now);
      assert.equal(await store.save(key, saved, null), true);
      assert.deepEqual(await raw("stored", key), saved);
      // A time to live in whole steps may have lost a step; one in milliseconds, the time the
      // round trips took (5 s at most).
      const lasts = async (lifetime: number) => {
        const ttl = await hooks.ttl!("stored", key);
        const [least, most] = hooks.ttlExact
          ? [lifetime, lifetime]
          : [lifetime - (hooks.ttlGrain ?? 5_000), lifetime + (hooks.ttlGrain ?? 0)];
        assert.ok(ttl !== undefined && ttl >= least && ttl <= most, `ttl ${ttl} for ${lifetime} ms`);
      };
      if (hooks.ttl) await lasts(30_000);
      assert.equal(await store.touch(key, now + 3_600_000, 1), true);
      if (hooks.ttl) await lasts(3_600_000);
    });
  }

  if (raw && hooks.vanishes) {
    it("lets the backend drop a record by the time to live the store's clock set, whatever the backend's clock says", async () => {
      for (const skew of hooks.skews ?? [0]) {
        const ns = `vanish${skew < 0 ? "behind" : skew > 0 ? "ahead" : ""}`;
        const store = await hooks.open(ns, { now: () => Date.now() + skew });
        const [long, short] = [randomKey(), randomKey()];
        await store.save(long, record({}, 1, 60_000, Date.now() + skew), null);
        await store.save(short, record({}, 1, 300, Date.now() + skew), null);
        await sleep(400 + 2 * (hooks.ttlGrain ?? 0));
        assert.equal(await raw(ns, short), undefined, `skew ${skew}: the backend still holds it`);
        assert.equal(await store.load(short), null);
        assert.ok(await store.load(long));
        // count() agrees with load under the skew.
        if (store.count) assert.equal(await store.count(), 1);
      }
    });
  }

  it("refuses a create over a live record, a stale version and a missing record, one request after another, reporting what it refused on", async () => {
    const recorded = await hooks.calls?.open("refusals");
    const store = recorded?.store ?? await hooks.open("refusals");
    /** Checks a refused save's answer and, where calls are recorded, what it cost. */
    const refuses = async (
      save: () => Promise<SaveResult>,
      current: StoredSession | null,
      kind: "create" | "update",
      message: string,
    ) => {
      recorded?.sent.splice(0);
      refused(await save(), current, reportsCurrent, message);
      if (!recorded) return;
      const { expected } = hooks.calls!;
      const cost = (kind === "create" ? expected.refusedCreate : expected.refusedUpdate) ?? expected[kind];
      assert.deepEqual(recorded.sent, cost, `the cost of ${message}`);
    };
    // Every script or statement is known to the backend from here on.
    const warm = randomKey();
    await store.save(warm, record({ warm: true }), null);
    await store.save(warm, record({ warm: true }, 2), 7);
    await store.touch(warm, Date.now() + 120_000, 1);
    await store.destroy(warm);
    const key = randomKey();
    await refuses(() => store.save(key, record({ n: 2 }, 2), 1), null, "update", "an update of no record");
    assert.equal(await store.load(key), null);
    const first = record({ n: 1 });
    assert.equal(await store.save(key, first, null), true);
    await refuses(
      () => store.save(key, record({ n: 9 }), null),
      first,
      "create",
      "a create over a live record",
    );
    const second = { ...first, data: { n: 2 }, version: 2 };
    assert.equal(await store.save(key, second, 1), true);
    await refuses(
      () => store.save(key, record({ n: 9 }, 2), 1),
      second,
      "update",
      "an update of version 1 again",
    );
    await refuses(
      () => store.save(key, record({ n: 9 }, 8), 7),
      second,
      "update",
      "an update of a version never written",
    );
    assert.deepEqual(await store.load(key), second);
    await store.destroy(key);
    await refuses(
      () => store.save(key, record({ n: 3 }, 3), 2),
      null,
      "update",
      "an update of a destroyed record",
    );
    await refuses(() => store.save(key, record({ n: 3 }, 4), 3), null, "update", "a later update of it");
    assert.equal(await store.load(key), null);
  });

  if (hooks.reportsCurrent === true && !hooks.racesAnswerFalse) {
    it("reports, to each of 20 racing writers, a record newer than the one it expected, and to each losing create the winner", async () => {
      const store = await hooks.open("race");
      const refusals = await raceOfReportedConflicts(store, randomKey());
      assert.ok(refusals > 0, "no writer was refused");
      const reported = await raceOfCreates(store, randomKey(), hooks.createsAnswerFalse ?? false);
      if (!hooks.createsAnswerFalse) assert.equal(reported, 19);
    });
  }

  it("serialises 20 racing read-modify-write increments on one session: none is lost", async (t) => {
    const store = await hooks.open("increments");
    if (!store.capabilities.compareAndSet) return t.skip("store cannot compare-and-set");
    const key = randomKey();
    await store.save(key, record({ n: 0 }), null);
    async function increment(): Promise<number> {
      for (let attempt = 1;; attempt++) {
        const current = (await store.load(key))!;
        const next = {
          ...current,
          data: { n: (current.data.n as number) + 1 },
          version: current.version + 1,
        };
        if ((await store.save(key, next, current.version)) === true) return attempt;
      }
    }
    const attempts = await Promise.all(Array.from({ length: 20 }, increment));
    const final = await store.load(key);
    assert.equal(final?.data.n, 20);
    assert.equal(final?.version, 21);
    assert.ok(attempts.some((n) => n > 1), "expected some saves to lose the compare-and-set and retry");
  });

  const calls = hooks.calls;
  if (calls) {
    it("costs one read per request that reads a valid session, one write per changed request, nothing else", async () => {
      const { store, sent, requests } = await calls.open("costs");
      // Every script or statement is known to the backend from here on.
      const warm = randomKey();
      await store.save(warm, record({}), null);
      assert.equal(await store.touch(warm, Date.now() + 3_600_000, 1), true);
      await store.destroy(warm);
      await assertRoundTrips(
        store,
        sent,
        "round trip test secret, at least 32 characters",
        calls.expected,
        requests,
      );
    });
  }

  const driverError = hooks.driverError;
  if (driverError) {
    it("lets a real driver error through instead of falling back or hiding it", async () => {
      const store = await hooks.open("driver");
      const key = randomKey();
      await driverError.cause("driver", key);
      await assert.rejects(store.load(key), driverError.message);
      await assert.rejects(store.save(key, record({ a: 1 }), null), driverError.message);
      await assert.rejects(store.touch(key, Date.now() + 60_000, 1), driverError.message);
      if (driverError.intact) assert.ok(await driverError.intact("driver", key));
    });
  }

  if (hooks.keepsAnyText === false) {
    it("refuses every lone surrogate and U+0000 with SessionDataError naming where, sending nothing", async () => {
      const store = await hooks.open("unstorable");
      const counted = (await hooks.counted?.("unstorable"))!;
      const key = randomKey();
      const kept = record({ kept: true });
      assert.equal(await store.save(key, kept, null), true);
      for (const [label, data, place] of UNSTORABLE) {
        for (const [expected, version] of [[null, 1], [1, 2]] as const) {
          const e = await error(counted.store.save(randomKey(), record(data, version), expected));
          assert.ok(e instanceof SessionDataError, `${label}: ${e}`);
          assert.ok(e.message.includes(place), `${label}: ${e.message}`);
        }
        await assert.rejects(counted.store.save(key, record(data, 2), 1), SessionDataError, label);
      }
      assert.equal(counted.sent(), 0);
      assert.deepEqual(await store.load(key), kept);
    });

    it("answers data it cannot hold with SessionDataError (500) through withSession, writing nothing", async () => {
      const store = await hooks.open("refused");
      for (const value of ["\ud800", { nested: ["\udc00\ud800"] }, "a\u0000b"]) {
        const { status, errors } = await storeThroughSession(store, value);
        assert.equal(status, 500);
        assert.equal(errors.length, 1);
        assert.ok(errors[0] instanceof SessionDataError, String(errors[0]));
      }
      assert.equal(await store.count!(), 0);
      const { status, readBack } = await storeThroughSession(store, "\ud83d\ude00 fine");
      assert.equal(status, 200);
      assert.equal(JSON.parse(readBack!), "\ud83d\ude00 fine");
    });
  }

  const outOfRange = hooks.outOfRange;
  if (outOfRange) {
    it("reports values the backend itself refuses as SessionDataError, with its error in cause, writing nothing", async () => {
      const store = await hooks.open("range");
      const key = randomKey();
      const kept = record({ kept: true });
      await store.save(key, kept, null);
      const cases: [string, () => Promise<SaveResult>][] = [
        ["a version past its integer", () => store.save(randomKey(), record({}, outOfRange.version), null)],
        ["an update to a version past its integer", () => store.save(key, record({}, outOfRange.version), 1)],
        [
          "an expiry past its time",
          () => store.save(randomKey(), { ...record({}), expiresAt: outOfRange.expiresAt }, null),
        ],
      ];
      for (const [label, save] of cases) {
        const e = await error(save());
        assert.ok(e instanceof SessionDataError, `${label}: ${e}`);
        assert.ok(typeof (e.cause as { code?: unknown }).code === "string", label);
      }
      assert.deepEqual(await store.load(key), kept);
    });
  }

  if (!hooks.oneNamespace) {
    it("keeps each namespace apart, whatever characters its name holds: load, save, count and cleanup see their own", async () => {
      let now = Date.now();
      const names = ["g*[?]\\", "gx[?]\\"]; // a glob that would match its sibling
      const [own, sibling] = [
        await hooks.open(names[0]!, { now: () => now }),
        await hooks.open(names[1]!, { now: () => now }),
      ];
      const keys = [randomKey(), randomKey(), randomKey()];
      for (const [i, key] of keys.entries()) {
        assert.equal(await own.save(key, record({ i }, 1, 60_000, now), null), true);
      }
      assert.equal(await sibling.load(keys[0]!), null);
      assert.equal(await sibling.save(keys[0]!, record({ who: "sibling" }, 1, 60_000, now), null), true);
      assert.deepEqual((await own.load(keys[0]!))?.data, { i: 0 });
      // Locks and users' indexes in a namespace are not sessions.
      if (own.lock) assert.equal(await own.lock(keys[0]!, "owner", 60_000), true);
      if (own.keysOfUser) {
        assert.equal(
          await own.save(keys[1]!, record({ user: "ada" }, 2, 60_000, now), 1, { user: "ada" }),
          true,
        );
      }
      if (own.count) assert.equal(await own.count(), 3);
      if (sibling.count) assert.equal(await sibling.count(), 1);
      if (own.cleanup && sibling.cleanup) {
        const lapsing = randomKey();
        assert.equal(await sibling.save(lapsing, record({}, 1, 1_000, now), null), true);
        now += 1_000;
        assert.equal(await own.cleanup(), 0, "a sibling's expired record is not its own");
        if (hooks.raw) assert.ok(await hooks.raw(names[1]!, lapsing));
        assert.equal(await sibling.cleanup(), 1);
      }
    });
  }

  const byDefault = hooks.byDefault;
  if (byDefault) {
    it("keeps records in its default namespace when given none, and out of it when given one", async () => {
      const [named, bare] = [await hooks.open("named"), await byDefault.open()];
      const [key, other] = [randomKey(), randomKey()];
      const saved = record({ d: 1 });
      assert.equal(await named.save(other, saved, null), true);
      assert.equal(await byDefault.raw(other), undefined);
      assert.equal(await bare.save(key, saved, null), true);
      try {
        assert.deepEqual(await byDefault.raw(key), saved);
      } finally {
        await bare.destroy(key);
      }
    });
  }

  const claims = hooks.claims;
  if (claims) {
    it("claims exactly its capabilities, and has none of the methods it lacks; without locks, session.lock() refuses", async () => {
      const store = await hooks.open("claims");
      assert.deepEqual(store.capabilities, claims.capabilities);
      for (const method of claims.lacks) assert.equal(method in store, false, method);
      if (claims.capabilities.locks) return;
      // So session.lock() refuses, as a configuration error, instead of pretending.
      const handler = withSession(async (req: Request) => {
        const refusal = await (await getSession(req)).lock().then(() => null, (e: unknown) => e);
        return new Response((refusal as { code?: string } | null)?.code ?? "locked");
      }, { store, secrets: ["a secret of at least thirty-two characters"] });
      assert.equal(await (await handler(new Request("https://app.example/"))).text(), "ERR_SESSION_CONFIG");
    });
  }

  const badOptions = hooks.badOptions;
  if (badOptions) {
    it("refuses bad options at construction", async () => {
      await hooks.open("options"); // the backend's client or binding, for the constructions below
      for (const [label, construct, expected] of badOptions) {
        if (expected === null) assert.ok(construct(), label);
        else assert.throws(construct, expected ?? TypeError, label);
      }
    });
  }
}
