// Rich values through a store: Date, Map, Set, URL and BigInt (nested, with undefined, NaN, -0)
// set under the richValues serializer read back as they were, on every store the session suite
// runs on; a session stored as plain JSON before the switch still reads; a record written with
// the serializer is refused (never misread) by an application without it; concurrent update()
// writers of a Set lose nothing; and keys such as __proto__ and constructor stay plain data.
import assert from "node:assert/strict";
import { getSession, withSession } from "../../src/with_session.ts";
import { richValues } from "../../src/serializer.ts";
import type { InvalidCookieEvent, SessionOptions } from "../../src/options.ts";
import { isSealedStore, type SealedSessionStore, type SessionStore } from "../../src/store.ts";
import { storageKeyOf } from "../../src/id.ts";
import { Client, type Handler } from "./client.ts";

const SECRET = "test secret: at least thirty-two characters long";

/**
 * A description of a value as plain JSON that names every type, so that two values compare
 * equal with `deepEqual` in any runtime exactly when they are the same rich value.
 */
export function describeValue(value: unknown): unknown {
  if (value === undefined) return { undefined: true };
  if (typeof value === "bigint") return { bigint: value.toString() };
  if (typeof value === "number") {
    return Number.isFinite(value) && !Object.is(value, -0)
      ? value
      : { number: Object.is(value, -0) ? "-0" : String(value) };
  }
  if (typeof value !== "object" || value === null) return value;
  if (Array.isArray(value)) return { array: Array.from(value, describeValue) };
  if (value instanceof Date) return { Date: Number.isNaN(value.getTime()) ? "invalid" : value.toISOString() };
  if (value instanceof Map) return { Map: [...value].map(([k, v]) => [describeValue(k), describeValue(v)]) };
  if (value instanceof Set) return { Set: [...value].map(describeValue) };
  if (value instanceof URL) return { URL: value.href };
  const proto = Object.getPrototypeOf(value);
  return {
    // Sorted: PostgreSQL's jsonb keeps an object's keys in an order of its own.
    object: Object.keys(value).sort().map((
      key,
    ) => [key, describeValue((value as Record<string, unknown>)[key])]),
    proto: proto === Object.prototype ? "Object" : proto === null ? "null" : "other",
  };
}

/** Values of every kind the serializer keeps, nested, with keys that must stay plain data. */
export function richSample(): Record<string, unknown> {
  const hostile = JSON.parse(
    '{"__proto__": {"polluted": true}, "constructor": {"prototype": {"polluted": true}}}',
  );
  return {
    at: new Date("2026-01-02T03:04:05.678Z"),
    prefs: new Map<unknown, unknown>([["theme", "dark"], [1n, new Date(0)], [{ k: 1 }, [new Set(["x"])]]]),
    tags: new Set(["a", "b", "a"]),
    home: new URL("https://example.com/a b?q=ü#frag"),
    big: 2n ** 64n + 1n,
    nested: {
      list: [1, undefined, NaN, -0, Infinity, -Infinity, null, "s", new Date(NaN)],
      $: "a plain object with a tag-like key",
      tagLike: { $: "Date", v: "not a date: plain data" },
      hostile,
      missing: undefined,
    },
  };
}

/** The wrapped app: /write stores the sample, /read returns the description of what it reads. */
export function richApp(
  store: SessionStore | SealedSessionStore,
  extra: Partial<SessionOptions> = {},
): { handler: (request: Request) => Promise<Response>; invalid: InvalidCookieEvent[] } {
  const invalid: InvalidCookieEvent[] = [];
  const handler = withSession(async (request: Request) => {
    const path = new URL(request.url).pathname;
    const session = await getSession<Record<string, unknown>>(request);
    if (path === "/write") {
      for (const [key, value] of Object.entries(richSample())) session.set(key, value);
      session.flash("notice", new Set([new Date(5)]));
    } else if (path === "/plain") {
      session.set("visits", 1);
      session.set("profile", { name: "ada", $: "Date", v: "plain data that looks like a tag" });
    } else if (path === "/add") {
      const item = new URL(request.url).searchParams.get("item")!;
      session.update("seen", (seen = new Set()) => (seen as Set<string>).add(item));
    }
    const values = Object.fromEntries(session.entries());
    const notice = session.get("notice");
    return Response.json({ values: describeValue(values), notice: describeValue(notice) });
  }, { store, secrets: SECRET, onInvalidCookie: (event) => void invalid.push(event), ...extra });
  return { handler, invalid };
}

/**
 * The conformance case: run by the session suite on every server store, in each runtime.
 *
 * @param store The store under test (the suite's, with a clean key space per session), or a
 *   sealed `CookieStore` (then the stored record is not inspected).
 * @param cas Whether the store can compare-and-set (concurrent writers across an isolate).
 * @param serve Puts an app behind a transport (a real HTTP server) and returns the handler that
 *   reaches it; by default the app is called directly.
 */
export async function assertRichValuesRoundTrip(
  store: SessionStore | SealedSessionStore,
  cas: boolean,
  serve: (handler: Handler) => Handler | Promise<Handler> = (handler) => handler,
): Promise<void> {
  const richApp_ = richApp(store, { serializer: richValues });
  const plainApp = richApp(store);
  const rich = { invalid: richApp_.invalid, handler: await serve(richApp_.handler) };
  const plain = { invalid: plainApp.invalid, handler: await serve(plainApp.handler) };

  // A session stored as plain JSON before the serializer was set reads as it was.
  const legacy = new Client(plain.handler);
  const before = await legacy.text("/plain");
  const switched = new Client(rich.handler);
  switched.jar = new Map(legacy.jar);
  assert.deepEqual(JSON.parse(await switched.text("/read")), JSON.parse(before));
  assert.deepEqual(rich.invalid, []);

  // Rich values round-trip, the flash value too (read once).
  const client = new Client(rich.handler);
  await client.text("/write");
  const values = describeValue(richSample());
  const notice = describeValue(new Set([new Date(5)]));
  assert.deepEqual(JSON.parse(await client.text("/read")), { values, notice });
  assert.deepEqual(JSON.parse(await client.text("/read")), { values, notice: { undefined: true } });
  assert.equal(({} as Record<string, unknown>).polluted, undefined);

  // The store holds JSON naming its format; an app without the serializer refuses the record.
  if (!isSealedStore(store)) {
    const record = await store.load(await storageKeyOf(client.jar.get("session")!.split(".")[0]!));
    assert.equal(record?.data.__serializer, "rich/1");
    assert.deepEqual(record?.data.at, { $: "Date", v: "2026-01-02T03:04:05.678Z" });
    assert.deepEqual(JSON.parse(JSON.stringify(record?.data)), record?.data);
  }
  const stranger = new Client(plain.handler);
  stranger.jar = new Map(client.jar);
  const empty = { object: [], proto: "Object" };
  assert.deepEqual(JSON.parse(await stranger.text("/read")), { values: empty, notice: { undefined: true } });
  assert.equal(plain.invalid.at(-1)?.reason, "data");

  // Concurrent update() writers of one Set lose nothing (a replay re-runs fn on the fresh Set).
  const adder = new Client(rich.handler);
  await adder.text("/add?item=first");
  // Without compare-and-set (a sealed cookie, Workers KV) there is nothing to merge on: one writer.
  const writers = cas ? 12 : 1;
  const statuses = await Promise.all(
    Array.from(
      { length: writers },
      (_, i) => (cas ? adder.clone() : adder).fetch(`/add?item=${i}`).then((r) => r.status),
    ),
  );
  assert.deepEqual(statuses, Array(writers).fill(200));
  const seen = JSON.parse(await adder.text("/read")) as { values: { object: [string, { Set: string[] }][] } };
  const items = seen.values.object.find(([key]) => key === "seen")![1].Set;
  assert.deepEqual(
    [...items].sort(),
    ["first", ...Array.from({ length: writers }, (_, i) => String(i))].sort(),
  );
}
