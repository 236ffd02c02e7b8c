import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readdir, rm, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { FileStore } from "../../src/stores/file.ts";
import { randomKey, sleep } from "../conformance/util.ts";
import { NODE, start } from "../spawn.ts";

// Importing the shared suites runs them here too.
import { tempDir } from "../runtime/file_suites.ts";

function record(data: Record<string, unknown> = {}, version = 1) {
  const now = Date.now();
  return { data, version, createdAt: now, expiresAt: now + 60_000 };
}

describe("FileStore", () => {
  it("keeps each version in a file of its own, claimed once; superseded ones keep no data", async () => {
    const dir = join(await tempDir(), "nested", "sessions");
    const store = new FileStore({ dir, fsync: false });
    const key = randomKey();
    assert.equal(await store.save(key, record({ n: 1 }), null), true);
    const second = record({ n: 2 }, 2);
    assert.equal(await store.save(key, second, 1), true);
    assert.deepEqual((await readdir(join(dir, key))).sort(), ["1.json", "2.json", "head", "husk"]);
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    assert.equal((await stat(join(dir, key, "2.json"))).mode & 0o777, 0o600);
    assert.equal((await stat(join(dir, key, "1.json"))).size, 0, "version 1 is an empty name now");
    // A writer that read version 1 and stalled finds the name of version 2 taken, whatever else happened.
    await rm(join(dir, key, "head")); // even with no hint where the newest is
    assert.deepEqual(await store.save(key, record({ late: true }, 2), 1), { current: second });
    assert.throws(() => new FileStore({ dir, fsync: "yes" as unknown as boolean }), TypeError);
  });

  it("reads a session of the earlier single-file layout, and moves it with its next save", async () => {
    const dir = await tempDir();
    const store = new FileStore({ dir });
    const key = randomKey();
    const old = record({ user: "ada" }, 7);
    await writeFile(join(dir, `${key}.json`), JSON.stringify(old));
    await writeFile(join(dir, `${key}.json.lock`), ""); // what the earlier layout's writers left
    assert.equal((await store.load(key))?.version, 7, "an upgrade logs no one out");
    assert.equal(await store.count(), 1);
    assert.deepEqual(await store.save(key, record({}, 8), 6), { current: old });
    assert.equal(await store.save(key, record({ user: "ada", n: 1 }, 8), 7), true);
    assert.deepEqual((await store.load(key))?.data, { user: "ada", n: 1 });
    const then = new Date(Date.now() - 60_000);
    await utimes(join(dir, `${key}.json.lock`), then, then);
    await store.cleanup();
    assert.deepEqual(await readdir(dir), [key]);
  });

  it("reads a corrupt newest version as missing, reports it, and cleanup removes it", async () => {
    const dir = await tempDir();
    const reported: string[] = [];
    const store = new FileStore({ dir, onCorrupt: (path) => reported.push(path) });
    const key = randomKey();
    await store.save(key, record({ a: 1 }), null);
    await writeFile(join(dir, key, "2.json"), '{"slot":2,"data":[],"version":"x"}');
    assert.equal(await store.load(key), null);
    assert.deepEqual(reported, [join(dir, key, "2.json")]);
    assert.equal(await store.cleanup(), 1);
    assert.deepEqual(await readdir(dir), []);
    const warnings: unknown[] = [];
    await writeFile(join(dir, `${key}.json`), "not json");
    assert.equal(await new FileStore({ dir, logger: { warn: (w) => warnings.push(w) } }).load(key), null);
    assert.match(String(warnings[0]), /corrupt session file ".*\.json" read as missing$/);
  });

  it("survives writers killed with SIGKILL mid-write: never a torn record, cleanup leaves nothing", async () => {
    const dir = await tempDir();
    const key = randomKey();
    const store = new FileStore({ dir, staleLockMs: 100 });
    await store.save(key, record({ n: 0 }), null);
    const script = `const { FileStore } = await import(${
      JSON.stringify(new URL("../../src/stores/file.ts", import.meta.url).href)
    });
      const [store, key, big] = [new FileStore({ dir: ${JSON.stringify(dir)} }), ${
      JSON.stringify(key)
    }, "x".repeat(200000)];
      for (let v = 1;; v++) {
        const now = Date.now();
        await store.save(key, { data: { n: v, big }, version: v + 1, createdAt: now, expiresAt: now + 60000 }, v);
        if (v === 5) console.log("running");
      }`;
    const child = await start(NODE, ["--import", "tsx", "--input-type=module", "-e", script], {
      ready: /running/,
      echo: true,
    });
    await sleep(50);
    await child.stop("SIGKILL");
    const loaded = (await store.load(key))!;
    assert.equal(loaded.data.n, loaded.version - 1, "never a torn or mixed record");
    assert.equal(await store.save(key, record({ n: -1 }, loaded.version + 1), loaded.version), true);
    await sleep(150);
    await store.cleanup();
    assert.deepEqual((await readdir(join(dir, key))).filter((name) => name.endsWith(".tmp")), []);
  });

  it("gives each lock holder a larger fencing token, across takeovers, releases and cleanup", async () => {
    const dir = await tempDir();
    let clock = 1_000_000;
    const store = new FileStore({ dir, now: () => clock });
    const key = randomKey();
    const tokens: number[] = [];
    const take = async (owner: string) => {
      assert.equal(await store.lock(key, owner, 1_000), true);
      tokens.push((await store.heldLock(key))!.token);
    };
    await take("a");
    assert.equal(await store.lock(key, "a", 5_000), true, "re-taken by its owner: extended");
    assert.equal((await store.heldLock(key))!.token, tokens[0], "an extension keeps the token");
    clock += 5_000;
    await take("b"); // a's lock expired: taken over
    await store.unlock(key, "b");
    await take("c");
    clock += 2_000;
    assert.equal(await store.cleanup(), 0);
    assert.deepEqual(await readdir(join(dir, "locks")), ["tokens"], "cleanup removed the expired lock");
    await take("d");
    assert.ok(tokens.every((token, i) => i === 0 || token > tokens[i - 1]!), String(tokens));
  });

  it("indexes sessions per user in hashed directories, and never drops a save in progress", async () => {
    const dir = await tempDir();
    const store = new FileStore({ dir });
    const lister = new FileStore({ dir });
    const users = ["../../etc/passwd", "a\ud800", "a\ud801", "", "Ada", "ada"];
    for (const user of users) await store.save(randomKey(), record({ user }), null, { user });
    for (const user of users) assert.equal((await store.keysOfUser(user)).length, 1);
    for (const name of await readdir(join(dir, "users"))) assert.match(name, /^[A-Za-z0-9_-]{43}$/);
    const keys = Array.from({ length: 40 }, () => randomKey());
    let saving = true;
    const listing = (async () => {
      while (saving) await lister.keysOfUser("grace");
    })();
    await Promise.all(keys.map(async (key, i) => {
      await sleep(i);
      assert.equal(await store.save(key, record({ user: "grace" }), null, { user: "grace" }), true);
    }));
    saving = false;
    await listing;
    assert.deepEqual((await store.keysOfUser("grace")).sort(), [...keys].sort());
    await store.destroy(keys[0]!);
    assert.equal((await store.keysOfUser("grace")).length, 39);
  });
});
