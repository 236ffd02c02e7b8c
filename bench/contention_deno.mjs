// The Deno KV row of the contention benchmark, in Deno (`deno run -A --unstable-kv`, started by
// bench/contention.ts through `Child`): websession from the built package (BENCH_PKG) and the lock
// subject over one `DenoKvStore`, on a Deno KV database in a temporary file, measured in process by
// bench/contention_rounds.mjs's `measurePair` (30 in flight, the same rounds as on Node).
// On each line {"method","rounds","budgetMs"} it answers {"tallies":[websession, lock]}, each
// {"samples":[{ms,status}],"runs","lost"}; at the end of stdin it closes and removes the database.
import process from "node:process";
import { createInterface } from "node:readline";
import { load } from "./entry.mjs";
import { lockSubject, measurePair, websessionSubject } from "./contention_rounds.mjs";

function send(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

const dir = await Deno.makeTempDir({ prefix: "websession-bench-kv-" });
let kv;
try {
  const core = await load("websession");
  const { DenoKvStore } = await load("websession/deno-kv");
  kv = await Deno.openKv(`${dir}/sessions.sqlite`);
  const store = new DenoKvStore({ kv, prefix: ["websession-bench"] });
  const subjects = [websessionSubject(core, store), lockSubject(store)];
  send({ ready: true, deno: Deno.version.deno });
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() === "") continue;
    try {
      const { method, rounds, budgetMs } = JSON.parse(line);
      send({ tallies: await measurePair(subjects, method, rounds, budgetMs) });
    } catch (error) {
      send({ error: String(error?.stack ?? error).slice(0, 800) });
    }
  }
} catch (error) {
  send({ error: String(error?.stack ?? error).slice(0, 800) });
} finally {
  kv?.close();
  await Deno.remove(dir, { recursive: true });
}
process.exit(0);
