// The session's own Durable Object (src/stores/durable_object/object.ts): one object per
// session, its storage (record, lock, alarm) seen through the test Worker's `/inspect`, the
// alarm that collects an expired record or a lapsed lock, and the size it refuses itself.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { ENDED_KEY } from "../../../src/store.ts";
import { type DurableObjectNamespaceLike, DurableObjectStore } from "../../../src/stores/durable_object.ts";
import { randomKey, sleep } from "../../conformance/util.ts";
import { record, recordOfLength } from "../remote_cases.ts";
import { DELAY, dispose, EMPTY, inspect, objects, reported } from "./objects.ts";

describe("SessionDurableObject", () => {
  let namespace: DurableObjectNamespaceLike;
  let noDelay: DurableObjectNamespaceLike;
  let store: DurableObjectStore;
  before(async () => {
    ({ namespace, noDelay } = await objects());
    store = new DurableObjectStore({ namespace });
  });
  after(dispose);

  it("keeps each session in its own object, with an alarm a minute after expiresAt", async () => {
    assert.equal(DELAY, 60_000);
    const a = randomKey();
    const b = randomKey();
    const saved = record({ who: "a" });
    await store.save(a, saved, null);
    assert.deepEqual(JSON.parse((await inspect(a)).record!), saved);
    assert.equal((await inspect(a)).alarm, saved.expiresAt + DELAY);
    assert.deepEqual(await inspect(b), EMPTY);
  });

  it("touch moves the alarm; destroy leaves the object empty", async () => {
    const key = randomKey();
    const saved = record({});
    await store.save(key, saved, null);
    assert.equal(await store.touch(key, saved.expiresAt + 60_000, 1), true);
    assert.equal((await inspect(key)).alarm, saved.expiresAt + 60_000 + DELAY);
    assert.equal(JSON.parse((await inspect(key)).record!).version, 1);
    await store.destroy(key);
    assert.deepEqual(await inspect(key), EMPTY);
  });

  it("the alarm deletes an expired session that nobody reads again", async () => {
    const quick = new DurableObjectStore({ namespace: noDelay });
    const key = randomKey();
    // A second to live, so that it is still there when inspected even on a loaded machine.
    await quick.save(key, record({ a: 1 }, 1, 1_000), null);
    assert.notEqual((await inspect(key, { within: noDelay })).record, null);
    const deadline = Date.now() + 10_000;
    while ((await inspect(key, { within: noDelay })).record !== null) {
      assert.ok(Date.now() < deadline, "the alarm never removed the expired record");
      await sleep(100);
    }
    assert.equal((await inspect(key, { within: noDelay })).alarm, null);
  });

  it("the alarm reports a session it deleted as expired to expired(), with its user; not an ended one", async () => {
    const quick = new DurableObjectStore({ namespace: noDelay });
    const key = randomKey();
    // Two seconds to live: saved (and ended) well before they expire, even on a loaded machine.
    const saved = record({ user: "ada" }, 1, 2_000);
    assert.equal(await quick.save(key, saved, null, { user: "ada" }), true);
    const ended = randomKey();
    const live = record({ user: "bob" }, 1, 60_000);
    await quick.save(ended, live, null);
    const tombstone = { ...record({ [ENDED_KEY]: true }, 2, 2_000), createdAt: live.createdAt };
    assert.equal(await quick.save(ended, tombstone, live.version), true);
    await sleep(Math.max(saved.expiresAt, tombstone.expiresAt) - Date.now() + 100);
    await inspect(key, { within: noDelay, alarm: true });
    await inspect(ended, { within: noDelay, alarm: true });
    assert.deepEqual(await reported(key, noDelay), [
      { createdAt: saved.createdAt, expiresAt: saved.expiresAt, user: "ada" },
    ]);
    assert.deepEqual(await reported(ended, noDelay), [], "a lapsed tombstone is no expiry");
    assert.equal((await inspect(ended, { within: noDelay })).record, null);
  });

  it("the alarm re-checks the record as it stands, and keeps one expired less than alarmDelay ago", async () => {
    const key = randomKey();
    const saved = record({ a: 1 }, 1, 200);
    await store.save(key, saved, null);
    await sleep(300);
    // Expired by every clock here, but within the delay: an application clock up to a minute
    // behind the object's still counts it live, so the alarm only schedules itself again.
    assert.equal(await store.load(key), null);
    const kept = await inspect(key, { alarm: true });
    assert.deepEqual(JSON.parse(kept.record!), saved);
    assert.equal(kept.alarm, saved.expiresAt + DELAY);

    // With no delay, the same alarm deletes it; a record touched since is kept and rescheduled.
    const quick = new DurableObjectStore({ namespace: noDelay });
    // A second to live, so that the touch comes before the expiry even on a loaded machine.
    const brief = record({ a: 1 }, 1, 1_000);
    const gone = randomKey();
    await quick.save(gone, brief, null);
    const live = randomKey();
    await quick.save(live, brief, null);
    assert.equal(await quick.touch(live, Date.now() + 60_000, 1), true);
    await sleep(Math.max(0, brief.expiresAt - Date.now()) + 100);
    assert.deepEqual(await inspect(gone, { within: noDelay, alarm: true }), EMPTY);
    const touched = await inspect(live, { within: noDelay, alarm: true });
    assert.equal(JSON.parse(touched.record!).version, 1);
    assert.equal(touched.alarm, JSON.parse(touched.record!).expiresAt);
  });

  it("the object itself refuses a record over 128 KiB with 413, and keeps the old one", async () => {
    const key = randomKey();
    const kept = record({ small: true });
    await store.save(key, kept, null);
    const stub = namespace.get(namespace.idFromName(key));
    const response = await stub.fetch("https://do/save", {
      method: "POST",
      headers: {},
      body: JSON.stringify({ op: "save", record: recordOfLength(131_067, "x"), expectedVersion: 1 }),
    });
    assert.equal(response.status, 413);
    assert.match(((await response.json()) as { error: string }).error, /"131073" bytes serialized/);
    assert.deepEqual(JSON.parse((await inspect(key)).record!), kept);
  });

  describe("locks", () => {
    it("sets the object's alarm for the first of its lock and its record to collect, and clears it with both", async () => {
      const key = randomKey();
      assert.equal(await store.lock(key, "a", 30_000), true);
      let seen = await inspect(key);
      assert.equal(seen.alarm, seen.lock!.until + DELAY);
      assert.equal(await store.save(key, record({ a: 1 }, 1, 600_000), null), true);
      seen = await inspect(key);
      assert.equal(seen.alarm, seen.lock!.until + DELAY, "the alarm is set for the first to collect");
      await store.destroy(key);
      await store.unlock(key, "a");
      assert.deepEqual(await inspect(key), EMPTY);
    });

    it("the alarm removes a lock left behind once it has lapsed, and keeps the record", async () => {
      const quick = new DurableObjectStore({ namespace: noDelay });
      const key = randomKey();
      await quick.save(key, record({ a: 1 }, 1, 600_000), null);
      assert.equal(await quick.lock(key, "crashed", 200), true);
      const before = await inspect(key, { within: noDelay });
      assert.equal(before.alarm, before.lock!.until);
      await sleep(300);
      const after = await inspect(key, { within: noDelay, alarm: true });
      assert.equal(after.lock, null);
      assert.deepEqual(JSON.parse(after.record!).data, { a: 1 });
      assert.equal(after.alarm, JSON.parse(after.record!).expiresAt);
    });
  });
});
