// CookieStore: the shared session suite through withSession, without a revocation store and
// with one (whose outage the suite drives), then what the store itself answers. Its mechanisms
// have their own files, as its sources do: tests/stores/cookie/ (sealing, chunks, opening and
// the token cache, the revocation store).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { CookieStore, type CookieStoreOptions } from "../../src/stores/cookie.ts";
import { MemoryStore } from "../../src/stores/memory.ts";
import { counted } from "../conformance/client.ts";
import { sessionSuite } from "../conformance/session_suite.ts";
import { getter, ID, jar, opens, record, SECRET_A } from "./cookie/seals.ts";

sessionSuite("CookieStore", { open: () => new CookieStore({ secrets: SECRET_A }) });

const revocation = counted(new MemoryStore());
sessionSuite("CookieStore with a revocation store", {
  open: () => new CookieStore({ secrets: SECRET_A, revocation: revocation.store }),
  outage: (down) => void (revocation.down = down),
});

describe("CookieStore", () => {
  it("round-trips a record in one cookie named after the session cookie", async () => {
    const store = new CookieStore({ secrets: SECRET_A });
    const saved = record({ user: "ada", visits: 3, nested: { ok: [1, "ü", null] } });
    const cookies = await store.seal(ID, saved, "session");
    assert.equal(cookies.length, 1);
    assert.equal(cookies[0]!.name, "session");
    assert.match(cookies[0]!.value, /^[A-Za-z0-9_.-]+$/);
    assert.deepEqual(await opens(store, jar(cookies)), { id: ID, record: saved, stale: false });
  });

  it("opens with another instance holding the same secret (stateless)", async () => {
    const saved = record({ user: "ada" });
    const cookies = await new CookieStore({ secrets: SECRET_A }).seal(ID, saved, "sid");
    const other = new CookieStore({ secrets: [SECRET_A] });
    assert.deepEqual((await opens(other, jar(cookies), "sid")).record, saved);
  });

  it("returns null when no session cookie is present, or it is empty", async () => {
    const store = new CookieStore({ secrets: SECRET_A });
    assert.equal(await store.open(() => undefined, "session"), null);
    assert.equal(await store.open(getter(new Map([["session", ""], ["other", "x"]])), "session"), null);
  });

  it("declares what it cannot do", () => {
    assert.deepEqual(new CookieStore({ secrets: SECRET_A }).capabilities, {
      compareAndSet: false,
      ttl: true,
      revocation: false,
    });
    assert.equal(new CookieStore({ secrets: SECRET_A }).sealed, true);
  });

  it("lets an unexpected exception propagate instead of reporting a bad cookie", async () => {
    const store = new CookieStore({ secrets: SECRET_A });
    const broken = () => {
      throw new RangeError("a bug in the cookie reader");
    };
    await assert.rejects(store.open(broken, "session"), { name: "RangeError", message: /a bug/ });
  });

  it("refuses with SessionTooLargeError beyond maxPayloadBytes, even when it would compress", async () => {
    const capped = new CookieStore({ secrets: SECRET_A, maxPayloadBytes: 1000 });
    await assert.rejects(capped.seal(ID, record({ text: "a".repeat(2000) }), "session"), {
      name: "SessionTooLargeError",
      message: /maxPayloadBytes "1000"/,
    });
  });

  describe("configuration", () => {
    it("rejects missing or short secrets with a TypeError", () => {
      const bad: Array<[options: unknown, message?: RegExp]> = [
        [{ secrets: "too short" }, /at least 32/],
        [{ secrets: [SECRET_A, "x".repeat(31)] }, /secret 1/],
        [{ secrets: [] }],
        [{}],
        [{ secrets: [42] }],
      ];
      for (const [options, message] of bad) {
        assert.throws(() => new CookieStore(options as CookieStoreOptions), (error: unknown) => {
          assert.ok(error instanceof TypeError, JSON.stringify(options));
          if (message !== undefined) assert.match(error.message, message);
          return true;
        });
      }
      assert.ok(new CookieStore({ secrets: "x".repeat(32) }));
    });

    it("rejects out-of-range limits with a RangeError", () => {
      const limits: Array<Partial<CookieStoreOptions>> = [
        { chunkSize: 5000 },
        { chunkSize: 10 },
        { maxCookieHeaderBytes: 10 },
        { maxCookieHeaderBytes: 1.5e3 + 0.5 },
        { maxCookies: 0 },
        { maxCookies: 2.5 },
        { maxPayloadBytes: -1 },
        { compress: -1 },
        { cacheSize: -1 },
        { cacheSize: 1.5 },
      ];
      for (const limit of limits) {
        assert.throws(
          () => new CookieStore({ secrets: SECRET_A, ...limit }),
          RangeError,
          JSON.stringify(limit),
        );
      }
    });
  });
});
