// Small helpers shared by the conformance suites. Web standards only, so the suites run on
// Node, Deno, Bun and workerd alike.

/** A random, well-formed storage key (43 base64url characters). */
export function randomKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * The tables a `PostgresStore` on `table` creates, quoted for a `DROP TABLE` list: the table and
 * its lock table, `<table>_leases` with the table's name cut to fit PostgreSQL's 63 characters
 * (as src/stores/postgres/statements.ts names it; `"<table>_leases"` misses a long name's).
 */
export function storeTables(table: string): string {
  return `"${table}", "${table.slice(0, 63 - "_leases".length)}_leases"`;
}
