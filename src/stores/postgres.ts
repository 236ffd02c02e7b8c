/**
 * `PostgresStore`: sessions in a PostgreSQL table, with compare-and-set in one statement.
 *
 * Takes the user's own client: `neon(url)` from `@neondatabase/serverless` (HTTP, for Workers and
 * Deno Deploy), its `Pool`/`Client` (WebSocket), `pg`'s `Pool`/`Client`, or postgres.js'
 * `postgres(url)`. The store imports none of them; it only needs to run one parameterised
 * statement at a time, so it also works over Neon's HTTP API, which cannot hold a transaction
 * open.
 *
 * @module
 */
import { SessionDataError } from "../errors.ts";
import {
  assertStorageKey,
  assertTouchArguments,
  ENDED_KEY,
  type SaveIndex,
  type SaveResult,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
  toStoredSession,
} from "../store.ts";

/**
 * A client with `query(text, params)`: `pg` and Neon `Pool`/`Client` (resolving to
 * `{ rows }`), and `neon(url)` over HTTP (resolving to the rows).
 *
 * @example
 * ```ts
 * import type { QueryLike } from "websession/postgres";
 * import assert from "node:assert/strict";
 *
 * const client: QueryLike = { query: async () => ({ rows: [] }) };
 * assert.deepEqual(await client.query("SELECT 1", []), { rows: [] });
 * ```
 */
export interface QueryLike {
  /** Runs one statement with `$1`… placeholders (the store passes strings and numbers). */
  // deno-lint-ignore no-explicit-any -- drivers type their parameters narrowly; any accepts them all
  query(text: string, params: any[]): PromiseLike<unknown>;
}

/**
 * A postgres.js client (`postgres(url)`), which runs a statement given as text with `unsafe`.
 *
 * @example
 * ```ts
 * import type { PostgresJsLike } from "websession/postgres";
 * import assert from "node:assert/strict";
 *
 * const client: PostgresJsLike = { unsafe: async () => [] };
 * assert.deepEqual(await client.unsafe("SELECT 1", []), []);
 * ```
 */
export interface PostgresJsLike {
  /** Runs one statement with `$1`… placeholders (the store passes strings and numbers). */
  // deno-lint-ignore no-explicit-any -- drivers type their parameters narrowly; any accepts them all
  unsafe(text: string, params: any[]): PromiseLike<unknown>;
}

/**
 * Any client {@linkcode PostgresStore} accepts: one with `query` is used through it, otherwise
 * one with `unsafe` (postgres.js). Neon's `neon(url)` has both; its `unsafe` does not run
 * anything, so `query` is preferred.
 *
 * @example
 * ```ts
 * import type { SqlLike } from "websession/postgres";
 * import assert from "node:assert/strict";
 *
 * const client: SqlLike = { unsafe: async () => [] };
 * assert.equal(typeof client, "object");
 * ```
 */
export type SqlLike = QueryLike | PostgresJsLike;

/**
 * Where a {@linkcode PostgresStore} writes its warnings: `console`, the `logger` given to
 * `withSession`, or any object with a `warn` method.
 *
 * @example
 * ```ts
 * import { PostgresStore, type PostgresStoreLogger } from "websession/postgres";
 * import pg from "pg";
 * import assert from "node:assert/strict";
 *
 * const pool = new pg.Pool({ connectionString: "postgres://postgres@127.0.0.1:5432/test" });
 * const warnings: string[] = [];
 * const logger: PostgresStoreLogger = { warn: (message) => void warnings.push(String(message)) };
 * const store = new PostgresStore({ client: pool, table: "websession_logger_example", logger });
 * await store.migrate();
 * const key = "l".repeat(43);
 * await pool.query(
 *   `INSERT INTO websession_logger_example VALUES ($1, '[]', 1, now(), now() + interval '1 minute')`,
 *   [key],
 * );
 * assert.equal(await store.load(key), null);
 * assert.match(warnings[0]!, /corrupt session row/);
 * await pool.query("DROP TABLE websession_logger_example, websession_logger_example_leases");
 * await pool.end();
 * ```
 */
export interface PostgresStoreLogger {
  /** A warning: a stored row the store had to ignore. */
  warn(...args: unknown[]): void;
}

/**
 * Options of {@linkcode PostgresStore}.
 *
 * @example
 * ```ts
 * import { PostgresStore, type PostgresStoreOptions } from "websession/postgres";
 * import pg from "pg";
 * import assert from "node:assert/strict";
 *
 * const pool = new pg.Pool({ connectionString: "postgres://postgres@127.0.0.1:5432/test" });
 * const corrupt: string[] = [];
 * const options: PostgresStoreOptions = {
 *   client: pool,
 *   table: "public.websession_options_example",
 *   onCorrupt: (key) => void corrupt.push(key),
 * };
 * const store = new PostgresStore(options);
 * await store.migrate(); // CREATE TABLE IF NOT EXISTS, its indexes and its leases table
 * const key = "c".repeat(43);
 * await pool.query(
 *   `INSERT INTO public.websession_options_example VALUES ($1, '[]', 1, now(), now() + interval '1 minute')
 *    ON CONFLICT (id) DO UPDATE SET data = '[]'`,
 *   [key],
 * );
 * assert.equal(await store.load(key), null); // data is not an object: reads as missing, and is reported
 * assert.deepEqual(corrupt, [key]);
 * await pool.query("DROP TABLE public.websession_options_example, public.websession_options_example_leases");
 * await pool.end();
 * ```
 */
export interface PostgresStoreOptions {
  /**
   * The user's client: `neon(url)` (HTTP), a Neon or `pg` `Pool`/`Client`, or postgres.js
   * (`postgres(url)`). The store never connects, ends or configures it; it runs one statement
   * at a time and never opens a transaction.
   */
  client: SqlLike;
  /**
   * The table, optionally schema-qualified (`"sessions"`, `"auth.sessions"`). Each part is
   * letters, digits and `_`, not starting with a digit, at most 63 characters; it is quoted, so
   * the case is kept. What goes with it is named after it, in the same schema: its indexes
   * `<table>_expires_at_idx` and `<table>_user_id_idx`, and the leases table `<table>_leases`
   * (the table's name cut to fit PostgreSQL's 63 characters with the suffix).
   * @default "websession_sessions"
   */
  table?: string;
  /**
   * Called when a stored row is not a well-formed record; the session then reads as missing.
   * Given, it replaces the warning written to `logger`.
   * @default a warning to `logger`
   */
  onCorrupt?: (key: string, error: Error) => void;
  /**
   * Where warnings go (a corrupt row, unless `onCorrupt` is given): pass the same logger as
   * `withSession`'s to route them with the rest.
   * @default console
   */
  logger?: PostgresStoreLogger;
  /**
   * The clock that decides expiry, in milliseconds since the epoch. Every statement that
   * compares `expires_at` (`load`, the liveness check of `save` and `touch`, `cleanup`,
   * `count`, `keysOfUser`), and every lease statement, is handed `now()` as a parameter; the database's own `now()` is never used, so a
   * skew between this machine's clock and the database server's neither ends sessions early
   * nor keeps them late. A record is live while `expiresAt > now()`. Give it the clock that
   * computes `expiresAt` (the one `withSession` uses), and run `cleanup()` where the clock
   * agrees with the application's.
   * @default Date.now
   */
  now?: () => number;
}

type Row = Record<string, unknown> | unknown[];
type Run = (text: string, params: unknown[]) => Promise<Row[]>;

function runnerOf(client: SqlLike): Run {
  const any = client as unknown as Record<string, unknown> | null;
  if ((typeof client !== "object" && typeof client !== "function") || any === null) {
    throw new TypeError(
      "Invalid PostgreSQL client: expected neon(), a pg or Neon Pool/Client, or postgres.js",
    );
  }
  let send: (text: string, params: unknown[]) => PromiseLike<unknown>;
  if (typeof any.query === "function") send = (text, params) => (client as QueryLike).query(text, params);
  else if (typeof any.unsafe === "function") {
    send = (text, params) => (client as PostgresJsLike).unsafe(text, params);
  } else {throw new TypeError(
      "Invalid PostgreSQL client: expected neon(), a pg or Neon Pool/Client, or postgres.js",
    );}
  return async function run(text, params) {
    const result = await send(text, params);
    // neon() and postgres.js resolve to the rows; pg, Neon Pool/Client and neon() with
    // fullResults resolve to { rows }.
    const rows = Array.isArray(result) ? result : (result as { rows?: unknown } | null)?.rows;
    if (!Array.isArray(rows)) throw new TypeError("Unexpected result from the PostgreSQL client: no rows");
    return rows as Row[];
  };
}

// Reads a column by name, or by position when the client returns rows as arrays.
function column(row: Row, name: string, index: number): unknown {
  return Array.isArray(row) ? row[index] : row[name];
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

function quoteTable(table: string): { quoted: string; index: string; userIndex: string; leases: string } {
  const parts = typeof table === "string" ? table.split(".") : [];
  if (parts.length < 1 || parts.length > 2 || !parts.every((part) => IDENTIFIER.test(part))) {
    throw new TypeError(
      `Invalid table: "${String(table).slice(0, 130)}" is not an identifier or schema.identifier`,
    );
  }
  const name = parts[parts.length - 1]!;
  const named = (suffix: string) => `${name.slice(0, 63 - suffix.length)}${suffix}`;
  return {
    quoted: parts.map((part) => `"${part}"`).join("."),
    index: `"${named("_expires_at_idx")}"`,
    userIndex: `"${named("_user_id_idx")}"`,
    leases: [...parts.slice(0, -1), named("_leases")].map((part) => `"${part}"`).join("."),
  };
}

// What jsonb cannot hold, as JSON.stringify writes it: U+0000 as the escape \u0000, and a lone
// surrogate (never a valid pair, which it writes as is) as a \udXXX escape. An escape counts
// only after an even run of backslashes (a literal backslash is written \\).
const UNSTORABLE_ESCAPE = /(?<!\\)(?:\\\\)*\\u(?:0000|d[89a-f][0-9a-f]{2})/;
// The same in a string: NUL, a high surrogate not followed by a low one, a low one not
// preceded by a high one.
// deno-lint-ignore no-control-regex -- U+0000 is what it looks for
const UNSTORABLE_CHAR = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function escapeText(text: string): string {
  return text.replace(
    // deno-lint-ignore no-control-regex -- control characters are what it escapes
    /[\u0000-\u001f\u007f\ud800-\udfff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

// Finds what made UNSTORABLE_ESCAPE match, for the message: a path in the data and the character.
function describeUnstorable(value: unknown, path: string): string | undefined {
  if (typeof value === "string") {
    const found = UNSTORABLE_CHAR.exec(value);
    return found === null ? undefined : `${what(found[0])} in the value at "${path}"`;
  }
  if (typeof value !== "object" || value === null) return undefined;
  if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) {
      const found = describeUnstorable(item, `${path}[${i}]`);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  for (const [key, item] of Object.entries(value)) {
    const inKey = UNSTORABLE_CHAR.exec(key);
    const at = path === "" ? escapeText(key) : `${path}.${escapeText(key)}`;
    if (inKey !== null) {
      return `${what(inKey[0])} in the key "${escapeText(key)}"${path === "" ? "" : ` at "${path}"`}`;
    }
    const found = describeUnstorable(item, at);
    if (found !== undefined) return found;
  }
  return undefined;
}

function what(char: string): string {
  return char === "\u0000" ? `the character U+0000` : `the lone surrogate "${escapeText(char)}"`;
}

// Throws SessionDataError for data JSON or jsonb cannot hold; returns the JSON text otherwise.
function storableJson(data: unknown): string {
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new SessionDataError("Session data cannot be stored: it is not a JSON object");
  }
  let json: string;
  try {
    json = JSON.stringify(data);
  } catch (error) {
    throw new SessionDataError(
      `Session data cannot be stored as JSON: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  if (UNSTORABLE_ESCAPE.test(json)) {
    const detail = describeUnstorable(JSON.parse(json), "") ?? "a character it cannot hold";
    throw new SessionDataError(`Session data cannot be stored in PostgreSQL jsonb: ${detail}`);
  }
  return json;
}

// SQLSTATE classes 22 (data exception: invalid jsonb text, a time or version out of range) and
// 54 (program limit exceeded: jsonb too large or too deeply nested) from a save: PostgreSQL
// refused the values, and since the statement failed nothing was written.
function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^(?:22|54)[0-9A-Z]{3}$/.test(code);
}

const MS = (column: string) => `(extract(epoch FROM ${column}) * 1000)::float8`;
const TIME = (param: string) => `to_timestamp(${param}::float8 / 1000)`;

// The columns of a save's answer: ok = 1 when written; ok = 0 with the record found when
// refused; no row when refused and nothing live was found.
const CURRENT_COLUMNS = `data, version, created_at, expires_at`;
const WRITTEN =
  `SELECT 1 AS ok, NULL::jsonb AS data, NULL::integer AS version, NULL::float8 AS created_at, ` +
  `NULL::float8 AS expires_at FROM written`;
const FOUND = (from: string) =>
  `SELECT 0, data, version, ${MS("created_at")}, ${MS("expires_at")} FROM ${from}`;

/**
 * Keeps sessions in one PostgreSQL table (`id text primary key, data jsonb, version integer,
 * created_at, expires_at timestamptz, user_id text`), and leases in a second one
 * (`<table>_leases`: `key text primary key, owner text, until bigint`). Every operation is one
 * parameterised statement, so it needs no transaction and works over Neon's HTTP API.
 * `migrate()` creates both, and adds what a table made by an earlier version lacks: run it
 * (or the statements of `postgres.sql`) after upgrading.
 *
 * `save` is one statement that both tries the compare-and-set (`INSERT … ON CONFLICT` to
 * create, `UPDATE … WHERE version = $n` to update) and, when that is refused, reports the row
 * the refusal was decided on in a {@linkcode SaveConflict}: the statement's snapshot of the row
 * when that already failed the condition, or, when the write had to wait for a concurrent
 * writer and re-check the version it committed (READ COMMITTED), that newer version, read with
 * `SELECT … FOR SHARE` on the lock the write already holds, never the older snapshot. A refused
 * update takes no lock of its own and writes nothing. (A create that loses to a create committed
 * while the statement ran cannot see that row, and answers plain `false`.)
 *
 * One clock decides expiry: the `now` option's. Every statement that compares `expires_at` is
 * handed `now()` as a parameter; the database's `now()` is never used. An expired row never
 * blocks a new session with the same key, and is never returned. Expired rows stay in the
 * table until `cleanup()` removes them: call it from a cron trigger.
 *
 * Leases (`session.lock()`): `lock` is one `INSERT … ON CONFLICT (key) DO UPDATE … WHERE` the
 * held lease has lapsed by the `now` clock or is the same owner's, so of concurrent takers
 * exactly one wins (the others wait for its row lock, then find the condition false); `unlock`
 * is one `DELETE … WHERE key = $1 AND owner = $2`. A lapsed lease stays until taken again or
 * removed by `cleanup()`.
 *
 * Sessions per user: a save given an `index` sets the row's `user_id` in the same statement
 * (a save without one clears it), and `keysOfUser` is one `SELECT id … WHERE user_id = $1`
 * over the live rows, through a partial index on `user_id`.
 *
 * What `jsonb` cannot hold is refused before anything is sent, with `SessionDataError`: the
 * character U+0000 and lone UTF-16 surrogates (`"\ud800"`, `"\udc00\ud800"`), in keys or values.
 * Values PostgreSQL itself refuses (a time or version out of its range, a value over `jsonb`'s
 * size or nesting limits) are reported as `SessionDataError` too, never as an outage; nothing
 * is written. `jsonb` keeps every JSON value exactly (numbers as decimals), but not the order of
 * an object's keys: they come back sorted (shorter keys first). The database must use the UTF8
 * encoding.
 *
 * @example
 * ```ts
 * import { PostgresStore } from "websession/postgres";
 * import { SessionDataError } from "websession";
 * import type { SaveConflict } from "websession/store-kit";
 * import pg from "pg";
 * import assert from "node:assert/strict";
 *
 * const pool = new pg.Pool({ connectionString: "postgres://postgres@127.0.0.1:5432/test" });
 * const store = new PostgresStore({ client: pool, table: "websession_example" });
 * await store.migrate();
 * const key = "p".repeat(43);
 * const now = Date.now();
 * await store.destroy(key);
 * const v1 = { data: { a: 1 }, version: 1, createdAt: now, expiresAt: now + 60_000 };
 * assert.equal(await store.save(key, v1, null), true);
 * assert.equal((await store.load(key))?.expiresAt, now + 60_000);
 * // A writer that expected version 5 is refused, and told what is stored instead.
 * const refused = await store.save(key, { ...v1, data: { a: 2 }, version: 6 }, 5) as SaveConflict;
 * assert.deepEqual(refused.current, v1);
 * // jsonb cannot hold a lone surrogate: refused before the database, nothing written.
 * await assert.rejects(store.save(key, { ...v1, data: { a: "\ud800" }, version: 2 }, 1), SessionDataError);
 * // A lease: one owner at a time.
 * assert.equal(await store.lock(key, "request-1", 30_000), true);
 * assert.equal(await store.lock(key, "request-2", 30_000), false);
 * await store.unlock(key, "request-1");
 * // Sessions per user: the save that sets the user indexes the key.
 * assert.equal(await store.save(key, { ...v1, data: { user: "ada" }, version: 2 }, 1, { user: "ada" }), true);
 * assert.deepEqual(await store.keysOfUser("ada"), [key]);
 * await pool.query("DROP TABLE websession_example, websession_example_leases");
 * await pool.end();
 * ```
 */
export class PostgresStore implements SessionStore {
  /**
   * Compare-and-set: yes (one conditional statement). Native expiry: no, see `cleanup()`.
   * Leases: yes. An index of each user's sessions: yes (`user_id`).
   */
  readonly capabilities: StoreCapabilities = { compareAndSet: true, ttl: false, locks: true, users: true };
  #run: Run;
  #table: string;
  #onCorrupt: (key: string, error: Error) => void;
  #now: () => number;
  #sql: {
    table: string;
    hasUserColumn: string;
    addUserColumn: string;
    index: string;
    userIndex: string;
    leasesTable: string;
    lock: string;
    unlock: string;
    keysOfUser: string;
    load: string;
    create: string;
    update: string;
    createExpired: string;
    updateExpired: string;
    destroy: string;
    touch: string;
    cleanup: string;
    count: string;
    time: string;
  };

  /**
   * Creates a store over the user's PostgreSQL client; `migrate()` creates the table.
   *
   * @param options See {@linkcode PostgresStoreOptions}.
   * @throws {TypeError} When `client` has neither `query` nor `unsafe`, `table` is not a valid
   *   identifier, `now` is not a function, or `logger` has no `warn` method.
   */
  constructor(options: PostgresStoreOptions) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError("Invalid PostgresStore options: expected an object with a client");
    }
    this.#run = runnerOf(options.client);
    const { quoted: t, index, userIndex, leases } = quoteTable(options.table ?? "websession_sessions");
    this.#table = t;
    if (options.now !== undefined && typeof options.now !== "function") {
      throw new TypeError(`Invalid now: "${String(options.now)}" is not a function`);
    }
    const logger = options.logger ?? console;
    if (typeof logger?.warn !== "function") {
      throw new TypeError("Invalid logger: expected an object with warn(), such as console");
    }
    this.#onCorrupt = options.onCorrupt ??
      ((key, error) =>
        logger.warn(`websession: corrupt session row "${key}" read as missing: ${error.message}`));
    this.#now = options.now ?? Date.now;
    // Parameters of the writes: $1 id, $2 data, $3 version, $4 createdAt, $5 expiresAt, $6 now,
    // $7 the user to index (or null), $8 expected version.
    const values = `$2::text::jsonb, $3::integer, ${TIME("$4")}, ${TIME("$5")}, $7::text`;
    const live = (now: string) => `expires_at > ${TIME(now)}`;
    // The row a refused create lost to. ON CONFLICT found the conflicting row's latest committed
    // version and locked it; FOR SHARE follows the row's update chain to that same version
    // (already held, so it neither waits nor writes) and re-checks it. It runs only when the
    // insert was refused: NOT EXISTS (SELECT FROM written) is a one-time filter, evaluated, and
    // so the insert run, before the scan. A row created by another statement after this one's
    // snapshot is not on any chain it can see: then it finds nothing, and the save answers false.
    const lostCreate = `found AS (SELECT ${CURRENT_COLUMNS} FROM ${t} WHERE id = $1 AND ${live("$6")} ` +
      `AND NOT EXISTS (SELECT FROM written) FOR SHARE)`;
    // The row a refused update (or delete) was decided on, for expected version `expected`. The
    // write either saw the statement's snapshot of the row fail its condition (a live version
    // other than `expected`: that snapshot row, `seen`, decided, and is reported), or saw it
    // match but found it changed by a writer that committed meanwhile: READ COMMITTED then waits
    // for that writer, locks the row's latest version and re-checks the condition on it. In
    // that case only, `moved` reads that latest version with FOR SHARE, which follows the update
    // chain to it (held by this statement already: no wait, no write) and re-checks liveness;
    // it finds nothing when the row was deleted. Never the snapshot row once a newer version
    // decided. Both run only when the write was refused (one-time filters on `written`).
    const lostUpdate = (now: string, expected: string) =>
      `seen AS (SELECT ${CURRENT_COLUMNS} FROM ${t} WHERE id = $1 AND ${live(now)}), ` +
      `moved AS (SELECT ${CURRENT_COLUMNS} FROM ${t} WHERE id = $1 AND ${live(now)} ` +
      `AND NOT EXISTS (SELECT FROM written) AND EXISTS (SELECT FROM seen WHERE version = ${expected}) ` +
      `FOR SHARE) ${WRITTEN} UNION ALL ${FOUND("seen")} WHERE version <> ${expected} ` +
      `AND NOT EXISTS (SELECT FROM written) UNION ALL ${FOUND("moved")}`;
    this.#sql = {
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
      leasesTable: `CREATE TABLE IF NOT EXISTS ${leases} (key text PRIMARY KEY, owner text NOT NULL, ` +
        `until bigint NOT NULL)`,
      // $1 key, $2 owner, $3 now, $4 ttl (ms). Taken when free, lapsed by the app's clock, or
      // the owner's own (extended). A concurrent taker waits for the winner's row lock, then
      // re-checks the condition on the row the winner wrote: exactly one wins.
      lock: `INSERT INTO ${leases} AS l (key, owner, until) VALUES ($1, $2, $3::bigint + $4::bigint) ` +
        `ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, until = excluded.until ` +
        `WHERE l.until <= $3::bigint OR l.owner = $2 RETURNING 1 AS taken`,
      unlock: `DELETE FROM ${leases} WHERE key = $1 AND owner = $2`,
      keysOfUser: `SELECT id FROM ${t} WHERE user_id = $1 AND ${live("$2")}`,
      load: `SELECT data, version, ${MS("created_at")} AS created_at, ${MS("expires_at")} AS expires_at ` +
        `FROM ${t} WHERE id = $1 AND ${live("$2")}`,
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
        lostUpdate("$6", "$8::bigint"),
      // An already expired record is not written: a create is done unless a live row blocks it
      // (nothing is written, so one snapshot decides and reports); an update deletes the row.
      // Parameters: $1 id, $2 now, $3 expected version.
      createExpired: `WITH found AS (SELECT ${CURRENT_COLUMNS} FROM ${t} WHERE id = $1 AND ${live("$2")}) ` +
        `SELECT 1 AS ok, NULL::jsonb AS data, NULL::integer AS version, NULL::float8 AS created_at, ` +
        `NULL::float8 AS expires_at WHERE NOT EXISTS (SELECT FROM found) UNION ALL ${FOUND("found")}`,
      updateExpired: `WITH written AS (DELETE FROM ${t} WHERE id = $1 AND version = $3::bigint ` +
        `AND ${live("$2")} RETURNING 1), ` + lostUpdate("$2", "$3::bigint"),
      destroy: `DELETE FROM ${t} WHERE id = $1`,
      // $1 id, $2 new expiresAt, $3 now, $4 the version read, $5 the tombstone's data key. One
      // statement: the row is extended only while it is live, at that version, not a tombstone
      // and expiring earlier; a concurrent save or touch holds the row lock, and READ COMMITTED
      // re-checks these conditions on the row it wrote.
      touch: `UPDATE ${t} SET expires_at = ${TIME("$2")} WHERE id = $1 AND ${live("$3")} ` +
        `AND version = $4::bigint AND expires_at < ${TIME("$2")} ` +
        `AND (data -> $5::text) IS DISTINCT FROM 'true'::jsonb RETURNING 1 AS touched`,
      cleanup: `WITH removed AS (DELETE FROM ${t} WHERE expires_at <= ${TIME("$1")} RETURNING 1), ` +
        `lapsed AS (DELETE FROM ${leases} WHERE until <= $2::bigint) ` +
        `SELECT count(*)::integer AS removed FROM removed`,
      count: `SELECT count(*)::integer AS live FROM ${t} WHERE ${live("$1")}`,
      // The database's clock, for the grace of an end only (see time()); float8 reaches every
      // client as a number.
      time: `SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS time`,
    };
  }

  /**
   * Creates what the store needs if it is missing (the statements of `postgres.sql`): the table,
   * its indexes on `expires_at` and on `user_id`, and the leases table; and adds the `user_id`
   * column to a table made by an earlier version (`ALTER TABLE … ADD COLUMN IF NOT EXISTS`,
   * only when the column is missing, so that a table that has it is never locked). Safe to run
   * on every start; run it after upgrading. One statement at a time, no transaction.
   *
   * @throws Driver errors pass through.
   */
  async migrate(): Promise<void> {
    await this.#run(this.#sql.table, []);
    if ((await this.#run(this.#sql.hasUserColumn, [this.#table])).length === 0) {
      await this.#run(this.#sql.addUserColumn, []);
    }
    await this.#run(this.#sql.index, []);
    await this.#run(this.#sql.userIndex, []);
    await this.#run(this.#sql.leasesTable, []);
  }

  /**
   * Reads a live record with one `SELECT`.
   *
   * @param key The storage key.
   * @returns The record, or `null` when missing, expired by the `now` clock, or corrupt
   *   (reported to `onCorrupt`).
   * @throws {TypeError} When `key` is not a storage key. Driver errors pass through.
   */
  async load(key: string): Promise<StoredSession | null> {
    assertStorageKey(key);
    const now = this.#now();
    const [row] = await this.#run(this.#sql.load, [key, now]);
    if (row === undefined) return null;
    const record = this.#record(key, row, 0);
    return record === null || record.expiresAt <= now ? null : record;
  }

  /**
   * Compare-and-set in one statement, which also reads the row it lost to when refused. A
   * stored row whose `expiresAt` is not after `now()` counts as absent. A record whose
   * `expiresAt` is already past is not written (a live row at the expected version is deleted
   * instead) and the save counts as done.
   *
   * @param key The storage key.
   * @param record The record to store.
   * @param expectedVersion The stored version to replace, or `null` to create only if absent
   *   (or expired).
   * @param index The user to index the key under (`keysOfUser`): the row's `user_id`, set by
   *   the same statement. Without it, `user_id` is cleared.
   * @returns `true` when written. When refused, a {@linkcode SaveConflict} with the live row as
   *   it stands (`null` when none is), or plain `false` when that row could not be read in the
   *   same statement (a create racing another create) or is corrupt.
   * @throws {SessionDataError} Before sending anything, when the data is not a JSON object
   *   `JSON.stringify` can write (a `BigInt`, a cycle) or holds U+0000 or a lone surrogate; and
   *   when PostgreSQL refuses the values (SQLSTATE class 22 or 54: a time or
   *   version out of its range, `jsonb` over its limits), in which case nothing was written.
   * @throws {TypeError} When `key` is not a storage key, a time is not finite, or `index.user`
   *   is not a string PostgreSQL `text` can hold. Driver errors pass through.
   */
  async save(
    key: string,
    record: StoredSession,
    expectedVersion: number | null,
    index?: SaveIndex,
  ): Promise<SaveResult> {
    assertStorageKey(key);
    if (!Number.isFinite(record.createdAt) || !Number.isFinite(record.expiresAt)) {
      throw new TypeError(`Invalid record: createdAt and expiresAt must be finite numbers`);
    }
    const json = storableJson(record.data);
    const user = index === undefined ? null : userOf(index?.user);
    const now = this.#now();
    let rows: Row[];
    try {
      if (record.expiresAt <= now) {
        rows = expectedVersion === null
          ? await this.#run(this.#sql.createExpired, [key, now])
          : await this.#run(this.#sql.updateExpired, [key, now, expectedVersion]);
      } else {
        const params = [key, json, record.version, record.createdAt, record.expiresAt, now, user];
        rows = expectedVersion === null
          ? await this.#run(this.#sql.create, params)
          : await this.#run(this.#sql.update, [...params, expectedVersion]);
      }
    } catch (error) {
      if (!isDataError(error)) throw error;
      throw new SessionDataError(
        `Session data cannot be stored in PostgreSQL: ${(error as Error).message}`,
        { cause: error },
      );
    }
    const [row] = rows;
    if (row === undefined) {
      // Refused with nothing live found: the update's row is gone or expired. A create that
      // found nothing lost to a row its statement could not see (inserted meanwhile).
      return expectedVersion === null ? false : { current: null };
    }
    if (Number(column(row, "ok", 0)) === 1) return true;
    const current = this.#record(key, row, 1);
    if (current === null || current.version === expectedVersion) return false;
    return { current };
  }

  /**
   * Removes a record with one `DELETE`; no error if it is absent.
   *
   * @param key The storage key.
   * @throws {TypeError} When `key` is not a storage key. Driver errors pass through.
   */
  async destroy(key: string): Promise<void> {
    assertStorageKey(key);
    await this.#run(this.#sql.destroy, [key]);
  }

  /**
   * Extends a live record's `expires_at` with one `UPDATE … WHERE version = $4`, without
   * rewriting its data or version: only when the row is live by the `now` clock, at `version`,
   * not a tombstone (its data's top-level `"__ended"` is not `true`) and expiring before
   * `expiresAt`. The statement decides and writes atomically (a concurrent save holds the row's
   * lock; READ COMMITTED re-checks the conditions on the row it then finds).
   *
   * @param key The storage key.
   * @param expiresAt The new expiry, in milliseconds since the epoch.
   * @param version The version the caller read.
   * @returns `true` when extended; `false` when the row is missing, expired, at another
   *   version, ended, or already expires at or after `expiresAt` (nothing is written).
   * @throws {TypeError} When `key` is not a storage key, `expiresAt` is not finite or `version`
   *   is not a positive integer. Driver errors pass through.
   */
  async touch(key: string, expiresAt: number, version: number): Promise<boolean> {
    assertStorageKey(key);
    assertTouchArguments(expiresAt, version);
    const rows = await this.#run(this.#sql.touch, [key, expiresAt, this.#now(), version, ENDED_KEY]);
    return rows.length > 0;
  }

  /**
   * Takes the lease named `key` for `owner` with one `INSERT … ON CONFLICT DO UPDATE … WHERE`:
   * written when no lease is held, the held one has lapsed by the `now` clock, or it is the same
   * owner's (which extends it).
   *
   * @param key The storage key the lease is named after.
   * @param owner Who takes it: a unique, non-empty string.
   * @param ttlMs Milliseconds after which the lease lapses, by the `now` clock, unless released
   *   (rounded up).
   * @returns `true` when taken, `false` while another owner holds a live one.
   * @throws {TypeError} When `key` is not a storage key, `owner` is empty or `ttlMs` is not a
   *   positive number. Driver errors pass through.
   */
  async lock(key: string, owner: string, ttlMs: number): Promise<boolean> {
    assertStorageKey(key);
    assertOwner(owner);
    if (typeof ttlMs !== "number" || !(ttlMs > 0) || !Number.isFinite(ttlMs)) {
      throw new TypeError(`Invalid ttlMs: "${String(ttlMs)}" is not a positive number of milliseconds`);
    }
    const rows = await this.#run(this.#sql.lock, [key, owner, Math.floor(this.#now()), Math.ceil(ttlMs)]);
    return rows.length > 0;
  }

  /**
   * Releases the lease named `key` if, and only if, `owner` holds it: one `DELETE … WHERE key
   * = $1 AND owner = $2`.
   *
   * @param key The storage key the lease is named after.
   * @param owner Who took it.
   * @throws {TypeError} When `key` is not a storage key or `owner` is empty. Driver errors pass
   *   through.
   */
  async unlock(key: string, owner: string): Promise<void> {
    assertStorageKey(key);
    assertOwner(owner);
    await this.#run(this.#sql.unlock, [key, owner]);
  }

  /**
   * The storage keys of the live rows (by the `now` clock) whose `user_id` is `user`: one
   * `SELECT`. A row's `user_id` is what its last save was given, so a key is listed exactly
   * while its record is saved with this user in its index.
   *
   * @param user The user's id.
   * @returns The storage keys, in no particular order.
   * @throws {TypeError} When `user` is not a string PostgreSQL `text` can hold. Driver errors
   *   pass through.
   */
  async keysOfUser(user: string): Promise<string[]> {
    const rows = await this.#run(this.#sql.keysOfUser, [userOf(user), this.#now()]);
    return rows.map((row) => String(column(row, "id", 0)));
  }

  /**
   * Deletes, in one statement, every row expired by the `now` clock (`expires_at <= now()`),
   * and every lapsed lease.
   *
   * @returns How many session rows were removed.
   * @throws Driver errors pass through.
   */
  async cleanup(): Promise<number> {
    const now = this.#now();
    const [row] = await this.#run(this.#sql.cleanup, [now, Math.floor(now)]);
    return Number(row === undefined ? 0 : column(row, "removed", 0));
  }

  /**
   * The database server's clock, with one statement (`clock_timestamp()`, the time when it runs,
   * not the transaction's start). Asked only to stamp and judge the grace of a session ended by
   * a request (see `SessionStore.time`), never on an ordinary request; expiry stays with the
   * `now` option's clock, as every other statement.
   *
   * @param _key The storage key the time is wanted for (one database, one clock: unused).
   * @returns Milliseconds since the epoch by PostgreSQL's clock (microsecond precision).
   * @throws {TypeError} When the client answers something that is not a time. Driver errors
   *   pass through.
   * @example
   * ```ts
   * import pg from "pg";
   * import { PostgresStore } from "websession/postgres";
   * import assert from "node:assert/strict";
   *
   * const client = new pg.Pool({ connectionString: "postgres://postgres@127.0.0.1:5432/test" });
   * const store = new PostgresStore({ client });
   * const time = await store.time("k".repeat(43));
   * assert.ok(Math.abs(time - Date.now()) < 60_000); // PostgreSQL on this machine shares its clock
   * await client.end();
   * ```
   */
  async time(_key: string): Promise<number> {
    const [row] = await this.#run(this.#sql.time, []);
    const time = Number(row === undefined ? NaN : column(row, "time", 0));
    if (!Number.isFinite(time)) throw new TypeError("Unexpected result from the PostgreSQL client: no time");
    return time;
  }

  /**
   * Counts the rows live by the `now` clock (`expires_at > now()`), the same rule `load` uses.
   *
   * @returns How many sessions have not expired.
   * @throws Driver errors pass through.
   */
  async count(): Promise<number> {
    const [row] = await this.#run(this.#sql.count, [this.#now()]);
    return Number(row === undefined ? 0 : column(row, "live", 0));
  }

  // A record from the columns data, version, created_at, expires_at starting at `first` (for
  // clients that return rows as arrays).
  #record(key: string, row: Row, first: number): StoredSession | null {
    let data = column(row, "data", first);
    if (typeof data === "string") {
      // A client configured not to parse jsonb.
      try {
        data = JSON.parse(data);
      } catch { /* reported below */ }
    }
    const record = toStoredSession({
      data,
      version: Number(column(row, "version", first + 1)),
      createdAt: Number(column(row, "created_at", first + 2)),
      expiresAt: Number(column(row, "expires_at", first + 3)),
    });
    if (record === null) {
      this.#onCorrupt(key, new TypeError(`Corrupt session row: not a well-formed record for id "${key}"`));
    }
    return record;
  }
}

function assertOwner(owner: string): void {
  if (typeof owner !== "string" || owner === "") {
    throw new TypeError(`Invalid owner: "${String(owner)}" is not a non-empty string`);
  }
}

// A user id as a text parameter: PostgreSQL text holds neither U+0000 nor, over UTF8, a lone
// surrogate.
function userOf(user: unknown): string {
  if (typeof user !== "string" || UNSTORABLE_CHAR.test(user)) {
    throw new TypeError(
      `Invalid user: "${escapeText(String(user)).slice(0, 64)}" is not a string PostgreSQL text can hold`,
    );
  }
  return user;
}
