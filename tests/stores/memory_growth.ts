// How much heap the default store holds as visitors come and go. Run as its own process with
// --expose-gc (tests/stores/memory_bound_test.ts does); prints one JSON line.
//
//   node --expose-gc --import tsx tests/stores/memory_growth.ts rounds <rounds> <sessions>
//     Rounds of new visitors through withSession with the default store, each round's sessions
//     expiring (idleTimeout: 1 s) before the next round starts. Reports the settled heap after
//     each round; the store sweeps what expired as the next round writes.
//   node --expose-gc --import tsx tests/stores/memory_growth.ts flood <sessions>
//     New visitors that never expire, through withSession with the default store. Reports the
//     settled heap every tenth of the way; the store's maxSessions holds it flat.
//   node --expose-gc --import tsx tests/stores/memory_growth.ts store-rounds <rounds> <sessions>
//     The rounds at store level: MemoryStore's own calls with an injected clock, no sleeping.
import { getSession, withSession } from "../../mod.ts";
import { MemoryStore } from "../../src/stores/memory.ts";
import { randomKey } from "../conformance/util.ts";

declare const gc: () => void;

const [mode = "rounds", a = "3", b = "5000"] = process.argv.slice(2);

function settle(): number {
  for (let i = 0; i < 4; i++) gc();
  return process.memoryUsage().heapUsed;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const handler = withSession(async (req: Request) => {
  const session = await getSession<{ visits?: number; note?: string }>(req);
  session.set("visits", 1);
  session.set("note", "a new visitor");
  return new Response("ok");
}, { secrets: ["a secret of at least thirty-two characters"], idleTimeout: mode === "flood" ? 3600 : 1 });

/** `count` new visitors, 32 at a time; each one's session is saved. */
async function visitors(count: number): Promise<void> {
  for (let done = 0; done < count;) {
    const batch = Math.min(32, count - done);
    const responses = await Promise.all(
      Array.from({ length: batch }, () => handler(new Request("https://example.com/"))),
    );
    for (const response of responses) {
      if (response.status !== 200 || !response.headers.get("set-cookie")) {
        throw new Error(`Unexpected response: ${response.status}`);
      }
      await response.arrayBuffer();
    }
    done += batch;
  }
}

if (mode === "rounds") {
  const rounds = Number(a);
  const sessions = Number(b);
  await visitors(500); // warm up the code paths, then let those sessions expire too
  await sleep(1_100);
  await visitors(1);
  const baseline = settle();
  const heap: number[] = [];
  for (let r = 0; r < rounds; r++) {
    await visitors(sessions);
    heap.push(settle());
    await sleep(1_100); // every session of this round expires before the next round
  }
  console.log(JSON.stringify({ mode, rounds, sessions, baseline, heap }));
} else if (mode === "flood") {
  const sessions = Number(a);
  await visitors(500);
  const baseline = settle();
  const heap: number[] = [];
  const step = Math.ceil(sessions / 10);
  for (let done = 0; done < sessions; done += step) {
    await visitors(Math.min(step, sessions - done));
    heap.push(settle());
  }
  const rss = process.memoryUsage().rss;
  console.log(JSON.stringify({ mode, sessions, baseline, heap, rss }));
} else if (mode === "store-rounds") {
  const rounds = Number(a);
  const sessions = Number(b);
  let now = 1_000_000;
  const store = new MemoryStore({ now: () => now });
  const baseline = settle();
  const heap: number[] = [];
  const size: number[] = [];
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < sessions; i++) {
      const data = { visits: 1, note: "a new visitor" };
      await store.save(randomKey(), { data, version: 1, createdAt: now, expiresAt: now + 1_000 }, null);
    }
    heap.push(settle());
    size.push(store.size);
    now += 1_000;
  }
  console.log(JSON.stringify({ mode, rounds, sessions, baseline, heap, size }));
} else {
  throw new Error(`Unknown mode: "${mode}"`);
}
