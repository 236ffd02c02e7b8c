// PostgresStore against the real PostgreSQL on loopback, through every client it accepts (see
// tests/stores/postgres/connections.ts): the shared suites. What only PostgreSQL does is in
// tests/stores/postgres/, a file per program of src/stores/postgres/.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { PostgresStore, type SqlLike } from "../../src/stores/postgres.ts";
import { type OpenOptions, storeSuites } from "../conformance/store_cases.ts";
import { lockUserCases } from "../conformance/lock_user_cases.ts";
import {
  admin,
  clients,
  type Connection,
  dropTables,
  recording,
  startedBridge,
  tableFor,
  unreachable,
} from "./postgres/connections.ts";

for (const [label, connect] of clients) {
  const table = tableFor(label);
  const tables = new Map<string, Promise<void>>();
  const tableOf = (ns: string) => `${table}_${ns.replace(/\W/g, "_")}`;
  let shared: Connection;
  /** A store on the shared connection in the table of `ns`, made by migrate() once. */
  const storeIn = async (ns: string, options?: OpenOptions) => {
    const store = new PostgresStore({
      client: (shared ??= await connect()).client,
      table: tableOf(ns),
      ...options,
    });
    if (!tables.has(ns)) tables.set(ns, store.migrate());
    await tables.get(ns);
    return store;
  };
  /** A store in the table of `ns` whose every statement is recorded by its verb. */
  const counted = async (ns: string, now?: () => number) => {
    await storeIn(ns);
    const { client, sent } = recording(shared.client);
    return { store: new PostgresStore({ client, table: tableOf(ns), now }), sent };
  };
  const leaseOf = async (ns: string, key: string) =>
    (await admin().query(`SELECT owner, until FROM "${tableOf(ns)}_leases" WHERE key = $1`, [key])).rows[0];
  // Before storeSuites, whose close drops the tables and the connection these use too.
  lockUserCases(`PostgresStore over ${label}`, {
    reportsCurrent: true,
    sweeps: true,
    open: (ns, now) => storeIn(ns, { now }),
    counted,
    raw: async (ns, key) =>
      (await admin().query(`SELECT id FROM "${tableOf(ns)}" WHERE id = $1`, [key])).rows[0],
    // A lock is a row of <table>_leases, until when by the store's clock.
    locks: {
      byClock: true,
      until: (now, ttl) => now + Math.ceil(ttl),
      entry: async (ns, key) => {
        const row = await leaseOf(ns, key);
        return row && { owner: row.owner, until: Number(row.until) };
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
        const { rows } = await admin().query(`SELECT id FROM "${tableOf(ns)}" WHERE user_id = $1`, [user]);
        return Object.fromEntries(rows.map((row) => [row.id, null]));
      },
      sends: { save: ["INSERT"], list: ["SELECT"], update: ["UPDATE"], read: ["SELECT"] },
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
    open: storeIn,
    close: async () => {
      for (const ns of tables.keys()) await dropTables(tableOf(ns));
      await shared?.close();
    },
    raw: async (ns, key) => {
      const { rows } = await admin().query(
        `SELECT data, version, (extract(epoch FROM created_at) * 1000)::float8 AS "createdAt",
         (extract(epoch FROM expires_at) * 1000)::float8 AS "expiresAt" FROM "${tableOf(ns)}" WHERE id = $1`,
        [key],
      );
      return rows[0];
    },
    calls: {
      open: async (ns) => ({
        ...await counted(ns),
        requests: label.startsWith("neon()") ? () => startedBridge()!.requests : undefined,
      }),
      expected: { create: ["INSERT"], read: ["SELECT"], update: ["UPDATE"] },
    },
    driverError: { cause: (ns) => dropTables(tableOf(ns)), message: /does not exist/ },
    claims: { capabilities: { compareAndSet: true, ttl: false, locks: true, users: true }, lacks: [] },
    badOptions: label === "pg Pool"
      ? [
        ...["", "a b", "1abc", "x;drop table y", 'a"b', "a.b.c", ".a", "a.", "x".repeat(64)].map((bad) =>
          [`table ${JSON.stringify(bad)}`, () => new PostgresStore({ client: admin(), table: bad })] as const
        ),
        ["a client of no known shape", () => new PostgresStore({ client: {} as SqlLike })],
        ["no client", () => new PostgresStore({ client: null as unknown as SqlLike })],
        ["a clock that is no function", () => new PostgresStore({ client: admin(), now: 5 as never })],
      ]
      : undefined,
    corrupt: {
      forms: ["[1,2]", '"text"'],
      write: async (ns, key, form) => {
        await admin().query(
          `INSERT INTO "${tableOf(ns)}" VALUES ($1, $2, 1, now(), now() + interval '1 hour')`,
          [key, form],
        );
      },
      warning: /corrupt session row/,
    },
    // A port nothing listens on: a real refused connection (once, through pg).
    unreachable: label === "pg Pool" ? unreachable : undefined,
    locks: { owner: async (ns, key) => (await leaseOf(ns, key))?.owner },
    users: { liveOnly: true, byClock: true },
  });
}

describe("PostgresStore over Neon", () => {
  it("went through the bridge on both transports", () => {
    const bridge = startedBridge();
    assert.ok(bridge && bridge.connections > 0, "no WebSocket connection reached the bridge");
    assert.ok(bridge.requests > 0, "no HTTP query reached the bridge");
  });
});
