// FileStore locks: "of concurrent takers in any number of processes exactly one wins, however
// long any of them stalls" (docs/stores/file.md, "Locks"; src/stores/file.ts `lock()`: "Of
// concurrent takers, across processes, exactly one wins").
//
// Symptom: two owners both get `true` from `lock()` on one key while the first one's lock is live
// (and `heldLock()` answers `null` in between). It takes one process whose `cleanup()` closed an
// expired lock and then stalled (SIGSTOP, a long GC pause, a swapped-out page) just before it
// renamed the lock's directory away. Meanwhile another process takes the lock: it finds the closed
// directory, removes it itself, and claims slot 1 of a new directory. When the stalled cleanup
// wakes, its `rename(dir, trash)` moves that *live* directory away; it sees the directory is not
// the closed one and renames it back, but between the two renames (stalled there as well, or
// simply racing) a third taker finds no directory and takes the lock too. The put-back then fails
// (the name is taken again) and the first holder's lock is orphaned in a `.trash` directory.
//
// Suspected cause: src/stores/file/slots.ts:166-183 `Slots.remove()` renames `dir` by name, not
// the directory it closed: a stalled remover moves whatever directory has that name by then (a
// lock directory comes back under the same name: src/stores/file/locks.ts:97-103 `take()`), and
// the moved-then-restored directory is missing for a while. The stall is simulated here by
// holding one FileStore instance (standing for one process) inside `fs.promises.rename`.
import { it } from "node:test";
import assert from "node:assert/strict";
import { createRequire, syncBuiltinESMExports } from "node:module";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, sep } from "node:path";

const require = createRequire(import.meta.url);
const fsp = require("node:fs/promises") as typeof import("node:fs/promises");
const realRename = fsp.rename;

/** Holds the first `rename` whose source ends with `suffix` (and whose target is a `.trash`). */
function stallRename(match: (from: string, to: string) => boolean) {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let reached!: () => void;
  const arrived = new Promise<void>((resolve) => (reached = resolve));
  let armed = true;
  const patched = async (from: string, to: string) => {
    if (armed && match(String(from), String(to))) {
      armed = false;
      reached();
      await gate;
    }
    return await realRename(from, to);
  };
  return { patched, release, arrived };
}

it("FileStore: a stalled cleanup() never lets two owners hold one lock", async () => {
  const dir = await mkdtemp(join(tmpdir(), "websession-lock-holder-"));
  let clock = 1_000_000;
  const now = () => clock;
  try {
    const key = "L".repeat(43);
    // The lock's directory: the earlier layout's `leases/<key>`, or a generation of it,
    // `locks/<key>/<generation>` (a name never used twice).
    const lockDir = join(dir, "leases", key);
    const isLockDir = (path: string) => path === lockDir || path.startsWith(join(dir, "locks", key) + sep);
    // Stall 1: the cleaning process, just before it renames the closed lock directory away.
    const first = stallRename((from, to) => isLockDir(from) && to.endsWith(".trash"));
    // Stall 2: the same process, after the rename, before it puts a live directory back (if it ever does).
    const second = stallRename((from, to) => from.endsWith(".trash") && isLockDir(to));
    let stage = 0;
    (fsp as { rename: unknown }).rename = (from: string, to: string) => {
      if (stage === 1) return first.patched(from, to);
      if (stage === 2) return second.patched(from, to);
      return realRename(from, to);
    };
    syncBuiltinESMExports();
    const { FileStore } = await import("../../src/stores/file.ts");
    const corrupt: string[] = [];
    const processA = new FileStore({
      dir,
      now,
      fsync: false,
      onCorrupt: (p: string) => void corrupt.push(p),
    });
    const processB = new FileStore({ dir, now, fsync: false });
    const processC = new FileStore({ dir, now, fsync: false });
    const processD = new FileStore({ dir, now, fsync: false });

    assert.equal(await processB.lock(key, "old", 1_000), true);
    clock += 2_000; // it expired: cleanup() may close it

    stage = 1;
    const cleaning = processA.cleanup(); // closes the lock, then stalls before renaming it away
    await first.arrived;
    stage = 0;
    // Process C takes the lock: it removes the closed directory and claims a new one.
    assert.equal(await processC.lock(key, "c", 60_000), true);
    assert.equal((await processC.heldLock(key))?.owner, "c");

    // The cleaning process wakes, renames C's live directory away, and stalls before putting it back.
    stage = 2;
    first.release();
    await Promise.race([second.arrived, cleaning]);
    stage = 0;
    const seen = await processD.heldLock(key);
    const taken = await processD.lock(key, "d", 60_000);
    second.release();
    await cleaning;

    const holder = await processC.heldLock(key);
    assert.equal(seen?.owner, "c", "C's live lock vanished while a stalled cleanup() had moved it away");
    assert.equal(taken, false, "D took the lock while C held it (two owners at once)");
    assert.equal(holder?.owner, "c", `C's lock was lost (orphaned: ${corrupt.join(", ")})`);
  } finally {
    (fsp as { rename: unknown }).rename = realRename;
    syncBuiltinESMExports();
    await rm(dir, { recursive: true, force: true });
  }
});
