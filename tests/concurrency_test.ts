// Concurrency at scale, through withSession with plain Requests, on every compare-and-set store
// against its real backend (MemoryStore, FileStore on disk, RedisStore over ioredis,
// PostgresStore over pg):
// - 1,000 trials of a logout racing in-flight writes (spread over the stores): 0 resurrections;
// - 5 clients x 30 increments and 50-way bursts on one session: 0 lost updates.
// Each figure is reported as a test diagnostic (the benchmark copies them into RESULTS.md).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import pg from "pg";
import { getSession, withSession } from "../src/with_session.ts";
import type { ConflictPolicy } from "../src/options.ts";
import { isEnded, type SessionStore } from "../src/store.ts";
import { storageKeyOf } from "../src/id.ts";
import { MemoryStore } from "../src/stores/memory.ts";
import { FileStore } from "../src/stores/file.ts";
import { RedisStore } from "../src/stores/redis.ts";
import { PostgresStore } from "../src/stores/postgres.ts";
import { Client } from "./conformance/client.ts";
import { sleep, storeTables } from "./conformance/util.ts";

const SECRET = "concurrency suite secret, thirty-two characters+";
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const RUN = crypto.randomUUID().slice(0, 8);
const POLICIES: ConflictPolicy[] = ["merge", "retry", "reject", "overwrite"];

type Data = { user?: string; hits?: number; late?: boolean };

interface Backend {
  name: string;
  /** Logout-race trials on this store; together 1,000. */
  trials: number;
  open(): SessionStore | Promise<SessionStore>;
  close(): Promise<void>;
}

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
});

const backends: Backend[] = [
  {
    name: "MemoryStore",
    trials: 400,
    open: () => new MemoryStore(),
    close: async () => {},
  },
  (() => {
    let dir = "";
    return {
      name: "FileStore",
      trials: 200,
      open: async () => {
        dir = await mkdtemp(join(tmpdir(), "websession-concurrency-"));
        cleanups.push(() => rm(dir, { recursive: true, force: true }));
        return new FileStore({ dir });
      },
      close: async () => {},
    };
  })(),
  (() => {
    let client: Redis | undefined;
    const prefix = `websession-concurrency:${RUN}:`;
    return {
      name: "RedisStore (ioredis)",
      trials: 200,
      open: () => {
        client = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
        return new RedisStore({ client, prefix });
      },
      close: async () => {
        let cursor = "0";
        do {
          const [next, keys] = await client!.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
          if (keys.length > 0) await client!.del(...keys);
          cursor = next;
        } while (cursor !== "0");
        client!.disconnect();
      },
    };
  })(),
  (() => {
    let pool: pg.Pool | undefined;
    const table = `websession_concurrency_${RUN}`;
    return {
      name: "PostgresStore (pg)",
      trials: 200,
      open: async () => {
        pool = new pg.Pool({ connectionString: DATABASE_URL, max: 10 });
        const store = new PostgresStore({ client: pool, table });
        await store.migrate();
        return store;
      },
      close: async () => {
        await pool!.query(`DROP TABLE IF EXISTS ${storeTables(table)}`);
        await pool!.end();
      },
    };
  })(),
];

/** The app: `/login` stamps the user, `/hit` is a slow-ish write, `/logout` destroys. */
function app(store: SessionStore, conflict: ConflictPolicy = "merge") {
  const errors: unknown[] = [];
  const handler = withSession(async (req: Request) => {
    const url = new URL(req.url);
    const session = await getSession<Data>(req);
    switch (url.pathname) {
      case "/login":
        session.regenerate();
        session.set("user", url.searchParams.get("user")!);
        return new Response("in");
      case "/hit": {
        const pause = Number(url.searchParams.get("pause") ?? 0);
        if (pause > 0) await sleep(pause);
        return new Response(String(session.update("hits", (n = 0) => n + 1)));
      }
      case "/late": {
        await sleep(Number(url.searchParams.get("pause") ?? 0));
        session.set("late", true);
        return new Response("late");
      }
      case "/logout":
        session.destroy();
        return new Response("out");
      case "/read":
        return new Response(String(session.get("hits") ?? 0));
      default:
        return new Response("?", { status: 404 });
    }
  }, {
    store,
    secrets: SECRET,
    conflict,
    onError: (error) => {
      errors.push(error);
    },
  });
  return { handler, errors };
}

function issuedId(response: Response): string | undefined {
  for (const header of response.headers.getSetCookie()) {
    const value = /^session=([^;]+)/.exec(header)?.[1];
    if (value) return value.split(".")[0];
  }
  return undefined;
}

/** A tiny seeded generator, so a failing trial can be replayed. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

for (const backend of backends) {
  describe(`concurrency at scale: ${backend.name}`, () => {
    let store: SessionStore;
    before(async () => {
      store = await backend.open();
    });
    after(() => backend.close());

    it(`${backend.trials} trials of logout racing in-flight writes: 0 resurrections`, async (t) => {
      const apps = new Map(POLICIES.map((policy) => [policy, app(store, policy)]));
      let resurrections = 0;
      let lateWritesDropped = 0;
      const rnd = random(0x5eed + backend.trials);
      for (let trial = 0; trial < backend.trials; trial++) {
        const policy = POLICIES[trial % POLICIES.length]!;
        const { handler, errors } = apps.get(policy)!;
        const user = `user-${trial}`;
        const client = new Client(handler);
        await client.text(`/login?user=${user}`);
        const key = await storageKeyOf(client.jar.get("session")!.split(".")[0]!);
        // Writers that loaded the session before the logout and save after it, and writers
        // that arrive around it; the logout lands somewhere in between.
        const writers = Array.from({ length: 1 + Math.floor(rnd() * 4) }, () => {
          const path = rnd() < 0.5 ? "/hit" : "/late";
          const pause = Math.floor(rnd() * 4);
          const start = Math.floor(rnd() * 3);
          return sleep(start).then(() => client.clone().fetch(`${path}?pause=${pause}`));
        });
        const logout = sleep(Math.floor(rnd() * 3)).then(() => client.fetch("/logout"));
        const responses = await Promise.all([...writers, logout]);
        assert.equal((await logout).status, 200);
        const left = await store.load(key);
        let resurrected = left !== null && !isEnded(left);
        for (const response of responses) {
          assert.ok(
            response.status === 200 || response.status === 409,
            `${policy}: status ${response.status}`,
          );
          const id = issuedId(response);
          if (id === undefined) continue;
          // A writer whose retry ran after the logout may start a new anonymous session; it must
          // never carry the logged-out user.
          const record = await store.load(await storageKeyOf(id));
          if (record?.data.user === user) resurrected = true;
        }
        if (resurrected) resurrections++;
        if (responses.some((r) => r.status === 409)) lateWritesDropped++;
        assert.ok(errors.every((e) => (e as Error).name === "SessionConflictError"), String(errors[0]));
        errors.length = 0;
      }
      t.diagnostic(
        `${backend.name}: logout racing writes: ${resurrections} resurrections in ${backend.trials} trials`,
      );
      assert.equal(resurrections, 0);
    });

    it("5 clients x 30 increments on one session: 0 lost updates", async (t) => {
      const { handler, errors } = app(store);
      const first = new Client(handler);
      assert.equal(await first.text("/hit"), "1");
      await Promise.all(Array.from({ length: 5 }, async () => {
        const client = first.clone();
        for (let i = 0; i < 30; i++) assert.equal((await client.fetch("/hit")).status, 200);
      }));
      const total = Number(await first.text("/read"));
      t.diagnostic(`${backend.name}: 5x30 increments: ${151 - total} lost of 150 (total ${total})`);
      assert.deepEqual(errors, []);
      assert.equal(total, 151);
    });

    it("50-way bursts on one session: 0 lost updates", async (t) => {
      const { handler, errors } = app(store);
      const client = new Client(handler);
      assert.equal(await client.text("/hit"), "1");
      const bursts = 3;
      for (let burst = 0; burst < bursts; burst++) {
        const responses = await Promise.all(Array.from({ length: 50 }, () => client.clone().fetch("/hit")));
        assert.deepEqual(responses.map((r) => r.status), Array(50).fill(200));
        assert.equal(Number(await client.text("/read")), 1 + (burst + 1) * 50, `after burst ${burst + 1}`);
      }
      const total = Number(await client.text("/read"));
      t.diagnostic(
        `${backend.name}: ${bursts} bursts of 50: ${1 + bursts * 50 - total} lost of ${
          bursts * 50
        } (total ${total})`,
      );
      assert.deepEqual(errors, []);
      assert.equal(total, 1 + bursts * 50);
    });
  });
}
