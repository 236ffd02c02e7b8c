/**
 * The one way `PostgresStore` talks to the user's client, whichever it is: `run(text, params)`
 * resolves to the rows, and `column` reads a column by name or position.
 *
 * @module
 */
import type { PostgresJsLike, QueryLike, SqlLike } from "./types.ts";

/** A row as a client returns it: by column name, or an array (`rowMode: "array"`, `neon()` arrays). */
export type Row = Record<string, unknown> | unknown[];

/** Runs one parameterised statement and resolves to its rows. */
export type Run = (text: string, params: unknown[]) => Promise<Row[]>;

const INVALID_CLIENT = "Invalid PostgreSQL client: expected neon(), a pg or Neon Pool/Client, or postgres.js";

/** The runner over `client`: through `query` when it has one (Neon's `unsafe` runs nothing), else `unsafe`. */
export function runnerOf(client: SqlLike): Run {
  const any = client as unknown as Record<string, unknown> | null;
  if ((typeof client !== "object" && typeof client !== "function") || any === null) {
    throw new TypeError(INVALID_CLIENT);
  }
  let send: (text: string, params: unknown[]) => PromiseLike<unknown>;
  if (typeof any.query === "function") send = (text, params) => (client as QueryLike).query(text, params);
  else if (typeof any.unsafe === "function") {
    send = (text, params) => (client as PostgresJsLike).unsafe(text, params);
  } else throw new TypeError(INVALID_CLIENT);
  return async function run(text, params) {
    const result = await send(text, params);
    // neon() and postgres.js resolve to the rows; pg, Neon Pool/Client and neon() with
    // fullResults resolve to { rows }.
    const rows = Array.isArray(result) ? result : (result as { rows?: unknown } | null)?.rows;
    if (!Array.isArray(rows)) throw new TypeError("Unexpected result from the PostgreSQL client: no rows");
    return rows as Row[];
  };
}

/** Reads a column by name, or by position when the client returns rows as arrays. */
export function column(row: Row, name: string, index: number): unknown {
  return Array.isArray(row) ? row[index] : row[name];
}
