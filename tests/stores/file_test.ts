import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { FileStore } from "../../src/stores/file.ts";
import { randomKey } from "../conformance/util.ts";

// Importing the shared suites runs them here too.
import { tempDir } from "../runtime/file_suites.ts";

function record(data: Record<string, unknown> = {}) {
  const now = Date.now();
  return { data, version: 1, createdAt: now, expiresAt: now + 60_000 };
}

describe("FileStore", () => {
  it("creates its directory with mode 0700 and files with mode 0600", async () => {
    const dir = join(await tempDir(), "nested", "sessions");
    const store = new FileStore({ dir });
    const key = randomKey();
    await store.save(key, record(), null);
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    assert.equal((await stat(join(dir, `${key}.json`))).mode & 0o777, 0o600);
  });

  it("keeps every file inside dir: keys are checked before any path is built", async () => {
    const dir = await tempDir();
    const store = new FileStore({ dir });
    for (
      const bad of [
        "../escape" + "a".repeat(34),
        "a".repeat(40) + "/..",
        "..%2f..%2fetc%2fpasswd".padEnd(43, "a"),
        "a".repeat(42) + "\u0000",
      ]
    ) {
      await assert.rejects(store.save(bad, record(), null), TypeError);
      await assert.rejects(store.load(bad), TypeError);
    }
    assert.deepEqual(await readdir(dir), []);
  });

  it("reads a corrupt or half-written file as missing and reports it", async () => {
    const dir = await tempDir();
    const reported: string[] = [];
    const store = new FileStore({ dir, onCorrupt: (path) => reported.push(path) });
    const key = randomKey();
    await store.save(key, record({ a: 1 }), null);
    const path = join(dir, `${key}.json`);
    const text = await readFile(path, "utf8");
    await writeFile(path, text.slice(0, text.length / 2));
    assert.equal(await store.load(key), null);
    assert.deepEqual(reported, [path]);
    await writeFile(path, '{"data":[],"version":"x"}');
    assert.equal(await store.load(key), null);
    assert.equal(reported.length, 2);
    assert.equal(await store.cleanup(), 1, "cleanup removes the corrupt file");
  });

  it("breaks a lock left by a crashed process after staleLockMs", async () => {
    const dir = await tempDir();
    const store = new FileStore({ dir, staleLockMs: 200, lockTimeoutMs: 2_000 });
    const key = randomKey();
    await store.save(key, record({ n: 1 }), null);
    const lock = join(dir, `${key}.json.lock`);
    await writeFile(lock, "");
    const old = new Date(Date.now() - 1_000);
    await utimes(lock, old, old);
    assert.equal(await store.save(key, { ...record({ n: 2 }), version: 2 }, 1), true);
    assert.equal((await store.load(key))?.data.n, 2);
  });

  it("fails with an error, not a hang, while a live lock is held past lockTimeoutMs", async () => {
    const dir = await tempDir();
    const store = new FileStore({ dir, staleLockMs: 60_000, lockTimeoutMs: 150 });
    const key = randomKey();
    await store.save(key, record(), null);
    await writeFile(join(dir, `${key}.json.lock`), "");
    await assert.rejects(
      store.save(key, { ...record(), version: 2 }, 1),
      /Timed out waiting for the session lock/,
    );
  });

  it("leaves no torn file and no blocking lock when a writer is killed with SIGKILL", async () => {
    const dir = await tempDir();
    const key = randomKey();
    const store = new FileStore({ dir, staleLockMs: 300 });
    await store.save(key, record({ n: 0 }), null);
    // A child process saves in a tight loop with big records; it is killed mid-write.
    // A Node child (under Deno or Bun, the `node` on PATH), whatever runtime runs this test.
    const runtime = globalThis as { Deno?: unknown; Bun?: unknown };
    const child = spawn(runtime.Deno || runtime.Bun ? "node" : process.execPath, [
      "--import",
      "tsx",
      "--input-type=module",
      "-e",
      `
      import { FileStore } from ${JSON.stringify(new URL("../../src/stores/file.ts", import.meta.url).href)};
      const store = new FileStore({ dir: ${JSON.stringify(dir)} });
      const big = "x".repeat(200_000);
      for (let v = 1;; v++) {
        const now = Date.now();
        await store.save(${
        JSON.stringify(key)
      }, { data: { n: v, big }, version: v + 1, createdAt: now, expiresAt: now + 60000 }, v);
        if (v === 5) console.log("running");
      }
    `,
    ], { stdio: ["ignore", "pipe", "inherit"] });
    await new Promise<void>((resolve) => child.stdout!.once("data", () => resolve()));
    await new Promise((resolve) => setTimeout(resolve, 50));
    child.kill("SIGKILL");
    await new Promise((resolve) => child.once("exit", resolve));
    const loaded = await store.load(key);
    assert.ok(loaded, "the last complete record is still readable");
    assert.equal(loaded.data.n, loaded.version - 1, "never a torn or mixed record");
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.equal(
      await store.save(key, { ...record({ n: -1 }), version: loaded.version + 1 }, loaded.version),
      true,
    );
    await store.cleanup();
    const left = (await readdir(dir)).filter((name) => !name.endsWith(".json"));
    assert.deepEqual(left, [], "no lock or temp file left after cleanup");
  });
});
