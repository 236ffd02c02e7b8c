// PostgresStore against the real PostgreSQL on loopback, through every client it accepts: pg,
// postgres.js, Neon's Pool over WebSocket and neon() over HTTP (both through a bridge that
// forwards to the same PostgreSQL).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import postgres from "postgres";
import { neon, neonConfig, Pool as NeonPool } from "@neondatabase/serverless";
import { WebSocket } from "ws";
import { PostgresStore, type SqlLike } from "../../src/stores/postgres.ts";
import type { StoredSession } from "../../src/store.ts";
import { storeSuite } from "../conformance/store_suite.ts";
import { assertRoundTrips } from "../conformance/round_trips.ts";
import { sessionSuite } from "../conformance/session_suite.ts";
import { randomKey } from "../conformance/util.ts";
import { type NeonBridge, startNeonBridge } from "../bridges/neon.ts";

const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const RUN = crypto.randomUUID().slice(0, 8);

// Raw access to the same database, to look behind the store and to clean up.
const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
after(() => admin.end());

let bridge: NeonBridge | undefined;
async function neonBridge(): Promise<NeonBridge> {
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
after(async () => {
  await bridge?.close();
});

interface Connection {
  client: SqlLike;
  close(): Promise<void>;
}

const clients: [string, () => Connection | Promise<Connection>][] = [
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

function record(data: Record<string, unknown>, version = 1, ttl = 60_000): StoredSession {
  const now = Date.now();
  return { data, version, createdAt: now, expiresAt: now + ttl };
}

// Wraps a client so that every statement the store runs through it is recorded by its verb.
function recording(client: SqlLike): { client: SqlLike; sent: string[] } {
  const sent: string[] = [];
  const proxy = new Proxy(client as object, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if ((property !== "query" && property !== "unsafe") || typeof value !== "function") return value;
      return (...args: unknown[]) => {
        sent.push(String(args[0]).trimStart().split(/\s/)[0]!.toUpperCase());
        return Reflect.apply(value, target, args);
      };
    },
  });
  return { client: proxy as SqlLike, sent };
}

const SECRET = "round trip test secret, at least 32 characters";

for (const [label, connect] of clients) {
  const slug = label.toLowerCase().replace(/[^a-z]+/g, "_").replace(/^_|_$/g, "");
  const table = `websession_test_${RUN}_${slug}`;

  let suiteConnection: Connection;
  storeSuite(`PostgresStore over ${label}`, {
    open: async () => {
      suiteConnection = await connect();
      const store = new PostgresStore({ client: suiteConnection.client, table });
      await store.migrate();
      return store;
    },
    close: async () => {
      await admin.query(`DROP TABLE IF EXISTS "${table}"`);
      await suiteConnection.close();
    },
  });

  let sessionConnection: Connection;
  sessionSuite(`PostgresStore over ${label}`, {
    open: async () => {
      sessionConnection = await connect();
      const store = new PostgresStore({ client: sessionConnection.client, table: `${table}_sessions` });
      await store.migrate();
      return store;
    },
    close: async () => {
      await admin.query(`DROP TABLE IF EXISTS "${table}_sessions"`);
      await sessionConnection.close();
    },
  });

  describe(`PostgresStore over ${label}: PostgreSQL specifics`, () => {
    const own = `${table}_own`;
    let connection: Connection;
    let store: PostgresStore;
    let corrupt: [string, Error][];
    before(async () => {
      connection = await connect();
      corrupt = [];
      store = new PostgresStore({
        client: connection.client,
        table: own,
        onCorrupt: (key, error) => corrupt.push([key, error]),
      });
      await store.migrate();
      await store.migrate(); // idempotent
    });
    after(async () => {
      await admin.query(`DROP TABLE IF EXISTS "${own}"`);
      await connection.close();
    });

    it("creates the documented table and its expires_at index", async () => {
      const columns = await admin.query(
        `SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position`,
        [own],
      );
      assert.deepEqual(columns.rows.map((row) => [row.column_name, row.data_type]), [
        ["id", "text"],
        ["data", "jsonb"],
        ["version", "integer"],
        ["created_at", "timestamp with time zone"],
        ["expires_at", "timestamp with time zone"],
      ]);
      const indexes = await admin.query(`SELECT indexdef FROM pg_indexes WHERE tablename = $1`, [own]);
      assert.ok(
        indexes.rows.some((row) => /\(expires_at\)/.test(row.indexdef)),
        JSON.stringify(indexes.rows),
      );
    });

    it("keeps millisecond times exact, far in the past and the future", async () => {
      const now = Date.now();
      const times = [[1, 253_402_300_799_999], [946_684_800_001, 4_102_444_800_999], [
        now - 123_457,
        now + 86_400_123,
      ]];
      for (const [createdAt, expiresAt] of times) {
        const key = randomKey();
        assert.equal(
          await store.save(key, { data: {}, version: 1, createdAt: createdAt!, expiresAt: expiresAt! }, null),
          true,
        );
        const loaded = await store.load(key);
        assert.equal(loaded?.createdAt, createdAt);
        assert.equal(loaded?.expiresAt, expiresAt);
      }
    });

    it("lets a create replace an expired row with the same key, but never update it", async () => {
      const key = randomKey();
      await admin.query(
        `INSERT INTO "${own}" VALUES ($1, '{"old":true}', 4, now() - interval '1 hour', now() - interval '1 second')`,
        [key],
      );
      assert.equal(await store.load(key), null);
      assert.equal(await store.save(key, record({ a: 2 }, 5), 4), false);
      await store.touch(key, Date.now() + 60_000);
      assert.equal(await store.load(key), null);
      assert.equal(await store.save(key, record({ fresh: true }), null), true);
      const loaded = await store.load(key);
      assert.deepEqual(loaded?.data, { fresh: true });
      assert.equal(loaded?.version, 1);
    });

    it("an already expired save deletes the row at the expected version and is done", async () => {
      const key = randomKey();
      await store.save(key, record({ a: 1 }), null);
      const expired = {
        data: { a: 2 },
        version: 2,
        createdAt: Date.now() - 10_000,
        expiresAt: Date.now() - 1,
      };
      assert.equal(await store.save(key, expired, 7), false);
      assert.equal(await store.save(key, expired, null), false);
      assert.ok(await store.load(key));
      assert.equal(await store.save(key, expired, 1), true);
      const { rows } = await admin.query(`SELECT 1 FROM "${own}" WHERE id = $1`, [key]);
      assert.equal(rows.length, 0);
      assert.equal(await store.save(key, expired, null), true);
    });

    it("touch moves expires_at only", async () => {
      const key = randomKey();
      const saved = record({ keep: [1, "ü"] }, 1, 10_000);
      await store.save(key, saved, null);
      const later = saved.expiresAt + 3_600_000;
      await store.touch(key, later);
      assert.deepEqual(await store.load(key), { ...saved, expiresAt: later });
    });

    it("reads a corrupt row as missing and reports it", async () => {
      const key = randomKey();
      await admin.query(`INSERT INTO "${own}" VALUES ($1, '[1,2]', 1, now(), now() + interval '1 hour')`, [
        key,
      ]);
      assert.equal(await store.load(key), null);
      assert.deepEqual(corrupt.map(([k]) => k), [key]);
      assert.ok(corrupt[0]![1] instanceof TypeError);
    });

    it("refuses data holding U+0000 before the database, and keeps a literal backslash-u0000", async () => {
      const key = randomKey();
      await assert.rejects(store.save(key, record({ bad: "a\u0000b" }), null), TypeError);
      await assert.rejects(store.save(key, record({ ["k\u0000"]: 1 }), null), TypeError);
      assert.equal(await store.load(key), null);
      assert.equal(await store.save(key, record({ fine: "\\u0000 is text" }), null), true);
      assert.equal((await store.load(key))?.data.fine, "\\u0000 is text");
    });

    it("costs one SELECT per request that reads a valid session, one statement per changed request, nothing else", async () => {
      const { client, sent } = recording(connection.client);
      const counted = new PostgresStore({ client, table: own });
      await assertRoundTrips(
        counted,
        sent,
        SECRET,
        {
          create: ["INSERT"],
          read: ["SELECT"],
          update: ["UPDATE"],
        },
        label.startsWith("neon()") ? () => bridge!.requests : undefined,
      );
    });

    it("passes a driver error through", async () => {
      const missing = new PostgresStore({ client: connection.client, table: `${own}_missing` });
      await assert.rejects(missing.load(randomKey()), /does not exist/);
      await assert.rejects(missing.save(randomKey(), record({}), null), /does not exist/);
    });
  });
}

describe("PostgresStore over Neon", () => {
  it("went through the bridge on both transports", () => {
    assert.ok(bridge && bridge.connections > 0, "no WebSocket connection reached the bridge");
    assert.ok(bridge.requests > 0, "no HTTP query reached the bridge");
  });
});

describe("PostgresStore result shapes", () => {
  const table = `websession_test_${RUN}_shapes`;
  after(async () => {
    await admin.query(`DROP TABLE IF EXISTS "${table}"`);
  });

  async function roundTrip(client: SqlLike): Promise<void> {
    const store = new PostgresStore({ client, table });
    await store.migrate();
    const key = randomKey();
    const saved = record({ nested: { list: [1, "two"] } });
    assert.equal(await store.save(key, saved, null), true);
    assert.deepEqual(await store.load(key), saved);
    assert.equal(await store.save(key, { ...saved, version: 2 }, 1), true);
    assert.equal((await store.load(key))?.version, 2);
    assert.ok((await store.count()) >= 1);
    assert.equal(typeof (await store.cleanup()), "number");
  }

  it("reads neon() rows given as arrays, with full results", async () => {
    await neonBridge();
    await roundTrip(neon(DATABASE_URL, { arrayMode: true, fullResults: true }));
  });

  it("reads rows from a driver that returns every value as text", async () => {
    const client = new pg.Client({
      connectionString: DATABASE_URL,
      types: { getTypeParser: () => (value: string) => value },
    });
    await client.connect();
    try {
      await roundTrip(client);
    } finally {
      await client.end();
    }
  });
});

describe("PostgresStore tables", () => {
  const schema = `websession_test_${RUN}_schema`;
  after(async () => {
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  });

  it("validates the table name as an identifier, optionally schema-qualified", () => {
    for (const bad of ["", "a b", "1abc", "x;drop table y", 'a"b', "a.b.c", ".a", "a.", "x".repeat(64)]) {
      assert.throws(() => new PostgresStore({ client: admin, table: bad }), TypeError, bad);
    }
    assert.throws(() => new PostgresStore({ client: {} as SqlLike }), TypeError);
    assert.throws(() => new PostgresStore({ client: null as unknown as SqlLike }), TypeError);
  });

  it("works in a schema-qualified table", async () => {
    await admin.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    const store = new PostgresStore({ client: admin, table: `${schema}.Sessions` });
    await store.migrate();
    const key = randomKey();
    assert.equal(await store.save(key, record({ in: "schema" }), null), true);
    const { rows } = await admin.query(`SELECT data FROM "${schema}"."Sessions" WHERE id = $1`, [key]);
    assert.deepEqual(rows[0].data, { in: "schema" });
    assert.equal(await store.count(), 1);
  });

  it("ships the same DDL as migrate() in postgres.sql", async () => {
    const { readFile } = await import("node:fs/promises");
    const ddl = await readFile(new URL("../../src/stores/postgres.sql", import.meta.url), "utf8");
    const table = `websession_test_${RUN}_sqlfile`;
    try {
      await admin.query(ddl.replaceAll("websession_sessions", table));
      const store = new PostgresStore({ client: admin, table });
      await store.migrate();
      const key = randomKey();
      assert.equal(await store.save(key, record({ from: "sql file" }), null), true);
      assert.deepEqual((await store.load(key))?.data, { from: "sql file" });
      const { rows } = await admin.query(`SELECT indexname FROM pg_indexes WHERE tablename = $1`, [table]);
      assert.deepEqual(rows.map((row) => row.indexname).sort(), [`${table}_expires_at_idx`, `${table}_pkey`]);
    } finally {
      await admin.query(`DROP TABLE IF EXISTS "${table}"`);
    }
  });
});
