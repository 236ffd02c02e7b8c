// The shared store and session suites for the two stores a Worker reaches over fetch, running
// inside workerd itself: RedisStore over `@upstash/redis` (its Cloudflare entry, `Redis.fromEnv`)
// and PostgresStore over `neon()` (Neon's HTTP transport). The clients talk to the Upstash and
// Neon bridges that the runner starts in Node on 127.0.0.1 (tests/runtime/workerd_remote_backends.ts),
// which forward every command to the real Redis and PostgreSQL. Both clients bundle without a
// single `node:` import, so this file runs with and without nodejs_compat alike.
import { Redis } from "@upstash/redis/cloudflare";
import { neon, neonConfig } from "@neondatabase/serverless";
import { PostgresStore } from "../../src/stores/postgres.ts";
import { RedisStore } from "../../src/stores/redis.ts";
import { sessionSuite } from "../conformance/session_suite.ts";
import { storeSuite } from "../conformance/store_suite.ts";
import { env } from "./workerd_env.ts";
import type { RemoteBindings } from "./workerd_remote_backends.ts";
import { storeTables } from "../conformance/util.ts";

/** The remote-store bindings, next to the runner's own. */
function remote(): RemoteBindings {
  const bindings = env() as unknown as Partial<RemoteBindings>;
  for (const name of ["UPSTASH_REDIS_REST_URL", "DATABASE_URL", "NEON_FETCH_ENDPOINT"] as const) {
    if (typeof bindings[name] !== "string") throw new Error(`The runner Worker has no ${name} binding`);
  }
  return bindings as RemoteBindings;
}

// --- Upstash Redis ---------------------------------------------------------------------------

type UpstashOptions = { automaticDeserialization: boolean; enableAutoPipelining: boolean };

/** Deletes every key under `prefix` through the Worker's own client (SCAN + DEL). */
async function dropPrefix(client: Redis, prefix: string): Promise<void> {
  const match = prefix.replace(/[*?[\]\\]/g, "\\$&") + "*";
  let cursor: string | number = "0";
  do {
    const [next, keys]: [string | number, string[]] = await client.scan(cursor, { match, count: 1000 });
    if (keys.length > 0) await client.del(...keys);
    cursor = next;
  } while (String(cursor) !== "0");
}

// The client as a Worker builds it by default, and with both of its options turned off.
const upstashVariants: [string, UpstashOptions][] = [
  ["defaults", { automaticDeserialization: true, enableAutoPipelining: true }],
  ["deserialization off, auto-pipelining off", {
    automaticDeserialization: false,
    enableAutoPipelining: false,
  }],
];

for (const [label, options] of upstashVariants) {
  const name = `RedisStore over @upstash/redis in workerd (${label})`;
  const slug = label.replace(/[^a-z]+/g, "-");
  const suite = (part: string) => {
    let client: Redis;
    let prefix: string;
    return {
      open: () => {
        const bindings = remote();
        client = Redis.fromEnv(bindings, options);
        prefix = `${bindings.REDIS_PREFIX}${slug}:${part}:`;
        return new RedisStore({ client, prefix });
      },
      close: () => dropPrefix(client, prefix),
    };
  };
  storeSuite(name, { ...suite("store"), reportsCurrent: true });
  sessionSuite(name, suite("sessions"));
}

// --- Neon Postgres over HTTP -----------------------------------------------------------------

{
  const name = "PostgresStore over neon() (HTTP) in workerd";
  const suite = (part: string) => {
    let sql: ReturnType<typeof neon>;
    let table: string;
    return {
      open: async () => {
        const bindings = remote();
        // Where neon() POSTs its queries: the bridge instead of Neon's own endpoint.
        neonConfig.fetchEndpoint = bindings.NEON_FETCH_ENDPOINT;
        sql = neon(bindings.DATABASE_URL);
        table = `${bindings.POSTGRES_TABLE}_${part}`;
        const store = new PostgresStore({ client: sql, table });
        await store.migrate();
        return store;
      },
      close: async () => {
        await sql.query(`DROP TABLE IF EXISTS ${storeTables(table)}`);
      },
    };
  };
  storeSuite(name, { ...suite("store"), reportsCurrent: true });
  sessionSuite(name, suite("sessions"));
}
