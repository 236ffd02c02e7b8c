// FileStore under faults: many writers of one session across processes, on sessions just
// upgraded from the earlier layout (a single file, with a lock file a killed writer left), and
// writers killed in the middle of a save.
//
// The contention loop: each trial starts a session, every other one as a file of the earlier
// layout with a stale lock file beside it, then runs ten requests at once, nine increments and
// one logout (a tombstone written by compare-and-set), from two worker processes and two
// FileStore instances in this process, all on the same directory. No acknowledged increment
// may be lost (two writes acknowledged at one version), no logged-out session may come back (a
// write acknowledged after the tombstone, or a final record that is not the tombstone), and
// nothing but the session's directory may be left (the old lock file until cleanup()).
//
// The kill loop: a writer process is killed with SIGKILL wherever it is, again and again; the
// record is never torn, the next save succeeds at once (nothing waits for the killed writer),
// and cleanup() removes the temporary files it left.
//
// CI runs 50 trials and 5 kills; `npm run test:file-lock` (FILE_LOCK_TRIALS=400
// FILE_LOCK_KILLS=200) runs the full size, about 10 minutes. The stalled-process test is
// tests/faults/file_pause_test.ts (`FILE_PAUSE_STOPS=400`).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { FileStore } from "../../src/stores/file.ts";
import { isEnded } from "../../src/store.ts";
import { randomKey, sleep } from "../conformance/util.ts";
import { contend, type Job, type Outcome, type Role } from "./file_lock.ts";
import { NODE, start } from "../spawn.ts";

const TRIALS = Number(process.env.FILE_LOCK_TRIALS ?? 50);
const KILLS = Number(process.env.FILE_LOCK_KILLS ?? 5);
const STALE_LOCK_MS = 2_000;
const LOCK_TIMEOUT_MS = 20_000;

/** A worker process that runs jobs (tests/faults/file_lock_worker.ts). */
interface Worker {
  run(job: Job): Promise<Outcome[]>;
  close(): Promise<void>;
}

async function worker(): Promise<Worker> {
  const waiting = new Map<number, (results: Outcome[]) => void>();
  const child = await start(NODE, [
    "--import",
    "tsx",
    fileURLToPath(new URL("./file_lock_worker.ts", import.meta.url)),
  ], {
    stdin: true,
    echo: true,
    onLine(line) {
      const { id, results } = JSON.parse(line) as { id: number; results: Outcome[] };
      waiting.get(id)?.(results);
      waiting.delete(id);
    },
  });
  return {
    run: (job) =>
      new Promise((resolve) => {
        waiting.set(job.id, resolve);
        child.write(`${JSON.stringify(job)}\n`);
      }),
    close: () => child.end(),
  };
}

describe("FileStore under lock faults", () => {
  const dirs: string[] = [];
  async function tempDir(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), "websession-lock-"));
    dirs.push(dir);
    return dir;
  }
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  describe("concurrent writers and a logout on a session, new or of the earlier layout", () => {
    const workers: Worker[] = [];
    before(async () => {
      workers.push(await worker(), await worker());
    });
    after(async () => {
      await Promise.all(workers.map((worker) => worker.close()));
    });

    it(`loses no increment and resurrects no session (${TRIALS} trials)`, async () => {
      const dir = await tempDir();
      const options = { dir, staleLockMs: STALE_LOCK_MS, lockTimeoutMs: LOCK_TIMEOUT_MS };
      const local = [new FileStore(options), new FileStore(options)];
      const tally = { acked: 0, lost: 0, resurrected: 0, failed: 0, leftovers: 0 };
      const problems: string[] = [];
      for (let trial = 0; trial < TRIALS; trial++) {
        const key = randomKey();
        const now = Date.now();
        const first = { data: { n: 0 }, version: 1, createdAt: now, expiresAt: now + 600_000 };
        const lock = join(dir, `${key}.json.lock`);
        if (trial % 2 === 0) {
          await local[0]!.save(key, first, null);
        } else {
          // A session of the earlier layout, and the lock a killed writer of it left.
          await writeFile(join(dir, `${key}.json`), JSON.stringify(first));
          await writeFile(lock, "0123456789abcdef0123456789abcdef");
          const old = new Date(now - 60_000);
          await utimes(lock, old, old);
        }

        const roles: Role[] = Array.from({ length: 10 }, (_, i) => (i === trial % 10 ? "logout" : "inc"));
        const job = (id: number, slice: Role[]): Job => ({
          id: trial * 10 + id,
          dir,
          key,
          roles: slice,
          staleLockMs: STALE_LOCK_MS,
          lockTimeoutMs: LOCK_TIMEOUT_MS,
        });
        const outcomes = (await Promise.all([
          workers[0]!.run(job(0, roles.slice(0, 3))),
          workers[1]!.run(job(1, roles.slice(3, 6))),
          ...roles.slice(6, 8).map((role) => contend(local[0]!, key, role).then((o) => [o])),
          ...roles.slice(8, 10).map((role) => contend(local[1]!, key, role).then((o) => [o])),
        ])).flat();

        const failed = outcomes.filter((o) => o.error !== undefined);
        tally.failed += failed.length;
        for (const o of failed) problems.push(`trial ${trial}: a request failed: ${o.error}`);
        const logout = outcomes.find((o) => o.role === "logout")!;
        const increments = outcomes.filter((o) => o.role === "inc" && o.acked);
        tally.acked += increments.length;
        const versions = new Set(increments.map((o) => o.version));
        if (versions.size < increments.length) {
          tally.lost += increments.length - versions.size;
          problems.push(
            `trial ${trial}: increments acknowledged at the same version: ${
              increments.map((o) => o.version).join(", ")
            }`,
          );
        }
        for (const o of increments) {
          if (o.n !== o.version! - 1) {
            problems.push(`trial ${trial}: increment wrote n=${o.n} at v${o.version}`);
          }
        }
        const final = await local[0]!.load(key);
        const afterLogout = increments.filter((o) => logout.acked && o.version! > logout.version!);
        if (!isEnded(final) || final!.version !== logout.version || afterLogout.length > 0) {
          tally.resurrected++;
          problems.push(
            `trial ${trial}: logged out at v${logout.version}, final ${JSON.stringify(final)}, ` +
              `${afterLogout.length} increments after the logout`,
          );
        }
        const left = [
          ...(await readdir(dir)).filter((name) => name.length !== 43 && !name.endsWith(".json.lock")),
          ...(await readdir(join(dir, key))).filter((name) => name.endsWith(".tmp")),
        ];
        if (left.length > 0) {
          tally.leftovers += left.length;
          problems.push(`trial ${trial}: left behind: ${left.join(", ")}`);
        }
      }
      await local[0]!.cleanup();
      const left = (await readdir(dir)).filter((name) => name.length !== 43);
      assert.deepEqual(left, [], "cleanup removed the earlier layout's lock files");
      console.log(`# ${TRIALS} trials: ${JSON.stringify(tally)}`);
      assert.deepEqual(problems.slice(0, 10), []);
      assert.deepEqual(tally, { acked: tally.acked, lost: 0, resurrected: 0, failed: 0, leftovers: 0 });
      assert.ok(tally.acked >= TRIALS, "increments were acknowledged");
    });
  });

  it(`recovers from writers killed with SIGKILL mid-save, and cleanup() removes what they left (${KILLS} kills)`, async () => {
    const dir = await tempDir();
    const staleLockMs = 1_500; // how old a temporary file is before cleanup() removes it
    const store = new FileStore({ dir, staleLockMs, lockTimeoutMs: 5_000 });
    const key = randomKey();
    const now = Date.now();
    await store.save(key, { data: { n: 0 }, version: 1, createdAt: now, expiresAt: now + 600_000 }, null);
    let leftTemps = 0;
    for (let kill = 0; kill < KILLS; kill++) {
      // A child saves in a tight loop with big records, waiting now and then on a lock this
      // test holds; it is killed wherever it is.
      const child = await start(NODE, [
        "--import",
        "tsx",
        "--input-type=module",
        "-e",
        `
        import { FileStore } from ${
          JSON.stringify(new URL("../../src/stores/file.ts", import.meta.url).href)
        };
        const store = new FileStore({ dir: ${JSON.stringify(dir)}, staleLockMs: ${staleLockMs} });
        const big = "x".repeat(200_000);
        for (let i = 0;; i++) {
          const current = await store.load(${JSON.stringify(key)});
          const now = Date.now();
          const data = { n: current.data.n + 1, big };
          await store.save(${
          JSON.stringify(key)
        }, { data, version: current.version + 1, createdAt: now, expiresAt: now + 600000 }, current.version);
          if (i === 3) console.log("running");
        }
      `,
      ], { ready: /running/, echo: true });
      await sleep(Math.floor(Math.random() * 40));
      await child.stop("SIGKILL");
      if ((await readdir(join(dir, key))).some((name) => name.endsWith(".tmp"))) leftTemps++;

      const loaded = await store.load(key);
      assert.ok(loaded, "the last complete record is still readable");
      assert.equal(loaded.data.n, loaded.version - 1, "never a torn or mixed record");
      // Nothing waits for the killed writer.
      const saved = await store.save(
        key,
        { ...loaded, data: { n: loaded.version }, version: loaded.version + 1 },
        loaded.version,
      );
      assert.equal(saved, true);
    }
    console.log(`# ${KILLS} kills, ${leftTemps} left a temporary file`);
    await sleep(staleLockMs + 100);
    await store.cleanup();
    assert.deepEqual(await readdir(dir), [key]);
    const left = (await readdir(join(dir, key))).filter((name) => name.endsWith(".tmp"));
    assert.deepEqual(left, [], "no temporary file left after cleanup");
    const final = await store.load(key);
    assert.ok(final);
    assert.equal(final.data.n, final.version - 1);
  });
});
