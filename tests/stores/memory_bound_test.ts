// MemoryStore's memory stays bounded by itself: expired sessions are swept as new ones are
// written, and the default store of withSession holds at most maxSessions. Each case runs
// tests/stores/memory_growth.ts in a Node process of its own with --expose-gc, so that heap
// figures are taken after full collections. CI runs a reduced size; MEMORY_FULL=1 runs the
// full size (`npm run test:memory`): 5 rounds of 20,000 sessions, and 1,000,000 new visitors.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { start } from "../spawn.ts";

const FULL = process.env.MEMORY_FULL === "1";
const script = fileURLToPath(new URL("./memory_growth.ts", import.meta.url));

interface Growth {
  baseline: number;
  heap: number[];
  size?: number[];
  rss?: number;
}

async function run(...args: string[]): Promise<Growth> {
  let last = "";
  const child = await start(process.execPath, ["--expose-gc", "--import", "tsx", script, ...args], {
    echo: true,
    onLine(line) {
      last = line;
    },
  });
  await child.exited;
  if (child.exit!.code !== 0) {
    throw new Error(`memory_growth.ts ${args.join(" ")} exited with ${child.exit!.code}`);
  }
  console.log(`# ${last}`);
  return JSON.parse(last) as Growth;
}

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

/** The heap over the baseline after the last step is at most `factor` times that after `index`. */
function assertFlat(growth: Growth, index: number, factor: number): void {
  const reference = growth.heap[index]! - growth.baseline;
  const last = growth.heap.at(-1)! - growth.baseline;
  assert.ok(reference > 0, "the sessions took some heap");
  assert.ok(
    last <= factor * reference,
    `heap over baseline grew from ${mb(reference)} to ${mb(last)} (${growth.heap.map(mb).join(", ")})`,
  );
}

describe("MemoryStore memory bound", () => {
  it("the default store's heap stays flat across rounds of short-lived sessions", async () => {
    // Unswept, every round adds its sessions to the heap (3 rounds: about 2x the first round's
    // growth; 5 rounds of 20,000: 28 MB to 105 MB). Swept, each round's writes clear the last.
    const growth = await run("rounds", FULL ? "5" : "3", FULL ? "20000" : "5000");
    assertFlat(growth, 0, 1.5);
  });

  it("MemoryStore holds one round of short-lived sessions, at store level", async () => {
    const sessions = FULL ? 20_000 : 5_000;
    const growth = await run("store-rounds", FULL ? "5" : "3", String(sessions));
    assert.deepEqual(growth.size, growth.heap.map(() => sessions));
    assertFlat(growth, 0, 1.5);
  });

  it("the default store's heap stays flat under a flood of new visitors that never expire", async () => {
    // The default store keeps at most 10,000 sessions: the first tenth of the flood fills it
    // (3,000 sessions a tenth here), the rest only replaces the least recently written.
    const growth = await run("flood", FULL ? "1000000" : "30000");
    assertFlat(growth, FULL ? 0 : 3, 1.5);
  });
});
