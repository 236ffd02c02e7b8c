// FileStore's locks (session.lock()) across processes: two worker processes, each with its
// own FileStore on one directory, take one lock over and over, and each holder proves it is
// alone by creating a marker file exclusively while it holds the lock. Some holders walk away
// without releasing (their lock expires 20 ms later), so expired locks are taken over by
// many contenders at once. No two holders may ever be inside together.
//
// The kill loop: a third process contends until it is killed with SIGKILL wherever it is
// (holding the lock, mid-takeover, mid-write of a lock generation); the two workers then
// contend again. Neither may take the lock before the killed holder's lock expired, both must
// get it after, and cleanup() leaves nothing.
//
// CI runs 40 rounds per contender and 3 kills; `npm run test:file-store-lock`
// (FILE_STORE_LOCK_ROUNDS=1000 FILE_STORE_LOCK_KILLS=50) runs the full size, a few minutes.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { FileStore } from "../../src/stores/file.ts";
import { randomKey, sleep } from "../conformance/util.ts";
import { insidePath, type LockJob, type LockOutcome } from "./file_store_lock.ts";
import { NODE, start } from "../spawn.ts";

const ROUNDS = Number(process.env.FILE_STORE_LOCK_ROUNDS ?? 40);
const KILLS = Number(process.env.FILE_STORE_LOCK_KILLS ?? 3);
const STALE_LOCK_MS = 1_000;
const LOCK_TIMEOUT_MS = 20_000;
const DOOMED_TTL_MS = 1_500;

/** A worker process that runs lock jobs (tests/faults/file_store_lock_worker.ts). */
interface Worker {
  /** Sends a job; `running` resolves on its announcement, `done` with its outcome. */
  run(job: LockJob): { running: Promise<void>; done: Promise<LockOutcome> };
  kill(): Promise<void>;
  close(): Promise<void>;
}

async function worker(): Promise<Worker> {
  const done = new Map<number, (outcome: LockOutcome) => void>();
  const running = new Map<number, () => void>();
  const file = fileURLToPath(new URL("./file_store_lock_worker.ts", import.meta.url));
  const child = await start(NODE, ["--import", "tsx", file], {
    stdin: true,
    echo: true,
    onLine(line) {
      const message = JSON.parse(line) as { id: number; running?: true; outcome?: LockOutcome };
      if (message.running) running.get(message.id)?.();
      else done.get(message.id)?.(message.outcome!);
    },
  });
  return {
    run(job) {
      const announced = new Promise<void>((resolve, reject) => {
        running.set(job.id, resolve);
        void child.exited.then(() => reject(new Error("The worker exited before it announced")));
      });
      announced.catch(() => {});
      const outcome = new Promise<LockOutcome>((resolve) => done.set(job.id, resolve));
      const line = JSON.stringify({ ...job, rounds: Number.isFinite(job.rounds) ? job.rounds : null });
      child.write(`${line}\n`);
      return { running: announced, done: outcome };
    },
    kill: () => child.stop("SIGKILL"),
    close: () => child.end(),
  };
}

/** What cleanup() leaves of a directory: nothing but the (empty) directory of the locks, `leases/`. */
async function leftovers(dir: string): Promise<string[]> {
  // `locks/tokens` keeps the last fencing token of removed locks.
  const names = (await readdir(dir)).filter((name) => name !== "locks");
  return [
    ...names,
    ...(await readdir(join(dir, "locks")).catch(() => [])).filter((name) => name !== "tokens"),
  ];
}

describe("FileStore locks across processes", () => {
  const dirs: string[] = [];
  const workers: Worker[] = [];
  let jobs = 0;
  before(async () => {
    workers.push(await worker(), await worker());
  });
  after(async () => {
    await Promise.all(workers.map((worker) => worker.close()));
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });
  async function tempDir(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), "websession-store-lock-"));
    dirs.push(dir);
    return dir;
  }
  function job(dir: string, key: string, rounds: number, more: Partial<LockJob> = {}): LockJob {
    return {
      id: ++jobs,
      dir,
      key,
      contenders: 3,
      rounds,
      ttlMs: 30_000,
      abandonRate: 0.2,
      staleLockMs: STALE_LOCK_MS,
      lockTimeoutMs: LOCK_TIMEOUT_MS,
      ...more,
    };
  }

  it(`gives the lock to one holder at a time, released or expired (${ROUNDS} rounds per contender)`, async () => {
    const dir = await tempDir();
    const key = randomKey();
    const outcomes = await Promise.all(workers.map((worker) => worker.run(job(dir, key, ROUNDS)).done));
    const total = (name: "taken" | "overlaps" | "abandoned") =>
      outcomes.reduce((sum, outcome) => sum + outcome[name], 0);
    console.log(`# ${total("taken")} locks taken, ${total("abandoned")} left to expire and taken over`);
    assert.deepEqual(outcomes.flatMap((outcome) => outcome.errors), []);
    assert.equal(total("overlaps"), 0, "never two holders at once");
    assert.equal(total("taken"), 2 * 3 * ROUNDS);
    assert.ok(total("abandoned") > 0, "expired locks were taken over");
    await sleep(50); // the last lock left to expire has expired
    await new FileStore({ dir, staleLockMs: STALE_LOCK_MS }).cleanup();
    assert.deepEqual(await leftovers(dir), [], "no lock or temp file left after cleanup");
  });

  it(`lets a killed holder's lock expire, then gives it to one survivor at a time (${KILLS} kills)`, async () => {
    const dir = await tempDir();
    const key = randomKey();
    const store = new FileStore({ dir, staleLockMs: STALE_LOCK_MS });
    let known = 0;
    let litter = 0;
    for (let kill = 0; kill < KILLS; kill++) {
      const doomed = await worker();
      const { running } = doomed.run(
        job(dir, key, Infinity, { ttlMs: DOOMED_TTL_MS, announceAfter: 1 + Math.floor(Math.random() * 20) }),
      );
      await running;
      await sleep(Math.random() * 20);
      await doomed.kill();
      const until = (await store.heldLock(key))?.until ?? null;
      if (until !== null) known++;
      if ((await readdir(join(dir, "leases", key)).catch(() => [])).some((name) => name.endsWith(".tmp"))) {
        litter++;
      }
      await rm(insidePath(dir), { force: true }); // the killed holder may have been inside

      const outcomes = await Promise.all(
        workers.map((worker) => worker.run(job(dir, key, 2, { contenders: 2, abandonRate: 0 })).done),
      );
      assert.deepEqual(outcomes.flatMap((outcome) => outcome.errors), []);
      assert.equal(outcomes.reduce((sum, outcome) => sum + outcome.overlaps, 0), 0, "one holder at a time");
      assert.equal(outcomes.reduce((sum, outcome) => sum + outcome.taken, 0), 2 * 2 * 2);
      if (until !== null) {
        for (const outcome of outcomes) {
          assert.ok(outcome.firstAt! >= until, "nobody took the killed holder's lock before it expired");
        }
      }
    }
    console.log(
      `# ${KILLS} kills: ${known} left a live lock that expired before it was taken, ` +
        `${litter} a temporary file`,
    );
    await sleep(STALE_LOCK_MS + 100);
    await store.cleanup();
    assert.deepEqual(await leftovers(dir), [], "no lock or temp file left after cleanup");
  });
});
