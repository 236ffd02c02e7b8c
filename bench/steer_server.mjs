// A Node HTTP server for the fixed-rate rows of bench/steer.ts: MODE=bare answers "ok";
// MODE=returning serves the returning visitor through websession from the built package
// (DIST_DIR). Plain JavaScript, node:http with a tiny fetch adapter (the same for both modes).
// GET /__cpu answers this process's CPU time so far (µs, user + system, every thread).
import { createServer } from "node:http";
import process from "node:process";

const mode = process.env.MODE;
let handler = () => new Response("ok");
if (mode === "returning") {
  const { getSession, MemoryStore, withSession } = await import(`file://${process.env.DIST_DIR}mod.js`);
  handler = withSession(async (req) => {
    const session = await getSession(req);
    session.update("visits", (n = 0) => n + 1);
    return new Response("ok");
  }, {
    store: new MemoryStore(),
    secrets: "benchmark secret: at least thirty-two characters",
    cookie: { secure: false },
  });
}
const server = createServer(async (req, res) => {
  if (req.url === "/__cpu") {
    const { user, system } = process.cpuUsage();
    res.end(String(user + system));
    return;
  }
  const headers = new Headers();
  for (let i = 0; i < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i], req.rawHeaders[i + 1]);
  const response = await handler(
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
server.listen(Number(process.env.PORT), "127.0.0.1", () => process.stdout.write("ready\n"));
