// RedisStore against a real Redis Cluster of 3 masters with a replica each, started on loopback
// for this file (tests/stores/redis/cluster.ts) and stopped at its end, through both cluster
// clients: ioredis `Cluster` and node-redis `createCluster`. The shared suites; what a cluster
// changes (count() over every master, the per-user index in a slot of its own written before the
// record, a manual failover in the middle of traffic) is in tests/stores/redis/.
import { RedisStore } from "../../src/stores/redis.ts";
import { storeSuites } from "../conformance/store_cases.ts";
import { redisHooks } from "./redis_hooks.ts";
import { adminOf, clients, type Connection, dropPrefix, RUN } from "./redis/cluster.ts";

for (const [label, connect] of clients) {
  const prefix = `websession-test:${RUN}:${label.replace(/[^a-z]+/g, "-")}:`;

  let shared: Connection | undefined;
  storeSuites(`RedisStore over ${label}`, {
    ...redisHooks({
      admin: adminOf,
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
}
