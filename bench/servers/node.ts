// Node 20 has no fetch-handler server: a small node:http adapter, the same for every mode, on
// PORT; the CPU report on CONTROL_PORT (a server of its own, so that the measured one does no
// routing).
// With PROFILE_OUT=<file>, SIGUSR2 starts the V8 CPU profiler (steady state, after a warm-up the
// caller drives) and SIGTERM writes the profile there before exiting.
import { writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { Session } from "node:inspector/promises";
import { cpuReport, handlerFor } from "./app.ts";

const handler = handlerFor(process.env.MODE ?? "bare");
const port = Number(process.env.PORT ?? 8000);

function toRequest(req: IncomingMessage): Request {
  const headers = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
  return new Request(`http://${req.headers.host ?? "localhost"}${req.url}`, { method: req.method, headers });
}

async function send(response: Response, res: ServerResponse): Promise<void> {
  const out: Record<string, string | string[]> = {};
  response.headers.forEach((value, name) => {
    if (name !== "set-cookie") out[name] = value;
  });
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) out["set-cookie"] = cookies;
  res.writeHead(response.status, out);
  res.end(response.body === null ? undefined : new Uint8Array(await response.arrayBuffer()));
}

const profileOut = process.env.PROFILE_OUT;
if (profileOut === undefined) {
  // Exit cleanly on SIGTERM.
  process.once("SIGTERM", () => process.exit(0));
} else {
  const profiler = new Session();
  profiler.connect();
  await profiler.post("Profiler.enable");
  await profiler.post("Profiler.setSamplingInterval", { interval: 100 });
  process.once("SIGUSR2", () => void profiler.post("Profiler.start"));
  process.once("SIGTERM", async () => {
    const { profile } = await profiler.post("Profiler.stop");
    writeFileSync(profileOut, JSON.stringify(profile));
    process.exit(0);
  });
}

const control = Number(process.env.CONTROL_PORT ?? 0);
if (control > 0) {
  createServer((_req, res) => void send(cpuReport(), res)).listen(control, "127.0.0.1");
}

createServer((req, res) => {
  Promise.resolve(handler(toRequest(req))).then((response) => send(response, res)).catch((error) => {
    console.error(error);
    res.writeHead(500).end();
  });
}).listen(port, "127.0.0.1", () => console.log(`ready ${port}`));
