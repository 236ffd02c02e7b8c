import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
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

  it("keeps leases in <key>.lease files, apart from records and write locks", async () => {
    const dir = await tempDir();
    const clock = 1_000_000;
    const store = new FileStore({ dir, now: () => clock });
    const key = randomKey();
    assert.equal(await store.lock(key, "owner-1", 30_000), true);
    assert.equal(await store.save(key, record({ a: 1 }), null), true, "a lease does not block a save");
    assert.deepEqual((await readdir(dir)).sort(), [`${key}.json`, `${key}.lease`].sort());
    const lease = JSON.parse(await readFile(join(dir, `${key}.lease`), "utf8"));
    assert.equal(lease.owner, "owner-1");
    assert.equal(lease.until, clock + 30_000, "expiry by the store's clock");
    assert.equal((await stat(join(dir, `${key}.lease`))).mode & 0o777, 0o600);
    await store.destroy(key);
    assert.equal(await store.lock(key, "owner-2", 30_000), false, "destroying the record leaves the lease");
    await store.unlock(key, "owner-1");
    assert.deepEqual(await readdir(dir), []);
  });

  it("extends a lease its owner takes again, and frees it only once the extension expires", async () => {
    const dir = await tempDir();
    let clock = 1_000_000;
    const store = new FileStore({ dir, now: () => clock });
    const key = randomKey();
    assert.equal(await store.lock(key, "a", 1_000), true);
    clock += 800;
    assert.equal(await store.lock(key, "a", 1_000), true, "re-taken by its owner");
    clock += 800; // past the first expiry, before the second
    assert.equal(await store.lock(key, "b", 1_000), false);
    clock += 300;
    assert.equal(await store.lock(key, "b", 1_000), true, "expired: taken over");
    await store.unlock(key, "a"); // no longer the owner: nothing happens
    assert.equal(await store.lock(key, "c", 1_000), false);
    assert.equal(JSON.parse(await readFile(join(dir, `${key}.lease`), "utf8")).owner, "b");
  });

  it("gives an expired lease to exactly one of many concurrent takers", async () => {
    const dir = await tempDir();
    const stores = [new FileStore({ dir }), new FileStore({ dir }), new FileStore({ dir })];
    for (let trial = 0; trial < 10; trial++) {
      const key = randomKey();
      const token = "abcdef0123456789abcdef0123456789";
      await writeFile(
        join(dir, `${key}.lease`),
        JSON.stringify({ token, owner: "gone", until: Date.now() - 1 }),
      );
      const owners = Array.from({ length: 12 }, (_, i) => `owner-${i}`);
      const taken = await Promise.all(owners.map((owner, i) => stores[i % 3]!.lock(key, owner, 30_000)));
      assert.equal(taken.filter(Boolean).length, 1, `trial ${trial}: ${taken}`);
      const holder = JSON.parse(await readFile(join(dir, `${key}.lease`), "utf8")).owner;
      assert.equal(holder, owners[taken.indexOf(true)]);
    }
    assert.deepEqual((await readdir(dir)).filter((name) => !name.endsWith(".lease")), [], "no claim left");
  });

  it("holds a lease file that does not parse until it is staleLockMs old, then takes it over", async () => {
    const dir = await tempDir();
    const store = new FileStore({ dir, staleLockMs: 500 });
    const key = randomKey();
    const lease = join(dir, `${key}.lease`);
    await writeFile(lease, ""); // a taker killed between creating the file and writing it
    assert.equal(await store.lock(key, "a", 30_000), false);
    await backdate(lease, 1_000);
    assert.equal(await store.lock(key, "a", 30_000), true);
    assert.equal(JSON.parse(await readFile(lease, "utf8")).owner, "a");
  });

  it("waits out a taker killed while holding its claim on an expired lease", async () => {
    const dir = await tempDir();
    const store = new FileStore({ dir, staleLockMs: 500 });
    const key = randomKey();
    const lease = join(dir, `${key}.lease`);
    const token = "0123456789abcdef0123456789abcdef";
    await writeFile(lease, JSON.stringify({ token, owner: "gone", until: Date.now() - 1 }));
    const claim = `${lease}.${token}.0.break`;
    await writeFile(claim, "");
    assert.equal(await store.lock(key, "a", 30_000), false, "a live claim: another taker is taking it over");
    await backdate(claim, 1_000);
    assert.equal(
      await store.lock(key, "a", 30_000),
      true,
      "the claim is stale: the next generation takes it",
    );
    await store.cleanup();
    assert.deepEqual(await readdir(dir), [`${key}.lease`], "cleanup removed the stale claim");
  });

  it("cleanup removes expired leases and leftover claims, and keeps live leases", async () => {
    const dir = await tempDir();
    let clock = 1_000_000;
    const store = new FileStore({ dir, now: () => clock, staleLockMs: 500 });
    const [expired, live] = [randomKey(), randomKey()];
    await store.lock(expired, "a", 1_000);
    await store.lock(live, "b", 60_000);
    const orphan = join(dir, `${expired}.lease.22222222222222222222222222222222.0.break`);
    await writeFile(orphan, "");
    clock += 1_000;
    assert.equal(await store.cleanup(), 0);
    assert.deepEqual(await readdir(dir), [`${live}.lease`]);
    assert.equal(await store.lock(live, "c", 1_000), false);
  });

  it("rejects a bad lease owner or ttl", async () => {
    const store = new FileStore({ dir: await tempDir() });
    await assert.rejects(store.lock(randomKey(), "", 1_000), TypeError);
    await assert.rejects(store.lock(randomKey(), "a", 0), RangeError);
    await assert.rejects(store.lock(randomKey(), "a", Number.POSITIVE_INFINITY), RangeError);
    await assert.rejects(store.lock("../x", "a", 1_000), TypeError);
  });

  it("writes a user's index marker before the record: a save stopped at its write fence leaves it", async () => {
    const dir = await tempDir();
    const key = randomKey();
    const path = join(dir, `${key}.json`);
    // The save reads a corrupt file under its lock (as missing); the report stalls it past
    // staleLockMs / 2, so it refuses to write the record, after it has written the marker.
    const store = new FileStore({
      dir,
      staleLockMs: 200,
      onCorrupt() {
        const until = Date.now() + 150;
        while (Date.now() < until) { /* stalled */ }
      },
    });
    await writeFile(path, "{corrupt");
    await assert.rejects(store.save(key, record({ user: "ada" }), null, { user: "ada" }), /held too long/);
    assert.equal(await readFile(path, "utf8"), "{corrupt", "the record was not written");
    const [hash] = await readdir(join(dir, "users"));
    assert.deepEqual(await readdir(join(dir, "users", hash!)), [key], "the marker was");
    assert.deepEqual(await store.keysOfUser("ada"), [], "its record is not there: the marker goes");
    assert.deepEqual(await readdir(join(dir, "users", hash!)), []);
  });

  it("never drops the marker of a save in progress while keysOfUser prunes", async () => {
    const dir = await tempDir();
    const store = new FileStore({ dir });
    const lister = new FileStore({ dir });
    const user = "ada";
    const keys = Array.from({ length: 40 }, () => randomKey());
    let saving = true;
    let listed = 0;
    const listing = (async () => {
      while (saving) {
        await lister.keysOfUser(user);
        listed++;
      }
    })();
    await Promise.all(keys.map(async (key, i) => {
      await new Promise((resolve) => setTimeout(resolve, i));
      assert.equal(await store.save(key, record({ user }), null, { user }), true);
    }));
    saving = false;
    await listing;
    assert.ok(listed > 1, "the index was listed while saves ran");
    assert.deepEqual((await store.keysOfUser(user)).sort(), [...keys].sort());
  });

  it("keeps every user id apart, whatever its text, in hashed directory names inside dir", async () => {
    const dir = await tempDir();
    const store = new FileStore({ dir });
    const users = [
      "../../etc/passwd",
      "a/b",
      "a\ud800",
      "a\ud801",
      "a\ufffd",
      "x".repeat(5_000),
      "",
      "Ada",
      "ada",
    ];
    const keys = users.map(() => randomKey());
    for (const [i, user] of users.entries()) {
      assert.equal(await store.save(keys[i]!, record({ user }), null, { user }), true);
    }
    for (const [i, user] of users.entries()) assert.deepEqual(await store.keysOfUser(user), [keys[i]]);
    const names = await readdir(join(dir, "users"));
    assert.equal(names.length, users.length);
    for (const name of names) assert.match(name, /^[A-Za-z0-9_-]{43}$/);
    await assert.rejects(store.keysOfUser(42 as unknown as string), TypeError);
  });

  it("cleanup prunes markers whose record is gone and removes emptied user directories", async () => {
    const dir = await tempDir();
    let clock = 1_000_000;
    const store = new FileStore({ dir, now: () => clock });
    const [kept, destroyed, expiring, other] = [randomKey(), randomKey(), randomKey(), randomKey()];
    const at = (ttl: number) => ({ data: {}, version: 1, createdAt: clock, expiresAt: clock + ttl });
    await store.save(kept, at(60_000), null, { user: "ada" });
    await store.save(destroyed, at(60_000), null, { user: "ada" });
    await store.save(expiring, at(1_000), null, { user: "ada" });
    await store.save(other, at(1_000), null, { user: "grace" });
    await store.destroy(destroyed);
    clock += 1_000;
    assert.equal(await store.cleanup(), 2, "the two expired session files");
    const users = await readdir(join(dir, "users"));
    assert.equal(users.length, 1, "grace's emptied directory is gone");
    assert.deepEqual(await readdir(join(dir, "users", users[0]!)), [kept]);
    assert.deepEqual(await store.keysOfUser("grace"), []);
    // A save after cleanup makes the directory again.
    await store.save(other, at(60_000), null, { user: "grace" });
    assert.deepEqual(await store.keysOfUser("grace"), [other]);
  });

  it("writes its warnings to the logger option, unless onCorrupt is given", async () => {
    const dir = await tempDir();
    const warnings: unknown[][] = [];
    const logger = { warn: (...args: unknown[]) => void warnings.push(args) };
    const key = randomKey();
    await writeFile(join(dir, `${key}.json`), "not json");
    assert.equal(await new FileStore({ dir, logger }).load(key), null);
    assert.equal(warnings.length, 1);
    assert.match(String(warnings[0]![0]), /corrupt session file: ".*\.json"$/);
    const reported: string[] = [];
    await new FileStore({ dir, logger, onCorrupt: (path) => reported.push(path) }).load(key);
    assert.equal(warnings.length, 1, "onCorrupt replaces the warning");
    assert.deepEqual(reported, [join(dir, `${key}.json`)]);
    assert.throws(() => new FileStore({ dir, logger: {} as typeof logger }), TypeError);
    await rm(join(dir, `${key}.json`));
  });
});
