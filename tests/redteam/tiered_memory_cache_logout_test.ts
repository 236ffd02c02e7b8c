// Red team: TieredStore with a per-process MemoryStore cache (the guide offers "a bounded
// MemoryStore" as the cache, and says a cache that can compare-and-set, MemoryStore named, is
// "never stale" and that "the cache never brings a logged-out session back"). With two
// application processes over one durable store, a log out served by process B is not seen by
// process A: A's own cache still holds the live record, so for up to `cacheTtl` (60 s) the old
// cookie still reads as signed in there (a stolen cookie keeps reading the user's data after the
// user logged out). Writes are refused (the durable compare-and-set decides), reads are not.
//
// Cause: src/stores/tiered.ts serves a cache hit without consulting the durable store for
// `cacheTtl`; a process-local cache misses every other process's write, including the tombstone
// (docs/stores/tiered.md "How stale a read can be" only admits this for Workers KV).
// Two processes are modelled as two TieredStore objects, each with its own MemoryStore cache,
// over one PostgreSQL table (as the two servers would have).
import { after, it } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { getSession, MemoryStore, withSession } from "../../mod.ts";
import { PostgresStore } from "../../src/stores/postgres.ts";
import { TieredStore } from "../../src/stores/tiered.ts";

const SECRET = "red team secret of at least thirty-two chars";
const TABLE = `redteam_tier_${crypto.randomUUID().slice(0, 8)}`;
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test" });
after(async () => {
  await pool.query(`DROP TABLE IF EXISTS ${TABLE}, ${TABLE}_leases`);
  await pool.end();
});

async function processWithCache() {
  const durable = new PostgresStore({ client: pool, table: TABLE });
  await durable.migrate();
  const store = new TieredStore({ cache: new MemoryStore(), durable });
  return withSession(async (req: Request) => {
    const session = await getSession<{ user?: string }>(req);
    const path = new URL(req.url).pathname;
    if (path === "/login") {
      session.regenerate();
      session.set("user", "ada");
    }
    if (path === "/logout") session.destroy();
    return new Response(session.get("user") ?? "anonymous");
  }, { store, secrets: [SECRET] });
}

it("a log out on one process is not undone by another process's cache", async () => {
  const a = await processWithCache();
  const b = await processWithCache();
  const login = await a(new Request("https://example.com/login", { method: "POST" }));
  const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
  assert.equal(await (await a(new Request("https://example.com/me", { headers: { cookie } }))).text(), "ada");

  const logout = await b(new Request("https://example.com/logout", { method: "POST", headers: { cookie } }));
  assert.equal(logout.status, 200);
  assert.equal(await (await b(new Request("https://example.com/me", { headers: { cookie } }))).text(), "anonymous");

  const onA = await (await a(new Request("https://example.com/me", { headers: { cookie } }))).text();
  assert.equal(onA, "anonymous", "process A still serves the logged-out session as signed in");
});
