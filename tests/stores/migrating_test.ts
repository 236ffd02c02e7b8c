// MigratingStore on real pairs: FileStore → Redis and MemoryStore → Redis, the shared suites.
// What a deploy that switches stores must keep (every user signed in, no update lost, ended
// sessions ended, a failed move) is in tests/stores/migrating/.
import { MemoryStore } from "../../src/stores/memory.ts";
import { FileStore } from "../../src/stores/file.ts";
import { RedisStore } from "../../src/stores/redis.ts";
import { MigratingStore } from "../../src/stores/migrating.ts";
import { storeSuite } from "../conformance/store_suite.ts";
import { sessionSuite } from "../conformance/session_suite.ts";
import { tempDir } from "./composed.ts";
import { prefix, redis } from "./migrating/stores.ts";

const fileToRedis = async () =>
  new MigratingStore({
    from: new FileStore({ dir: await tempDir() }),
    to: new RedisStore({ client: redis(), prefix: prefix() }),
  });
const memoryToRedis = () =>
  new MigratingStore({ from: new MemoryStore(), to: new RedisStore({ client: redis(), prefix: prefix() }) });
storeSuite("MigratingStore (FileStore to Redis)", { open: fileToRedis, reportsCurrent: true });
sessionSuite("MigratingStore (FileStore to Redis)", { open: fileToRedis });
storeSuite("MigratingStore (MemoryStore to Redis)", { open: memoryToRedis, reportsCurrent: true });
sessionSuite("MigratingStore (MemoryStore to Redis)", { open: memoryToRedis });
