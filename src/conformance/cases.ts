/**
 * The cases of the store conformance suite (`websession/conformance`), by subject: each takes the
 * store under test (and the suite's options where a case depends on them) and registers its cases.
 *
 * @module
 */
import { it } from "node:test";
import assert from "node:assert/strict";
import { ENDED_KEY, isEnded, type SaveResult, type SessionStore, type StoredSession } from "../store.ts";
import type { StoreSuiteOptions } from "../conformance.ts";

/** A random, well-formed storage key (43 base64url characters). */
function randomKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Resolves after `ms` milliseconds. */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Checks a refused save's report: `false`, or (required with `reportsCurrent`) the truth. */
function assertRefused(
  result: SaveResult,
  expected: StoredSession | null,
  reportsCurrent: boolean | undefined,
): void {
  if (result === true) return assert.fail("the save should have been refused");
  if (result === false) {
    assert.ok(!reportsCurrent, "a store that reports the current record answered plain false");
    return;
  }
  if (expected === null) {
    assert.equal(result.current, null);
    return;
  }
  assert.ok(result.current, "expected the current record");
  assert.equal(result.current.version, expected.version);
  assert.deepEqual(result.current.data, expected.data);
  assert.equal(result.current.createdAt, expected.createdAt);
  assert.equal(result.current.expiresAt, expected.expiresAt);
}

function record(data: Record<string, unknown>, version = 1, ttl = 60_000): StoredSession {
  const now = Date.now();
  return { data, version, createdAt: now, expiresAt: now + ttl };
}

/** Loads and saves: absent keys, round trips, keys apart, create only if absent, the version check. */
export function saveCases(store: SessionStore): void {
  it("returns null for a key it never saw", async () => {
    assert.equal(await store.load(randomKey()), null);
  });

  it("round-trips a record", async () => {
    const key = randomKey();
    const saved = record({ user: "ada", visits: 3 });
    assert.equal(await store.save(key, saved, null), true);
    const loaded = await store.load(key);
    assert.ok(loaded);
    assert.deepEqual(loaded.data, saved.data);
    assert.equal(loaded.version, 1);
    assert.equal(loaded.createdAt, saved.createdAt);
    assert.equal(loaded.expiresAt, saved.expiresAt);
  });

  it("keeps keys apart", async () => {
    const a = randomKey();
    const b = randomKey();
    await store.save(a, record({ who: "a" }), null);
    await store.save(b, record({ who: "b" }), null);
    assert.equal((await store.load(a))?.data.who, "a");
    assert.equal((await store.load(b))?.data.who, "b");
  });

  it("creates only if absent when expectedVersion is null", async (t) => {
    if (!store.capabilities.compareAndSet) return t.skip("store cannot compare-and-set");
    const key = randomKey();
    assert.equal(await store.save(key, record({ n: 1 }), null), true);
    assert.notEqual(await store.save(key, record({ n: 2 }), null), true);
    assert.deepEqual((await store.load(key))?.data, { n: 1 });
  });

  it("accepts the expected version and refuses a stale one, keeping the record", async (t) => {
    if (!store.capabilities.compareAndSet) return t.skip("store cannot compare-and-set");
    const key = randomKey();
    await store.save(key, record({ n: 1 }), null);
    assert.equal(await store.save(key, record({ n: 2 }, 2), 1), true);
    assert.notEqual(await store.save(key, record({ n: 99 }, 2), 1), true);
    const loaded = await store.load(key);
    assert.deepEqual(loaded?.data, { n: 2 });
    assert.equal(loaded?.version, 2);
    assert.equal(await store.save(key, record({ n: 3 }, 3), 2), true);
    assert.equal((await store.load(key))?.version, 3);
  });
}

/** A refused save reports what it lost to; tombstones; no resurrection. */
export function conflictCases(store: SessionStore, options: StoreSuiteOptions): void {
  it("reports the record it lost to when a save is refused", async (t) => {
    if (!store.capabilities.compareAndSet) return t.skip("store cannot compare-and-set");
    const key = randomKey();
    const first = record({ n: 1 });
    await store.save(key, first, null);
    assertRefused(await store.save(key, record({ n: 9 }), null), first, options.reportsCurrent);
    const second = { ...first, data: { n: 2, list: ["a", { b: "ü" }] }, version: 2 };
    assert.equal(await store.save(key, second, 1), true);
    assertRefused(await store.save(key, record({ n: 9 }, 2), 1), second, options.reportsCurrent);
    // A stale writer that names a newer version than stored is refused the same way.
    assertRefused(await store.save(key, record({ n: 9 }, 4), 3), second, options.reportsCurrent);
    await store.destroy(key);
    assertRefused(await store.save(key, record({ n: 9 }, 3), 2), null, options.reportsCurrent);
    const now = Date.now();
    const expired = randomKey();
    await store.save(
      expired,
      { data: { a: 1 }, version: 1, createdAt: now - 5_000, expiresAt: now + 300 },
      null,
    );
    await sleep(400);
    assertRefused(await store.save(expired, record({ a: 2 }, 2), 1), null, options.reportsCurrent);
    assert.equal(await store.load(expired), null);
  });

  it("keeps a tombstone like any record, refusing writers of the version it replaced", async (t) => {
    if (!store.capabilities.compareAndSet) return t.skip("store cannot compare-and-set");
    const key = randomKey();
    const live = record({ user: "ada" });
    await store.save(key, live, null);
    const tombstone = { ...live, data: { [ENDED_KEY]: true }, version: 2 };
    assert.equal(await store.save(key, tombstone, 1), true);
    const loaded = await store.load(key);
    assert.ok(isEnded(loaded));
    assert.equal(loaded?.version, 2);
    assertRefused(await store.save(key, record({ user: "eve" }, 2), 1), tombstone, options.reportsCurrent);
    assert.ok(isEnded(await store.load(key)));
  });

  it("never recreates a missing record on update (no resurrection)", async (t) => {
    if (!store.capabilities.compareAndSet) return t.skip("store cannot compare-and-set");
    const key = randomKey();
    assert.notEqual(await store.save(key, record({ n: 2 }, 2), 1), true);
    assert.equal(await store.load(key), null);
    await store.save(key, record({ n: 1 }), null);
    await store.destroy(key);
    assert.notEqual(await store.save(key, record({ n: 2 }, 2), 1), true);
    assert.equal(await store.load(key), null);
  });
}

/** Races of saves and creates at one version; expiry; destroy. */
export function raceAndExpiryCases(store: SessionStore): void {
  it("lets exactly one of 20 concurrent saves at the same version win", async (t) => {
    if (!store.capabilities.compareAndSet) return t.skip("store cannot compare-and-set");
    const key = randomKey();
    await store.save(key, record({ winner: -1 }), null);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => store.save(key, record({ winner: i }, 2), 1)),
    );
    const winners = results.flatMap((ok, i) => (ok === true ? [i] : []));
    assert.equal(winners.length, 1);
    const loaded = await store.load(key);
    assert.equal(loaded?.version, 2);
    assert.equal(loaded?.data.winner, winners[0]);
  });

  it("lets exactly one of 20 concurrent creates win", async (t) => {
    if (!store.capabilities.compareAndSet) return t.skip("store cannot compare-and-set");
    const key = randomKey();
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => store.save(key, record({ creator: i }), null)),
    );
    const winners = results.flatMap((ok, i) => (ok === true ? [i] : []));
    assert.equal(winners.length, 1);
    assert.equal((await store.load(key))?.data.creator, winners[0]);
  });

  it("never returns a record past its expiresAt", async () => {
    const past = randomKey();
    const now = Date.now();
    await store.save(
      past,
      { data: { a: 1 }, version: 1, createdAt: now - 10_000, expiresAt: now - 1 },
      null,
    );
    assert.equal(await store.load(past), null);

    const soon = randomKey();
    await store.save(soon, record({ a: 1 }, 1, 400), null);
    assert.deepEqual((await store.load(soon))?.data, { a: 1 });
    await sleep(1_100);
    assert.equal(await store.load(soon), null);
  });

  it("destroys idempotently", async () => {
    const key = randomKey();
    await store.destroy(key);
    await store.save(key, record({ a: 1 }), null);
    await store.destroy(key);
    assert.equal(await store.load(key), null);
    await store.destroy(key);
    assert.equal(await store.load(key), null);
  });
}

/** What a record may hold and how it is kept: unicode, copies, malformed keys. */
export function dataCases(store: SessionStore): void {
  it("round-trips unicode, nesting and awkward keys", async () => {
    const key = randomKey();
    const data = {
      text: 'héllo wörld ✓ 🎉 שלום 日本語 \u2028 "quoted" \\ back',
      nested: { list: [1, 2.5, -3, true, false, null, "x", { deep: [[[]]] }], empty: {} },
      big: Number.MAX_SAFE_INTEGER,
      "key with spaces and ✓": "ok",
      ["__proto__"]: { polluted: true },
      constructor: "not a function",
    };
    const source = JSON.parse(JSON.stringify(data)) as Record<string, unknown>;
    // JSON.parse gives __proto__ as an own property, which is what a store must keep.
    assert.ok(Object.hasOwn(source, "__proto__"));
    await store.save(key, record(source), null);
    const loaded = await store.load(key);
    assert.deepEqual(loaded?.data, source);
    assert.ok(loaded && Object.hasOwn(loaded.data, "__proto__"));
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  it("returns copies: changing a loaded record does not change the store", async () => {
    const key = randomKey();
    await store.save(key, record({ list: [1] }), null);
    const first = await store.load(key);
    (first!.data.list as number[]).push(2);
    first!.data.added = true;
    assert.deepEqual((await store.load(key))?.data, { list: [1] });
  });

  it("refuses malformed storage keys before touching the backend", async () => {
    for (
      const bad of ["", "../../etc/passwd", "a".repeat(42), "a".repeat(42) + "/", "a\u0000".repeat(20)]
    ) {
      await assert.rejects(async () => await store.load(bad), TypeError);
      await assert.rejects(async () => await store.save(bad, record({}), null), TypeError);
      await assert.rejects(async () => await store.destroy(bad), TypeError);
    }
  });
}

/** `touch` extends expiry alone. */
export function touchCases(store: SessionStore): void {
  it("touch extends expiry without changing data or version, and never creates", async (t) => {
    if (!store.touch) return t.skip("store has no touch");
    const key = randomKey();
    const saved = record({ a: 1 }, 1, 60_000);
    await store.save(key, saved, null);
    const later = saved.expiresAt + 120_000;
    assert.equal(await store.touch(key, later, 1), true);
    const loaded = await store.load(key);
    assert.equal(loaded?.expiresAt, later);
    assert.equal(loaded?.version, 1);
    assert.deepEqual(loaded?.data, { a: 1 });

    const missing = randomKey();
    assert.equal(await store.touch(missing, later, 1), false);
    assert.equal(await store.load(missing), null);
  });
}

/** `touch` names the version it extends. */
export function touchVersionCases(store: SessionStore): void {
  it("touch extends only the version it names, never an ended record, never shortens", async (t) => {
    if (!store.touch) return t.skip("store has no touch");
    const key = randomKey();
    const first = record({ n: 1 }, 1, 60_000);
    await store.save(key, first, null);
    const expiresAtOf = async () => (await store.load(key))?.expiresAt;

    // Another version than the stored one: replaced meanwhile (or not yet seen), never extended.
    assert.equal(await store.touch(key, first.expiresAt + 120_000, 2), false);
    assert.equal(await expiresAtOf(), first.expiresAt);
    assert.equal(await store.touch(key, first.expiresAt + 120_000, 1), true);
    assert.equal(await expiresAtOf(), first.expiresAt + 120_000);
    // Never shortens, never deletes: an earlier, equal or past expiry writes nothing.
    assert.equal(await store.touch(key, first.expiresAt + 60_000, 1), false);
    assert.equal(await store.touch(key, first.expiresAt + 120_000, 1), false);
    assert.equal(await store.touch(key, Date.now() - 1_000, 1), false);
    assert.equal(await expiresAtOf(), first.expiresAt + 120_000);
    assert.equal((await store.load(key))?.version, 1);

    // Saved again: a touch naming the version it replaced is refused, the new one extends.
    const second = { ...first, data: { n: 2 }, version: 2, expiresAt: first.expiresAt + 180_000 };
    assert.equal(await store.save(key, second, 1), true);
    assert.equal(await store.touch(key, second.expiresAt + 60_000, 1), false);
    assert.deepEqual(await store.load(key), second);
    assert.equal(await store.touch(key, second.expiresAt + 60_000, 2), true);
    assert.deepEqual(await store.load(key), { ...second, expiresAt: second.expiresAt + 60_000 });

    // Ended: the tombstone keeps its expiry, whatever version the touch names.
    const ended = { ...second, data: { [ENDED_KEY]: true }, version: 3 };
    assert.equal(await store.save(key, ended, 2), true);
    const tombstone = await store.load(key);
    assert.ok(isEnded(tombstone), "the session reads as ended");
    for (const version of [2, 3]) {
      assert.equal(await store.touch(key, tombstone!.expiresAt + 600_000, version), false);
    }
    assert.ok(isEnded(await store.load(key)));
    assert.equal(await expiresAtOf(), tombstone!.expiresAt);

    // Arguments of the earlier contract, or malformed ones, are refused before anything is written.
    const touch = store.touch.bind(store) as (...args: unknown[]) => Promise<boolean>;
    await assert.rejects(async () => await touch(key, Date.now() + 600_000), TypeError);
    await assert.rejects(async () => await touch(key, NaN, 3), TypeError);
    await assert.rejects(async () => await touch(key, Date.now() + 600_000, 0), TypeError);
  });
}

/** A touch racing an end; `cleanup`. */
export function endAndCleanupCases(store: SessionStore): void {
  it("a touch racing the end of a session never brings the ended record back", async (t) => {
    if (!store.touch) return t.skip("store has no touch");
    if (!store.capabilities.compareAndSet) return t.skip("store cannot compare-and-set");
    for (let round = 0; round < 10; round++) {
      const key = randomKey();
      const live = record({ round }, 1, 60_000);
      await store.save(key, live, null);
      const ended = { ...live, data: { [ENDED_KEY]: true }, version: 2 };
      const [saved, touched]: [SaveResult, boolean] = await Promise.all([
        store.save(key, ended, 1),
        store.touch(key, live.expiresAt + 600_000, 1),
      ]);
      assert.equal(saved, true, `round ${round}: the end lands`);
      const loaded = await store.load(key);
      assert.ok(isEnded(loaded), `round ${round}: the session stays ended (touch said ${touched})`);
      assert.equal(loaded?.version, 2);
      assert.equal(loaded?.expiresAt, ended.expiresAt, `round ${round}: the tombstone keeps its expiry`);
    }
  });

  it("cleanup removes expired records and counts them", async (t) => {
    if (!store.cleanup) return t.skip("store has no cleanup");
    const now = Date.now();
    const live = randomKey();
    await store.save(live, record({ live: true }), null);
    for (let i = 0; i < 3; i++) {
      await store.save(
        randomKey(),
        { data: {}, version: 1, createdAt: now - 5_000, expiresAt: now + 300 },
        null,
      );
    }
    await sleep(400);
    const removed = await store.cleanup();
    assert.ok(removed >= 3, `expected at least 3 removed, got ${removed}`);
    assert.deepEqual((await store.load(live))?.data, { live: true });
    assert.equal(await store.cleanup(), 0);
  });
}

/** Locks and the per-user index, where claimed. */
export function lockAndUserCases(store: SessionStore): void {
  it("holds a lock for one owner at a time, released only by its owner, expiring by itself", async (t) => {
    if (!store.capabilities.locks || !store.lock || !store.unlock) {
      return t.skip("store cannot hold a lock");
    }
    const key = randomKey();
    const owners = Array.from({ length: 10 }, (_, i) => `owner-${i}`);
    const taken = await Promise.all(owners.map((owner) => store.lock!(key, owner, 5_000)));
    assert.equal(taken.filter(Boolean).length, 1, "exactly one of 10 concurrent takers");
    const holder = owners[taken.indexOf(true)]!;
    const other = owners.find((o) => o !== holder)!;
    await store.unlock!(key, other); // not the owner: nothing happens
    assert.equal(await store.lock!(key, other, 5_000), false);
    await store.unlock!(key, holder);
    assert.equal(await store.lock!(key, other, 400), true, "free once its owner released it");
    // A lock and a record under the same key do not collide.
    assert.equal(await store.save(key, record({ a: 1 }), null), true);
    assert.deepEqual((await store.load(key))?.data, { a: 1 });
    await sleep(1_100);
    assert.equal(await store.lock!(key, holder, 5_000), true, "an expired lease is free");
    await store.unlock!(key, holder);
  });

  it("indexes a user's sessions with the save that sets the user", async (t) => {
    if (!store.capabilities.users || !store.keysOfUser) return t.skip("store keeps no index per user");
    const user = `user-${randomKey().slice(0, 12)}`;
    const [a, b, c] = [randomKey(), randomKey(), randomKey()];
    assert.deepEqual(await store.keysOfUser(user), []);
    assert.equal(await store.save(a, record({ user }), null, { user }), true);
    assert.equal(await store.save(b, record({ user }), null, { user }), true);
    assert.equal(
      await store.save(c, record({ user: "someone else" }), null, { user: "someone else" }),
      true,
    );
    assert.deepEqual([...await store.keysOfUser(user)].sort(), [a, b].sort());
    // A refused save indexes nothing new.
    const d = randomKey();
    await store.save(d, record({}), null);
    assert.notEqual(await store.save(d, record({ user }, 2), 5, { user }), true);
    assert.ok(!(await store.keysOfUser(user)).includes(d));
    // An update that sets the user indexes the key.
    assert.equal(await store.save(d, record({ user }, 2), 1, { user }), true);
    assert.ok((await store.keysOfUser(user)).includes(d));
  });
}

/** `count`. */
export function countCases(store: SessionStore): void {
  it("count tells how many live sessions it holds", async (t) => {
    if (!store.count) return t.skip("store has no count");
    const before = await store.count();
    const keys = [randomKey(), randomKey(), randomKey()];
    for (const key of keys) await store.save(key, record({}), null);
    assert.equal(await store.count(), before + 3);
    await store.destroy(keys[0]!);
    assert.equal(await store.count(), before + 2);
  });
}
