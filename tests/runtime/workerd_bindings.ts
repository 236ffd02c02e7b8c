// The shared store and session suites against real Workers bindings, running inside workerd
// itself (not bridged from Node): a Workers KV namespace and the session Durable Object.
import { CloudflareKvStore } from "../../src/stores/cloudflare_kv.ts";
import { DurableObjectStore } from "../../src/stores/durable_object.ts";
import { sessionSuite } from "../conformance/session_suite.ts";
import { storeSuite } from "../conformance/store_suite.ts";
import { lockUserCases } from "../conformance/lock_user_cases.ts";
import { env } from "./workerd_env.ts";

const kv = () => new CloudflareKvStore({ namespace: env().SESSIONS_KV, staleReadDelay: 0 });
storeSuite("CloudflareKvStore (KV binding in workerd)", { open: kv });
sessionSuite("CloudflareKvStore (KV binding in workerd)", { open: kv });

const durable = () => new DurableObjectStore({ namespace: env().SESSIONS_DO });
storeSuite("DurableObjectStore (Durable Object binding in workerd)", { open: durable, reportsCurrent: true });
sessionSuite("DurableObjectStore (Durable Object binding in workerd)", { open: durable });

// Locks and sessions per user on the same bindings, each namespace a prefix of its own (Durable
// Objects are named by storage key, which every case draws at random).
lockUserCases("CloudflareKvStore (KV binding in workerd)", {
  reportsCurrent: "false",
  open: (ns, now) =>
    new CloudflareKvStore({ namespace: env().SESSIONS_KV, prefix: `${ns}:`, staleReadDelay: 0, now }),
  users: {},
});
lockUserCases("DurableObjectStore (Durable Object binding in workerd)", {
  reportsCurrent: true,
  open: (_ns, now) => new DurableObjectStore({ namespace: env().SESSIONS_DO, now }),
  locks: { byClock: true },
  users: { liveOnly: true, current: true, byClock: true, entryFirst: true },
});
