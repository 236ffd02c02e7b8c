// A worker process of the stale-lock fault test: reads one job per line on stdin (see `Job`),
// runs its contenders at once on its own FileStore over the job's directory, and answers one
// line of JSON with their outcomes.
import { createInterface } from "node:readline";
import { FileStore } from "../../src/stores/file.ts";
import { contend, type Job } from "./file_lock.ts";

for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() === "") continue;
  const job = JSON.parse(line) as Job;
  const store = new FileStore({
    dir: job.dir,
    staleLockMs: job.staleLockMs,
    lockTimeoutMs: job.lockTimeoutMs,
    onCorrupt: () => {},
  });
  const results = await Promise.all(job.roles.map((role) => contend(store, job.key, role)));
  process.stdout.write(`${JSON.stringify({ id: job.id, results })}\n`);
}
