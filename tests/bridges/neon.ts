// A test bridge for `@neondatabase/serverless` against a real PostgreSQL. It implements Neon's
// two transports, not PostgreSQL: every answer comes from the real server.
//
// - WebSocket (`Pool`/`Client`): `/v1?address=host:port` carries the Postgres wire protocol in
//   binary frames; the bridge pipes them to a TCP connection to the configured PostgreSQL.
// - HTTP (`neon(url)`): `POST /sql` with `{query, params}` or `{queries: [...]}` (a batch, run in
//   one transaction honouring the `Neon-Batch-*` headers). Each query runs on the real server
//   with `pg`, rows as arrays of text; the answer is `{command, rowCount, rows, fields,
//   rowAsArray}` (or `{results: [...]}`), and errors are HTTP 400 with pg's error fields.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { type AddressInfo, connect, type Socket } from "node:net";
import pg from "pg";
import { WebSocketServer } from "ws";
import { readBody, send } from "./http.ts";

/** A running bridge. */
export interface NeonBridge {
  /** For `neonConfig.wsProxy`: `(host, port) => "127.0.0.1:PORT/v1"`. */
  wsProxy: (host: string, port: number | string) => string;
  /** For `neonConfig.fetchEndpoint`: the HTTP SQL endpoint. */
  fetchEndpoint: string;
  /** WebSocket connections accepted so far. */
  readonly connections: number;
  /** HTTP SQL requests answered so far. */
  readonly requests: number;
  /** Closes every open WebSocket and TCP connection, the server and the `pg` pool. */
  close(): Promise<void>;
}

interface Query {
  query: string;
  params?: unknown[];
}

const ERROR_FIELDS = [
  "severity",
  "code",
  "detail",
  "hint",
  "position",
  "internalPosition",
  "internalQuery",
  "where",
  "schema",
  "table",
  "column",
  "dataType",
  "constraint",
  "file",
  "line",
  "routine",
] as const;

const ISOLATION: Record<string, string> = {
  ReadUncommitted: "READ UNCOMMITTED",
  ReadCommitted: "READ COMMITTED",
  RepeatableRead: "REPEATABLE READ",
  Serializable: "SERIALIZABLE",
};

// Every value as PostgreSQL's text output: the Neon client parses it by dataTypeID.
const TEXT = { getTypeParser: () => (value: string) => value };

function isQuery(value: unknown): value is Query {
  const query = value as Query | null;
  return typeof query === "object" && query !== null && typeof query.query === "string" &&
    (query.params === undefined || Array.isArray(query.params));
}

function errorBody(error: unknown): Record<string, unknown> {
  const source = error as Record<string, unknown>;
  const body: Record<string, unknown> = { message: error instanceof Error ? error.message : String(error) };
  for (const field of ERROR_FIELDS) if (source?.[field] !== undefined) body[field] = source[field];
  return body;
}

async function run(client: pg.PoolClient, query: Query): Promise<Record<string, unknown>> {
  const result = await client.query({
    text: query.query,
    values: query.params ?? [],
    rowMode: "array",
    types: TEXT,
  });
  return {
    command: result.command,
    rowCount: result.rowCount,
    rows: result.rows,
    fields: result.fields,
    rowAsArray: true,
  };
}

/**
 * Starts a bridge on a free loopback port.
 *
 * @param options `postgres`: where PostgreSQL listens (default 127.0.0.1:5432, database `test`,
 *   user `postgres`).
 */
export async function startNeonBridge(
  options: { host?: string; port?: number; database?: string; user?: string } = {},
): Promise<NeonBridge> {
  const host = options.host ?? "127.0.0.1";
  const port = options.port ?? 5432;
  const pool = new pg.Pool({
    host,
    port,
    database: options.database ?? "test",
    user: options.user ?? "postgres",
    max: 10,
  });
  pool.on("error", () => {}); // an idle client lost in an outage: the next query reports it
  let connections = 0;
  let requests = 0;
  const sockets = new Set<Socket>();

  async function handleSql(req: IncomingMessage, res: ServerResponse): Promise<void> {
    requests++;
    if (req.method !== "POST" || new URL(req.url ?? "/", "http://bridge").pathname !== "/sql") {
      return send(res, 404, { message: "not found" });
    }
    if (typeof req.headers["neon-connection-string"] !== "string") {
      return send(res, 400, { message: "missing Neon-Connection-String header" });
    }
    let body: unknown;
    try {
      body = JSON.parse(await readBody(req));
    } catch {
      return send(res, 400, { message: "request body is not JSON" });
    }
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (error) {
      return send(res, 400, errorBody(error));
    }
    let broken = false;
    // A connection lost while checked out is reported to the query using it, not as an event.
    const lost = () => {
      broken = true;
    };
    client.on("error", lost);
    try {
      if (isQuery(body)) return send(res, 200, await run(client, body));
      const queries = (body as { queries?: unknown } | null)?.queries;
      if (!Array.isArray(queries) || !queries.every(isQuery)) {
        return send(res, 400, { message: "expected {query, params} or {queries: [...]}" });
      }
      const level = ISOLATION[String(req.headers["neon-batch-isolation-level"])];
      const begin = ["BEGIN", level ? `ISOLATION LEVEL ${level}` : ""];
      if (req.headers["neon-batch-read-only"] === "true") begin.push("READ ONLY");
      if (req.headers["neon-batch-deferrable"] === "true") begin.push("DEFERRABLE");
      await client.query(begin.join(" ").trim());
      try {
        const results = [];
        for (const query of queries) results.push(await run(client, query));
        await client.query("COMMIT");
        return send(res, 200, { results });
      } catch (error) {
        await client.query("ROLLBACK").catch(() => {
          broken = true;
        });
        throw error;
      }
    } catch (error) {
      broken ||= !(error as { code?: unknown }).code; // no SQLSTATE: the connection failed
      return send(res, 400, errorBody(error));
    } finally {
      client.off("error", lost);
      client.release(broken);
    }
  }

  const server = createServer((req, res) => {
    handleSql(req, res).catch((error) => {
      if (!res.headersSent) send(res, 500, { message: String(error) });
      else res.destroy();
    });
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });

  const wss = new WebSocketServer({ server, path: "/v1" });
  wss.on("connection", (ws) => {
    connections++;
    // The driver names its target in `address`; the bridge only ever reaches its own PostgreSQL.
    const tcp = connect({ host, port });
    sockets.add(tcp);
    tcp.setNoDelay(true);
    ws.on("message", (data: Buffer | ArrayBuffer | Buffer[]) => {
      tcp.write(Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer));
    });
    tcp.on("data", (chunk) => {
      if (ws.readyState === ws.OPEN) ws.send(chunk, { binary: true });
    });
    tcp.on("close", () => {
      sockets.delete(tcp);
      ws.close();
    });
    tcp.on("error", () => ws.terminate());
    ws.on("close", () => tcp.end());
    ws.on("error", () => tcp.destroy());
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const address = server.address() as AddressInfo;

  return {
    wsProxy: () => `127.0.0.1:${address.port}/v1`,
    fetchEndpoint: `http://127.0.0.1:${address.port}/sql`,
    get connections() {
      return connections;
    },
    get requests() {
      return requests;
    },
    async close() {
      for (const client of wss.clients) client.terminate();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await pool.end();
    },
  };
}
