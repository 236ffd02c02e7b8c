// The demo on Node: `npm start`, then open http://localhost:8000.
// Node has no fetch-handler server of its own, so a few lines adapt node:http to Request/Response.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { Readable } from "node:stream";
import { createApp } from "../app.ts";
import { FileStore } from "../../src/stores/file.ts";

const port = Number(process.env.PORT ?? 8000);
const secure = process.env.SECURE_COOKIES === "1";

// FileStore under ./.sessions: sessions survive a restart of the demo, and any number of
// Node processes on this machine can share them (compare-and-set under a lock file).
const app = createApp({
  store: new FileStore({ dir: process.env.SESSION_DIR ?? ".sessions" }),
  secrets: process.env.SESSION_SECRET ?? "demo secret: replace me with 32+ random characters",
  // Browsers keep Secure cookies on http://localhost, but not on other plain-http hosts.
  cookie: { secure },
});

function toRequest(req: IncomingMessage): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (Array.isArray(value)) { for (const v of value) headers.append(name, v); }
    else if (value !== undefined) headers.set(name, value);
  }
  const hasBody = req.method !== "GET" && req.method !== "HEAD";
  return new Request(`http://${req.headers.host ?? `localhost:${port}`}${req.url}`, {
    method: req.method,
    headers,
    body: hasBody ? (Readable.toWeb(req) as ReadableStream<Uint8Array>) : undefined,
    // @ts-expect-error: Node needs duplex for a streamed request body
    duplex: hasBody ? "half" : undefined,
  });
}

async function send(response: Response, res: ServerResponse): Promise<void> {
  const headers: Record<string, string | string[]> = {};
  response.headers.forEach((value, name) => {
    if (name !== "set-cookie") headers[name] = value;
  });
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) headers["set-cookie"] = cookies;
  res.writeHead(response.status, headers);
  if (response.body === null) return void res.end();
  for await (const chunk of response.body) res.write(chunk);
  res.end();
}

const server = createServer(async (req, res) => {
  try {
    await send(await app(toRequest(req)), res);
  } catch (error) {
    console.error(error);
    if (!res.headersSent) res.writeHead(500);
    res.end();
  }
});

server.listen(port, () => console.log(`websession demo on http://localhost:${port}`));
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => server.close(() => process.exit(0)));
}
