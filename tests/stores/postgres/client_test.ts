// How src/stores/postgres/client.ts reads the rows of each client: neon() rows given as arrays,
// with full results, and a driver that returns every value as text.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { neon } from "@neondatabase/serverless";
import { PostgresStore, type SqlLike } from "../../../src/stores/postgres.ts";
import { randomKey } from "../../conformance/util.ts";
import { record } from "../remote_cases.ts";
import { DATABASE_URL, dropTables, neonBridge, RUN } from "./connections.ts";

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
