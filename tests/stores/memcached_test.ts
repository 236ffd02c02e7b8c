// MemcachedStore against the real Memcached on loopback (started by .ci/run): the cases are in
// memcached_cases.ts, loaded only when a Memcached answers (or under CI, where a missing one fails).
import { it } from "node:test";
import { skipWithoutMemcached } from "../services.ts";

const skip = await skipWithoutMemcached();
if (skip) it("MemcachedStore against a real Memcached", { skip }, () => {});
else await import("./memcached_cases.ts");
