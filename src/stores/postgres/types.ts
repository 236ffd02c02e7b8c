/**
 * The shapes `PostgresStore` takes: its options and the client interfaces it accepts, so that the
 * store never imports a driver. Exported from `websession/postgres`.
 *
 * @module
 */
import type { SessionLogger } from "../../session_options.ts";
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
 * Options of {@linkcode PostgresStore}; docs/stores/postgres.md has the table.
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
 * await store.migrate(); // CREATE TABLE IF NOT EXISTS, its indexes and its lock table
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
   * `<table>_expires_at_idx` and `<table>_user_id_idx`, and the lock table `<table>_leases`
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
  logger?: Pick<SessionLogger, "warn">;
  /**
   * The clock that decides expiry, in milliseconds since the epoch. Every statement that
   * compares `expires_at` (`load`, the liveness check of `save` and `touch`, `cleanup`,
   * `count`, `keysOfUser`), and every lock statement, is handed `now()` as a parameter; the database's own `now()` is never used, so a
   * skew between this machine's clock and the database server's neither ends sessions early
   * nor keeps them late. A record is live while `expiresAt > now()`. Give it the clock that
   * computes `expiresAt` (the one `withSession` uses), and run `cleanup()` where the clock
   * agrees with the application's.
   * @default Date.now
   */
  now?: () => number;
}
