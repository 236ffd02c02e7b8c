// The shared store and session suites against real Workers bindings, running inside workerd
// itself (not bridged from Node): a Workers KV namespace and the session Durable Object.
import { CloudflareKvStore } from "../../src/stores/cloudflare_kv.ts";
import { DurableObjectStore } from "../../src/stores/durable_object.ts";
import { sessionSuite } from "../conformance/session_suite.ts";
import { storeSuite } from "../conformance/store_suite.ts";
import { lockUserCases } from "../conformance/lock_user_cases.ts";
import { storeCases } from "../conformance/store_cases.ts";
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

// The shared store cases on the same bindings: what a Workers KV namespace holds is read from the
// namespace itself; a Durable Object's storage only through its store.
storeCases("CloudflareKvStore (KV binding in workerd)", {
  reportsCurrent: "false",
  tombstoneTouch: "kept",
  open: (ns, options) =>
    new CloudflareKvStore({ namespace: env().SESSIONS_KV, prefix: `${ns}:`, staleReadDelay: 0, ...options }),
  raw: async (ns, key) => {
    const text = await env().SESSIONS_KV.get(`${ns}:${key}`, "text");
    return text === null ? undefined : JSON.parse(text);
  },
});
storeCases("DurableObjectStore (Durable Object binding in workerd)", {
  reportsCurrent: true,
  expiredSave: true,
  tombstoneTouch: true,
  oneNamespace: true,
  // The application's clock an hour ahead of the objects', and 90 s behind (within alarmDelay).
  skews: [3_600_000, -90_000],
  open: (_ns, options) => new DurableObjectStore({ namespace: env().SESSIONS_DO, ...options }),
});
