// FileStore's shared suites alone, for runtimes where its own test file cannot run whole (its
// SIGKILL case spawns `process.execPath` with Node's flags, which Deno does not emulate).
import { after } from "node:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileStore } from "../../src/stores/file.ts";
import { sessionSuite } from "../conformance/session_suite.ts";
import { storeSuite } from "../conformance/store_suite.ts";

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "websession-file-"));
  dirs.push(dir);
  return dir;
}
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

storeSuite("FileStore", { open: async () => new FileStore({ dir: await tempDir() }) });
sessionSuite("FileStore", { open: async () => new FileStore({ dir: await tempDir() }) });
