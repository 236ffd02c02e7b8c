// A worker process of the pause fault test (tests/faults/file_pause_test.ts): appends unique
// values to one session's list by compare-and-set (load, append, save; on a refusal load again
// and retry), and prints `ack <value>` once a save of it returned true. It stops after the
// append under way once stdin closes. Argument: a JSON object { dir, key, id, staleLockMs, store },
// `store` the URL of the FileStore module to run.
import type { SessionStore } from "../../src/store.ts";

const { dir, key, id, staleLockMs, store: url } = JSON.parse(process.argv[2]!) as {
  dir: string;
  key: string;
  id: string;
  staleLockMs: number;
  store: string;
};
const { FileStore } = await import(url);
const store: SessionStore = new FileStore({ dir, staleLockMs, lockTimeoutMs: 60_000, onCorrupt: () => {} });

let open = true;
process.stdin.on("end", () => open = false).resume();

/** Appends `value`: `true` once acknowledged, `false` when the store threw (it may have landed). */
async function append(value: string): Promise<boolean> {
  for (;;) {
    try {
      const current = await store.load(key);
      if (current === null) throw new Error("The session is gone");
      const list = current.data.list as string[];
      const next = { ...current, data: { list: [...list, value] }, version: current.version + 1 };
      if (await store.save(key, next, current.version) === true) return true;
    } catch (error) {
      // A failed request (the earlier layout's "held too long to write safely", say): never
      // retried with the same value, never counted as acknowledged.
      process.stdout.write(`error ${error instanceof Error ? error.message : String(error)}\n`);
      return false;
    }
  }
}

for (let i = 0; open; i++) {
  const value = `${id}:${i}`;
  if (await append(value)) process.stdout.write(`ack ${value}\n`);
}
