// RedisStore's clients (src/stores/redis/clients.ts) over a real Redis Cluster: count() scans every
// master, and saves go on through a manual failover.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { RedisStore } from "../../../src/stores/redis.ts";
import type { StoredSession } from "../../../src/store.ts";
import { randomKey } from "../../conformance/util.ts";
import { record } from "../remote_cases.ts";
import { clients, clusterOf, type Connection, dropPrefix, masterOf, RUN } from "./cluster.ts";

for (const [label, connect] of clients) {
  const prefix = `websession-test:${RUN}:${label.replace(/[^a-z]+/g, "-")}:`;

  describe(`RedisStore over ${label}: Redis Cluster specifics, clients`, () => {
    const own = `${prefix}own:`;
    let connection: Connection;
    before(async () => {
      connection = await connect();
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
        const promoted = await clusterOf().failover(victim);
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
