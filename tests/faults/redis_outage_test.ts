// RedisStore when its Redis dies mid-run and comes back: on a throwaway redis-server (never the
// shared one), through ioredis, node-redis and @upstash/redis (via the REST bridge).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Redis as IoRedis } from "ioredis";
import { createClient } from "redis";
import { Redis as UpstashRedis } from "@upstash/redis";
import { RedisStore } from "../../src/stores/redis.ts";
import { startUpstashBridge } from "../bridges/upstash.ts";
import { outageScenario } from "./outage.ts";
import { type Throwaway, throwawayRedis } from "./servers.ts";

describe("RedisStore through a Redis outage", () => {
  let server: Throwaway;
  let url: string;
  before(async () => {
    server = await throwawayRedis();
    url = `redis://127.0.0.1:${server.port}`;
  });
  after(async () => {
    await server?.destroy();
  });

  it("ioredis: 503 and no new ids while down, every session intact after, NOSCRIPT handled", async () => {
    // Fail fast while disconnected instead of queueing, and reconnect quickly.
    const client = new IoRedis(url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => 50,
    });
    client.on("error", () => {});
    await client.connect();
    const sent: string[] = [];
    const counted = new Proxy(client, {
      get(target, property, receiver) {
        if (property !== "call") return Reflect.get(target, property, receiver);
        return (command: string, ...args: (string | number)[]) => {
          sent.push(command);
          return target.call(command, ...args);
        };
      },
    });
    try {
      const store = new RedisStore({ client: counted, prefix: "outage:ioredis:" });
      const { failed } = await outageScenario(store, server);
      assert.ok(failed > 0);
      // A fresh server knows no script: the store fell back to EVAL, then used EVALSHA again.
      const evals = sent.filter((command) => command === "EVAL").length;
      assert.ok(evals >= 2, `EVAL sent ${evals} times; expected once at start and once after the restart`);
      assert.ok(evals <= 4, `EVAL sent ${evals} times: a failure other than NOSCRIPT fell back to EVAL`);
      assert.ok(sent.filter((command) => command === "EVALSHA").length > evals);
    } finally {
      client.disconnect();
    }
  });

  it("node-redis: 503 and no new ids while down, every session intact after", async () => {
    const client = createClient({ url, disableOfflineQueue: true, socket: { reconnectStrategy: () => 50 } });
    client.on("error", () => {});
    await client.connect();
    try {
      await outageScenario(new RedisStore({ client, prefix: "outage:node-redis:" }), server);
    } finally {
      client.destroy();
    }
  });

  it("@upstash/redis over HTTP: 503 and no new ids while down, every session intact after", async () => {
    const bridge = await startUpstashBridge({
      redisUrl: url,
      redisOptions: { enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => 50 },
    });
    try {
      const client = new UpstashRedis({ url: bridge.url, token: bridge.token, enableTelemetry: false });
      await outageScenario(new RedisStore({ client, prefix: "outage:upstash:" }), server);
    } finally {
      await bridge.close();
    }
  });
});
