// A small HTTP/1.1 load generator on raw keep-alive sockets, in two modes:
//
// - constant rate (open loop): requests are due at evenly spaced times, `rate` per second, and
//   each goes out on the first idle connection (a request that finds none waits for one). The
//   generator wakes every millisecond or so and sends what has come due. autocannon's `overallRate` is
//   not this: each connection sends its whole per-second quota back to back at the start of every
//   second (`reqsMadeThisSecond` in its httpClient.js), which is a burst at saturation, then idle.
// - closed loop (saturation): every connection sends its next request as soon as the previous
//   answer arrives.
//
// Each connection sends one fixed request (its own Cookie header: one returning visitor per
// connection). The generator does little work per request (a prebuilt buffer out, a header scan
// in), which matters when it shares 2 cores with the server it loads.
import { connect, type Socket } from "node:net";

/** What one load run saw. */
export interface LoadResult {
  /** Responses received in the measured window. */
  completed: number;
  seconds: number;
  /** Responses per second. */
  rps: number;
  /** Requests that were due (constant rate) or sent (closed loop). */
  sent: number;
  non2xx: number;
  errors: number;
  /** Latency in milliseconds, from writing the request to reading the whole response. */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** One keep-alive connection with at most one request in flight. */
class Connection {
  #socket: Socket;
  #request: Buffer;
  #buffer: Buffer = Buffer.alloc(0);
  #sentAt = 0;
  busy = false;
  onResponse: (status: number, sentAt: number) => void = () => {};
  onError: (error: Error) => void = () => {};

  constructor(socket: Socket, request: Buffer) {
    this.#socket = socket;
    this.#request = request;
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.#data(chunk));
    socket.on("error", (error) => this.onError(error));
  }

  static open(port: number, request: Buffer): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, "127.0.0.1", () => {
        socket.off("error", reject);
        resolve(new Connection(socket, request));
      });
      socket.once("error", reject);
    });
  }

  send(): void {
    this.busy = true;
    this.#sentAt = performance.now();
    this.#socket.write(this.#request);
  }

  close(): void {
    this.#socket.destroy();
  }

  #data(chunk: Buffer): void {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    for (;;) {
      const end = this.#buffer.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = this.#buffer.toString("latin1", 0, end);
      const status = Number(head.slice(9, 12));
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      let size: number;
      if (length) {
        size = end + 4 + Number(length[1]);
        if (this.#buffer.length < size) return;
      } else if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
        // Chunked body: hex size lines until the zero-size chunk and its empty trailer.
        let at = end + 4;
        for (;;) {
          const line = this.#buffer.indexOf("\r\n", at);
          if (line < 0) return;
          const n = parseInt(this.#buffer.toString("latin1", at, line), 16);
          at = line + 2 + n + 2;
          if (this.#buffer.length < at) return;
          if (n === 0) break;
        }
        size = at;
      } else {
        size = end + 4; // no body (204, 304)
      }
      this.#buffer = this.#buffer.subarray(size);
      this.busy = false;
      this.onResponse(status, this.#sentAt);
    }
  }
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Builds the request each connection sends. */
export function requestFor(port: number, path: string, cookie: string | undefined): Buffer {
  return Buffer.from(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${cookie ? `Cookie: ${cookie}\r\n` : ""}\r\n`,
    "latin1",
  );
}

/**
 * Loads a server for `seconds`.
 *
 * @param options `requests`: one request per connection; `rate`: requests per second (constant
 *   rate), or `undefined` for a closed loop.
 */
export async function load(options: {
  port: number;
  requests: Buffer[];
  seconds: number;
  rate?: number;
}): Promise<LoadResult> {
  const connections = await Promise.all(
    options.requests.map((request) => Connection.open(options.port, request)),
  );
  const latencies: number[] = [];
  let non2xx = 0;
  let errors = 0;
  let sent = 0;
  let completed = 0;
  const start = performance.now();
  const stopAt = start + options.seconds * 1000;
  let stopped = false;
  const idle: Connection[] = [];
  let backlog = 0; // requests due but waiting for a connection
  let settle: () => void = () => {};
  const inFlight = () => connections.filter((c) => c.busy).length;

  for (const connection of connections) {
    connection.onError = () => void errors++;
    connection.onResponse = (status, sentAt) => {
      const now = performance.now();
      completed++;
      latencies.push(now - sentAt);
      if (status < 200 || status > 299) non2xx++;
      if (options.rate === undefined) {
        if (!stopped && now < stopAt) {
          sent++;
          connection.send();
        } else if (inFlight() === 0) settle();
        return;
      }
      if (backlog > 0) {
        backlog--;
        connection.send();
      } else idle.push(connection);
      if (stopped && inFlight() === 0) settle();
    };
  }

  if (options.rate === undefined) {
    for (const connection of connections) {
      sent++;
      connection.send();
    }
    await new Promise<void>((resolve) => setTimeout(resolve, options.seconds * 1000));
    stopped = true;
  } else {
    idle.push(...connections);
    const interval = 1000 / options.rate;
    await new Promise<void>((resolve) => {
      const tick = () => {
        const now = performance.now();
        const until = Math.min(now, stopAt);
        const due = Math.floor((until - start) / interval);
        while (sent < due) {
          sent++;
          const connection = idle.shift();
          if (connection) connection.send();
          else backlog++;
        }
        if (now >= stopAt) resolve();
        else setTimeout(tick, 1);
      };
      tick();
    });
    stopped = true;
  }
  // Answers still in flight: waited for (up to 5 s), then counted.
  if (inFlight() > 0 || backlog > 0) {
    await new Promise<void>((resolve) => {
      settle = resolve;
      setTimeout(resolve, 5000);
    });
  }
  const seconds = (performance.now() - start) / 1000;
  for (const connection of connections) connection.close();
  const sorted = Float64Array.from(latencies).sort();
  return {
    completed,
    seconds,
    rps: completed / seconds,
    sent,
    non2xx,
    errors: errors + backlog,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted.length > 0 ? sorted[sorted.length - 1]! : NaN,
  };
}
