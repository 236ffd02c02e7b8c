// A Node HTTP server for the fixed-rate part of bench/run.ts, serving one subject of
// bench/subjects.mjs (`bare`, `websession`, a peer) as a returning visitor (its `count` route), with
// node:http and the same tiny fetch adapter for every subject. Plain JavaScript, no loader.
// Usage: node bench/server.mjs <subject>. Prints {"ready":true,"port"}; each {"op":"cpu"} line on
// stdin is answered with this process's CPU time so far, {"us"} (user + system, every thread).
import { createServer } from "node:http";
import process from "node:process";
import { createInterface } from "node:readline";
import { open } from "./subjects.mjs";

const { count } = await open(process.argv[2], { http: true });
const server = createServer(async (req, res) => {
  const headers = new Headers();
  for (let i = 0; i < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i], req.rawHeaders[i + 1]);
  const response = await count(
    new Request(`http://${req.headers.host}${req.url}`, { method: req.method, headers }),
  );
  const out = {};
  response.headers.forEach((v, k) => {
    if (k !== "set-cookie") out[k] = v;
  });
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) out["set-cookie"] = cookies;
  res.writeHead(response.status, out);
  res.end(Buffer.from(await response.arrayBuffer()));
});
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ ready: true, port: server.address().port })}\n`);
});
for await (const _line of createInterface({ input: process.stdin })) {
  const { user, system } = process.cpuUsage();
  process.stdout.write(`${JSON.stringify({ us: user + system })}\n`);
}
process.exit(0);
