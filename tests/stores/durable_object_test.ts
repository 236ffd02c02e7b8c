// DurableObjectStore against a real Durable Object binding in Miniflare: first from Node through
// Miniflare's binding proxy, then running inside workerd itself, with the full store suite
// (compare-and-set and concurrency included).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { DurableObjectNamespace } from "@cloudflare/workers-types";
import type { Miniflare } from "miniflare";
import { SessionTooLargeError, StoreUnavailableError } from "../../src/errors.ts";
import type { StoredSession } from "../../src/store.ts";
import { type DurableObjectNamespaceLike, DurableObjectStore } from "../../src/stores/durable_object.ts";
import { randomKey, sleep } from "../conformance/util.ts";
import { miniflareSuites as suites, startMiniflare, workerdStore } from "../workers/miniflare.ts";

// A real binding's type fits the structural interface.
const _fits: (binding: DurableObjectNamespace) => DurableObjectNamespaceLike = (binding) => binding;

function record(data: Record<string, unknown>, version = 1, ttl = 60_000, now = Date.now()): StoredSession {
  return { data, version, createdAt: now, expiresAt: now + ttl };
}

suites(
  "DurableObjectStore (Miniflare binding from Node)",
  async (mf) => new DurableObjectStore({ namespace: await mf.getDurableObjectNamespace("SESSIONS_DO") }),
);
suites("DurableObjectStore (inside workerd)", (mf) => workerdStore(mf, "do"));

describe("DurableObjectStore", () => {
  let mf: Miniflare;
  let namespace: DurableObjectNamespaceLike;
  let store: DurableObjectStore;
  before(async () => {
    mf = await startMiniflare();
    namespace = await mf.getDurableObjectNamespace("SESSIONS_DO");
    store = new DurableObjectStore({ namespace });
  });
  after(() => mf.dispose());

  /** What the session's object holds in storage: its record text and its alarm. */
  async function inspect(key: string): Promise<{ record: string | null; alarm: number | null }> {
    // A plain GET, which the structural stub type does not describe: the real stub takes it.
    const stub = namespace.get(namespace.idFromName(key)) as unknown as {
      fetch(url: string): Promise<Response>;
    };
    return (await (await stub.fetch("https://do/inspect")).json()) as {
      record: string | null;
      alarm: number | null;
    };
  }

  it("claims compare-and-set and expiry, and offers no count", () => {
    assert.deepEqual(store.capabilities, { compareAndSet: true, ttl: true });
    assert.equal("count" in store, false);
  });

  it("keeps each session in its own object, with an alarm at expiresAt", async () => {
    const a = randomKey();
    const b = randomKey();
    const saved = record({ who: "a" });
    await store.save(a, saved, null);
    assert.deepEqual(JSON.parse((await inspect(a)).record!), saved);
    assert.equal((await inspect(a)).alarm, saved.expiresAt);
    assert.deepEqual(await inspect(b), { record: null, alarm: null });
  });

  it("touch moves the alarm; destroy leaves the object empty", async () => {
    const key = randomKey();
    const saved = record({});
    await store.save(key, saved, null);
    await store.touch(key, saved.expiresAt + 60_000);
    assert.equal((await inspect(key)).alarm, saved.expiresAt + 60_000);
    assert.equal(JSON.parse((await inspect(key)).record!).version, 1);
    await store.destroy(key);
    assert.deepEqual(await inspect(key), { record: null, alarm: null });
  });

  it("the alarm deletes an expired session that nobody reads again", async () => {
    const key = randomKey();
    await store.save(key, record({ a: 1 }, 1, 300), null);
    assert.notEqual((await inspect(key)).record, null);
    const deadline = Date.now() + 10_000;
    while ((await inspect(key)).record !== null) {
      assert.ok(Date.now() < deadline, "the alarm never removed the expired record");
      await sleep(100);
    }
    assert.equal((await inspect(key)).alarm, null);
  });

  it("serialises 20 racing read-modify-write increments on one session: none is lost", async () => {
    const key = randomKey();
    await store.save(key, record({ n: 0 }), null);
    async function increment(): Promise<number> {
      for (let attempt = 1;; attempt++) {
        const current = (await store.load(key))!;
        const next = {
          ...current,
          data: { n: (current.data.n as number) + 1 },
          version: current.version + 1,
        };
        if (await store.save(key, next, current.version)) return attempt;
      }
    }
    const attempts = await Promise.all(Array.from({ length: 20 }, increment));
    const final = await store.load(key);
    assert.equal(final?.data.n, 20);
    assert.equal(final?.version, 21);
    assert.ok(attempts.some((n) => n > 1), "expected some saves to lose the compare-and-set and retry");
  });

  it("raises SessionTooLargeError for a record over the storage value limit, and keeps the old one", async () => {
    const key = randomKey();
    await store.save(key, record({ small: true }), null);
    await assert.rejects(
      store.save(key, record({ blob: "x".repeat(2_200_000) }, 2), 1),
      SessionTooLargeError,
    );
    const loaded = await store.load(key);
    assert.deepEqual(loaded?.data, { small: true });
    assert.equal(loaded?.version, 1);
  });

  it("the object refuses malformed operations with 400", async () => {
    const stub = namespace.get(namespace.idFromName(randomKey()));
    for (
      const body of [
        "not json",
        "{}",
        '{"op":"save","record":{"data":[]},"expectedVersion":null}',
        '{"op":"drop"}',
      ]
    ) {
      const response = await stub.fetch("https://do/x", { method: "POST", headers: {}, body });
      assert.equal(response.status, 400, body);
      assert.equal(typeof ((await response.json()) as { error: unknown }).error, "string");
    }
  });

  it("raises StoreUnavailableError, never null, when the object cannot be reached", async () => {
    const gone = await startMiniflare();
    const unreachable = new DurableObjectStore({
      namespace: await gone.getDurableObjectNamespace("SESSIONS_DO"),
    });
    await gone.dispose();
    const error = await unreachable.load(randomKey()).then(() => null, (e: unknown) => e);
    assert.ok(error instanceof StoreUnavailableError, `expected StoreUnavailableError, got ${error}`);
  });

  it("rejects a missing namespace at construction", () => {
    assert.throws(() => new DurableObjectStore({} as never), TypeError);
    assert.throws(() => new DurableObjectStore({ namespace: { get() {} } as never }), TypeError);
  });
});
