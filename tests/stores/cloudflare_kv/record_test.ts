// What CloudflareKvStore writes into a KV value and how it reads one back
// (src/stores/cloudflare_kv/record.ts): the JSON text, the metadata a listing shows, KV's 60 s
// minimum time to live and the retention past expiresAt, and the version the client has seen
// (`minVersion`), which tells a stale read from a missing record. Miniflare's KV is one location:
// a location that has not seen a write yet is shown by writing or removing the key behind the
// store's back.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { getSession, withSession } from "../../../mod.ts";
import { StoreUnavailableError } from "../../../src/errors.ts";
import { isEnded } from "../../../src/store.ts";
import { CloudflareKvStore, type KvNamespaceLike } from "../../../src/stores/cloudflare_kv.ts";
import { randomKey } from "../../conformance/util.ts";
import { record } from "../remote_cases.ts";
import * as kv from "./namespace.ts";
import { tombstone } from "./namespace.ts";

describe("CloudflareKvStore: the record in a KV value", () => {
  let namespace: KvNamespaceLike;
  before(async () => {
    namespace = await kv.namespace();
  });
  after(kv.dispose);

  it("writes JSON under the prefix with the version in metadata and KV's 60 s minimum TTL", async () => {
    const store = new CloudflareKvStore({ namespace, prefix: "app/", expiredRetention: 0 });
    const key = randomKey();
    const saved = record({ user: "ada" }, 1, 2_000);
    await store.save(key, saved, null);
    assert.deepEqual(JSON.parse((await namespace.get(`app/${key}`, "text"))!), saved);
    const { keys } = await namespace.list({ prefix: `app/${key}` });
    assert.equal(keys.length, 1);
    assert.deepEqual(keys[0]!.metadata, { version: 1, expiresAt: saved.expiresAt });
    const expiration = keys[0]!.expiration!;
    assert.ok(
      expiration * 1000 >= Date.now() + 58_000,
      `expiration ${expiration} is under KV's 60 s minimum`,
    );
    assert.ok(expiration * 1000 <= Date.now() + 62_000, `expiration ${expiration} is later than needed`);

    const long = randomKey();
    const lasting = record({}, 1, 3_600_000);
    await store.save(long, lasting, null);
    const [entry] = (await namespace.list({ prefix: `app/${long}` })).keys;
    assert.ok(Math.abs(entry!.expiration! * 1000 - lasting.expiresAt) <= 2_000);
  });

  it("keeps a record expiredRetention past expiresAt, where it reads as expired, never as stale", async () => {
    let now = Date.now();
    const store = new CloudflareKvStore({ namespace, prefix: "kept:", now: () => now, staleReadDelay: 0 });
    const key = randomKey();
    const saved = record({ a: 1 }, 3, 120_000, now);
    await store.save(key, saved, null);
    const [entry] = (await namespace.list({ prefix: `kept:${key}` })).keys;
    const kept = entry!.expiration! * 1000 - saved.expiresAt;
    assert.ok(Math.abs(kept - 86_400_000) <= 2_000, `kept ${kept} ms past expiresAt`);
    now = saved.expiresAt;
    // The client has seen version 3; the record is there, expired: a fresh session, not a 503.
    assert.equal(await store.load(key, 3), null);
    // An older version is stale even when expired here: the version the client saw may have
    // been written, with a later expiresAt, at another location.
    await assert.rejects(store.load(key, 4), StoreUnavailableError);
  });

  it("touch rewrites the record and its metadata with the new expiry and the same version", async () => {
    const store = new CloudflareKvStore({ namespace, prefix: "touch:" });
    const key = randomKey();
    const saved = record({ a: 1 }, 4);
    await namespace.put(`touch:${key}`, JSON.stringify(saved));
    assert.equal(await store.touch(key, saved.expiresAt + 600_000, 4), true);
    const { keys } = await namespace.list({ prefix: `touch:${key}` });
    assert.deepEqual(keys[0]!.metadata, { version: 4, expiresAt: saved.expiresAt + 600_000 });
    assert.equal((await store.load(key))?.version, 4);
  });

  describe("minVersion: the version the client has seen", () => {
    it("reports no record at all as a stale read when the client has seen the session", async () => {
      const store = new CloudflareKvStore({ namespace, staleReadRetries: 2, staleReadDelay: 0 });
      const key = randomKey();
      assert.equal(await store.load(key), null);
      const error = await store.load(key, 1).then(() => null, (e: unknown) => e);
      assert.ok(error instanceof StoreUnavailableError, `expected StoreUnavailableError, got ${error}`);
      assert.match(error.message, /Stale read from Workers KV: no record of a session the client has seen/);
    });

    it("serves a record this location had not seen once it arrives", async () => {
      const store = new CloudflareKvStore({ namespace, staleReadRetries: 20, staleReadDelay: 50 });
      const key = randomKey();
      const arriving = new Promise((resolve) => setTimeout(resolve, 120)).then(() =>
        namespace.put(`websession:${key}`, JSON.stringify(record({ n: 1 })))
      );
      const loaded = await store.load(key, 1);
      await arriving;
      assert.deepEqual(loaded?.data, { n: 1 });
    });

    it("serves a tombstone whatever its version: an ended session stays ended", async () => {
      const store = new CloudflareKvStore({ namespace, staleReadRetries: 0 });
      const key = randomKey();
      await namespace.put(`websession:${key}`, JSON.stringify(tombstone(2)));
      assert.ok(isEnded(await store.load(key, 7)));
    });

    it("serves a record at or above it", async () => {
      const store = new CloudflareKvStore({ namespace, staleReadDelay: 0 });
      const key = randomKey();
      await store.save(key, record({ n: 1 }), null);
      await store.save(key, record({ n: 2 }, 2), 1);
      assert.equal((await store.load(key, 2))?.version, 2);
      assert.equal((await store.load(key, 1))?.version, 2);
    });

    it("reports an older record as a stale read instead of serving it", async () => {
      const store = new CloudflareKvStore({ namespace, staleReadRetries: 2, staleReadDelay: 0 });
      const key = randomKey();
      await store.save(key, record({ n: 1 }), null);
      const error = await store.load(key, 2).then(() => null, (e: unknown) => e);
      assert.ok(error instanceof StoreUnavailableError, `expected StoreUnavailableError, got ${error}`);
      assert.match(error.message, /Stale read/);
    });

    it("reads again and serves the newer record once it arrives", async () => {
      const store = new CloudflareKvStore({ namespace, staleReadRetries: 20, staleReadDelay: 50 });
      const key = randomKey();
      await store.save(key, record({ n: 1 }), null);
      const arriving = new Promise((resolve) => setTimeout(resolve, 120)).then(() =>
        namespace.put(`websession:${key}`, JSON.stringify(record({ n: 2 }, 2)))
      );
      const loaded = await store.load(key, 2);
      await arriving;
      assert.deepEqual(loaded?.data, { n: 2 });
    });
  });

  it("answers 503, never a fresh session, where the record a signed cookie names is not there yet", async () => {
    const store = new CloudflareKvStore({ namespace, prefix: "app:", staleReadDelay: 0 });
    const secrets = ["a secret of at least thirty-two characters"];
    const handler = withSession(async (req: Request) => {
      const session = await getSession<{ visits?: number }>(req);
      return new Response(String(session.update("visits", (n = 0) => n + 1)));
    }, { store, secrets });
    const first = await handler(new Request("https://app.example/"));
    assert.equal(await first.text(), "1");
    const cookie = first.headers.get("set-cookie")!.split(";")[0]!;
    const { keys } = await namespace.list({ prefix: "app:" });
    assert.equal(keys.length, 1);
    const text = (await namespace.get(keys[0]!.name, "text"))!;
    // Another location, where KV has not brought the record yet.
    await namespace.delete(keys[0]!.name);
    const elsewhere = await handler(new Request("https://app.example/", { headers: { cookie } }));
    assert.equal(elsewhere.status, 503);
    assert.equal(elsewhere.headers.get("set-cookie"), null);
    // Once it arrives, the same cookie finds the same session.
    await namespace.put(keys[0]!.name, text);
    const later = await handler(new Request("https://app.example/", { headers: { cookie } }));
    assert.equal(await later.text(), "2");
  });
});
