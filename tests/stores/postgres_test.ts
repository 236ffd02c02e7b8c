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
import { type OpenOptions, storeSuites } from "../conformance/store_cases.ts";
import { lockUserCases } from "../conformance/lock_user_cases.ts";
import { randomKey, sleep } from "../conformance/util.ts";
import { type NeonBridge, startNeonBridge } from "../bridges/neon.ts";
import { deadPort } from "../services.ts";
import { record, recordingClient } from "./remote_cases.ts";

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

// The verb of a statement: its first word, or for `WITH name AS (VERB ...` the first CTE's verb.
function verbOf(text: string): string {
  const cte = /^\s*WITH\s+\w+\s+AS\s+\(\s*(\w+)/i.exec(text);
  return (cte ? cte[1]! : text.trimStart().split(/\s/)[0]!).toUpperCase();
}

// Wraps a client so that every statement the store runs through it is recorded by its verb.
function recording(client: SqlLike): { client: SqlLike; sent: string[] } {
  return recordingClient(
    client,
    (property, args) => property === "query" || property === "unsafe" ? verbOf(String(args[0])) : undefined,
  );
}

// Whether a statement on `table` comes to wait for a lock before `pending` settles (bounded:
// 10 s; a statement that neither waits nor settles by then fails the test).
async function waitsForLock(table: string, pending: Promise<unknown>): Promise<boolean> {
  let settled = false;
  pending.then(() => (settled = true), () => (settled = true));
  for (let i = 0; i < 1_000; i++) {
    const { rows } = await admin.query(
      `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1`,
      [`%"${table}"%`],
    );
    if (rows.length > 0) return true;
    if (settled) return false;
    await sleep(10);
  }
  assert.fail(`a statement on "${table}" neither waited for a lock nor ended`);
}

// Drops a store's table and its table of locks (`<table>_leases`).
async function dropTables(table: string): Promise<void> {
  await admin.query(`DROP TABLE IF EXISTS "${table}", "${table}_leases"`);
}

async function unreachable() {
  const client = new pg.Pool({ host: "127.0.0.1", port: await deadPort(), user: "postgres" });
  return { store: new PostgresStore({ client }), close: () => client.end() };
}

for (const [label, connect] of clients) {
  const slug = label.toLowerCase().replace(/[^a-z]+/g, "_").replace(/^_|_$/g, "");
  const table = `websession_test_${RUN}_${slug}`;

  const tables = new Map<string, Promise<void>>();
  const tableOf = (ns: string) => `${table}_${ns.replace(/\W/g, "_")}`;
  let shared: Connection;
  /** A store on `connection` in the table of `ns`, made by migrate() once. */
  const storeIn = async (connection: Connection, ns: string, options?: OpenOptions) => {
    const store = new PostgresStore({ client: connection.client, table: tableOf(ns), ...options });
    if (!tables.has(ns)) tables.set(ns, store.migrate());
    await tables.get(ns);
    return store;
  };
  // Before storeSuites, whose close drops the tables and the connection these use too.
  lockUserCases(`PostgresStore over ${label}`, {
    reportsCurrent: true,
    sweeps: true,
    open: async (ns, now) => storeIn(shared ??= await connect(), ns, { now }),
    counted: async (ns, now) => {
      await storeIn(shared ??= await connect(), ns);
      const { client, sent } = recording(shared.client);
      return { store: new PostgresStore({ client, table: tableOf(ns), now }), sent };
    },
    raw: async (ns, key) =>
      (await admin.query(`SELECT id FROM "${tableOf(ns)}" WHERE id = $1`, [key])).rows[0],
    // A lock is a row of <table>_leases, until when by the store's clock.
    locks: {
      byClock: true,
      until: (now, ttl) => now + Math.ceil(ttl),
      entry: async (ns, key) => {
        const { rows } = await admin.query(
          `SELECT owner, until FROM "${tableOf(ns)}_leases" WHERE key = $1`,
          [key],
        );
        return rows[0] && { owner: rows[0].owner, until: Number(rows[0].until) };
      },
      sends: { lock: ["INSERT"], unlock: ["DELETE"], cleanup: ["DELETE"] },
    },
    // The index is the row's user_id, set by the save statement itself.
    users: {
      liveOnly: true,
      current: true,
      byClock: true,
      remembers: false,
      badIds: ["a\u0000b"],
      entries: async (ns, user) => {
        const { rows } = await admin.query(`SELECT id FROM "${tableOf(ns)}" WHERE user_id = $1`, [user]);
        return Object.fromEntries(rows.map((row) => [row.id, null]));
      },
      sends: { save: ["INSERT"], list: ["SELECT"], update: ["UPDATE"] },
    },
  });

  storeSuites(`PostgresStore over ${label}`, {
    reportsCurrent: true,
    keepsAnyText: false,
    keepsKeyOrder: false,
    expiredSave: true,
    tombstoneTouch: true,
    createsAnswerFalse: true,
    skews: [10 * 60_000, -10 * 60_000],
    outOfRange: { version: 2 ** 31, expiresAt: 10 ** 16 }, // past integer, and timestamptz (year 294276)
    open: async (ns, options) => storeIn(shared ??= await connect(), ns, options),
    close: async () => {
      for (const ns of tables.keys()) await dropTables(tableOf(ns));
      await shared?.close();
    },
    raw: async (ns, key) => {
      const { rows } = await admin.query(
        `SELECT data, version, (extract(epoch FROM created_at) * 1000)::float8 AS "createdAt",
         (extract(epoch FROM expires_at) * 1000)::float8 AS "expiresAt" FROM "${tableOf(ns)}" WHERE id = $1`,
        [key],
      );
      return rows[0];
    },
    calls: {
      open: async (ns) => {
        await storeIn(shared ??= await connect(), ns);
        const { client, sent } = recording(shared.client);
        const requests = label.startsWith("neon()") ? () => bridge!.requests : undefined;
        return { store: new PostgresStore({ client, table: tableOf(ns) }), sent, requests };
      },
      expected: { create: ["INSERT"], read: ["SELECT"], update: ["UPDATE"] },
    },
    driverError: {
      cause: async (ns) => await dropTables(tableOf(ns)),
      message: /does not exist/,
    },
    claims: { capabilities: { compareAndSet: true, ttl: false, locks: true, users: true }, lacks: [] },
    badOptions: label === "pg Pool"
      ? [
        ...["", "a b", "1abc", "x;drop table y", 'a"b', "a.b.c", ".a", "a.", "x".repeat(64)].map((bad) =>
          [`table ${JSON.stringify(bad)}`, () => new PostgresStore({ client: admin, table: bad })] as const
        ),
        ["a client of no known shape", () => new PostgresStore({ client: {} as SqlLike })],
        ["no client", () => new PostgresStore({ client: null as unknown as SqlLike })],
        ["a clock that is no function", () => new PostgresStore({ client: admin, now: 5 as never })],
      ]
      : undefined,
    corrupt: {
      forms: ["[1,2]", '"text"'],
      write: async (ns, key, form) => {
        await admin.query(
          `INSERT INTO "${tableOf(ns)}" VALUES ($1, $2, 1, now(), now() + interval '1 hour')`,
          [key, form],
        );
      },
      warning: /corrupt session row/,
    },
    // A port nothing listens on: a real refused connection (once, through pg).
    unreachable: label === "pg Pool" ? unreachable : undefined,
    locks: {
      owner: async (ns, key) =>
        (await admin.query(`SELECT owner FROM "${tableOf(ns)}_leases" WHERE key = $1`, [key])).rows[0]?.owner,
    },
    users: {
      liveOnly: true,
      byClock: true,
    },
  });

  describe(`PostgresStore over ${label}: PostgreSQL specifics`, () => {
    const own = `${table}_own`;
    let connection: Connection;
    let store: PostgresStore;
    before(async () => {
      connection = await connect();
      store = new PostgresStore({ client: connection.client, table: own });
      await store.migrate();
      await store.migrate(); // idempotent
    });
    after(async () => {
      await dropTables(own);
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
        ["user_id", "text"],
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

    it("reports the row its compare-and-set was decided on: after waiting for a writer, that writer's row", async () => {
      const holder = await admin.connect();
      try {
        // The snapshot matches the expected version, but a writer holds the row: the update
        // waits, and re-checks the version that writer commits. That version is reported, never
        // the older snapshot row.
        const key = randomKey();
        const first = record({ n: 1 });
        await store.save(key, first, null);
        const second = record({ n: 2 }, 2);
        await holder.query("BEGIN");
        await holder.query(
          `UPDATE "${own}" SET data = $2, version = 2, created_at = to_timestamp($3::float8 / 1000),
           expires_at = to_timestamp($4::float8 / 1000) WHERE id = $1`,
          [key, second.data, second.createdAt, second.expiresAt],
        );
        let saving = store.save(key, record({ n: 9 }, 2), 1);
        assert.equal(await waitsForLock(own, saving), true);
        await holder.query("COMMIT");
        assert.deepEqual(await saving, { current: second });

        // The snapshot already differs from the expected version: that row decides and is
        // reported at once, without waiting for a writer that holds the row meanwhile.
        await holder.query("BEGIN");
        await holder.query(`UPDATE "${own}" SET version = 3 WHERE id = $1`, [key]);
        saving = store.save(key, record({ n: 9 }, 2), 1);
        assert.equal(await waitsForLock(own, saving), false);
        assert.deepEqual(await saving, { current: second });
        await holder.query("COMMIT");

        // A delete committed while the update waits: the record is gone.
        await holder.query("BEGIN");
        await holder.query(`DELETE FROM "${own}" WHERE id = $1`, [key]);
        saving = store.save(key, record({ n: 9 }, 4), 3);
        assert.equal(await waitsForLock(own, saving), true);
        await holder.query("COMMIT");
        assert.deepEqual(await saving, { current: null });

        // A create committed while another create waits: refused; the row is newer than the
        // waiting statement can see, so it answers false, never "absent".
        const created = randomKey();
        const winner = record({ winner: true });
        await holder.query("BEGIN");
        await holder.query(
          `INSERT INTO "${own}" VALUES ($1, $2, 1, to_timestamp($3::float8 / 1000), to_timestamp($4::float8 / 1000))`,
          [created, winner.data, winner.createdAt, winner.expiresAt],
        );
        saving = store.save(created, record({ winner: false }), null);
        assert.equal(await waitsForLock(own, saving), true);
        await holder.query("COMMIT");
        assert.equal(await saving, false);
        assert.deepEqual(await store.load(created), winner);

        // A create refused by a live row that a writer holds: the version that writer commits
        // is reported.
        await holder.query("BEGIN");
        await holder.query(`UPDATE "${own}" SET version = 2 WHERE id = $1`, [created]);
        saving = store.save(created, record({ n: 9 }, 2), null);
        assert.equal(await waitsForLock(own, saving), true);
        await holder.query("COMMIT");
        assert.deepEqual(await saving, { current: { ...winner, version: 2 } });
      } finally {
        await holder.query("ROLLBACK").catch(() => {});
        holder.release();
      }
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
    await dropTables(table);
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
    assert.deepEqual(await store.save(key, { ...saved, version: 3 }, 1), {
      current: { ...saved, version: 2 },
    });
    assert.deepEqual(await store.save(key, saved, null), { current: { ...saved, version: 2 } });
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

  it("brings a table made by an earlier version up to date, and locks no up-to-date table", async () => {
    const table = `websession_test_${RUN}_older`;
    try {
      // The table as migrate() made it before sessions per user and locks.
      await admin.query(
        `CREATE TABLE "${table}" (id text PRIMARY KEY, data jsonb NOT NULL, version integer NOT NULL, ` +
          `created_at timestamptz NOT NULL, expires_at timestamptz NOT NULL)`,
      );
      const key = randomKey();
      const kept = record({ kept: true });
      await admin.query(
        `INSERT INTO "${table}" VALUES ($1, $2, 1, to_timestamp($3::float8 / 1000), to_timestamp($4::float8 / 1000))`,
        [key, kept.data, kept.createdAt, kept.expiresAt],
      );
      const { client, sent } = recording(admin);
      const store = new PostgresStore({ client, table });
      await store.migrate();
      assert.ok(sent.includes("ALTER"), sent.join());
      assert.deepEqual(await store.load(key), kept);
      assert.equal(await store.save(key, { ...kept, version: 2 }, 1, { user: "ada" }), true);
      assert.deepEqual(await store.keysOfUser("ada"), [key]);
      assert.equal(await store.lock(key, "owner", 1_000), true);
      sent.length = 0;
      await store.migrate();
      assert.deepEqual(
        sent,
        ["CREATE", "SELECT", "CREATE", "CREATE", "CREATE"],
        "no ALTER TABLE once up to date",
      );
    } finally {
      await dropTables(table);
    }
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
      assert.deepEqual(rows.map((row) => row.indexname).sort(), [
        `${table}_expires_at_idx`,
        `${table}_pkey`,
        `${table}_user_id_idx`,
      ]);
      const locks = await admin.query(
        `SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position`,
        [`${table}_leases`],
      );
      assert.deepEqual(locks.rows.map((row) => [row.column_name, row.data_type]), [
        ["key", "text"],
        ["owner", "text"],
        ["until", "bigint"],
      ]);
      assert.equal(await store.lock(key, "owner", 60_000), true);
    } finally {
      await dropTables(table);
    }
  });
});
