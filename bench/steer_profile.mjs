// The returning visitor's path on the built package in a tight loop, for
// `node --cpu-prof --cpu-prof-dir=<dir> bench/steer_profile.mjs <ms> [read|returning]` (DIST_DIR
// names the dist/ directory). Plain JavaScript: the profile holds the package's own JavaScript
// and nothing of a loader.
import process from "node:process";

const ms = Number(process.argv[2] ?? 4000);
const scenario = process.argv[3] ?? "returning";
const { getSession, MemoryStore, withSession } = await import(`file://${process.env.DIST_DIR}mod.js`);
const options = { store: new MemoryStore(), secrets: "benchmark secret: at least thirty-two characters" };
const count = withSession(async (req) => {
  const session = await getSession(req);
  session.update("visits", (n = 0) => n + 1);
  return new Response("ok");
}, options);
const read = withSession(async (req) => {
  (await getSession(req)).get("visits");
  return new Response("ok");
}, options);
const cookies = [];
for (let i = 0; i < 64; i++) {
  const r = await count(new Request("https://bench.example/count"));
  cookies.push(r.headers.getSetCookie()[0].split(";", 1)[0]);
}
const handler = scenario === "read" ? read : count;
const url = scenario === "read" ? "https://bench.example/read" : "https://bench.example/count";
const end = performance.now() + ms;
let n = 0;
while (performance.now() < end) {
  for (let i = 0; i < 200; i++) {
    const response = await handler(new Request(url, { headers: { cookie: cookies[n++ & 63] } }));
    if (response.status !== 200) throw new Error(`answered ${response.status}`);
    response.headers.getSetCookie();
  }
}
process.stdout.write(JSON.stringify({ requests: n }) + "\n");
