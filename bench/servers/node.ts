// Node 20 has no fetch-handler server: a small node:http adapter, the same for both modes.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { handlerFor } from "./app.ts";

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

// Exit cleanly on SIGTERM so that `--cpu-prof` writes its profile.
process.once("SIGTERM", () => process.exit(0));

createServer((req, res) => {
  Promise.resolve(handler(toRequest(req))).then((response) => send(response, res)).catch((error) => {
    console.error(error);
    res.writeHead(500).end();
  });
}).listen(port, "127.0.0.1", () => console.log(`ready ${port}`));
