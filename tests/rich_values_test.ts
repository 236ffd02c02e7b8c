// Rich values: the richValues serializer on its own (what it keeps, what it refuses, that reading
// is inert), the Session under a serializer (copies on read, the merge's observations and
// update() replay on encoded values, schema, options), and the round trip through withSession
// over real HTTP on MemoryStore, FileStore, RedisStore, PostgresStore, MemcachedStore and the
// sealed CookieStore.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis as IoRedis } from "ioredis";
import pg from "pg";
import { MemcacheClient } from "memcache-client";
import { getSession, MemoryStore, SessionDataError, withSession } from "../mod.ts";
import { defineSerializer, richValues, type SessionSerializer } from "../src/serializer.ts";
import { FileStore } from "../src/stores/file.ts";
import { RedisStore } from "../src/stores/redis.ts";
import { PostgresStore } from "../src/stores/postgres.ts";
import { MemcachedStore } from "../src/stores/memcached.ts";
import { MEMCACHED_SERVER, skipWithoutMemcached } from "./services.ts";
import { CookieStore } from "../src/stores/cookie.ts";
import type { InvalidCookieEvent } from "../src/options.ts";
import type { SessionStore } from "../src/store.ts";
import { storageKeyOf } from "../src/id.ts";
import { Client, gate, type Handler } from "./conformance/client.ts";
import { assertRichValuesRoundTrip, describeValue, richSample } from "./conformance/rich_values.ts";
import { serveFetch } from "./http/server.ts";
import { sleep } from "./conformance/util.ts";

const SECRET = "rich values test secret, at least 32 characters";
const RUN = crypto.randomUUID().slice(0, 8);

/** Serializes to JSON text and back, as a store does. */
function throughJson(value: unknown): unknown {
  return richValues.deserialize(JSON.parse(JSON.stringify(richValues.serialize(value))));
}

describe("richValues", () => {
  it("round-trips Date, Map, Set, URL, BigInt, undefined, NaN, ±Infinity and -0, nested", () => {
    const sample = richSample();
    assert.deepEqual(describeValue(throughJson(sample)), describeValue(sample));
    const back = throughJson(sample) as { home: URL; big: bigint; at: Date };
    assert.ok(back.home instanceof URL && back.home.href === "https://example.com/a%20b?q=%C3%BC#frag");
    assert.equal(back.big, 2n ** 64n + 1n);
    assert.equal(back.at.getTime(), Date.UTC(2026, 0, 2, 3, 4, 5, 678));
  });

  it("keeps plain JSON as it is, and wraps a plain object with a '$' key so it is never taken for a tag", () => {
    const plain = { a: 1, b: [true, null, "x", { c: -2.5 }] };
    assert.deepEqual(richValues.serialize(plain), plain);
    const tagLike = { $: "Date", v: "2026-01-01T00:00:00.000Z" };
    assert.deepEqual(richValues.serialize(tagLike), { $: "object", v: tagLike });
    assert.deepEqual(throughJson(tagLike), tagLike);
  });

  it("stores a value referenced twice twice, reading back two equal copies", () => {
    const shared = new Set([1]);
    const back = throughJson({ a: shared, b: shared }) as { a: Set<number>; b: Set<number> };
    assert.notEqual(back.a, back.b);
    assert.deepEqual(describeValue(back.a), describeValue(back.b));
  });

  it("refuses with a TypeError what it cannot store", () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    let deep: unknown = 1;
    for (let i = 0; i < 70; i++) deep = [deep];
    class Point {
      x = 1;
    }
    class Stamp extends Date {}
    for (
      const value of [() => 1, Symbol("s"), /x/, new Uint8Array(1), new Point(), new Stamp(0), cyclic, deep, [
        new Map([[1, () => 1]]),
      ]]
    ) {
      assert.throws(() => richValues.serialize(value), TypeError, String(value));
    }
  });

  it("reads back whatever it accepts: a BigInt of up to 4096 digits, tagged scalars at the deepest level", () => {
    const bound = 10n ** 4096n;
    for (const big of [bound - 1n, 1n - bound]) assert.equal(throughJson(big), big);
    for (const big of [bound, -bound, 2n ** 20_000n]) {
      assert.throws(() => richValues.serialize(big), /more than 4096 digits/);
    }
    // Tagged scalars are objects in the store, a level of nesting each: the deepest accepted
    // nesting of every container, around every tagged leaf, reads back; one more is refused.
    const wraps = [
      (x: unknown) => [x],
      (x: unknown) => ({ $: x }),
      (x: unknown) => new Map([[1, x]]),
      (x: unknown) => new Map([[x, 1]]),
      (x: unknown) => new Set([x]),
    ];
    for (const wrap of wraps) {
      for (const leaf of [1n, undefined, NaN, -0, Infinity, new Date(0), "text"]) {
        let value: unknown = leaf;
        let levels = 0;
        for (;;) {
          const next = wrap(value);
          try {
            richValues.serialize(next);
          } catch (error) {
            assert.ok(error instanceof TypeError, String(error));
            break;
          }
          value = next;
          levels++;
        }
        assert.ok(levels >= 63, `${levels} levels`);
        assert.deepEqual(
          describeValue(throughJson(value)),
          describeValue(value),
          `${levels} levels of ${String(leaf)}`,
        );
      }
    }
  });

  it("reads inertly: unknown or prototype-named tags and malformed values are a SessionDataError", () => {
    for (
      const json of [
        { $: "RegExp", v: "x" },
        { $: "constructor" },
        { $: "__proto__" },
        { $: "toString" },
        { $: "hasOwnProperty", v: "x" },
        { $: ["Date"], v: "x" },
        { $: "Date", v: "not a date" },
        { $: "Date", v: 0 },
        { $: "bigint", v: "1e3" },
        { $: "bigint", v: 12 },
        { $: "URL", v: "not a url" },
        { $: "Map", v: [[1]] },
        { $: "Map", v: {} },
        { $: "Set", v: "abc" },
        { $: "number", v: "1" },
        { $: "object", v: [] },
        [{ a: { $: "Function", v: "return 1" } }],
      ]
    ) {
      assert.throws(() => richValues.deserialize(json), SessionDataError, JSON.stringify(json));
    }
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    assert.throws(() => richValues.deserialize(deep), SessionDataError); // no stack overflow
  });

  it("keeps __proto__ and constructor keys plain data and pollutes no prototype", () => {
    const json = JSON.parse(
      '{"__proto__": {"polluted": 1}, "constructor": {"prototype": {"polluted": 1}}, "m": {"$": "Map", "v": [["__proto__", {"polluted": 1}]]}}',
    );
    const back = richValues.deserialize(json) as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(back), Object.prototype);
    assert.deepEqual(Object.keys(back), ["__proto__", "constructor", "m"]);
    assert.equal((back.m as Map<string, unknown>).get("__proto__") !== undefined, true);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal((Object.prototype as Record<string, unknown>).polluted, undefined);
    assert.deepEqual(describeValue(throughJson(back)), describeValue(back));
  });

  it("has no code path that evaluates text", async () => {
    const source = await readFile(new URL("../src/serializer.ts", import.meta.url), "utf8");
    const code = source.replace(/\/\*\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
    assert.doesNotMatch(code, /\beval\b|\bFunction\(|new Function|import\(|globalThis\[|\[tag\]/);
  });
});

type Data = { m?: Map<string, number>; seen?: Set<string>; other?: number; at?: Date; user?: string };

/** A handler with hooks, over a store, with the rich serializer unless told otherwise. */
function app(
  store: SessionStore | CookieStore,
  route: (session: Awaited<ReturnType<typeof getSession<Data>>>, path: string) => Promise<unknown> | unknown,
  extra: Record<string, unknown> = {},
) {
  const invalid: InvalidCookieEvent[] = [];
  let runs = 0;
  const handler = withSession(async (request: Request) => {
    runs++;
    const session = await getSession<Data>(request);
    const out = await route(session, new URL(request.url).pathname);
    return Response.json(describeValue(out));
  }, {
    store,
    secrets: SECRET,
    serializer: richValues,
    onInvalidCookie: (event) => void invalid.push(event),
    ...extra,
  });
  return { handler, invalid, runs: () => runs };
}

describe("Session with the richValues serializer", () => {
  it("hands out copies: a Map changed in place is not stored, even when another key is set", async () => {
    const store = new MemoryStore();
    const { handler } = app(store, (session, path) => {
      if (path === "/init") session.set("m", new Map([["a", 1]]));
      if (path === "/mutate") {
        session.get("m")!.set("b", 2);
        session.set("other", 1);
        return session.get("m");
      }
      return session.get("m");
    });
    const client = new Client(handler);
    await client.text("/init");
    assert.deepEqual(JSON.parse(await client.text("/mutate")), describeValue(new Map([["a", 1]])));
    assert.deepEqual(JSON.parse(await client.text("/read")), describeValue(new Map([["a", 1]])));
  });

  it("refuses what the serializer cannot store, and without one refuses a Date as before", async () => {
    const store = new MemoryStore();
    const rich = app(store, (session) => assert.throws(() => session.set("m", /x/ as never), TypeError));
    assert.equal((await rich.handler(new Request("https://app.example/"))).status, 200);
    const plain = app(store, (session) => assert.throws(() => session.set("at", new Date()), TypeError), {
      serializer: undefined,
    });
    assert.equal((await plain.handler(new Request("https://app.example/"))).status, 200);
  });

  it("merges when a Map it read is unchanged, and re-runs when a concurrent request changed it", async () => {
    // Explicit locking: no turns, so the held request really loses its compare-and-set.
    for (const changeMap of [false, true]) {
      const store = new MemoryStore();
      let hold: Promise<void> | undefined;
      const slowApp = app(store, async (session, path) => {
        if (path === "/init") return session.set("m", new Map([["a", 1]]));
        if (path === "/slow") {
          const m = session.get("m")!;
          await hold;
          return session.set("other", m.size);
        }
        if (path === "/change") {
          return changeMap ? session.set("m", new Map([["a", 2]])) : session.set("other", 9);
        }
      }, { locking: "explicit" });
      const client = new Client(slowApp.handler);
      await client.text("/init");
      const held = gate();
      hold = held.promise;
      const slow = client.clone().fetch("/slow");
      await sleep(20);
      hold = undefined;
      await client.text("/change");
      const runsBefore = slowApp.runs();
      held.open();
      assert.equal((await slow).status, 200);
      // Unchanged: the encoded Map compares equal, the log replays, no re-run. Changed: re-run.
      assert.equal(slowApp.runs() - runsBefore, changeMap ? 1 : 0);
      const record = await store.load(await storageKeyOf(client.jar.get("session")!.split(".")[0]!));
      assert.deepEqual(record?.data.m, { $: "Map", v: [["a", changeMap ? 2 : 1]] });
      assert.equal(record?.data.other, 1);
    }
  });

  it("merges a POST whose record a concurrent request only rewrote in the serializer's format (switching it on)", async () => {
    // A session stored as plain JSON before the switch: a price object with a "$" key of its own.
    // One request reads (one key, or all of them) and waits; another, also under richValues,
    // writes the record anew in its format (which wraps the price) without changing anything
    // the first one read. The first one's POST then merges: 200, not 409.
    const changes: Array<[string, (session: Awaited<ReturnType<typeof getSession<Data>>>) => void]> = [
      ["a key it did not read", (session) => session.set("other", 2)],
      ["a flash value, after reading every key", (session) => session.flash("other", 1)],
      ["markAuthenticated(), after reading every key", (session) => session.markAuthenticated()],
    ];
    for (const [label, change] of changes) {
      const store = new MemoryStore();
      let hold: Promise<void> | undefined;
      const price = { $: "USD", amount: 3 };
      const before = app(store, (session) => void session.set("price" as never, price as never), {
        serializer: undefined,
      });
      const after = app(store, async (session, path) => {
        if (path === "/slow") {
          const seen = label.startsWith("a key") ? session.get("price" as never) : session.toJSON();
          await hold;
          return session.set("user", JSON.stringify(seen));
        }
        change(session);
      }, { locking: "explicit" });
      const first = new Client(before.handler);
      await first.text("/init");
      const client = new Client(after.handler);
      client.jar = new Map(first.jar);
      const held = gate();
      hold = held.promise;
      const slow = client.clone().fetch("/slow", { method: "POST" });
      await sleep(20);
      hold = undefined;
      assert.equal((await client.fetch("/change", { method: "POST" })).status, 200);
      held.open();
      assert.equal((await slow).status, 200, label);
      const record = await store.load(await storageKeyOf(client.jar.get("session")!.split(".")[0]!));
      assert.deepEqual(record?.data.price, { $: "object", v: price }, label);
      assert.ok(typeof record?.data.user === "string", label);
    }
  });

  it("refuses (409) a POST whose observed Map changed, instead of merging over it", async () => {
    const store = new MemoryStore();
    let hold: Promise<void> | undefined;
    const { handler } = app(store, async (session, path) => {
      if (path === "/init") return session.set("m", new Map([["a", 1]]));
      if (path === "/slow") {
        const m = session.get("m")!;
        await hold;
        return session.set("m", new Map(m).set("b", 2));
      }
      return session.set("m", new Map([["z", 26]]));
    }, { locking: "explicit" });
    const client = new Client(handler);
    await client.text("/init");
    const held = gate();
    hold = held.promise;
    const slow = client.clone().fetch("/slow", { method: "POST" });
    await sleep(20);
    hold = undefined;
    await client.text("/change");
    held.open();
    assert.equal((await slow).status, 409);
    const record = await store.load(await storageKeyOf(client.jar.get("session")!.split(".")[0]!));
    assert.deepEqual(record?.data.m, { $: "Map", v: [["z", 26]] });
  });

  it("replays update() on the fresh value: concurrent Set additions all land", async () => {
    const store = new MemoryStore();
    let hold: Promise<void> | undefined;
    const { handler } = app(store, async (session, path) => {
      const item = path.slice(1);
      session.update("seen", (seen = new Set()) => seen.add(item));
      if (item === "slow") await hold;
      return session.peek("seen");
    }, { locking: "explicit" });
    const client = new Client(handler);
    await client.text("/first");
    const held = gate();
    hold = held.promise;
    const slow = client.clone().fetch("/slow", { method: "POST" });
    await sleep(20);
    hold = undefined;
    await client.text("/fast");
    held.open();
    assert.equal((await slow).status, 200);
    const seen = JSON.parse(await client.text("/last")) as { Set: string[] };
    assert.deepEqual(seen.Set.sort(), ["fast", "first", "last", "slow"]);
  });

  it("shows the schema the values as the handler sees them", async () => {
    const seen: unknown[] = [];
    const schema = {
      "~standard": {
        version: 1 as const,
        vendor: "test",
        validate: (value: unknown) => {
          seen.push((value as Data).at);
          return (value as Data).at instanceof Date
            ? { value: value as Data }
            : { issues: [{ message: "at" }] };
        },
      },
    };
    const store = new MemoryStore();
    const { handler, invalid } = app(store, (session, path) => {
      if (path === "/init") session.set("at", new Date(7));
      return session.get("at");
    }, { schema });
    const client = new Client(handler);
    await client.text("/init");
    assert.deepEqual(JSON.parse(await client.text("/read")), { Date: new Date(7).toISOString() });
    assert.ok(seen.at(-1) instanceof Date);
    assert.deepEqual(invalid, []);
  });

  it("refuses, never misreads, a record in another serializer's format", async () => {
    const dates: SessionSerializer = defineSerializer({
      format: "dates/1",
      serialize: (value) => value instanceof Date ? { $date: value.toISOString() } : value,
      deserialize: (json) =>
        typeof json === "object" && json !== null && "$date" in json ? new Date(String(json.$date)) : json,
    });
    const store = new MemoryStore();
    const rich = app(
      store,
      (session, path) => path === "/init" ? session.set("at", new Date(1)) : session.get("at"),
    );
    const other = app(store, (session) => session.get("at"), { serializer: dates });
    const client = new Client(rich.handler);
    await client.text("/init");
    const stranger = new Client(other.handler);
    stranger.jar = new Map(client.jar);
    assert.deepEqual(JSON.parse(await stranger.text("/read")), { undefined: true });
    assert.equal(other.invalid[0]?.reason, "data");
    assert.match(String((other.invalid[0]?.detail as Error).message), /"rich\/1".*"dates\/1"/);
    assert.deepEqual(JSON.parse(await client.text("/read")), { Date: new Date(1).toISOString() }); // intact
  });

  it("turned off and on again: restores a browser that only read meanwhile, not one that wrote (its cookie was replaced)", async () => {
    const store = new MemoryStore();
    const route = (session: Awaited<ReturnType<typeof getSession<Data>>>, path: string) => {
      if (path === "/init") session.set("at", new Date(1));
      if (path === "/write") session.set("other", 1);
      return session.get("at");
    };
    const on = app(store, route);
    const off = app(store, route, { serializer: undefined });
    const reader = new Client(on.handler);
    await reader.text("/init");
    const writer = new Client(on.handler);
    await writer.text("/init");
    for (const [browser, path] of [[reader, "/read"], [writer, "/write"]] as const) {
      const during = new Client(off.handler);
      during.jar = browser.jar;
      assert.deepEqual(JSON.parse(await during.text(path)), { undefined: true });
    }
    assert.deepEqual(off.invalid.map((event) => event.reason), ["data", "data"]);
    assert.deepEqual(JSON.parse(await reader.text("/read")), { Date: new Date(1).toISOString() });
    assert.deepEqual(JSON.parse(await writer.text("/read")), { undefined: true });
  });

  it("answers a write that meets a record in another format with a SessionDataError, and overwrites nothing", async () => {
    // A process without the serializer loaded a plain record; one with it saved meanwhile.
    const store = new MemoryStore();
    let hold: Promise<void> | undefined;
    const errors: unknown[] = [];
    const plain = app(store, async (session, path) => {
      if (path === "/init") return session.set("other", 1);
      session.set("user", "ada");
      await hold;
    }, { serializer: undefined, locking: "explicit", onError: (error: unknown) => void errors.push(error) });
    const rich = app(store, (session) => session.set("at", new Date(3)), { locking: "explicit" });
    const client = new Client(plain.handler);
    await client.text("/init");
    const held = gate();
    hold = held.promise;
    const slow = client.clone().fetch("/slow", { method: "POST" });
    await sleep(20);
    hold = undefined;
    const writer = new Client(rich.handler);
    writer.jar = new Map(client.jar);
    await writer.text("/rich");
    held.open();
    assert.equal((await slow).status, 500);
    assert.ok(errors[0] instanceof SessionDataError);
    const record = await store.load(await storageKeyOf(client.jar.get("session")!.split(".")[0]!));
    assert.deepEqual(record?.data, {
      other: 1,
      __serializer: "rich/1",
      at: { $: "Date", v: new Date(3).toISOString() },
    });
  });

  it("checks the option", async () => {
    const handler = (serializer: unknown) =>
      withSession(() => Promise.resolve(new Response()), {
        store: new MemoryStore(),
        secrets: SECRET,
        serializer: serializer as SessionSerializer,
      })(new Request("https://app.example/"));
    for (
      const bad of [{}, null, { serialize() {} }, { ...richValues, format: "" }, { ...richValues, format: 1 }]
    ) {
      await assert.rejects(async () => await handler(bad), TypeError);
    }
    // A serializer of one's own is made by defineSerializer, which checks it (and a plain object
    // of the right shape is refused: the core runs a serializer only through what it carries).
    const plain = { format: "plain/1", serialize: (v: unknown) => v, deserialize: (v: unknown) => v };
    await assert.rejects(async () => await handler(plain), /defineSerializer\(\)/);
    const { format: _unnamed, ...unnamed } = plain;
    for (
      const spec of [{ ...plain, format: "" }, { ...plain, format: 1 }, { ...plain, serialize: 1 }, unnamed]
    ) {
      assert.throws(() => defineSerializer(spec as never), TypeError);
    }
    const made = defineSerializer(plain);
    assert.ok(Object.isFrozen(made));
    await handler(made);
    // What serialize() returns must be plain JSON: a value it passes on unchanged is refused when
    // set, never stored as something else (a Set as {}, a nested Date as a string).
    for (const value of [new Set([1]), { at: new Date(0) }, [1, undefined], () => 1, NaN]) {
      assert.throws(
        () => made.serialize(value),
        /serializer "plain\/1" made something that is not plain JSON/,
      );
    }
    assert.deepEqual(made.serialize({ a: [1, "b", null] }), { a: [1, "b", null] });
  });
});

/** Serves an app on a real node:http server and returns a handler that reaches it over HTTP. */
const servers: Array<{ close(): Promise<void> }> = [];
after(async () => {
  await Promise.all(servers.map((server) => server.close()));
});
async function overHttp(handler: Handler): Promise<Handler> {
  const server = await serveFetch(handler);
  servers.push(server);
  return async (request: Request) => {
    const url = new URL(request.url);
    const response = await fetch(new URL(url.pathname + url.search, server.url), {
      method: request.method,
      headers: request.headers,
      redirect: "manual",
    });
    return new Response(await response.arrayBuffer(), { status: response.status, headers: response.headers });
  };
}

describe("rich values through withSession over real HTTP", () => {
  it("MemoryStore", async () => {
    await assertRichValuesRoundTrip(new MemoryStore(), true, overHttp);
  });

  it("FileStore", async () => {
    const dir = await mkdtemp(join(tmpdir(), "websession-rich-"));
    try {
      await assertRichValuesRoundTrip(new FileStore({ dir }), true, overHttp);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("RedisStore (ioredis)", async () => {
    const client = new IoRedis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379", {
      maxRetriesPerRequest: 1,
    });
    const prefix = `websession-rich:${RUN}:`;
    try {
      await assertRichValuesRoundTrip(new RedisStore({ client, prefix }), true, overHttp);
    } finally {
      const keys = await client.keys(`${prefix}*`);
      if (keys.length > 0) await client.del(...keys);
      client.disconnect();
    }
  });

  it("PostgresStore (pg)", async () => {
    const client = new pg.Pool({
      connectionString: process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test",
    });
    const table = `websession_rich_${RUN}`;
    try {
      const store = new PostgresStore({ client, table });
      await store.migrate();
      await assertRichValuesRoundTrip(store, true, overHttp);
    } finally {
      await client.query(`DROP TABLE IF EXISTS "${table}", "${table}_leases"`);
      await client.end();
    }
  });

  it("MemcachedStore", async (t) => {
    const skip = await skipWithoutMemcached();
    if (skip !== undefined) return t.skip(skip);
    const client = new MemcacheClient({
      server: MEMCACHED_SERVER,
      cmdTimeout: 5_000,
    });
    try {
      await assertRichValuesRoundTrip(
        new MemcachedStore({ client, prefix: `websession-rich:${RUN}:` }),
        true,
        overHttp,
      );
    } finally {
      client.shutdown();
    }
  });

  it("CookieStore (sealed): rich values in the cookie, older plain cookies still read", async () => {
    await assertRichValuesRoundTrip(new CookieStore({ secrets: SECRET }), false, overHttp);
  });
});
