/**
 * Every statement `PostgresStore` runs, built once per table. Each operation is one parameterised
 * statement, so the store needs no transaction and works over Neon's HTTP API; times are passed
 * as parameters (the application's clock), never the database's `now()`.
 *
 * @module
 */

/** The table and what is named after it, quoted. */
interface Names {
  /** The table, quoted (`"auth"."sessions"`). */
  t: string;
  index: string;
  userIndex: string;
  /** The lock table, quoted: `<table>_leases`. */
  locks: string;
}

/** The statements, by operation. */
export type Statements =
  & ReturnType<typeof schema>
  & ReturnType<typeof locks>
  & ReturnType<typeof reads>
  & ReturnType<typeof saves>
  & ReturnType<typeof expiredSaves>
  & ReturnType<typeof maintenance>;

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/**
 * The table's name quoted, and the names of its indexes and lock table: `<table>_expires_at_idx`,
 * `<table>_user_id_idx`, `<table>_leases` in the same schema, the table's name cut to fit
 * PostgreSQL's 63 characters with the suffix. `_leases` is the name of earlier versions; kept so
 * that old and new processes share locks.
 */
export function quoteTable(table: string): Names {
  const parts = typeof table === "string" ? table.split(".") : [];
  if (parts.length < 1 || parts.length > 2 || !parts.every((part) => IDENTIFIER.test(part))) {
    throw new TypeError(
      `Invalid table: "${String(table).slice(0, 130)}" is not an identifier or schema.identifier`,
    );
  }
  const name = parts[parts.length - 1]!;
  const named = (suffix: string) => `${name.slice(0, 63 - suffix.length)}${suffix}`;
  return {
    t: parts.map((part) => `"${part}"`).join("."),
    index: `"${named("_expires_at_idx")}"`,
    userIndex: `"${named("_user_id_idx")}"`,
    locks: [...parts.slice(0, -1), named("_leases")].map((part) => `"${part}"`).join("."),
  };
}

const MS = (column: string) => `(extract(epoch FROM ${column}) * 1000)::float8`;
const TIME = (param: string) => `to_timestamp(${param}::float8 / 1000)`;
const live = (now: string) => `expires_at > ${TIME(now)}`;

// The columns of a save's answer: ok = 1 when written; ok = 0 with the record found when
// refused; no row when refused and nothing live was found.
const CURRENT_COLUMNS = `data, version, created_at, expires_at`;
const WRITTEN =
  `SELECT 1 AS ok, NULL::jsonb AS data, NULL::integer AS version, NULL::float8 AS created_at, ` +
  `NULL::float8 AS expires_at FROM written`;
const FOUND = (from: string) =>
  `SELECT 0, data, version, ${MS("created_at")}, ${MS("expires_at")} FROM ${from}`;

/** All of them, for the table named by `names`. */
export function statements(names: Names): Statements {
  return {
    ...schema(names),
    ...locks(names),
    ...reads(names),
    ...saves(names),
    ...expiredSaves(names),
    ...maintenance(names),
  };
}

/** What `migrate()` runs: the statements of `postgres.sql`. */
function schema({ t, index, userIndex, locks }: Names) {
  return {
    table: `CREATE TABLE IF NOT EXISTS ${t} (id text PRIMARY KEY, data jsonb NOT NULL, ` +
      `version integer NOT NULL, created_at timestamptz NOT NULL, expires_at timestamptz NOT NULL, ` +
      `user_id text)`,
    // A table made before sessions per user lacks user_id. Asked first, so that a table that
    // has it is never locked by ALTER TABLE on every start. $1: the table as written.
    hasUserColumn: `SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) ` +
      `AND attname = 'user_id' AND NOT attisdropped`,
    addUserColumn: `ALTER TABLE ${t} ADD COLUMN IF NOT EXISTS user_id text`,
    index: `CREATE INDEX IF NOT EXISTS ${index} ON ${t} (expires_at)`,
    userIndex: `CREATE INDEX IF NOT EXISTS ${userIndex} ON ${t} (user_id) WHERE user_id IS NOT NULL`,
    locksTable: `CREATE TABLE IF NOT EXISTS ${locks} (key text PRIMARY KEY, owner text NOT NULL, ` +
      `until bigint NOT NULL)`,
  };
}

/** Locks (`session.lock()`), each lapsing at its `until`. */
function locks({ locks }: Names) {
  return {
    // $1 key, $2 owner, $3 now, $4 ttl (ms). Taken when free, lapsed by the app's clock, or
    // the owner's own (extended). A concurrent taker waits for the winner's row lock, then
    // re-checks the condition on the row the winner wrote: exactly one wins.
    lock: `INSERT INTO ${locks} AS l (key, owner, until) VALUES ($1, $2, $3::bigint + $4::bigint) ` +
      `ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, until = excluded.until ` +
      `WHERE l.until <= $3::bigint OR l.owner = $2 RETURNING 1 AS taken`,
    unlock: `DELETE FROM ${locks} WHERE key = $1 AND owner = $2`,
  };
}

/** Reads of live rows by the `now` parameter. */
function reads({ t }: Names) {
  return {
    keysOfUser: `SELECT id FROM ${t} WHERE user_id = $1 AND ${live("$2")}`,
    load: `SELECT data, version, ${MS("created_at")} AS created_at, ${MS("expires_at")} AS expires_at ` +
      `FROM ${t} WHERE id = $1 AND ${live("$2")}`,
    count: `SELECT count(*)::integer AS live FROM ${t} WHERE ${live("$1")}`,
  };
}

/**
 * The row a refused update (or delete) was decided on, for expected version `expected`. The
 * write either saw the statement's snapshot of the row fail its condition (a live version other
 * than `expected`: that snapshot row, `seen`, decided, and is reported), or saw it match but found
 * it changed by a writer that committed meanwhile: READ COMMITTED then waits for that writer,
 * locks the row's latest version and re-checks the condition on it. In that case only, `moved`
 * reads that latest version with FOR SHARE, which follows the update chain to it (held by this
 * statement already: no wait, no write) and re-checks liveness; it finds nothing when the row was
 * deleted. Never the snapshot row once a newer version decided. Both run only when the write was
 * refused (one-time filters on `written`).
 */
function lostUpdate(t: string, now: string, expected: string): string {
  return `seen AS (SELECT ${CURRENT_COLUMNS} FROM ${t} WHERE id = $1 AND ${live(now)}), ` +
    `moved AS (SELECT ${CURRENT_COLUMNS} FROM ${t} WHERE id = $1 AND ${live(now)} ` +
    `AND NOT EXISTS (SELECT FROM written) AND EXISTS (SELECT FROM seen WHERE version = ${expected}) ` +
    `FOR SHARE) ${WRITTEN} UNION ALL ${FOUND("seen")} WHERE version <> ${expected} ` +
    `AND NOT EXISTS (SELECT FROM written) UNION ALL ${FOUND("moved")}`;
}

/**
 * A save: the compare-and-set, and the row it lost to when refused, in one statement. Parameters:
 * $1 id, $2 data, $3 version, $4 createdAt, $5 expiresAt, $6 now, $7 the user to index (or
 * null), $8 expected version.
 */
function saves({ t }: Names) {
  const values = `$2::text::jsonb, $3::integer, ${TIME("$4")}, ${TIME("$5")}, $7::text`;
  // The row a refused create lost to. ON CONFLICT found the conflicting row's latest committed
  // version and locked it; FOR SHARE follows the row's update chain to that same version
  // (already held, so it neither waits nor writes) and re-checks it. It runs only when the
  // insert was refused: NOT EXISTS (SELECT FROM written) is a one-time filter, evaluated, and
  // so the insert run, before the scan. A row created by another statement after this one's
  // snapshot is not on any chain it can see: then it finds nothing, and the save answers false.
  const lostCreate = `found AS (SELECT ${CURRENT_COLUMNS} FROM ${t} WHERE id = $1 AND ${live("$6")} ` +
    `AND NOT EXISTS (SELECT FROM written) FOR SHARE)`;
  return {
    // A live row blocks the create (and stays locked by ON CONFLICT); an expired one is
    // replaced as if absent.
    create: `WITH written AS (INSERT INTO ${t} AS s (id, data, version, created_at, expires_at, user_id) ` +
      `VALUES ($1, ${values}) ON CONFLICT (id) DO UPDATE SET data = excluded.data, ` +
      `version = excluded.version, created_at = excluded.created_at, expires_at = excluded.expires_at, ` +
      `user_id = excluded.user_id ` +
      `WHERE s.expires_at <= ${TIME("$6")} RETURNING 1), ${lostCreate} ${WRITTEN} UNION ALL ${
        FOUND("found")
      }`,
    update:
      `WITH written AS (UPDATE ${t} SET (data, version, created_at, expires_at, user_id) = (${values}) ` +
      `WHERE id = $1 AND version = $8::bigint AND ${live("$6")} RETURNING 1), ` +
      lostUpdate(t, "$6", "$8::bigint"),
  };
}

/**
 * A save of an already expired record, which is not written: a create is done unless a live row
 * blocks it (nothing is written, so one snapshot decides and reports); an update deletes the row.
 * Parameters: $1 id, $2 now, $3 expected version.
 */
function expiredSaves({ t }: Names) {
  return {
    createExpired: `WITH found AS (SELECT ${CURRENT_COLUMNS} FROM ${t} WHERE id = $1 AND ${live("$2")}) ` +
      `SELECT 1 AS ok, NULL::jsonb AS data, NULL::integer AS version, NULL::float8 AS created_at, ` +
      `NULL::float8 AS expires_at WHERE NOT EXISTS (SELECT FROM found) UNION ALL ${FOUND("found")}`,
    updateExpired: `WITH written AS (DELETE FROM ${t} WHERE id = $1 AND version = $3::bigint ` +
      `AND ${live("$2")} RETURNING 1), ` + lostUpdate(t, "$2", "$3::bigint"),
  };
}

/** Deletion, the expiry refresh, cleanup and the database's clock. */
function maintenance({ t, locks }: Names) {
  return {
    destroy: `DELETE FROM ${t} WHERE id = $1`,
    // $1 id, $2 new expiresAt, $3 now, $4 the version read, $5 the tombstone's data key. One
    // statement: the row is extended only while it is live, at that version, not a tombstone
    // and expiring earlier; a concurrent save or touch holds the row lock, and READ COMMITTED
    // re-checks these conditions on the row it wrote.
    touch: `UPDATE ${t} SET expires_at = ${TIME("$2")} WHERE id = $1 AND ${live("$3")} ` +
      `AND version = $4::bigint AND expires_at < ${TIME("$2")} ` +
      `AND (data -> $5::text) IS DISTINCT FROM 'true'::jsonb RETURNING 1 AS touched`,
    cleanup: `WITH removed AS (DELETE FROM ${t} WHERE expires_at <= ${TIME("$1")} RETURNING 1), ` +
      `lapsed AS (DELETE FROM ${locks} WHERE until <= $2::bigint) ` +
      `SELECT count(*)::integer AS removed FROM removed`,
    // The database's clock, for the grace of an end only (see time()); float8 reaches every
    // client as a number.
    time: `SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS time`,
  };
}
