// FileStore `cleanup()` goes on past an entry it cannot read (EACCES: a directory left by another
// user, say): it removes every other expired session, then throws the first error. The unreadable
// entry is simulated by making `fs.promises.readFile` fail for one session (the test may run as
// root, whom file modes do not stop).
import { it } from "node:test";
import assert from "node:assert/strict";
import { createRequire, syncBuiltinESMExports } from "node:module";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const require = createRequire(import.meta.url);
const fsp = require("node:fs/promises") as typeof import("node:fs/promises");
const realReadFile = fsp.readFile;

it("FileStore: cleanup() removes the other expired sessions past an unreadable one, then throws", async () => {
  const dir = await mkdtemp(join(tmpdir(), "websession-unreadable-"));
  const keys = ["a", "b", "c"].map((c) => c.repeat(43));
  const locked = join(dir, keys[1]!);
  let unreadable = false;
  (fsp as { readFile: unknown }).readFile = (path: string, ...rest: unknown[]) => {
    if (unreadable && String(path).startsWith(locked)) {
      return Promise.reject(Object.assign(new Error(`EACCES: permission denied, open '${path}'`), {
        code: "EACCES",
        path,
      }));
    }
    return (realReadFile as (...args: unknown[]) => Promise<unknown>)(path, ...rest);
  };
  syncBuiltinESMExports();
  try {
    const { FileStore } = await import("../../src/stores/file.ts");
    let clock = 1_000_000;
    const store = new FileStore({ dir, fsync: false, now: () => clock });
    for (const key of keys) {
      const record = { data: { n: 1 }, version: 1, createdAt: clock, expiresAt: clock + 60_000 };
      assert.equal(await store.save(key, record, null), true);
    }
    clock += 120_000;
    unreadable = true;
    await assert.rejects(store.cleanup(), { code: "EACCES" });
    assert.deepEqual((await readdir(dir)).filter((name) => keys.includes(name)), [keys[1]]);
  } finally {
    (fsp as { readFile: unknown }).readFile = realReadFile;
    syncBuiltinESMExports();
    await rm(dir, { recursive: true, force: true });
  }
});
