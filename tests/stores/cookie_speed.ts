// CookieStore seal and open speed, one operation at a time (not a test: no assertions on time).
//
// Usage: node --import tsx tests/stores/cookie_speed.ts [module]
//        deno run -A tests/stores/cookie_speed.ts [module]
//        bun tests/stores/cookie_speed.ts [module]
// `module` is the CookieStore module to measure (default: src/stores/cookie.ts), so that two
// versions can be measured side by side on the same machine. Prints the median of several rounds
// in microseconds per operation (wall time), its fastest round, and the process's CPU time per
// operation over all rounds (user + system, the crypto thread pool included): on a busy machine
// the CPU time is the steadier figure.
import process from "node:process";
import type { CookieStore as CookieStoreType } from "../../src/stores/cookie.ts";

const target = process.argv[2] ?? new URL("../../src/stores/cookie.ts", import.meta.url).href;
const { CookieStore } = (await import(target.startsWith("/") ? `file://${target}` : target)) as {
  CookieStore: typeof CookieStoreType;
};

const SECRET = "a secret of at least thirty-two characters";
const ROUNDS = 7;
const now = Date.now();
const small = {
  data: { user: "ada", visits: 12, roles: ["admin"] },
  version: 3,
  createdAt: now,
  expiresAt: now + 3.6e6,
};
const cart = {
  data: { items: Array.from({ length: 60 }, (_, i) => ({ sku: `item-${i % 9}`, qty: (i % 3) + 1 })) },
  version: 3,
  createdAt: now,
  expiresAt: now + 3.6e6,
};
const random = {
  data: { token: btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(1500)))) },
  version: 3,
  createdAt: now,
  expiresAt: now + 3.6e6,
};
const ID = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

async function measure(name: string, iterations: number, op: () => Promise<unknown>): Promise<void> {
  for (let i = 0; i < iterations; i++) await op(); // warm-up
  const rounds: number[] = [];
  const cpu = process.cpuUsage();
  for (let r = 0; r < ROUNDS; r++) {
    const start = performance.now();
    for (let i = 0; i < iterations; i++) await op();
    rounds.push(((performance.now() - start) * 1000) / iterations);
  }
  const used = process.cpuUsage(cpu);
  rounds.sort((a, b) => a - b);
  const median = rounds[Math.floor(ROUNDS / 2)]!;
  const cpuPerOp = (used.user + used.system) / (ROUNDS * iterations);
  console.log(
    `${name.padEnd(40)} ${median.toFixed(1).padStart(7)} µs/op  min ${
      rounds[0]!.toFixed(1).padStart(6)
    }  cpu ${cpuPerOp.toFixed(1).padStart(6)}`,
  );
}

const sealer = new CookieStore({ secrets: SECRET });
const uncached = new CookieStore({ secrets: SECRET, cacheSize: 0 });
const smallJar = new Map((await sealer.seal(ID, small, "session")).map((c) => [c.name, c.value]));
const cartJar = new Map((await sealer.seal(ID, cart, "session")).map((c) => [c.name, c.value]));
const get = (jar: Map<string, string>) => (name: string) => jar.get(name);

console.log(
  `cookie value: small ${smallJar.get("session")!.length} chars, cart ${
    cartJar.get("session")!.length
  } chars`,
);
await measure("seal small (no compression)", 2000, () => sealer.seal(ID, small, "session"));
await measure("seal cart (~1.9 KB JSON, deflated)", 1000, () => sealer.seal(ID, cart, "session"));
await measure("seal 2 KB random (deflate tried, plain kept)", 1000, () => sealer.seal(ID, random, "session"));
await measure("open small, uncached (decrypt)", 2000, () => uncached.open(get(smallJar), "session"));
await measure("open cart, uncached (decrypt + inflate)", 1000, () => uncached.open(get(cartJar), "session"));
await measure("open small, cached", 20000, () => sealer.open(get(smallJar), "session"));
