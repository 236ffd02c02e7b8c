// Every store call the library makes is one `store` event: a counting wrapper around a real
// MemoryStore counts the calls that reach it, the `onEvent` hook collects the events, and the
// two must agree per operation, whatever made the call (a request's load and commit, a touch, a
// logout or regeneration, listUserSessions, endUserSessions, session.lock() and its release).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  endUserSessions,
  getSession,
  listUserSessions,
  MemoryStore,
  type SessionEvent,
  type SessionStore,
  withSession,
} from "../mod.ts";
import { instrument, storeOf } from "../src/instrument.ts";
import type { StoreOperation } from "../src/events.ts";
import { StoreUnavailableError } from "../src/errors.ts";
import { Client } from "./conformance/client.ts";
import { userSessions } from "../src/users/options.ts";

const SECRET = "events test secret of at least 32 characters";

type Tally = Map<string, number>;

/** A store that counts every method call on a real MemoryStore, then makes it. */
function counting(store: MemoryStore): { store: SessionStore; calls: Tally } {
  const calls: Tally = new Map();
  const wrapper: Record<string | symbol, unknown> = { capabilities: store.capabilities };
  const names = Object.getOwnPropertyNames(MemoryStore.prototype).filter((name) =>
    name !== "constructor" &&
    typeof Object.getOwnPropertyDescriptor(MemoryStore.prototype, name)?.value === "function"
  );
  for (const name of names) {
    wrapper[name] = (...args: unknown[]) => {
      calls.set(name, (calls.get(name) ?? 0) + 1);
      return (store as unknown as Record<string, (...a: unknown[]) => unknown>)[name]!(...args);
    };
  }
  return { store: wrapper as unknown as SessionStore, calls };
}

/** The store events per operation. */
function tallyOf(events: SessionEvent[]): Tally {
  const tally: Tally = new Map();
  for (const event of events) {
    if (event.type === "store") tally.set(event.operation, (tally.get(event.operation) ?? 0) + 1);
  }
  return tally;
}

const sorted = (tally: Tally) => [...tally].sort(([a], [b]) => a.localeCompare(b));

/** An app with a user, a clock the test moves, and routes for each thing a session does. */
function app() {
  const memory = new MemoryStore();
  const { store, calls } = counting(memory);
  const events: SessionEvent[] = [];
  let clock = Date.now();
  const options = {
    store,
    secrets: SECRET,
    users: userSessions({ userKey: "user" }),
    idleTimeout: 3600,
    touchAfter: 60,
    // A browser-session cookie: an extended expiry is a touch, with no cookie to send again.
    cookie: { persistent: false },
    now: () => clock,
    onEvent: (event: SessionEvent) => void events.push(event),
  };
  const handler = withSession(async (req: Request) => {
    const session = await getSession<{ user?: string; n?: number }>(req);
    switch (new URL(req.url).pathname) {
      case "/login":
        session.regenerate();
        session.set("user", "ada");
        break;
      case "/inc":
        session.update("n", (n = 0) => n + 1);
        break;
      case "/regenerate":
        session.regenerate();
        break;
      case "/logout":
        session.destroy();
        break;
      case "/list":
        return new Response(String((await listUserSessions(session)).length));
      case "/others":
        return new Response(String(await endUserSessions(session, { exceptCurrent: true })));
      case "/lock": {
        const lock = await session.lock({ wait: 0 });
        session.update("n", (n = 0) => n + 1);
        await lock.release();
        break;
      }
      default:
        session.get("n");
    }
    return new Response("ok");
  }, options);
  return {
    options,
    handler,
    calls,
    events,
    advance: (ms: number) => void (clock += ms),
    reset: () => {
      calls.clear();
      events.length = 0;
    },
  };
}

describe("store events: one per store call", () => {
  it("listUserSessions and endUserSessions report their index read, loads and tombstones", async () => {
    const a = app();
    const devices = [new Client(a.handler), new Client(a.handler), new Client(a.handler)];
    for (const device of devices) assert.equal(await device.text("/login"), "ok");
    a.reset();
    assert.equal((await listUserSessions(a.options, "ada")).length, 3);
    assert.deepEqual(sorted(a.calls), [["keysOfUser", 1], ["load", 3]]);
    assert.deepEqual(sorted(tallyOf(a.events)), sorted(a.calls));

    a.reset();
    assert.equal(await endUserSessions(a.options, { user: "ada" }), 3);
    // Under the user's lock (a regenerate of one of the sessions cannot slip between its reads).
    assert.deepEqual(sorted(a.calls), [["keysOfUser", 1], ["load", 3], ["lock", 1], ["save", 3], [
      "unlock",
      1,
    ]]);
    assert.deepEqual(sorted(tallyOf(a.events)), sorted(a.calls));
    for (const event of a.events.filter((e) => e.type !== "end")) {
      assert.equal(event.type, "store");
      assert.ok(event.type === "store" && event.durationMs >= 0 && !("error" in event));
    }
    // Besides the store calls, each session ended is told once, for an audit log.
    assert.deepEqual(a.events.filter((e) => e.type === "end"), [
      { type: "end", reason: "admin", user: "ada", request: undefined },
      { type: "end", reason: "admin", user: "ada", request: undefined },
      { type: "end", reason: "admin", user: "ada", request: undefined },
    ]);
    assert.deepEqual(await listUserSessions(a.options, "ada"), []);
  });

  it("inside a request, the calls of listUserSessions and endUserSessions carry the request", async () => {
    const a = app();
    const phone = new Client(a.handler);
    const laptop = new Client(a.handler);
    await phone.text("/login");
    await laptop.text("/login");
    a.reset();
    const seen: Request[] = [];
    const request = new Request("https://app.example/others", { headers: { cookie: phone.cookie } });
    a.options.onEvent = (event) => {
      a.events.push(event);
      if (event.type === "store" && event.request !== undefined) seen.push(event.request);
    };
    // Built before the hook changed: a fresh wrapper reads the options again.
    const handler = withSession(async (req: Request) => {
      const session = await getSession<{ user?: string }>(req);
      return new Response(String(await endUserSessions(session, { exceptCurrent: true })));
    }, a.options);
    assert.equal(await (await handler(request)).text(), "1");
    // The request's own load, then the user's lock, the index read, both loads, the one tombstone.
    assert.deepEqual(sorted(a.calls), [["keysOfUser", 1], ["load", 3], ["lock", 1], ["save", 1], [
      "unlock",
      1,
    ]]);
    assert.deepEqual(sorted(tallyOf(a.events)), sorted(a.calls));
    assert.equal(seen.length, 7);
    assert.ok(seen.every((r) => r === request));
  });

  it("a failed store call is reported with its error, and fails the call as before", async () => {
    const memory = new MemoryStore();
    const broken: SessionStore = {
      capabilities: memory.capabilities,
      load: (key) => memory.load(key),
      save: (...args) => memory.save(...args),
      destroy: (key) => memory.destroy(key),
      keysOfUser: () =>
        Promise.reject(Object.assign(new Error("connection refused"), { code: "ECONNREFUSED" })),
    };
    const events: SessionEvent[] = [];
    const options = {
      store: broken,
      secrets: SECRET,
      users: userSessions({ userKey: "user" }),
      onEvent: (e: SessionEvent) => void events.push(e),
    };
    await assert.rejects(listUserSessions(options, "ada"), StoreUnavailableError);
    assert.equal(events.length, 1);
    const [event] = events;
    assert.ok(event?.type === "store" && event.operation === "keysOfUser");
    assert.equal((event.error as { code?: string }).code, "ECONNREFUSED");
  });

  it("a request flow reports every call: load, create, update, touch, regenerate, logout", async () => {
    const a = app();
    const browser = new Client(a.handler);
    a.reset();
    await browser.text("/login"); // save (create)
    await browser.text("/read"); // load
    await browser.text("/inc"); // load, save
    a.advance(120_000);
    await browser.text("/read"); // load, touch
    await browser.text("/regenerate"); // load, tombstone, create
    await browser.text("/list"); // load, keysOfUser, load
    await browser.text("/logout"); // load, tombstone
    for (const operation of ["load", "save", "touch", "keysOfUser"]) {
      assert.ok((a.calls.get(operation) ?? 0) > 0, `the flow called ${operation}`);
    }
    assert.deepEqual(sorted(tallyOf(a.events)), sorted(a.calls));
  });

  it("session.lock() and its release report lock, the catch-up load and unlock", async () => {
    const a = app();
    const browser = new Client(a.handler);
    await browser.text("/login");
    a.reset();
    assert.equal(await browser.text("/lock"), "ok");
    assert.equal(a.calls.get("lock"), 1);
    assert.equal(a.calls.get("unlock"), 1);
    assert.deepEqual(sorted(tallyOf(a.events)), sorted(a.calls));
  });
});

describe("instrument()", () => {
  it("without a hook returns the store itself; with one, a wrapper that mirrors it", () => {
    const store = new MemoryStore();
    assert.equal(instrument(store, undefined), store);
    const events: SessionEvent[] = [];
    const wrapped = instrument(store, (event) => void events.push(event));
    assert.notEqual(wrapped, store);
    assert.equal(wrapped.capabilities, store.capabilities, "the same capabilities object");
    assert.equal(storeOf(wrapped), store);
    assert.equal(storeOf(instrument(wrapped, () => {})), store, "a wrapper of a wrapper wraps the store");
    // Optional methods the store lacks stay absent.
    const bare: SessionStore = {
      capabilities: { compareAndSet: true, ttl: false },
      load: () => Promise.resolve(null),
      save: () => Promise.resolve(true),
      destroy: () => Promise.resolve(),
    };
    const thin = instrument(bare, () => {});
    assert.equal(thin.touch, undefined);
    assert.equal(thin.lock, undefined);
    assert.equal(typeof thin.keysOfUser, "undefined");
    assert.equal(typeof thin.load, "function");
  });

  it("reports each contract method under its own name, results unchanged; a throwing hook is ignored", async () => {
    const store = new MemoryStore();
    const events: SessionEvent[] = [];
    let calls = 0;
    const wrapped = instrument(store, (event) => {
      events.push(event);
      if (++calls === 1) throw new Error("hook failure");
    });
    const key = "k".repeat(43);
    const now = Date.now();
    const record = { data: { user: "ada" }, version: 1, createdAt: now, expiresAt: now + 60_000 };
    assert.equal(await wrapped.save(key, record, null, { user: "ada" }), true);
    assert.deepEqual(await wrapped.load(key), record);
    await wrapped.touch!(key, now + 120_000, 1);
    assert.equal((await store.load(key))?.expiresAt, now + 120_000);
    assert.equal(await wrapped.lock!(key, "me", 1_000), true);
    await wrapped.unlock!(key, "me");
    assert.deepEqual(await wrapped.keysOfUser!("ada"), [key]);
    assert.equal(await wrapped.count!(), 1);
    assert.equal(await wrapped.cleanup!(), 0);
    await wrapped.destroy(key);
    const operations: StoreOperation[] = [
      "save",
      "load",
      "touch",
      "lock",
      "unlock",
      "keysOfUser",
      "count",
      "cleanup",
      "destroy",
    ];
    assert.deepEqual(events.map((e) => e.type === "store" ? e.operation : e.type), operations);
    await assert.rejects(wrapped.load("bad key"), TypeError);
    const last = events.at(-1);
    assert.ok(last?.type === "store" && last.operation === "load" && last.error instanceof TypeError);
  });
});
