// RedisStore against a real Redis Cluster of 3 masters with a replica each, started on loopback
// by this file (tests/cluster/redis_cluster.ts) and stopped at its end, through both cluster
// clients: ioredis `Cluster` and node-redis `createCluster`. The shared suites, then what a
// cluster changes: count() over every master, the per-user index in a slot of its own written
// before the record, and a manual failover in the middle of traffic.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Cluster } from "ioredis";
import { createCluster } from "redis";
import { type RedisLike, RedisStore } from "../../src/stores/redis.ts";
import type { SaveConflict, StoredSession } from "../../src/store.ts";
import { storeSuites } from "../conformance/store_cases.ts";
import { randomKey } from "../conformance/util.ts";
import { type RedisCluster, startRedisCluster } from "../cluster/redis_cluster.ts";
import { redisHooks } from "./redis_hooks.ts";
import { record } from "./remote_cases.ts";

const RUN = crypto.randomUUID().slice(0, 8);

let cluster: RedisCluster | undefined;
let admin: Cluster | undefined;
const starting = (async () => {
  cluster = await startRedisCluster({ masters: 3, replicas: 1 });
  admin = new Cluster(cluster.rootNodes, { redisOptions: { maxRetriesPerRequest: 1 } });
  return cluster;
})();
// Keep an unawaited failure from being reported twice; every `before` and `open` awaits `starting`.
starting.catch(() => {});
after(async () => {
  admin?.disconnect();
  await (cluster ?? await starting.catch(() => undefined))?.stop();
});

interface Connection {
  client: RedisLike;
  close(): void | Promise<void>;
}

const clients: [string, () => Promise<Connection>][] = [
  ["ioredis Cluster", async () => {
    const { rootNodes } = await starting;
    const client = new Cluster(rootNodes, { redisOptions: { maxRetriesPerRequest: 1 } });
    return { client, close: () => client.disconnect() };
  }],
  ["node-redis createCluster", async () => {
    const { rootNodes } = await starting;
    const client = createCluster({
      rootNodes: rootNodes.map(({ host, port }) => ({ url: `redis://${host}:${port}` })),
    });
    client.on("error", () => {}); // reconnections during a failover are reported here
    await client.connect();
    return { client, close: async () => void (await client.close()) };
  }],
];

/** Every key under `prefix`, on every master. */
async function keysUnder(prefix: string): Promise<string[]> {
  const pattern = prefix.replace(/[*?[\]\\]/g, "\\$&") + "*";
  const keys: string[] = [];
  for (const node of admin!.nodes("master")) {
    let cursor = "0";
    do {
      const [next, found] = await node.scan(cursor, "MATCH", pattern, "COUNT", 1000);
      keys.push(...found);
      cursor = next;
    } while (cursor !== "0");
  }
  return keys;
}

async function dropPrefix(prefix: string): Promise<void> {
  for (const key of await keysUnder(prefix)) await admin!.del(key);
}

/** The user indexes under `prefix` that hold an entry for `member`. */
async function indexesHolding(prefix: string, member: string): Promise<string[]> {
  const indexes = await keysUnder(`${prefix}user:`);
  const scores = await Promise.all(indexes.map((key) => admin!.zscore(key, member)));
  return indexes.filter((_, i) => scores[i] !== null);
}

function slotOf(key: string): Promise<number> {
  return admin!.call("CLUSTER", "KEYSLOT", key) as Promise<number>;
}

/** The port of the master that serves `key`'s slot, as the cluster says now. */
async function masterOf(key: string): Promise<number> {
  const slot = await slotOf(key);
  const slots = await admin!.cluster("SLOTS") as unknown as [number, number, [string, number, string]][];
  const range = slots.find(([from, to]) => slot >= from && slot <= to);
  assert.ok(range, `no master serves slot ${slot}`);
  return range[2][1];
}

type ScriptKind = "record" | "user" | "lock";

// Wraps a client so that every script the store runs through it is recorded by its first key's
// kind: "record", "user" (a user's index) or "lock". Only EVALSHA counts: the EVAL that follows
// a NOSCRIPT answer (a node that has not seen the script yet) is a one-time retry. `before` runs
// before each script is sent.
function recordingScripts(
  client: RedisLike,
  prefix: string,
  before: (kind: ScriptKind) => void | Promise<void> = () => {},
): { client: RedisLike; sent: ScriptKind[] } {
  const sent: ScriptKind[] = [];
  const kind = (key: string): ScriptKind =>
    key.startsWith(`${prefix}user:`) ? "user" : key.startsWith(`${prefix}lock:`) ? "lock" : "record";
  const proxy = new Proxy(client as object, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== "function") return value;
      if (property === "call") {
        return async (command: string, ...args: unknown[]) => {
          if (/^EVALSHA$/i.test(command)) {
            sent.push(kind(String(args[2])));
            await before(kind(String(args[2])));
          }
          return await Reflect.apply(value, target, [command, ...args]);
        };
      }
      if (property === "evalSha") {
        return async (script: string, options: { keys: string[] }) => {
          sent.push(kind(options.keys[0]!));
          await before(kind(options.keys[0]!));
          return await Reflect.apply(value, target, [script, options]);
        };
      }
      return value.bind(target);
    },
  });
  return { client: proxy as RedisLike, sent };
}

for (const [label, connect] of clients) {
  const prefix = `websession-test:${RUN}:${label.replace(/[^a-z]+/g, "-")}:`;

  let shared: Connection | undefined;
  storeSuites(`RedisStore over ${label}`, {
    ...redisHooks({
      admin: () => admin!,
      prefix,
      client: async () => (shared ??= await connect()).client,
      retriesScripts: true,
    }),
    close: async () => {
      await dropPrefix(prefix);
      await shared?.close();
    },
    // It knows it talks to a cluster: a single-node script over a record and a user's index
    // would fail with CROSSSLOT here, and the suites above run without one.
    badOptions: [
      [
        "a cluster option that is no boolean",
        () => new RedisStore({ client: shared!.client, cluster: "yes" as never }),
      ],
    ],
  });

  describe(`RedisStore over ${label}: Redis Cluster specifics`, () => {
    const own = `${prefix}own:`;
    let connection: Connection;
    let store: RedisStore;
    before(async () => {
      connection = await connect();
      store = new RedisStore({ client: connection.client, prefix: own });
    });
    after(async () => {
      await dropPrefix(own);
      await connection.close();
    });

    it("counts the sessions on every master, and nothing but sessions", async () => {
      const counting = new RedisStore({ client: connection.client, prefix: `${own}count:` });
      const keys = Array.from({ length: 30 }, () => randomKey());
      for (const key of keys) assert.equal(await counting.save(key, record({}), null), true);
      const masters = new Set(await Promise.all(keys.map((key) => masterOf(`${own}count:${key}`))));
      assert.equal(masters.size, 3, "the 30 sessions are spread over the 3 masters");
      // A lock and a user's index under the same prefix are not sessions.
      assert.equal(await counting.lock(keys[0]!, "owner", 60_000), true);
      assert.equal(await counting.save(keys[1]!, record({ u: 1 }, 2), 1, { user: "ada" }), true);
      assert.equal(await counting.count(), 30);
      await counting.destroy(keys[2]!);
      assert.equal(await counting.count(), 29);
    });

    it("writes a user's index in a slot of its own before the record, one script per key", async () => {
      const { client, sent } = recordingScripts(connection.client, own);
      const indexing = new RedisStore({ client, prefix: own });
      const user = `user-${randomKey().slice(0, 12)}`;
      const keys = [randomKey(), randomKey(), randomKey()];
      // A new session: the record's script asks for the index entry (writing nothing), the
      // entry is written, then the record.
      assert.equal(await indexing.save(keys[0]!, record({ user }), null, { user }), true);
      assert.deepEqual(sent.splice(0), ["record", "user", "record"]);
      // Later saves of the same user's session, within what the entry is sure to last: one script.
      assert.equal(await indexing.save(keys[0]!, record({ user, n: 1 }, 2), 1, { user }), true);
      assert.deepEqual(sent.splice(0), ["record"]);
      for (const key of keys.slice(1)) await indexing.save(key, record({ user }), null, { user });
      sent.length = 0;
      assert.deepEqual([...await indexing.keysOfUser(user)].sort(), [...keys].sort());
      assert.deepEqual(sent.splice(0), ["user"]);
      // The index is one sorted set under a hash tag of the user, in a slot apart from the records.
      const [indexKey, ...others] = await indexesHolding(own, keys[0]!);
      assert.deepEqual(others, []);
      assert.ok(
        indexKey!.startsWith(`${own}user:{`) && /\{[A-Za-z0-9_-]{43}\}$/.test(indexKey!),
        String(indexKey),
      );
      const slots = new Set(
        await Promise.all([indexKey!, ...keys.map((key) => own + key)].map(slotOf)),
      );
      assert.ok(slots.size > 1, "the records and the index share no slot");
    });

    it("lists no key whose save was refused after its index entry was written", async () => {
      const user = `user-${randomKey().slice(0, 12)}`;
      const key = randomKey();
      await store.save(key, record({}), null);
      // Another writer lands between the index entry and the record's script: the save is
      // refused at the record, and the entry it wrote stays, unlisted.
      const rival = record({ rival: true }, 2);
      const { client } = recordingScripts(connection.client, own, async (kind) => {
        if (kind === "user") assert.equal(await store.save(key, rival, 1), true);
      });
      const racing = new RedisStore({ client, prefix: own });
      const refused = await racing.save(key, record({ user }, 2), 1, { user }) as SaveConflict;
      assert.deepEqual(refused.current, rival);
      assert.equal((await indexesHolding(own, key)).length, 1, "the entry was written before the record");
      assert.deepEqual(await store.keysOfUser(user), []);
      // The save that lands is listed.
      assert.equal(await store.save(key, record({ user }, 3), 2, { user }), true);
      assert.deepEqual(await store.keysOfUser(user), [key]);
      // A later save for another user moves the record: the first user's list drops it.
      assert.equal(await store.save(key, record({ user: "grace" }, 4), 3, { user: "grace" }), true);
      assert.deepEqual(await store.keysOfUser(user), []);
      assert.deepEqual(await store.keysOfUser("grace"), [key]);
    });

    it("extends a user's index entry before a touch moves the record's expiry past it", async () => {
      let now = Date.now();
      const clocked = new RedisStore({ client: connection.client, prefix: own, now: () => now });
      const user = `user-${randomKey().slice(0, 12)}`;
      const key = randomKey();
      const saved = record({ user }, 1, 60_000, now);
      assert.equal(await clocked.save(key, saved, null, { user }), true);
      // The entry lasts as long again as the record has left: 120 s from now. Slide the record's
      // expiry by touches, 50 s at a time, to 10 minutes past the save.
      for (let step = 1; step <= 10; step++) {
        now = saved.createdAt + step * 50_000;
        assert.equal(await clocked.touch(key, now + 60_000, 1), true);
        assert.deepEqual(await clocked.keysOfUser(user), [key], `after touch ${step}`);
      }
      const stored = await admin!.get(own + key);
      const until = Number(/"userUntil":(\d+)\}$/.exec(stored!)![1]);
      assert.ok(until >= now + 60_000, "the record notes an entry that outlasts it");
      const [indexKey] = await indexesHolding(own, key);
      assert.ok(Number(await admin!.zscore(indexKey!, key)) >= until, "the entry lasts as long as noted");
      assert.deepEqual(await clocked.load(key), { ...saved, expiresAt: now + 60_000 });
    });

    it("keeps every acknowledged save through a manual failover in the middle of traffic", async (t) => {
      const traffic = new RedisStore({ client: connection.client, prefix: `${own}failover:` });
      const keys = Array.from({ length: 24 }, () => randomKey());
      // The master that serves most of the keys fails over.
      const owners = await Promise.all(keys.map((key) => masterOf(`${own}failover:${key}`)));
      const counts = new Map<number, number>();
      for (const port of owners) counts.set(port, (counts.get(port) ?? 0) + 1);
      const victim = [...counts].sort((a, b) => b[1] - a[1])[0]![0];
      const acknowledged = new Map<string, StoredSession>();
      let errors = 0;
      let acks = 0;
      let stop = false;
      const writer = async (key: string) => {
        let current: StoredSession | null = null;
        while (!stop) {
          const next: StoredSession = current === null
            ? record({ n: 1 }, 1)
            : { ...current, data: { n: current.version + 1 }, version: current.version + 1 };
          try {
            const result = await traffic.save(key, next, current?.version ?? null);
            if (result === true) {
              acknowledged.set(key, next);
              acks++;
              current = next;
            } else if (result !== false) {
              current = result.current; // a save that failed with an error landed after all
            } else {
              current = await traffic.load(key);
            }
          } catch {
            errors++;
            await new Promise((resolve) => setTimeout(resolve, 20));
            try {
              current = await traffic.load(key);
            } catch {
              // still failing over; try again
            }
          }
        }
      };
      const writers = keys.map(writer);
      const waitForAcks = async (count: number) => {
        const target = acks + count;
        for (let i = 0; i < 3_000 && acks < target; i++) await new Promise((r) => setTimeout(r, 10));
        assert.ok(acks >= target, `only ${acks} saves acknowledged`);
      };
      try {
        await waitForAcks(200);
        const before = acks;
        const promoted = await cluster!.failover(victim);
        assert.ok(acks > before, "saves were acknowledged while the cluster failed over");
        await waitForAcks(200);
        stop = true;
        await Promise.all(writers);
        const after = await Promise.all(keys.map((key) => masterOf(`${own}failover:${key}`)));
        assert.ok(after.includes(promoted), "keys are served by the promoted replica");
        assert.ok(!after.includes(victim), "the old master serves nothing");
      } finally {
        stop = true;
        await Promise.all(writers);
      }
      for (const key of keys) {
        const saved = acknowledged.get(key);
        assert.ok(saved, `no save of ${key} was acknowledged`);
        const loaded = await traffic.load(key);
        assert.ok(loaded, `${key} is gone`);
        assert.ok(
          loaded.version >= saved.version,
          `${key}: acknowledged v${saved.version}, found v${loaded.version}`,
        );
        assert.deepEqual(loaded.data, { n: loaded.version });
      }
      t.diagnostic?.(`failover of ${victim}: ${acks} saves acknowledged, ${errors} failed and retried`);
    });
  });
}
