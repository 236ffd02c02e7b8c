// FileStore under stalled processes: three Node processes append unique values to one session's
// list by compare-and-set (tests/faults/file_pause_worker.ts) while this test stops one of them
// with SIGSTOP at random moments, for longer than the stale-lock time, then lets it go on
// (SIGCONT); half-way it kills one with SIGKILL, wherever it is. A stalled process must never
// overwrite a newer record: every acknowledged append is in the final list exactly once, and
// no value is there twice.
//
// CI stops the processes 12 times (a few seconds). FILE_PAUSE_STOPS=400 runs the full size,
// about two minutes (`npm run test:file-pause`). FILE_PAUSE_STORE=<URL of a FileStore module>
// runs the same test against another version of the store.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { SessionStore } from "../../src/store.ts";
import { randomKey, sleep } from "../conformance/util.ts";
import { NODE, start } from "../spawn.ts";

const STOPS = Number(process.env.FILE_PAUSE_STOPS ?? 12);
const STALE_LOCK_MS = 100;
const STOPPED_MS = 2 * STALE_LOCK_MS;
const STORE = process.env.FILE_PAUSE_STORE ?? new URL("../../src/stores/file.ts", import.meta.url).href;

describe("FileStore with processes stopped and killed mid-write", () => {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it(`loses no acknowledged append and applies none twice (${STOPS} stops)`, async () => {
    const dir = await mkdtemp(join(tmpdir(), "websession-pause-"));
    dirs.push(dir);
    const { FileStore } = await import(STORE);
    const store: SessionStore = new FileStore({ dir, staleLockMs: STALE_LOCK_MS });
    const key = randomKey();
    const now = Date.now();
    await store.save(
      key,
      { data: { list: [] }, version: 1, createdAt: now, expiresAt: now + 3_600_000 },
      null,
    );

    const workers = await Promise.all(["a", "b", "c"].map(async (id) => {
      const acked: string[] = [];
      const errors: string[] = [];
      const args = { dir, key, id, staleLockMs: STALE_LOCK_MS, store: STORE };
      const child = await start(NODE, [
        "--import",
        "tsx",
        fileURLToPath(new URL("./file_pause_worker.ts", import.meta.url)),
        JSON.stringify(args),
      ], {
        stdin: true,
        echo: true,
        onLine(line) {
          if (line.startsWith("ack ")) acked.push(line.slice(4));
          else errors.push(line);
        },
      });
      return { child, acked, errors };
    }));
    try {
      for (let waited = 0; workers.some((worker) => worker.acked.length < 5); waited += 10) {
        if (waited > 30_000) {
          throw new Error(`The workers made no progress: ${workers[0]!.errors.slice(0, 3)}`);
        }
        await sleep(10);
      }
      let live = [...workers];
      for (let stop = 0; stop < STOPS; stop++) {
        if (stop === Math.floor(STOPS / 2)) {
          await live.pop()!.child.stop("SIGKILL");
        }
        await sleep(Math.random() * 20);
        const stopped = live[Math.floor(Math.random() * live.length)]!.child;
        stopped.signal("SIGSTOP");
        await sleep(STOPPED_MS + Math.random() * STOPPED_MS);
        stopped.signal("SIGCONT");
      }
      await sleep(50);
      await Promise.all(live.map((worker) => worker.child.end()));
      live = [];
    } finally {
      for (const worker of workers) worker.child.signal("SIGKILL");
    }

    const list = (await store.load(key))!.data.list as string[];
    const acked = workers.flatMap((worker) => worker.acked);
    const times = new Map<string, number>();
    for (const value of list) times.set(value, (times.get(value) ?? 0) + 1);
    const lost = acked.filter((value) => !times.has(value));
    const twice = [...times].filter(([, n]) => n > 1).map(([value]) => value);
    const errors = workers.flatMap((worker) => worker.errors);
    console.log(
      `# ${STOPS} stops: ${acked.length} appends acknowledged, ${list.length} in the list, ` +
        `${lost.length} lost, ${twice.length} twice, ${errors.length} failed requests`,
    );
    assert.ok(acked.length >= 15, "the workers made progress");
    assert.deepEqual(lost, [], "every acknowledged append is in the list");
    assert.deepEqual(twice, [], "no value is in the list twice");
    assert.deepEqual(errors, [], "no request failed");
  });
});
