// What the adapters and the default onError log during a store outage: the first server error in
// full, then a count, never a stack trace per failed request; and to the `logger` option, never
// around it. logError, the shared helper behind them, on an injected clock.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { getSession, MemoryStore, type SessionLogger, type SessionStore, withSession } from "../../mod.ts";
import { StoreUnavailableError } from "../../src/errors.ts";
import { logError } from "../../src/log.ts";
import { createSessionStorage } from "../../src/adapters/react_router.ts";

const SECRET = "a secret of at least thirty-two characters";

/** A logger that keeps what it is given. */
function recorder(): SessionLogger & { errors: unknown[]; warnings: unknown[] } {
  const errors: unknown[] = [];
  const warnings: unknown[] = [];
  return {
    errors,
    warnings,
    error: (line: unknown) => void errors.push(line),
    warn: (line) => warnings.push(line),
  };
}

/** A store over a MemoryStore (load, save, destroy) that fails them while `down` is set. */
function flaky(): { store: SessionStore; down: (value: boolean) => void } {
  const inner = new MemoryStore();
  let isDown = false;
  const refused = () => Promise.reject(new Error("connection refused"));
  const store: SessionStore = {
    capabilities: inner.capabilities,
    load: (key) => isDown ? refused() : inner.load(key),
    save: (key, record, expected) => isDown ? refused() : inner.save(key, record, expected),
    destroy: (key) => isDown ? refused() : inner.destroy(key),
  };
  return { store, down: (value) => void (isDown = value) };
}

describe("logError", () => {
  it("logs a kind in full once, then one line a minute with the count, then in full after a quiet minute", () => {
    const logger = recorder();
    let now = 1_000_000;
    const clock = { now: () => now };
    const outage = () => new StoreUnavailableError("Redis failed to load");
    for (let i = 0; i < 30; i++, now += 1000) logError(logger, outage(), clock);
    assert.equal(logger.errors.length, 1);
    assert.ok(logger.errors[0] instanceof StoreUnavailableError, "the first one in full, with its stack");

    now = 1_000_000 + 60_000;
    logError(logger, outage(), clock);
    assert.equal(logger.errors.length, 2);
    assert.equal(
      logger.errors[1],
      "websession: StoreUnavailableError ERR_SESSION_STORE_UNAVAILABLE: Redis failed to load (29 more in the last minute)",
    );

    // Another kind is its own burst.
    logError(logger, new TypeError("bad"), clock);
    assert.ok(logger.errors[2] instanceof TypeError);

    // Three more, then quiet for a minute: they are said before the next outage is logged in full.
    for (let i = 0; i < 3; i++) logError(logger, outage(), clock);
    now += 120_000;
    logError(logger, outage(), clock);
    assert.equal(logger.errors.length, 5);
    assert.match(
      String(logger.errors[3]),
      /^websession: ERR_SESSION_STORE_UNAVAILABLE: 3 more until .* were not logged$/,
    );
    assert.ok(logger.errors[4] instanceof StoreUnavailableError);
  });

  it("never throws, even when the logger does", () => {
    const logger: SessionLogger = {
      warn() {},
      error() {
        throw new Error("disk full");
      },
    };
    assert.doesNotThrow(() => logError(logger, new Error("x")));
  });
});

describe("a store outage is logged once, then counted, to the logger option", () => {
  it("under withSession's default onError", async () => {
    const logger = recorder();
    const { store, down } = flaky();
    const handler = withSession(async (req: Request) => {
      (await getSession<{ n?: number }>(req)).update("n", (n = 0) => n + 1);
      return new Response("ok");
    }, { store, secrets: SECRET, logger });
    assert.equal((await handler(new Request("https://app.example/"))).status, 200);
    down(true);
    for (let i = 0; i < 20; i++) {
      // New visitors: each one's first save fails.
      assert.equal((await handler(new Request("https://app.example/"))).status, 503);
    }
    assert.equal(
      logger.errors.length,
      1,
      `one stack trace for 20 failed requests: ${logger.errors.join("\n")}`,
    );
    assert.ok(logger.errors[0] instanceof StoreUnavailableError);
  });

  it("under websession/react-router's createSessionStorage, which used to write to console", async () => {
    const logger = recorder();
    const { store, down } = flaky();
    const storage = createSessionStorage({ store, secrets: SECRET, logger });
    const session = await storage.getSession(null);
    session.set("user", "ada");
    assert.match(await storage.commitSession(session), /^session=/);
    down(true);
    const original = console.error;
    const printed: unknown[] = [];
    console.error = (...args: unknown[]) => void printed.push(args);
    try {
      for (let i = 0; i < 20; i++) {
        const visitor = await storage.getSession(null);
        visitor.set("user", `visitor ${i}`);
        const thrown = await storage.commitSession(visitor).then(() => undefined, (error: unknown) => error);
        assert.ok(thrown instanceof Response, "a Response is thrown for React Router to answer");
        assert.equal(thrown.status, 503);
      }
    } finally {
      console.error = original;
    }
    assert.deepEqual(printed, [], "nothing goes around the logger option");
    assert.equal(
      logger.errors.length,
      1,
      `one stack trace for 20 failed requests: ${logger.errors.map(String).join("\n")}`,
    );
    assert.ok(logger.errors[0] instanceof StoreUnavailableError);
  });
});
