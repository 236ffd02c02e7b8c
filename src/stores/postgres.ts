/**
 * `PostgresStore`: sessions in a PostgreSQL table, with compare-and-set in one statement. Takes
 * the user's own client (`neon(url)`, a Neon or `pg` `Pool`/`Client`, postgres.js) and imports
 * none of them. See docs/stores/postgres.md.
 *
 * @module
 */
import { SessionDataError } from "../errors.ts";
import {
  assertLockArguments,
  assertStorageKey,
  assertTouchArguments,
  ENDED_KEY,
  type SaveIndex,
  type SaveResult,
  type SessionStore,
  type StoreCapabilities,
  type StoredSession,
  storeHooks,
  toStoredSession,
} from "../store.ts";
import { column, type Row, type Run, runnerOf } from "./postgres/client.ts";
import { isDataError, storableJson, userOf } from "./postgres/data.ts";
import { quoteTable, type Statements, statements } from "./postgres/statements.ts";
import type { PostgresStoreOptions } from "./postgres/types.ts";

export type { PostgresJsLike, PostgresStoreOptions, QueryLike, SqlLike } from "./postgres/types.ts";

/**
 * Keeps sessions in one PostgreSQL table (`id text primary key, data jsonb, version integer,
 * created_at, expires_at timestamptz, user_id text`) and locks in `<table>_leases`; `migrate()`
 * creates both (the statements of `postgres.sql`). Every operation is one parameterised
 * statement: no transaction, so it works over Neon's HTTP API. A save is the compare-and-set and,
 * when refused, the read of the row it lost to ({@linkcode SaveConflict}). One clock decides
 * expiry, the `now` option's, passed to every statement; expired rows stay until `cleanup()`.
 * What `jsonb` cannot hold is refused with `SessionDataError`. The details, and what the store
 * cannot do, are on docs/stores/postgres.md.
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
 * // A lock: one owner at a time.
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
   * Locks: yes. An index of each user's sessions: yes (`user_id`).
   */
  readonly capabilities: StoreCapabilities = { compareAndSet: true, ttl: false, locks: true, users: true };
  #run: Run;
  #table: string;
  #onCorrupt: (key: string, error: Error) => void;
  #now: () => number;
  #sql: Statements;

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
    const names = quoteTable(options.table ?? "websession_sessions");
    this.#table = names.t;
    const { now, onCorrupt } = storeHooks(options, "session row");
    this.#onCorrupt = onCorrupt;
    this.#now = now;
    this.#sql = statements(names);
  }

  /**
   * Creates what the store needs if it is missing (the statements of `postgres.sql`), and adds
   * `user_id` to a table made by an earlier version (only when missing: a table that has it is
   * never locked). Safe on every start; run it after upgrading. No transaction.
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
    await this.#run(this.#sql.locksTable, []);
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
   * Compare-and-set in one statement, which also reads the row it lost to when refused. A row
   * expired by `now()` counts as absent; a record already expired is not written (a live row at
   * the expected version is deleted instead) and the save counts as done.
   *
   * @param key The storage key.
   * @param record The record to store.
   * @param expectedVersion The stored version to replace, or `null` to create only if absent
   *   (or expired).
   * @param index The user to index the key under (`keysOfUser`), set in the same statement;
   *   without it, `user_id` is cleared.
   * @returns `true` when written. When refused, a {@linkcode SaveConflict} with the live row as
   *   it stands (`null` when none is), or plain `false` when that row could not be read in the
   *   same statement (a create racing another create) or is corrupt.
   * @throws {SessionDataError} Before sending anything, when the data is not a JSON object
   *   `JSON.stringify` can write or holds U+0000 or a lone surrogate; and when PostgreSQL refuses
   *   the values (SQLSTATE class 22 or 54), in which case nothing was written.
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
    const [row] = await this.#write(key, record, json, expectedVersion, user);
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
   * Extends a live record's `expires_at` with one `UPDATE`, keeping data and version, only when
   * the row is live by the `now` clock, at `version`, not a tombstone and expiring before
   * `expiresAt`; the statement decides and writes atomically.
   *
   * @param key The storage key.
   * @param expiresAt The new expiry, in milliseconds since the epoch.
   * @param version The version the caller read.
   * @returns `true` when extended; `false` when nothing was written.
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
   * Locks `key` for `owner` with one `INSERT … ON CONFLICT DO UPDATE … WHERE`:
   * written when none is held, the held one has lapsed by the `now` clock, or it is the same
   * owner's (which extends it). Of concurrent takers exactly one wins.
   *
   * @param key The storage key the lock is named after.
   * @param owner Who takes it: a unique, non-empty string.
   * @param ttlMs Milliseconds after which it expires, by the `now` clock, unless released
   *   (rounded up).
   * @returns `true` when taken, `false` while another owner holds a live one.
   * @throws {TypeError} When `key` is not a storage key or `owner` is not a non-empty string.
   * @throws {RangeError} When `ttlMs` is not a positive finite number. Driver errors pass
   *   through.
   */
  async lock(key: string, owner: string, ttlMs: number): Promise<boolean> {
    assertStorageKey(key);
    assertLockArguments(owner, ttlMs);
    const rows = await this.#run(this.#sql.lock, [key, owner, Math.floor(this.#now()), Math.ceil(ttlMs)]);
    return rows.length > 0;
  }

  /**
   * Releases the lock named `key` if, and only if, `owner` holds it (one `DELETE`).
   *
   * @param key The storage key the lock is named after.
   * @param owner Who took it.
   * @throws {TypeError} When `key` is not a storage key or `owner` is not a non-empty string. Driver
   *   errors pass through.
   */
  async unlock(key: string, owner: string): Promise<void> {
    assertStorageKey(key);
    assertLockArguments(owner);
    await this.#run(this.#sql.unlock, [key, owner]);
  }

  /**
   * The storage keys of the live rows whose `user_id` is `user` (what their last save was given):
   * one `SELECT`.
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
   * Deletes, in one statement, every row expired by the `now` clock and every lapsed lock.
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
   * The database server's clock (`clock_timestamp()`), asked only to stamp and judge the grace of
   * a session ended by a request (see `SessionStore.time`); expiry stays with the `now` clock.
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
   * Counts the rows live by the `now` clock, the same rule `load` uses.
   *
   * @returns How many sessions have not expired.
   * @throws Driver errors pass through.
   */
  async count(): Promise<number> {
    const [row] = await this.#run(this.#sql.count, [this.#now()]);
    return Number(row === undefined ? 0 : column(row, "live", 0));
  }

  /** Runs the save's statement; PostgreSQL's refusal of the values is `SessionDataError`. */
  async #write(
    key: string,
    record: StoredSession,
    json: string,
    expectedVersion: number | null,
    user: string | null,
  ): Promise<Row[]> {
    const now = this.#now();
    try {
      if (record.expiresAt <= now) {
        return expectedVersion === null
          ? await this.#run(this.#sql.createExpired, [key, now])
          : await this.#run(this.#sql.updateExpired, [key, now, expectedVersion]);
      }
      const params = [key, json, record.version, record.createdAt, record.expiresAt, now, user];
      return expectedVersion === null
        ? await this.#run(this.#sql.create, params)
        : await this.#run(this.#sql.update, [...params, expectedVersion]);
    } catch (error) {
      if (!isDataError(error)) throw error;
      throw new SessionDataError(
        `Session data cannot be stored in PostgreSQL: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }

  /** A record from the columns data, version, created_at, expires_at from `first` on (array rows). */
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
