// TieredStore on real pairs, the shared suites: MemoryStore over FileStore, Redis over
// PostgreSQL, Workers KV over a Durable Object (one Miniflare, bindings from Node). The faults a
// cache brings (a flush mid-traffic, a cache outage, a durable outage, a late refill, an ended
// session, a write the cache missed) are in tests/stores/tiered/.
import { MemoryStore } from "../../src/stores/memory.ts";
import { FileStore } from "../../src/stores/file.ts";
import { RedisStore } from "../../src/stores/redis.ts";
import { CloudflareKvStore } from "../../src/stores/cloudflare_kv.ts";
import { DurableObjectStore } from "../../src/stores/durable_object.ts";
import { TieredStore } from "../../src/stores/tiered.ts";
import { storeSuite } from "../conformance/store_suite.ts";
import { sessionSuite } from "../conformance/session_suite.ts";
import { nodeNamespace, startMiniflare } from "../workers/miniflare.ts";
import { quiet, tempDir } from "./composed.ts";
import { redis, RUN, table } from "./tiered/stores.ts";

// The shared suites on each pair.
const memoryOverFile = async () =>
  new TieredStore({
    cache: new MemoryStore(),
    durable: new FileStore({ dir: await tempDir() }),
    logger: quiet,
  });
storeSuite("TieredStore (MemoryStore over FileStore)", { open: memoryOverFile, reportsCurrent: true });
sessionSuite("TieredStore (MemoryStore over FileStore)", { open: memoryOverFile });

let n = 0;
const redisOverPostgres = async () =>
  new TieredStore({
    cache: new RedisStore({ client: redis, prefix: `tiered-test:${RUN}:${++n}:` }),
    durable: await table(`pair${n}`),
    logger: quiet,
  });
storeSuite("TieredStore (Redis over PostgreSQL)", { open: redisOverPostgres, reportsCurrent: true });
sessionSuite("TieredStore (Redis over PostgreSQL)", { open: redisOverPostgres });

// Workers KV (no compare-and-set, stale reads) over a Durable Object, both bindings of one Miniflare.
for (const suite of [storeSuite, sessionSuite]) {
  let mf: Awaited<ReturnType<typeof startMiniflare>> | undefined;
  suite("TieredStore (Workers KV over a Durable Object, Miniflare)", {
    open: async () => {
      mf = await startMiniflare();
      return new TieredStore({
        cache: new CloudflareKvStore({ namespace: await mf.getKVNamespace("SESSIONS_KV") }),
        durable: new DurableObjectStore({ namespace: await nodeNamespace(mf, "SESSIONS_DO") }),
        logger: quiet,
      });
    },
    close: () => mf?.dispose(),
  });
}
