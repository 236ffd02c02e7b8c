// One of several processes sharing a store (Redis through ioredis, or PostgreSQL through pg) for
// the multi-process contention rows of bench/contention.ts: on each line
// {"method","cookie","n"} it fires n concurrent requests of websession's README example (GET) or
// get+set (POST) at one session and answers {"samples":[{ms,status}],"runs"}.
import process from "node:process";
import { createInterface } from "node:readline";
import { load } from "./entry.mjs";
import { websessionSubject } from "./contention_rounds.mjs";
import { timed } from "./timed.mjs";

const core = await load("websession");
let store;
let close;
if (process.env.KIND === "redis") {
  const { Redis } = await import("ioredis");
  const { RedisStore } = await load("websession/redis");
  const client = new Redis(process.env.REDIS_URL, { maxRetriesPerRequest: 1 });
  store = new RedisStore({ client, prefix: process.env.PREFIX });
  close = () => client.disconnect();
} else {
  const { default: pg } = await import("pg");
  const { PostgresStore } = await load("websession/postgres");
  const client = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10 });
  store = new PostgresStore({ client, table: process.env.TABLE });
  close = () => client.end();
}
const { get, post, runs } = websessionSubject(core, store);

process.stdout.write(JSON.stringify({ ready: true }) + "\n");
for await (const line of createInterface({ input: process.stdin })) {
  const { method, cookie, n } = JSON.parse(line);
  const before = runs();
  const samples = await Promise.all(
    Array.from({ length: n }, () => timed(method === "GET" ? get : post, method, cookie)),
  );
  process.stdout.write(JSON.stringify({ samples, runs: runs() - before }) + "\n");
}
await close();
process.exit(0);
