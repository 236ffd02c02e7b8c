// Serves a fetch handler `(request) => Promise<Response>` on a real node:http server on loopback,
// and counts what reached it: TCP connections, requests in flight, the most in flight at once.
//
// The adapter is the usual one: the incoming message becomes a Web `Request` (every header kept
// in order, the body read whole for methods that carry one, aborted when the client goes away);
// the `Response` is written back with each `Set-Cookie` as its own header line and the body
// streamed as it comes.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/** A fetch handler as `withSession` returns it. */
export type FetchHandler = (request: Request) => Promise<Response>;

/** What the server saw. */
export interface ServerStats {
  /** TCP connections accepted so far. */
  connections: number;
  /** Requests whose response is not finished yet. */
  inFlight: number;
  /** The most requests in flight at once since the last `resetPeak()`. */
  peakInFlight: number;
  /** Requests the handler threw on (answered 500). */
  crashes: number;
}

/** A running server. */
export interface RunningServer {
  /** `http://127.0.0.1:PORT` */
  url: string;
  stats: ServerStats;
  resetPeak(): void;
  /** Closes every connection, idle or not, and stops listening. */
  close(): Promise<void>;
}

function readBytes(req: IncomingMessage): Promise<Uint8Array<ArrayBuffer>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => resolve(new Uint8Array(Buffer.concat(chunks))));
    req.on("error", reject);
  });
}

async function toRequest(req: IncomingMessage, base: string, signal: AbortSignal): Promise<Request> {
  const headers = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
  const method = req.method ?? "GET";
  const bytes = method === "GET" || method === "HEAD" ? undefined : await readBytes(req);
  return new Request(new URL(req.url ?? "/", base), {
    method,
    headers,
    body: bytes !== undefined && bytes.byteLength > 0 ? bytes : null,
    signal,
  });
}

async function writeResponse(res: ServerResponse, response: Response): Promise<void> {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of response.headers) {
    if (name !== "set-cookie") headers[name] = value;
  }
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) headers["set-cookie"] = cookies;
  res.writeHead(response.status, response.statusText, headers);
  if (response.body === null) {
    res.end();
    return;
  }
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!res.write(value)) await new Promise((resolve) => res.once("drain", resolve));
    }
  } finally {
    reader.releaseLock();
  }
  res.end();
}

/**
 * Starts a server for `handler` on a free port of 127.0.0.1.
 *
 * @param handler The fetch handler.
 * @returns The running server.
 */
export async function serveFetch(handler: FetchHandler): Promise<RunningServer> {
  const stats: ServerStats = { connections: 0, inFlight: 0, peakInFlight: 0, crashes: 0 };
  const sockets = new Set<Socket>();
  let base = "";

  const server = createServer(async (req, res) => {
    stats.inFlight++;
    if (stats.inFlight > stats.peakInFlight) stats.peakInFlight = stats.inFlight;
    const abort = new AbortController();
    res.on("close", () => {
      if (!res.writableFinished) abort.abort();
    });
    try {
      const response = await handler(await toRequest(req, base, abort.signal));
      await writeResponse(res, response);
    } catch (error) {
      stats.crashes++;
      console.error(error);
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
      res.end("Internal Server Error");
    } finally {
      stats.inFlight--;
    }
  });
  // Node's default keep-alive timeout (5 s) outlives nothing here; keep sockets for the run.
  server.keepAliveTimeout = 30_000;
  server.on("connection", (socket: Socket) => {
    stats.connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  base = `http://127.0.0.1:${port}`;
  return {
    url: base,
    stats,
    resetPeak() {
      stats.peakInFlight = stats.inFlight;
    },
    close() {
      return new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        for (const socket of sockets) socket.destroy();
      });
    },
  };
}
