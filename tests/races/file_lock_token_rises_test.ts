// FileStore lock fencing tokens: "Each holder gets a fencing token, larger than every earlier
// holder's" (docs/stores/file.md, "Locks"), and "no correctness rests on time: a process stopped
// at any instruction for any length of time cannot overwrite a newer record when it wakes"
// (docs/stores/file.md, "On disk"); `FileLock.token`: "larger than the token of every earlier
// holder of the lock" (src/stores/file/locks.ts).
//
// Symptom: once `cleanup()` has removed an expired lock's directory, the next holder's token is
// read off the wall clock (`Date.now() * 1000`). If the clock stepped back meanwhile (an NTP
// step, a VM resumed from a snapshot, an operator fixing the time), the new holder's token is
// *smaller* than the previous holder's: a write fenced with the stalled previous holder's token
// is accepted by a receiver that has seen only the new one's, which is what fencing exists to
// prevent.
//
// Suspected cause: src/stores/file/locks.ts:81-85 `tokenFor` falls back to `Date.now() * 1000`
// in a new directory, and the closed directory's last token (`floor`, :93-96) is known only to a
// taker that found the closed directory still there; src/stores/file/cleanup.ts:99-108 closes
// the lock and removes its directory at once, so the last token is gone with it.
import { it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileStore } from "../../src/stores/file.ts";

it("FileStore: a lock's fencing token rises across cleanup() even if the wall clock steps back", async () => {
  const dir = await mkdtemp(join(tmpdir(), "websession-lock-token-"));
  const realNow = Date.now;
  let offset = 0;
  Date.now = () => realNow() + offset;
  try {
    let clock = 1_000_000; // the store's expiry clock (the `now` option), moved by hand
    const store = new FileStore({ dir, fsync: false, now: () => clock });
    const key = "T".repeat(43);
    assert.equal(await store.lock(key, "first", 1_000), true);
    const first = (await store.heldLock(key))!.token;
    clock += 2_000; // expired
    await store.cleanup(); // closes the expired lock and removes its directory
    offset = -60_000; // the machine's clock is stepped back a minute
    assert.equal(await store.lock(key, "second", 1_000), true);
    const second = (await store.heldLock(key))!.token;
    assert.ok(second > first, `the later holder's token ${second} is not above the earlier one's ${first}`);
  } finally {
    Date.now = realNow;
    await rm(dir, { recursive: true, force: true });
  }
});
