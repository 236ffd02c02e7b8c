// An ended session is never brought back (README, "Log in and log out that hold"); on Workers KV,
// "`destroy()` (admin use) reads as no session ... `load` then answers `null`, as for a deleted
// record" (docs/stores/cloudflare-kv.md). The store's own limit is KV's propagation delay at
// *other* locations; here the location (and the KV namespace) has the end at once.
//
// Symptom: a session created by this isolate (or process) and then destroyed with
// `store.destroy(key)` (an admin "end this session", a GDPR erasure) is still served, its data
// included, to the old cookie by every later request this isolate handles: `load` answers `null`,
// and the core replaces that with the record it remembers writing. Another isolate correctly
// answers a fresh session. A write there is refused only after ~3 s of retries (409).
//
// Suspected cause: src/turns.ts:216-219 `freshest()` treats a `null` load (destroyed, as for a
// stale "not here yet") as older than the record this process wrote and returns that record;
// called from src/backends/server_open.ts:129 (and src/conflict.ts:339). The memory is kept for up
// to 4096 keys, with no time bound.
import { it } from "node:test";
import assert from "node:assert/strict";
import { getSession, withSession } from "../../mod.ts";
import { CloudflareKvStore, type KvNamespaceLike } from "../../src/stores/cloudflare_kv.ts";

const SECRET = "a secret of at least thirty-two characters";

/** A consistent KV namespace (one location): the end is there at once. */
function namespace(values: Map<string, string>): KvNamespaceLike {
  return {
    get: (key: string) => Promise.resolve(values.get(key) ?? null),
    put: (key: string, value: string) => Promise.resolve(void values.set(key, value)),
    delete: (key: string) => Promise.resolve(void values.delete(key)),
    list: () => Promise.resolve({ keys: [...values.keys()].map((name) => ({ name })), list_complete: true }),
  } as KvNamespaceLike;
}

function app(store: CloudflareKvStore) {
  return withSession(async (req: Request) => {
    const session = await getSession<{ user?: string }>(req);
    if (new URL(req.url).pathname === "/login") {
      session.regenerate();
      session.set("user", "ada");
    }
    return new Response(session.get("user") ?? "anonymous");
  }, { store, secrets: SECRET });
}

it("a session destroyed with store.destroy() reads as no session in the isolate that wrote it", async () => {
  const values = new Map<string, string>();
  const store = new CloudflareKvStore({ namespace: namespace(values) });
  const handler = app(store);
  const login = await handler(new Request("https://example.com/login", { method: "POST" }));
  const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
  const key = [...values.keys()][0]!.slice("websession:".length);

  await store.destroy(key); // admin: end this session
  assert.equal(await store.load(key), null);

  const elsewhere = await app(new CloudflareKvStore({ namespace: namespace(values) }))(
    new Request("https://example.com/", { headers: { cookie } }),
  );
  assert.equal(await elsewhere.text(), "anonymous"); // another isolate: gone

  const here = await handler(new Request("https://example.com/", { headers: { cookie } }));
  assert.equal(await here.text(), "anonymous", "the destroyed session (user ada) is served again here");
});
