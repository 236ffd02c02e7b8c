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
import {
  assertStorageKey,
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
 * await store.migrate(); // CREATE TABLE IF NOT EXISTS, and an index on expires_at
 * const key = "c".repeat(43);
 * await pool.query(
 *   `INSERT INTO public.websession_options_example VALUES ($1, '[]', 1, now(), now() + interval '1 minute')
 *    ON CONFLICT (id) DO UPDATE SET data = '[]'`,
 *   [key],
 * );
 * assert.equal(await store.load(key), null); // data is not an object: reads as missing, and is reported
 * assert.deepEqual(corrupt, [key]);
 * await pool.query("DROP TABLE public.websession_options_example");
 * await pool.end();
 * ```
 */
export interface PostgresStoreOptions {
  /** The user's client: `neon(url)`, a Neon or `pg` `Pool`/`Client`, or postgres.js. */
  client: SqlLike;
  /**
   * The table, optionally schema-qualified (`"sessions"`, `"auth.sessions"`). Each part is
   * letters, digits and `_`, not starting with a digit, at most 63 characters; it is quoted, so
   * the case is kept.
   * @default "websession_sessions"
   */
  table?: string;
  /**
   * Called when a stored row is not a well-formed record; the session then reads as missing.
   * @default a `console.warn`
   */
  onCorrupt?: (key: string, error: Error) => void;
  /**
   * The clock, in milliseconds since the epoch (injectable for tests). Expiry in SQL uses the
   * database's `now()`.
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

function quoteTable(table: string): { quoted: string; index: string } {
  const parts = typeof table === "string" ? table.split(".") : [];
  if (parts.length < 1 || parts.length > 2 || !parts.every((part) => IDENTIFIER.test(part))) {
    throw new TypeError(
      `Invalid table: "${String(table).slice(0, 130)}" is not an identifier or schema.identifier`,
    );
  }
  const name = parts[parts.length - 1]!;
  return {
    quoted: parts.map((part) => `"${part}"`).join("."),
    index: `"${`${name.slice(0, 63 - "_expires_at_idx".length)}_expires_at_idx`}"`,
  };
}

// jsonb cannot hold U+0000, which JSON.stringify writes as \u0000 (an escape not preceded by
// another backslash).
const NUL = /(?:^|[^\\])(?:\\\\)*\\u0000/;

const MS = (column: string) => `(extract(epoch FROM ${column}) * 1000)::float8`;
const TIME = (param: string) => `to_timestamp(${param}::float8 / 1000)`;

function defaultOnCorrupt(key: string, error: Error): void {
  console.warn(`websession: corrupt session row "${key}" read as missing: ${error.message}`);
}

/**
 * Keeps sessions in one PostgreSQL table (`id text primary key, data jsonb, version integer,
 * created_at, expires_at timestamptz`). Every operation is one parameterised statement: the
 * compare-and-set is `INSERT … ON CONFLICT` to create and `UPDATE … WHERE version = $n` to
 * update, so it needs no transaction and works over Neon's HTTP API.
 *
 * An expired row never blocks a new session with the same key, and is never returned. Expired
 * rows stay in the table until `cleanup()` removes them: call it from a cron trigger.
 * Session data cannot contain the character U+0000 (a limit of `jsonb`): such a save throws a
 * `TypeError` before reaching the database.
 *
 * @example
 * ```ts
 * import { PostgresStore } from "websession/postgres";
 * import pg from "pg";
 * import assert from "node:assert/strict";
 *
 * const pool = new pg.Pool({ connectionString: "postgres://postgres@127.0.0.1:5432/test" });
 * const store = new PostgresStore({ client: pool, table: "websession_example" });
 * await store.migrate();
 * const key = "p".repeat(43);
 * const now = Date.now();
 * await store.destroy(key);
 * assert.equal(await store.save(key, { data: { a: 1 }, version: 1, createdAt: now, expiresAt: now + 60_000 }, null), true);
 * assert.equal((await store.load(key))?.expiresAt, now + 60_000);
 * assert.equal(await store.save(key, { data: { a: 2 }, version: 2, createdAt: now, expiresAt: now + 60_000 }, 5), false);
 * await pool.query("DROP TABLE websession_example");
 * await pool.end();
 * ```
 */
export class PostgresStore implements SessionStore {
  /** Compare-and-set: yes (one conditional statement). Native expiry: no, see `cleanup()`. */
  readonly capabilities: StoreCapabilities = { compareAndSet: true, ttl: false };
  #run: Run;
  #onCorrupt: (key: string, error: Error) => void;
  #now: () => number;
  #sql: {
    table: string;
    index: string;
    load: string;
    create: string;
    update: string;
    createExpired: string;
    updateExpired: string;
    destroy: string;
    touch: string;
    cleanup: string;
    count: string;
  };

  /**
   * Creates a store over the user's PostgreSQL client; `migrate()` creates the table.
   *
   * @param options See {@linkcode PostgresStoreOptions}.
   * @throws {TypeError} When `client` has neither `query` nor `unsafe`, or `table` is not a
   *   valid identifier.
   */
  constructor(options: PostgresStoreOptions) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError("Invalid PostgresStore options: expected an object with a client");
    }
    this.#run = runnerOf(options.client);
    const { quoted: t, index } = quoteTable(options.table ?? "websession_sessions");
    this.#onCorrupt = options.onCorrupt ?? defaultOnCorrupt;
    this.#now = options.now ?? Date.now;
    const values = `$2::text::jsonb, $3::integer, ${TIME("$4")}, ${TIME("$5")}`;
    this.#sql = {
      table: `CREATE TABLE IF NOT EXISTS ${t} (id text PRIMARY KEY, data jsonb NOT NULL, ` +
        `version integer NOT NULL, created_at timestamptz NOT NULL, expires_at timestamptz NOT NULL)`,
      index: `CREATE INDEX IF NOT EXISTS ${index} ON ${t} (expires_at)`,
      load: `SELECT data, version, ${MS("created_at")} AS created_at, ${MS("expires_at")} AS expires_at ` +
        `FROM ${t} WHERE id = $1 AND expires_at > now()`,
      // A live row blocks the create; an expired one is replaced as if absent.
      create: `INSERT INTO ${t} AS s (id, data, version, created_at, expires_at) VALUES ($1, ${values}) ` +
        `ON CONFLICT (id) DO UPDATE SET data = excluded.data, version = excluded.version, ` +
        `created_at = excluded.created_at, expires_at = excluded.expires_at WHERE s.expires_at <= now() ` +
        `RETURNING 1 AS ok`,
      update: `UPDATE ${t} SET (data, version, created_at, expires_at) = (${values}) ` +
        `WHERE id = $1 AND version = $6::integer AND expires_at > now() RETURNING 1 AS ok`,
      createExpired:
        `SELECT 1 AS ok WHERE NOT EXISTS (SELECT 1 FROM ${t} WHERE id = $1 AND expires_at > now())`,
      updateExpired:
        `DELETE FROM ${t} WHERE id = $1 AND version = $2::integer AND expires_at > now() RETURNING 1 AS ok`,
      destroy: `DELETE FROM ${t} WHERE id = $1`,
      touch: `UPDATE ${t} SET expires_at = ${TIME("$2")} WHERE id = $1 AND expires_at > now()`,
      cleanup: `WITH removed AS (DELETE FROM ${t} WHERE expires_at <= now() RETURNING 1) ` +
        `SELECT count(*)::integer AS removed FROM removed`,
      count: `SELECT count(*)::integer AS live FROM ${t} WHERE expires_at > now()`,
    };
  }

  /**
   * Creates the table and its index on `expires_at` if they are missing (the statements of
   * `postgres.sql`). Safe to run on every start.
   *
   * @throws Driver errors pass through.
   */
  async migrate(): Promise<void> {
    await this.#run(this.#sql.table, []);
    await this.#run(this.#sql.index, []);
  }

  /**
   * Reads a live record with one `SELECT`.
   *
   * @param key The storage key.
   * @returns The record, or `null` when missing, expired or corrupt (reported to `onCorrupt`).
   * @throws {TypeError} When `key` is not a storage key. Driver errors pass through.
   */
  async load(key: string): Promise<StoredSession | null> {
    assertStorageKey(key);
    const [row] = await this.#run(this.#sql.load, [key]);
    if (row === undefined) return null;
    let data = column(row, "data", 0);
    if (typeof data === "string") {
      // A client configured not to parse jsonb.
      try {
        data = JSON.parse(data);
      } catch { /* reported below */ }
    }
    const record = toStoredSession({
      data,
      version: Number(column(row, "version", 1)),
      createdAt: Number(column(row, "created_at", 2)),
      expiresAt: Number(column(row, "expires_at", 3)),
    });
    if (record === null) {
      this.#onCorrupt(key, new TypeError(`Corrupt session row: not a well-formed record for id "${key}"`));
      return null;
    }
    return record.expiresAt <= this.#now() ? null : record;
  }

  /**
   * Compare-and-set in one statement. A record whose `expiresAt` is already past is not written
   * (a live row at the expected version is deleted) and the save counts as done.
   *
   * @param key The storage key.
   * @param record The record to store.
   * @param expectedVersion The stored version to replace, or `null` to create only if absent
   *   (or expired).
   * @returns `false` when the condition failed.
   * @throws {TypeError} When `key` is not a storage key, a time is not finite, or the data holds
   *   U+0000. Driver errors pass through.
   */
  async save(key: string, record: StoredSession, expectedVersion: number | null): Promise<boolean> {
    assertStorageKey(key);
    if (!Number.isFinite(record.createdAt) || !Number.isFinite(record.expiresAt)) {
      throw new TypeError(`Invalid record: createdAt and expiresAt must be finite numbers`);
    }
    let rows: Row[];
    if (record.expiresAt <= this.#now()) {
      rows = expectedVersion === null
        ? await this.#run(this.#sql.createExpired, [key])
        : await this.#run(this.#sql.updateExpired, [key, expectedVersion]);
      return rows.length > 0;
    }
    const json = JSON.stringify(record.data);
    if (NUL.test(json)) {
      throw new TypeError("Invalid session data: PostgreSQL jsonb cannot hold the character U+0000");
    }
    const params = [key, json, record.version, record.createdAt, record.expiresAt];
    rows = expectedVersion === null
      ? await this.#run(this.#sql.create, params)
      : await this.#run(this.#sql.update, [...params, expectedVersion]);
    return rows.length > 0;
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
   * Moves a live record's `expires_at` with one `UPDATE`, without rewriting its data or
   * version; does nothing when it is missing or expired.
   *
   * @param key The storage key.
   * @param expiresAt The new expiry, in milliseconds since the epoch.
   * @throws {TypeError} When `key` is not a storage key or `expiresAt` is not finite.
   */
  async touch(key: string, expiresAt: number): Promise<void> {
    assertStorageKey(key);
    if (!Number.isFinite(expiresAt)) {
      throw new TypeError(`Invalid expiresAt: "${expiresAt}" is not a finite number`);
    }
    await this.#run(this.#sql.touch, [key, expiresAt]);
  }

  /**
   * Deletes every expired row in one statement.
   *
   * @returns How many rows were removed.
   * @throws Driver errors pass through.
   */
  async cleanup(): Promise<number> {
    const [row] = await this.#run(this.#sql.cleanup, []);
    return Number(row === undefined ? 0 : column(row, "removed", 0));
  }

  /**
   * Counts the live rows.
   *
   * @returns How many sessions have not expired.
   * @throws Driver errors pass through.
   */
  async count(): Promise<number> {
    const [row] = await this.#run(this.#sql.count, []);
    return Number(row === undefined ? 0 : column(row, "live", 0));
  }
}
