// TieredStore with a cache of each process's own (a MemoryStore) over a durable store shared by
// several processes: each process's cache misses the others' writes, the end of a session
// included. What docs/stores/tiered.md promises then: a read-only request on another process
// may see the ended session's old data for at most `cacheTtl`, never a write to it (the durable
// compare-and-set refuses it), and never the session back after `cacheTtl`.
// Two processes are two TieredStore objects, each with its own MemoryStore, over one PostgreSQL
// table (as two servers would have).
import { after, it } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { getSession, MemoryStore, withSession } from "../../mod.ts";
import { PostgresStore } from "../../src/stores/postgres.ts";
import { TieredStore } from "../../src/stores/tiered.ts";

const SECRET = "a secret of at least thirty-two characters";
const TABLE = `races_tier_${crypto.randomUUID().slice(0, 8)}`;
const pool = new pg.Pool({
  connectionString: process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test",
});
after(async () => {
  await pool.query(`DROP TABLE IF EXISTS ${TABLE}, ${TABLE}_leases`);
  await pool.end();
});

async function processWithCache() {
  const durable = new PostgresStore({ client: pool, table: TABLE });
  await durable.migrate();
  const store = new TieredStore({ cache: new MemoryStore(), durable, cacheTtl: 1 });
  return withSession(async (req: Request) => {
    const session = await getSession<{ user?: string; note?: number }>(req);
    const path = new URL(req.url).pathname;
    if (path === "/login") {
      session.regenerate();
      session.set("user", "ada");
    }
    if (path === "/logout") session.destroy();
    if (path === "/note") session.set("note", 1);
    return new Response(session.get("user") ?? "anonymous");
  }, { store, secrets: [SECRET] });
}

it("a log out on one process: another process's own cache serves it for at most cacheTtl, never a write", async () => {
  const a = await processWithCache();
  const b = await processWithCache();
  const login = await a(new Request("https://example.com/login", { method: "POST" }));
  const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
  const me = (app: typeof a, method = "GET") =>
    app(new Request("https://example.com/me", { method, headers: { cookie } }));
  assert.equal(await (await me(a)).text(), "ada");

  const logout = await b(new Request("https://example.com/logout", { method: "POST", headers: { cookie } }));
  assert.equal(logout.status, 200);
  assert.equal(await (await me(b)).text(), "anonymous");

  // A's cache still holds the live record: a read may be served from it, a write never lands.
  const write = await a(new Request("https://example.com/note", { method: "POST", headers: { cookie } }));
  assert.notEqual(write.status, 200, "a write on the ended session through a stale cache is refused");
  await write.body?.cancel();
  await new Promise((resolve) => setTimeout(resolve, 1_100));
  assert.equal(await (await me(a)).text(), "anonymous", "past cacheTtl the ended session is gone everywhere");
  assert.equal(await (await me(b)).text(), "anonymous");
});
