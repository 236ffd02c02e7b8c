// FileStore's shared suites, on temporary directories removed at the end. Deno runs this file
// alone (FileStore's own test file spawns Node processes); tests/stores/file_test.ts imports it
// and adds the store's own cases.
import { after } from "node:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileStore } from "../../src/stores/file.ts";
import { sessionSuite } from "../conformance/session_suite.ts";
import { storeSuite } from "../conformance/store_suite.ts";
import { lockUserCases } from "../conformance/lock_user_cases.ts";

const dirs: string[] = [];
/** A fresh temporary directory, removed when the tests end. */
export async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "websession-file-"));
  dirs.push(dir);
  return dir;
}
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

storeSuite("FileStore", { open: async () => new FileStore({ dir: await tempDir() }), reportsCurrent: true });
sessionSuite("FileStore", { open: async () => new FileStore({ dir: await tempDir() }) });

// The lock and index cases, each namespace a directory of its own, shared by the stores opened on it.
const dirsOf = new Map<string, Promise<string>>();
lockUserCases("FileStore", {
  reportsCurrent: true,
  sweeps: true,
  open: async (ns, now) => {
    if (!dirsOf.has(ns)) dirsOf.set(ns, tempDir());
    return new FileStore({ dir: await dirsOf.get(ns)!, now });
  },
  locks: { byClock: true },
  users: { liveOnly: true, byClock: true },
});
