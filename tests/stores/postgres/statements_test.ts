// The statements of src/stores/postgres/statements.ts against the real PostgreSQL, through every
// client: the table and indexes migrate() makes (and brings up to date, and ships as
// postgres.sql), times kept to the millisecond, and the row a compare-and-set was decided on.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { PostgresStore } from "../../../src/stores/postgres.ts";
import { randomKey } from "../../conformance/util.ts";
import { record } from "../remote_cases.ts";
import {
  admin,
  clients,
  type Connection,
  dropTables,
  recording,
  RUN,
  tableFor,
  waitsForLock,
} from "./connections.ts";

for (const [label, connect] of clients) {
  describe(`PostgresStore over ${label}: PostgreSQL specifics`, () => {
    const own = `${tableFor(label)}_own`;
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
      const columns = await admin().query(
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
      const indexes = await admin().query(`SELECT indexdef FROM pg_indexes WHERE tablename = $1`, [own]);
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
      const holder = await admin().connect();
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

describe("PostgresStore tables", () => {
  const schema = `websession_test_${RUN}_schema`;
  after(async () => {
    await admin().query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  });

  it("works in a schema-qualified table", async () => {
    await admin().query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    const store = new PostgresStore({ client: admin(), table: `${schema}.Sessions` });
    await store.migrate();
    const key = randomKey();
    assert.equal(await store.save(key, record({ in: "schema" }), null), true);
    const { rows } = await admin().query(`SELECT data FROM "${schema}"."Sessions" WHERE id = $1`, [key]);
    assert.deepEqual(rows[0].data, { in: "schema" });
    assert.equal(await store.count(), 1);
  });

  it("brings a table made by an earlier version up to date, and locks no up-to-date table", async () => {
    const table = `websession_test_${RUN}_older`;
    try {
      // The table as migrate() made it before sessions per user and locks.
      await admin().query(
        `CREATE TABLE "${table}" (id text PRIMARY KEY, data jsonb NOT NULL, version integer NOT NULL, ` +
          `created_at timestamptz NOT NULL, expires_at timestamptz NOT NULL)`,
      );
      const key = randomKey();
      const kept = record({ kept: true });
      await admin().query(
        `INSERT INTO "${table}" VALUES ($1, $2, 1, to_timestamp($3::float8 / 1000), to_timestamp($4::float8 / 1000))`,
        [key, kept.data, kept.createdAt, kept.expiresAt],
      );
      const { client, sent } = recording(admin());
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
    const ddl = await readFile(new URL("../../../src/stores/postgres.sql", import.meta.url), "utf8");
    const table = `websession_test_${RUN}_sqlfile`;
    try {
      await admin().query(ddl.replaceAll("websession_sessions", table));
      const store = new PostgresStore({ client: admin(), table });
      await store.migrate();
      const key = randomKey();
      assert.equal(await store.save(key, record({ from: "sql file" }), null), true);
      assert.deepEqual((await store.load(key))?.data, { from: "sql file" });
      const { rows } = await admin().query(`SELECT indexname FROM pg_indexes WHERE tablename = $1`, [table]);
      assert.deepEqual(rows.map((row) => row.indexname).sort(), [
        `${table}_expires_at_idx`,
        `${table}_pkey`,
        `${table}_user_id_idx`,
      ]);
      const locks = await admin().query(
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
