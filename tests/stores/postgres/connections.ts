// What PostgresStore's test files share: the real PostgreSQL on loopback, raw access to it
// (`admin`), every client the store accepts (pg, postgres.js, Neon's Pool over WebSocket and
// neon() over HTTP, both through a bridge that forwards to the same PostgreSQL), and a client
// that records each statement by its verb.
import { after } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import postgres from "postgres";
import { neon, neonConfig, Pool as NeonPool } from "@neondatabase/serverless";
import { WebSocket } from "ws";
import { PostgresStore, type SqlLike } from "../../../src/stores/postgres.ts";
import { sleep, storeTables } from "../../conformance/util.ts";
import { type NeonBridge, startNeonBridge } from "../../bridges/neon.ts";
import { deadPort } from "../../services.ts";
import { recordingClient } from "../remote_cases.ts";

export const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
/** Part of every table name a test file makes, so that runs never meet. */
export const RUN = crypto.randomUUID().slice(0, 8);

let pool: pg.Pool | undefined;
/**
 * Raw access to the same database, to look behind the store and to clean up: a pool opened on
 * first use and ended after the file's tests (a runtime that runs several files in one process
 * opens it again for the next).
 */
export const admin = (): pg.Pool => (pool ??= new pg.Pool({ connectionString: DATABASE_URL, max: 2 }));
after(async () => {
  const ending = pool;
  pool = undefined;
  await ending?.end();
});

let bridge: NeonBridge | undefined;
/** The bridge Neon's clients go through, started on first use. */
export async function neonBridge(): Promise<NeonBridge> {
  if (bridge) return bridge;
  bridge = await startNeonBridge({
    ...new URL(DATABASE_URL).port ? { port: Number(new URL(DATABASE_URL).port) } : {},
  });
  neonConfig.webSocketConstructor = WebSocket;
  neonConfig.wsProxy = bridge.wsProxy;
  neonConfig.useSecureWebSocket = false;
  neonConfig.pipelineTLS = false;
  neonConfig.pipelineConnect = false;
  neonConfig.fetchEndpoint = bridge.fetchEndpoint;
  return bridge;
}
/** The bridge, if a client has started it. */
export const startedBridge = (): NeonBridge | undefined => bridge;
after(async () => {
  const closing = bridge;
  bridge = undefined;
  await closing?.close();
});

export interface Connection {
  client: SqlLike;
  close(): Promise<void>;
}

/** Every client the store accepts, by label, each connecting anew when called. */
export const clients: [string, () => Connection | Promise<Connection>][] = [
  ["pg Pool", () => {
    const client = new pg.Pool({ connectionString: DATABASE_URL, max: 10 });
    return { client, close: () => client.end() };
  }],
  ["postgres.js", () => {
    const client = postgres(DATABASE_URL, { max: 10, onnotice: () => {} });
    return { client, close: () => client.end({ timeout: 5 }) };
  }],
  ["Neon Pool over WebSocket", async () => {
    await neonBridge();
    const client = new NeonPool({ connectionString: DATABASE_URL, max: 10 });
    return { client, close: () => client.end() };
  }],
  ["neon() over HTTP", async () => {
    await neonBridge();
    return { client: neon(DATABASE_URL), close: async () => {} };
  }],
];

/** A table name of this run for `label` (a client's, a case's). */
export const tableFor = (label: string) =>
  `websession_test_${RUN}_${label.toLowerCase().replace(/[^a-z]+/g, "_").replace(/^_|_$/g, "")}`;

// The verb of a statement: its first word, or for `WITH name AS (VERB ...` the first CTE's verb.
function verbOf(text: string): string {
  const cte = /^\s*WITH\s+\w+\s+AS\s+\(\s*(\w+)/i.exec(text);
  return (cte ? cte[1]! : text.trimStart().split(/\s/)[0]!).toUpperCase();
}

/** Wraps a client so that every statement the store runs through it is recorded by its verb. */
export function recording(client: SqlLike): { client: SqlLike; sent: string[] } {
  return recordingClient(
    client,
    (property, args) => property === "query" || property === "unsafe" ? verbOf(String(args[0])) : undefined,
  );
}

/**
 * Whether a statement on `table` comes to wait for a lock before `pending` settles (bounded:
 * 10 s; a statement that neither waits nor settles by then fails the test).
 */
export async function waitsForLock(table: string, pending: Promise<unknown>): Promise<boolean> {
  let settled = false;
  pending.then(() => (settled = true), () => (settled = true));
  for (let i = 0; i < 1_000; i++) {
    const { rows } = await admin().query(
      `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1`,
      [`%"${table}"%`],
    );
    if (rows.length > 0) return true;
    if (settled) return false;
    await sleep(10);
  }
  assert.fail(`a statement on "${table}" neither waited for a lock nor ended`);
}

/** Drops a store's table and its table of locks (`<table>_leases`). */
export async function dropTables(table: string): Promise<void> {
  await admin().query(`DROP TABLE IF EXISTS ${storeTables(table)}`);
}

/** A store over a port nothing listens on: a real refused connection. */
export async function unreachable() {
  const client = new pg.Pool({ host: "127.0.0.1", port: await deadPort(), user: "postgres" });
  return { store: new PostgresStore({ client }), close: () => client.end() };
}
