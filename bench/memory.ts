// MemoryStore bytes per session: run as its own process with --expose-gc, prints one JSON line.
// Saves N small sessions through the store API (what withSession does for a new visitor, minus
// the request), and reports the heap growth per session, and that growth minus the session's data.
import { encodeBase64Url, MemoryStore } from "./websession.ts";

declare const gc: () => void;

const N = Number(process.argv[2] ?? 1_000_000);
const FLAT = process.argv[3] === "flat";

/**
 * A storage key built exactly as withSession builds one (`storageKeyOf`: SHA-256, then the
 * core's base64url encoder), from random bytes instead of a digest to keep 1M keys fast.
 * With "flat", the same characters as one flat string (Buffer's encoder), for comparison.
 */
function key(bytes: Uint8Array): string {
  return FLAT ? Buffer.from(bytes).toString("base64url") : encodeBase64Url(bytes);
}

function settle(): number {
  for (let i = 0; i < 4; i++) gc();
  return process.memoryUsage().heapUsed;
}

const store = new MemoryStore();
const now = Date.now();
const random = new Uint8Array(32 * 1024);
const before = settle();
let dataBytes = 0;
for (let i = 0; i < N; i++) {
  if (i % 1024 === 0) crypto.getRandomValues(random);
  const data = { visits: i % 100 };
  dataBytes += JSON.stringify(data).length;
  await store.save(key(random.subarray((i % 1024) * 32, (i % 1024) * 32 + 32)), {
    data,
    version: 1,
    createdAt: now,
    expiresAt: now + 3_600_000,
  }, null);
}
const after = settle();
const count = await store.count();
const perSession = (after - before) / count;
const data = dataBytes / N;
console.log(
  JSON.stringify({
    sessions: count,
    heapBytes: after - before,
    perSession,
    dataPerSession: data,
    beyondData: perSession - data,
  }),
);
