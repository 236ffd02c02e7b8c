// CloudflareKvStore against a real Workers KV namespace in Miniflare: first from Node through
// Miniflare's binding proxy, then running inside workerd itself. Workers KV has no
// compare-and-set, so the suite skips its compare-and-set cases by capability; the sequential
// version checks the store does make are asserted below.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { KVNamespace } from "@cloudflare/workers-types";
import type { Miniflare } from "miniflare";
import { StoreUnavailableError } from "../../src/errors.ts";
import type { StoredSession } from "../../src/store.ts";
import { CloudflareKvStore, type KvNamespaceLike } from "../../src/stores/cloudflare_kv.ts";
import { randomKey } from "../conformance/util.ts";
import { miniflareSuites as suites, startMiniflare, workerdStore } from "../workers/miniflare.ts";

// A real binding's type fits the structural interface.
const _fits: (binding: KVNamespace) => KvNamespaceLike = (binding) => binding;

function record(data: Record<string, unknown>, version = 1, ttl = 60_000, now = Date.now()): StoredSession {
  return { data, version, createdAt: now, expiresAt: now + ttl };
}

suites(
  "CloudflareKvStore (Miniflare KV from Node)",
  async (mf) => new CloudflareKvStore({ namespace: await mf.getKVNamespace("SESSIONS_KV") }),
);
suites("CloudflareKvStore (inside workerd)", (mf) => workerdStore(mf, "kv"));

describe("CloudflareKvStore", () => {
  let mf: Miniflare;
  let namespace: KvNamespaceLike;
  before(async () => {
    mf = await startMiniflare();
    namespace = await mf.getKVNamespace("SESSIONS_KV");
  });
  after(() => mf.dispose());

  it("says plainly that it cannot compare-and-set, and that reads may be stale", () => {
    assert.deepEqual(new CloudflareKvStore({ namespace }).capabilities, {
      compareAndSet: false,
      ttl: true,
      staleReads: true,
    });
  });

  it("still refuses, one request after another, a create over a live record, a stale version and a missing record", async () => {
    const store = new CloudflareKvStore({ namespace });
    const key = randomKey();
    assert.equal(await store.save(key, record({ n: 2 }, 2), 1), false);
    assert.equal(await store.load(key), null);
    assert.equal(await store.save(key, record({ n: 1 }), null), true);
    assert.equal(await store.save(key, record({ n: 9 }), null), false);
    assert.equal(await store.save(key, record({ n: 2 }, 2), 1), true);
    assert.equal(await store.save(key, record({ n: 9 }, 2), 1), false);
    assert.deepEqual((await store.load(key))?.data, { n: 2 });
    await store.destroy(key);
    assert.equal(await store.save(key, record({ n: 3 }, 3), 2), false);
    assert.equal(await namespace.get(`websession:${key}`, "text"), null);
  });

  it("writes JSON under the prefix with the version in metadata and KV's 60 s minimum TTL", async () => {
    const store = new CloudflareKvStore({ namespace, prefix: "app/" });
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

  it("never returns a record past expiresAt though KV still holds it", async () => {
    let now = Date.now();
    const store = new CloudflareKvStore({ namespace, prefix: "clock:", now: () => now });
    const key = randomKey();
    await store.save(key, record({}, 1, 60_000, now), null);
    assert.ok(await store.load(key));
    now += 61_000;
    assert.notEqual(await namespace.get(`clock:${key}`, "text"), null);
    assert.equal(await store.load(key), null);
    assert.equal(await store.count(), 0);
    assert.equal(await store.save(key, record({}, 2, 60_000, now), 1), false);
    assert.equal(await store.save(key, record({ fresh: true }, 1, 60_000, now), null), true);
    assert.equal(await store.count(), 1);
  });

  it("touch rewrites the record with the new expiry and the same version", async () => {
    const store = new CloudflareKvStore({ namespace, prefix: "touch:" });
    const key = randomKey();
    const saved = record({ a: 1 }, 4);
    await namespace.put(`touch:${key}`, JSON.stringify(saved));
    await store.touch(key, saved.expiresAt + 600_000);
    const { keys } = await namespace.list({ prefix: `touch:${key}` });
    assert.deepEqual(keys[0]!.metadata, { version: 4, expiresAt: saved.expiresAt + 600_000 });
    assert.equal((await store.load(key))?.version, 4);
  });

  describe("minVersion: the version the client has seen", () => {
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

  it("raises StoreUnavailableError, never null, when KV cannot be reached", async () => {
    const gone = await startMiniflare();
    const store = new CloudflareKvStore({ namespace: await gone.getKVNamespace("SESSIONS_KV") });
    await gone.dispose();
    const error = await store.load(randomKey()).then(() => null, (e: unknown) => e);
    assert.ok(error instanceof StoreUnavailableError, `expected StoreUnavailableError, got ${error}`);
    assert.ok(error.cause !== undefined);
  });

  it("rejects bad options at construction", () => {
    assert.throws(() => new CloudflareKvStore({} as never), TypeError);
    assert.throws(() => new CloudflareKvStore({ namespace, prefix: 1 as never }), TypeError);
    assert.throws(() => new CloudflareKvStore({ namespace, staleReadRetries: -1 }), RangeError);
    assert.throws(() => new CloudflareKvStore({ namespace, staleReadDelay: 0.5 }), RangeError);
  });
});
