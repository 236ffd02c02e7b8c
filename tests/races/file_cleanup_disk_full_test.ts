// FileStore `cleanup()` "removes expired and corrupt sessions, expired and released locks, index
// markers whose record is gone" (docs/stores/file.md, "Cleanup"; src/stores/file.ts `cleanup()`),
// and bad conditions get "a clear error or a safe fallback" without losing the store.
//
// Symptom: on a full disk (ENOSPC for any new data; unlinks and renames still work, and are what
// frees the space), `cleanup()` removes nothing: it rejects with ENOSPC at the first expired
// session and stops. The sessions directory can then never shrink by itself: every save answers
// 503 and every scheduled cleanup fails the same way, until someone deletes files by hand.
//
// Suspected cause: src/stores/file/cleanup.ts:65-68 `cleanSession` ends an expired session by
// `Slots.close()`, which must first write a new "closed" slot file (src/stores/file/slots.ts:
// 118-125 `claim` -> `writeNew`), and src/stores/file/cleanup.ts:40-52 lets the first failure
// abort the whole run. The full disk is simulated by making `fs.promises.open(path, "wx")` (a new
// file) fail with ENOSPC once the sessions are written.
import { it } from "node:test";
import assert from "node:assert/strict";
import { createRequire, syncBuiltinESMExports } from "node:module";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const require = createRequire(import.meta.url);
const fsp = require("node:fs/promises") as typeof import("node:fs/promises");
const realOpen = fsp.open;

it("FileStore: cleanup() on a full disk still removes expired sessions", async () => {
  const dir = await mkdtemp(join(tmpdir(), "websession-full-"));
  let full = false;
  (fsp as { open: unknown }).open = (path: string, flags?: string, mode?: number) => {
    if (full && flags === "wx") {
      return Promise.reject(Object.assign(new Error(`ENOSPC: no space left on device, open '${path}'`), {
        code: "ENOSPC",
        errno: -28,
        syscall: "open",
        path,
      }));
    }
    return realOpen(path, flags, mode);
  };
  syncBuiltinESMExports();
  try {
    const { FileStore } = await import("../../src/stores/file.ts");
    let clock = 1_000_000;
    const store = new FileStore({ dir, fsync: false, now: () => clock });
    const keys = ["a", "b", "c"].map((c) => c.repeat(43));
    for (const key of keys) {
      const record = { data: { n: 1 }, version: 1, createdAt: clock, expiresAt: clock + 60_000 };
      assert.equal(await store.save(key, record, null), true);
    }
    clock += 120_000; // all three expired
    full = true; // the disk filled up
    let removed: number | string;
    try {
      removed = await store.cleanup();
    } catch (error) {
      removed = String(error);
    }
    const left = (await readdir(dir)).filter((name) => keys.includes(name));
    assert.deepEqual(
      left,
      [],
      `cleanup() answered ${removed} and left ${left.length} expired sessions on the full disk`,
    );
  } finally {
    (fsp as { open: unknown }).open = realOpen;
    syncBuiltinESMExports();
    await rm(dir, { recursive: true, force: true });
  }
});
