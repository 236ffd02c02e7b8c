// PostgresStore when its PostgreSQL dies mid-run (immediate shutdown) and comes back: on a
// throwaway cluster (never the shared one), through pg, postgres.js and neon() over HTTP (via the
// bridge).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import postgres from "postgres";
import { neon, neonConfig } from "@neondatabase/serverless";
import { PostgresStore } from "../../src/stores/postgres.ts";
import { startNeonBridge } from "../bridges/neon.ts";
import { outageScenario } from "./outage.ts";
import { type Throwaway, throwawayPostgres } from "./servers.ts";

describe("PostgresStore through a PostgreSQL outage", () => {
  let server: Throwaway;
  let url: string;
  before(async () => {
    server = await throwawayPostgres();
    url = `postgres://postgres@127.0.0.1:${server.port}/postgres`;
    const setup = new pg.Client({ connectionString: url });
    await setup.connect();
    try {
      await new PostgresStore({ client: setup }).migrate();
    } finally {
      await setup.end();
    }
  });
  after(async () => {
    await server?.destroy();
  });

  it("pg Pool: 503 and no new ids while down, every session intact after", async () => {
    const client = new pg.Pool({ connectionString: url, max: 10, connectionTimeoutMillis: 2_000 });
    client.on("error", () => {}); // idle connections killed by the shutdown
    try {
      const { failed } = await outageScenario(new PostgresStore({ client }), server);
      assert.ok(failed > 0);
    } finally {
      await client.end();
    }
  });

  it("postgres.js: 503 and no new ids while down, every session intact after", async () => {
    // postgres.js waits up to 20 s (growing backoff) before reconnecting after failures, holding
    // queries meanwhile; a short backoff lets requests fail fast and recover fast.
    // fetch_types: false, as docs/stores/postgres.md advises: postgres.js 3.4 fetches array types
    // on every new connection and leaves that query's rejection unhandled when the server goes
    // away meanwhile (an unhandledRejection, which ends a Node process; seen without websession).
    const client = postgres(url, {
      max: 10,
      connect_timeout: 2,
      backoff: () => 0.05,
      onnotice: () => {},
      fetch_types: false,
    });
    try {
      await outageScenario(new PostgresStore({ client }), server);
    } finally {
      await client.end({ timeout: 1 });
    }
  });

  it("neon() over HTTP: 503 and no new ids while down, every session intact after", async () => {
    const bridge = await startNeonBridge({ port: server.port, database: "postgres" });
    neonConfig.fetchEndpoint = bridge.fetchEndpoint;
    try {
      await outageScenario(new PostgresStore({ client: neon(url) }), server);
      assert.ok(bridge.requests > 0);
    } finally {
      await bridge.close();
    }
  });
});
