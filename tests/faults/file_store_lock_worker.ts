// A worker process of the cross-process lock fault test: reads one job per line on stdin (see
// `LockJob`), runs its contenders on its own FileStore over the job's directory, and answers
// one line of JSON per job with the outcome (and, with `announceAfter`, a line once it has taken
// that many locks).
import { createInterface } from "node:readline";
import { FileStore } from "../../src/stores/file.ts";
import { contendForLock, type LockJob } from "./file_store_lock.ts";

for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() === "") continue;
  const job = JSON.parse(line) as LockJob;
  if (job.rounds === null) job.rounds = Infinity; // JSON has no Infinity
  const store = new FileStore({
    dir: job.dir,
    staleLockMs: job.staleLockMs,
    lockTimeoutMs: job.lockTimeoutMs,
    onCorrupt: () => {},
  });
  let announced = false;
  // Not awaited: a job that runs until killed must not stop the next line from being read.
  void contendForLock(store, job, (taken) => {
    if (!announced && job.announceAfter !== undefined && taken >= job.announceAfter) {
      announced = true;
      process.stdout.write(`${JSON.stringify({ id: job.id, running: true })}\n`);
    }
  }).then((outcome) => process.stdout.write(`${JSON.stringify({ id: job.id, outcome })}\n`));
}
