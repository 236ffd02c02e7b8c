import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, stat, utimes, writeFile } from "node:fs/promises";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { SessionDataError } from "../../src/errors.ts";
import { FileStore } from "../../src/stores/file.ts";
import { randomKey } from "../conformance/util.ts";

// Importing the shared suites runs them here too.
import { tempDir } from "../runtime/file_suites.ts";

function record(data: Record<string, unknown> = {}) {
  const now = Date.now();
  return { data, version: 1, createdAt: now, expiresAt: now + 60_000 };
}

async function backdate(path: string, ms: number): Promise<void> {
  const old = new Date(Date.now() - ms);
  await utimes(path, old, old);
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
    await backdate(lock, 1_000);
    assert.equal(await store.save(key, { ...record({ n: 2 }), version: 2 }, 1), true);
    assert.equal((await store.load(key))?.data.n, 2);
  });

  it("takes over a stale lock even when a waiter was killed while taking it over", async () => {
    const dir = await tempDir();
    const store = new FileStore({ dir, staleLockMs: 200, lockTimeoutMs: 2_000 });
    const key = randomKey();
    await store.save(key, record({ n: 1 }), null);
    const lock = join(dir, `${key}.json.lock`);
    const token = "0123456789abcdef0123456789abcdef";
    await writeFile(lock, token);
    await backdate(lock, 1_000);
    const claim = `${lock}.${token}.0.break`; // the killed waiter's claim on that lock
    await writeFile(claim, "");
    await backdate(claim, 1_000);
    assert.equal(await store.save(key, { ...record({ n: 2 }), version: 2 }, 1), true);
    assert.equal((await store.load(key))?.data.n, 2);
    await store.cleanup();
    assert.deepEqual((await readdir(dir)).filter((name) => !name.endsWith(".json")), []);
  });

  it("waits while another waiter takes a stale lock over, instead of taking it too", async () => {
    const dir = await tempDir();
    const store = new FileStore({ dir, staleLockMs: 60_000, lockTimeoutMs: 150 });
    const key = randomKey();
    await store.save(key, record(), null);
    const lock = join(dir, `${key}.json.lock`);
    const token = "fedcba9876543210fedcba9876543210";
    await writeFile(lock, token);
    await backdate(lock, 120_000);
    await writeFile(`${lock}.${token}.0.break`, ""); // a live claim: someone is taking it over
    await assert.rejects(
      store.save(key, { ...record(), version: 2 }, 1),
      /Timed out waiting for the session lock/,
    );
    assert.equal(await readFile(lock, "utf8"), token, "the lock is left to the waiter that claimed it");
  });

  it("refuses to write after holding its lock half of staleLockMs, and leaves a lock it no longer owns", async () => {
    const dir = await tempDir();
    const key = randomKey();
    const path = join(dir, `${key}.json`);
    const lock = `${path}.lock`;
    const other = "00000000000000000000000000000000";
    // The save reads a corrupt file under its lock; the report stalls it past staleLockMs / 2,
    // during which a waiter (simulated here) takes the lock over and holds it.
    const store = new FileStore({
      dir,
      staleLockMs: 200,
      onCorrupt() {
        const until = Date.now() + 150;
        while (Date.now() < until) { /* stalled */ }
        assert.match(readFileSync(lock, "utf8"), /^[0-9a-f]{32}$/, "the save holds a lock with its token");
        writeFileSync(`${lock}.next`, other);
        renameSync(`${lock}.next`, lock);
      },
    });
    await store.save(key, record(), null);
    await writeFile(path, "{corrupt");
    await assert.rejects(store.save(key, record({ late: true }), null), /held too long to write safely/);
    assert.equal(await readFile(path, "utf8"), "{corrupt", "nothing was written");
    assert.equal(await readFile(lock, "utf8"), other, "the new holder's lock is still in place");
  });

  it("cleanup removes stale locks, orphaned claims and temp files, and leaves a live lock", async () => {
    const dir = await tempDir();
    const store = new FileStore({ dir, staleLockMs: 500 });
    const [a, b] = [randomKey(), randomKey()];
    await store.save(a, record({ a: 1 }), null);
    await store.save(b, record({ b: 1 }), null);
    const stale = join(dir, `${a}.json.lock`);
    await writeFile(stale, "");
    await backdate(stale, 5_000);
    const live = join(dir, `${b}.json.lock`);
    await writeFile(live, "11111111111111111111111111111111");
    const orphans = [
      join(dir, `${a}.json.lock.22222222222222222222222222222222.0.break`),
      join(dir, `${a}.0123456789abcdef.tmp`),
    ];
    for (const orphan of orphans) {
      await writeFile(orphan, "");
      await backdate(orphan, 5_000);
    }
    const young = join(dir, `${b}.fedcba9876543210.tmp`); // may be a save in progress
    await writeFile(young, "");
    assert.equal(await store.cleanup(), 0, "no session file was removed");
    assert.deepEqual(
      (await readdir(dir)).sort(),
      [`${a}.json`, `${b}.fedcba9876543210.tmp`, `${b}.json`, `${b}.json.lock`].sort(),
    );
  });

  it("round-trips lone surrogates and U+0000 faithfully, as escapes in plain JSON text", async () => {
    const dir = await tempDir();
    const store = new FileStore({ dir });
    const key = randomKey();
    const data = { lone: "\ud800", low: "a\udc00b", nul: "x\u0000y", [`k\u0000\ud83d`]: ["\udfff"] };
    assert.equal(await store.save(key, record(data), null), true);
    assert.deepEqual((await store.load(key))?.data, data);
    const text = await readFile(join(dir, `${key}.json`), "utf8");
    assert.ok(text.includes("\\ud800") && text.includes("\\u0000"), text);
    assert.match(text, /^[ -~]*$/, "printable ASCII: no raw NUL, no lone surrogate to mangle");
  });

  it("refuses data that is not plain JSON with SessionDataError and writes nothing", async () => {
    const dir = await tempDir();
    const store = new FileStore({ dir });
    const key = randomKey();
    const cycle: Record<string, unknown> = { a: 1 };
    cycle.self = cycle;
    for (const data of [{ big: 1n }, cycle, [1] as unknown as Record<string, unknown>]) {
      await assert.rejects(store.save(key, record(data), null), SessionDataError);
    }
    assert.deepEqual(await readdir(dir).catch(() => []), []);
    await store.save(key, record({ n: 1 }), null);
    await assert.rejects(store.save(key, { ...record({ n: 2n }), version: 2 }, 1), SessionDataError);
    assert.deepEqual((await store.load(key))?.data, { n: 1 });
    assert.deepEqual(await readdir(dir), [`${key}.json`]);
  });

  it("rejects a bad staleLockMs or lockTimeoutMs at construction", () => {
    assert.throws(() => new FileStore({ dir: "x", staleLockMs: 0 }), RangeError);
    assert.throws(() => new FileStore({ dir: "x", lockTimeoutMs: Number.NaN }), RangeError);
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
