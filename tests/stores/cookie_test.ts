import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { CookieStore } from "../../src/stores/cookie.ts";
import { MemoryStore } from "../../src/stores/memory.ts";
import { SessionTooLargeError, StoreUnavailableError } from "../../src/errors.ts";
import type { SealedCookie, SessionStore, StoredSession } from "../../src/store.ts";
import { randomKey } from "../conformance/util.ts";
import { Client, gate } from "../conformance/client.ts";
import { getSession, withSession } from "../../mod.ts";
import type { InvalidCookieEvent } from "../../src/options.ts";

const SECRET_A = "secret A: at least thirty-two characters long";
const SECRET_B = "secret B: at least thirty-two characters long";
const ID = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const INVALID = /^Invalid session cookie: /;

function record(data: Record<string, unknown>, now = Date.now(), ttl = 60_000): StoredSession {
  return { data, version: 1, createdAt: now, expiresAt: now + ttl };
}

/** A cookie getter over the cookies a seal returned (what the browser would send back). */
function jar(cookies: SealedCookie[]): Map<string, string> {
  return new Map(cookies.map((cookie) => [cookie.name, cookie.value]));
}

function getter(cookies: Map<string, string>): (name: string) => string | undefined {
  return (name) => cookies.get(name);
}

/** Random base64url text: deflate gains little on it, so it stays large when sealed. */
function randomText(length: number): string {
  let text = "";
  while (text.length < length) text += randomKey();
  return text.slice(0, length);
}

function decodeHeader(token: string): Record<string, unknown> {
  const part = token.split(".")[0]!.replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(atob(part));
}

/** Changes the first character of segment `index` of a compact JWE (never a padding-only bit). */
function tamper(token: string, index: number): string {
  const parts = token.split(".");
  const segment = parts[index]!;
  parts[index] = (segment[0] === "A" ? "B" : "A") + segment.slice(1);
  return parts.join(".");
}

/**
 * Runs `body` while counting calls to `crypto.subtle.decrypt` (what jose opens a seal with),
 * then puts the original back.
 */
async function countingDecrypts(body: (decrypts: () => number) => Promise<void>): Promise<void> {
  const subtle = crypto.subtle;
  const original = subtle.decrypt;
  let calls = 0;
  subtle.decrypt = function countedDecrypt(...args: Parameters<SubtleCrypto["decrypt"]>) {
    calls++;
    return original.apply(subtle, args);
  };
  try {
    await body(() => calls);
  } finally {
    delete (subtle as { decrypt?: unknown }).decrypt;
    if (subtle.decrypt !== original) subtle.decrypt = original;
  }
}

describe("CookieStore", () => {
  it("round-trips a record in one cookie named after the session cookie", async () => {
    const store = new CookieStore({ secrets: SECRET_A });
    const saved = record({ user: "ada", visits: 3, nested: { ok: [1, "ü", null] } });
    const cookies = await store.seal(ID, saved, "session");
    assert.equal(cookies.length, 1);
    assert.equal(cookies[0]!.name, "session");
    assert.match(cookies[0]!.value, /^[A-Za-z0-9_.-]+$/);
    const opened = await store.open(getter(jar(cookies)), "session");
    assert.deepEqual(opened, { id: ID, record: saved, stale: false });
  });

  it("opens with another instance holding the same secret (stateless)", async () => {
    const saved = record({ user: "ada" });
    const cookies = await new CookieStore({ secrets: SECRET_A }).seal(ID, saved, "sid");
    const opened = await new CookieStore({ secrets: [SECRET_A] }).open(getter(jar(cookies)), "sid");
    assert.deepEqual(opened?.record, saved);
  });

  it("returns null when no session cookie is present, or it is empty", async () => {
    const store = new CookieStore({ secrets: SECRET_A });
    assert.equal(await store.open(() => undefined, "session"), null);
    assert.equal(await store.open(getter(new Map([["session", ""], ["other", "x"]])), "session"), null);
  });

  it("reveals nothing: no data, no id, and a header of alg, enc and a short kid", async () => {
    const store = new CookieStore({ secrets: SECRET_A });
    const [cookie] = await store.seal(ID, record({ user: "ada-lovelace" }), "session");
    const value = cookie!.value;
    assert.ok(!value.includes(ID));
    assert.ok(!atob(value.split(".")[3]!.replace(/-/g, "+").replace(/_/g, "/")).includes("ada-lovelace"));
    const header = decodeHeader(value);
    assert.deepEqual(Object.keys(header).sort(), ["alg", "enc", "kid"]);
    assert.equal(header.alg, "dir");
    assert.equal(header.enc, "A256GCM");
    assert.match(String(header.kid), /^[A-Za-z0-9_-]{8}$/);
    assert.equal(value.split(".")[1], ""); // dir: no encrypted key
  });

  it("seals a standard compact JWE that another instance opens through jose, plain or deflated", async () => {
    const sealer = new CookieStore({ secrets: SECRET_A });
    const opener = new CookieStore({ secrets: SECRET_A, cacheSize: 0 }); // always decrypts
    const cases: Array<[StoredSession, string | undefined]> = [
      [record({ user: "ada" }), undefined],
      [record({ list: "abc".repeat(400) }), "deflate-raw"],
    ];
    for (const [saved, zip] of cases) {
      const [cookie] = await sealer.seal(ID, saved, "session");
      const [header, key, iv, ciphertext, tag] = cookie!.value.split(".");
      assert.equal(key, "");
      assert.equal(iv!.length, 16); // 96 bits
      assert.equal(tag!.length, 22); // 128 bits
      assert.ok(ciphertext!.length > 0);
      assert.equal(decodeHeader(header!).enc, "A256GCM");
      assert.equal(decodeHeader(header!).wsz, zip);
      assert.deepEqual((await opener.open(getter(jar([cookie!])), "session"))?.record, saved);
    }
    // A fresh iv for every seal, across the batches ivs are drawn in (256 at a time).
    const ivs = new Set<string>();
    for (let i = 0; i < 600; i++) {
      ivs.add((await sealer.seal(ID, record({}), "session"))[0]!.value.split(".")[2]!);
    }
    assert.equal(ivs.size, 600);
  });

  it("declares what it cannot do", () => {
    assert.deepEqual(new CookieStore({ secrets: SECRET_A }).capabilities, {
      compareAndSet: false,
      ttl: true,
      revocation: false,
    });
    assert.equal(new CookieStore({ secrets: SECRET_A }).sealed, true);
  });

  describe("rotation", () => {
    it("opens a cookie sealed with a retired secret as stale, and seals with the first", async () => {
      const old = new CookieStore({ secrets: SECRET_A });
      const rotated = new CookieStore({ secrets: [SECRET_B, SECRET_A] });
      const saved = record({ user: "ada" });
      const oldCookies = await old.seal(ID, saved, "session");
      const opened = await rotated.open(getter(jar(oldCookies)), "session");
      assert.equal(opened?.stale, true);
      assert.deepEqual(opened?.record, saved);

      const newCookies = await rotated.seal(ID, saved, "session");
      assert.notEqual(decodeHeader(newCookies[0]!.value).kid, decodeHeader(oldCookies[0]!.value).kid);
      assert.equal((await rotated.open(getter(jar(newCookies)), "session"))?.stale, false);
      // The new seal is the new secret's alone: a store knowing only the old one refuses it.
      await assert.rejects(old.open(getter(jar(newCookies)), "session"), {
        name: "TypeError",
        message: /unknown key/,
      });
    });

    it("refuses a cookie once its secret is dropped from the list", async () => {
      const cookies = await new CookieStore({ secrets: SECRET_A }).seal(ID, record({}), "session");
      const dropped = new CookieStore({ secrets: SECRET_B });
      await assert.rejects(dropped.open(getter(jar(cookies)), "session"), {
        name: "TypeError",
        message: /unknown key/,
      });
    });
  });

  describe("invalid cookies throw a TypeError that says why", () => {
    const store = new CookieStore({ secrets: SECRET_A });

    async function sealed(): Promise<string> {
      return (await store.seal(ID, record({ user: "ada" }), "session"))[0]!.value;
    }

    async function rejects(value: string, why: RegExp): Promise<void> {
      const error = await store.open(getter(new Map([["session", value]])), "session").then(
        () => assert.fail("opened an invalid cookie"),
        (error: unknown) => error,
      );
      assert.ok(error instanceof TypeError);
      assert.match(error.message, INVALID);
      assert.match(error.message, why);
    }

    it("tampered ciphertext", async () => {
      await rejects(tamper(await sealed(), 3), /decryption failed/);
    });

    it("tampered authentication tag", async () => {
      await rejects(tamper(await sealed(), 4), /decryption failed/);
    });

    it("tampered initialization vector", async () => {
      await rejects(tamper(await sealed(), 2), /decryption failed/);
    });

    it("tampered header, kid kept", async () => {
      const token = await sealed();
      const header = decodeHeader(token);
      const forged = btoa(JSON.stringify({ ...header, x: 1 })).replace(/=+$/, "").replace(/\+/g, "-").replace(
        /\//g,
        "_",
      );
      await rejects([forged, ...token.split(".").slice(1)].join("."), /decryption failed/);
    });

    it("header naming an unknown kid", async () => {
      const token = await sealed();
      const forged = btoa(JSON.stringify({ ...decodeHeader(token), kid: "AAAAAAAA" })).replace(/=+$/, "");
      await rejects([forged, ...token.split(".").slice(1)].join("."), /unknown key/);
    });

    it("a seal from another secret under this store's kid", async () => {
      const mine = await sealed();
      const theirs =
        (await new CookieStore({ secrets: SECRET_B }).seal(ID, record({ user: "eve" }), "session"))[0]!;
      const spliced = [mine.split(".")[0], ...theirs.value.split(".").slice(1)].join(".");
      await rejects(spliced, /decryption failed/);
    });

    it("an algorithm other than dir + A256GCM", async () => {
      const token = await sealed();
      const header = btoa(JSON.stringify({ ...decodeHeader(token), enc: "A128GCM" })).replace(/=+$/, "");
      await rejects([header, ...token.split(".").slice(1)].join("."), /algorithm not allowed/);
    });

    it("garbage", async () => {
      await rejects("not-a-seal", /malformed/);
      await rejects("a.b.c.d.e", /malformed/);
    });

    it("expired, by the injected clock", async () => {
      let now = 1_700_000_000_000;
      const clocked = new CookieStore({ secrets: SECRET_A, now: () => now });
      const cookies = jar(await clocked.seal(ID, record({ user: "ada" }, now, 1000), "session"));
      now += 999;
      assert.ok(await clocked.open(getter(cookies), "session"));
      now += 1;
      await assert.rejects(clocked.open(getter(cookies), "session"), {
        name: "TypeError",
        message: /expired/,
      });
    });
  });

  describe("chunking", () => {
    const store = new CookieStore({ secrets: SECRET_A });

    async function big(): Promise<{ saved: StoredSession; cookies: SealedCookie[] }> {
      const saved = record({ blob: randomText(10_000) });
      return { saved, cookies: await store.seal(ID, saved, "session") };
    }

    it("splits a ~10 KB session over numbered cookies within the size limit, and reassembles it", async () => {
      const { saved, cookies } = await big();
      assert.ok(cookies.length >= 3, `${cookies.length} cookies`);
      assert.deepEqual(cookies.map((c) => c.name), cookies.map((_, i) => `session.${i}`));
      for (const cookie of cookies) {
        assert.ok(cookie.value.length <= 3800, `${cookie.value.length} characters`);
        assert.match(cookie.value, /^[A-Za-z0-9_.-]+$/);
      }
      assert.ok(cookies[0]!.value.startsWith(`${cookies.length}.`));
      const opened = await store.open(getter(jar(cookies)), "session");
      assert.deepEqual(opened, { id: ID, record: saved, stale: false });
    });

    it("honours a smaller chunkSize", async () => {
      const small = new CookieStore({ secrets: SECRET_A, chunkSize: 500, maxCookies: 10 });
      const saved = record({ blob: randomText(2000) });
      const cookies = await small.seal(ID, saved, "s");
      assert.ok(cookies.length >= 5);
      assert.ok(cookies.every((c) => c.value.length <= 500));
      assert.deepEqual((await small.open(getter(jar(cookies)), "s"))?.record, saved);
    });

    it("treats a missing chunk as invalid", async () => {
      const cookies = jar((await big()).cookies);
      cookies.delete("session.1");
      await assert.rejects(store.open(getter(cookies), "session"), {
        name: "TypeError",
        message: /chunk "session.1" of \d is missing/,
      });
    });

    it("treats a missing last chunk as invalid", async () => {
      const sealed = (await big()).cookies;
      const cookies = jar(sealed);
      cookies.delete(`session.${sealed.length - 1}`);
      await assert.rejects(store.open(getter(cookies), "session"), {
        name: "TypeError",
        message: /is missing/,
      });
    });

    it("ignores a leftover chunk past the count (an older, longer seal)", async () => {
      const { saved, cookies } = await big();
      const withExtra = jar(cookies);
      withExtra.set(`session.${cookies.length}`, randomText(100));
      assert.deepEqual((await store.open(getter(withExtra), "session"))?.record, saved);
    });

    it("treats reordered chunks as invalid", async () => {
      const cookies = jar((await big()).cookies);
      const one = cookies.get("session.1")!;
      cookies.set("session.1", cookies.get("session.2")!);
      cookies.set("session.2", one);
      await assert.rejects(store.open(getter(cookies), "session"), { name: "TypeError", message: INVALID });
    });

    it("treats a first chunk without a valid count as invalid", async () => {
      const cookies = jar((await big()).cookies);
      const head = cookies.get("session.0")!;
      cookies.set("session.0", head.slice(head.indexOf(".") + 1));
      await assert.rejects(store.open(getter(cookies), "session"), {
        name: "TypeError",
        message: /chunk count/,
      });
      cookies.set("session.0", `9.${head.slice(head.indexOf(".") + 1)}`);
      await assert.rejects(store.open(getter(cookies), "session"), {
        name: "TypeError",
        message: /outside 2 to maxCookies/,
      });
    });

    it("when both a single cookie and chunks are present, opens the newer record", async () => {
      const older = record({ blob: randomText(10_000) });
      const newer = { ...record({ user: "ada" }), version: 2 };
      const cookies = jar([
        ...(await store.seal(ID, older, "session")),
        ...(await store.seal(ID, newer, "session")),
      ]);
      assert.ok(cookies.has("session") && cookies.has("session.0"));
      assert.deepEqual((await store.open(getter(cookies), "session"))?.record, newer);
      cookies.set("session", "garbage");
      assert.deepEqual((await store.open(getter(cookies), "session"))?.record, older);
    });

    it("refuses with SessionTooLargeError beyond maxCookies", async () => {
      await assert.rejects(
        store.seal(ID, record({ blob: randomText(30_000) }), "session"),
        SessionTooLargeError,
      );
      const one = new CookieStore({ secrets: SECRET_A, maxCookies: 1 });
      await assert.rejects(one.seal(ID, record({ blob: randomText(5000) }), "session"), (error: unknown) => {
        assert.ok(error instanceof SessionTooLargeError);
        assert.equal(error.code, "ERR_SESSION_TOO_LARGE");
        assert.match(error.message, /maxCookies "1"/);
        return true;
      });
    });

    it("refuses with SessionTooLargeError beyond maxPayloadBytes, even when it would compress", async () => {
      const capped = new CookieStore({ secrets: SECRET_A, maxPayloadBytes: 1000 });
      await assert.rejects(capped.seal(ID, record({ text: "a".repeat(2000) }), "session"), {
        name: "SessionTooLargeError",
        message: /maxPayloadBytes "1000"/,
      });
    });
  });

  describe("compression", () => {
    it("makes a repetitive payload smaller, marks it in the protected header, and round-trips", async () => {
      const saved = record({
        items: Array.from({ length: 200 }, (_, i) => ({ sku: `item-${i % 7}`, qty: 1 })),
      });
      const plain = await new CookieStore({ secrets: SECRET_A, compress: false }).seal(ID, saved, "session");
      const store = new CookieStore({ secrets: SECRET_A });
      const packed = await store.seal(ID, saved, "session");
      const size = (cookies: SealedCookie[]) => cookies.reduce((n, c) => n + c.value.length, 0);
      assert.ok(size(packed) * 4 < size(plain), `${size(packed)} vs ${size(plain)}`);
      assert.equal(packed.length, 1);
      const header = decodeHeader(packed[0]!.value);
      assert.deepEqual(header.crit, ["wsz"]);
      assert.equal(header.wsz, "deflate-raw");
      assert.deepEqual((await store.open(getter(jar(packed)), "session"))?.record, saved);
      // A store that does not compress still opens compressed seals.
      const noCompress = new CookieStore({ secrets: SECRET_A, compress: false });
      assert.deepEqual((await noCompress.open(getter(jar(packed)), "session"))?.record, saved);
    });

    it("leaves small payloads and payloads it cannot shrink uncompressed", async () => {
      const store = new CookieStore({ secrets: SECRET_A, compress: 0 });
      // Tried (threshold 0), but deflate cannot save the header it would add on random text.
      const [small] = await store.seal(randomText(32), record({ t: randomText(40) }), "session");
      assert.equal(decodeHeader(small!.value).wsz, undefined);
      const defaults = new CookieStore({ secrets: SECRET_A });
      const [below] = await defaults.seal(ID, record({ text: "a".repeat(300) }), "session");
      assert.equal(decodeHeader(below!.value).wsz, undefined); // under the 512-byte threshold
    });

    it("caps decompression: a deflate bomb is refused without inflating it", async () => {
      // 8 MB of one character deflates to a few KB: it fits in the cookies.
      const sealer = new CookieStore({ secrets: SECRET_A, maxPayloadBytes: 16 * 1024 * 1024 });
      const cookies = await sealer.seal(ID, record({ bomb: "a".repeat(8 * 1024 * 1024) }), "session");
      assert.ok(cookies.length <= 5);
      const opener = new CookieStore({ secrets: SECRET_A }); // default cap: 128 KiB
      await assert.rejects(opener.open(getter(jar(cookies)), "session"), {
        name: "TypeError",
        message: /decompressed payload exceeds maxPayloadBytes "131072"/,
      });
      const opened = await sealer.open(getter(jar(cookies)), "session");
      assert.equal((opened?.record.data.bomb as string).length, 8 * 1024 * 1024);
    });
  });

  describe("revocation", () => {
    it("refuses a revoked session through a revocation store, and only that one", async () => {
      const revocation = new MemoryStore();
      const store = new CookieStore({ secrets: SECRET_A, revocation });
      assert.equal(store.capabilities.revocation, true);
      const saved = record({ user: "ada" });
      const cookies = jar(await store.seal(ID, saved, "session"));
      const otherId = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
      const other = jar(await store.seal(otherId, saved, "session"));
      assert.ok(await store.open(getter(cookies), "session"));
      await store.revoke(ID, saved);
      assert.equal(await revocation.count(), 1);
      await assert.rejects(store.open(getter(cookies), "session"), { name: "TypeError", message: /revoked/ });
      assert.equal((await store.open(getter(other), "session"))?.id, otherId);
      await store.revoke(ID, saved); // idempotent
      assert.equal(await revocation.count(), 1);
    });

    it("keeps a tombstone until the session would have expired", async () => {
      let now = 1_700_000_000_000;
      const revocation = new MemoryStore({ now: () => now });
      const store = new CookieStore({ secrets: SECRET_A, revocation, now: () => now });
      const saved = record({}, now, 5000);
      await store.revoke(ID, saved);
      assert.equal(await revocation.count(), 1);
      now += 5000;
      assert.equal(await revocation.count(), 0);
    });

    it("without a revocation store, says so and revoke changes nothing", async () => {
      const store = new CookieStore({ secrets: SECRET_A });
      const saved = record({ user: "ada" });
      const cookies = jar(await store.seal(ID, saved, "session"));
      await store.revoke(ID, saved);
      assert.equal(store.capabilities.revocation, false);
      assert.ok(await store.open(getter(cookies), "session"));
    });

    it("reports a revocation store failure as StoreUnavailableError, not as an invalid cookie", async () => {
      const failing: SessionStore = {
        capabilities: { compareAndSet: true, ttl: false },
        load: () => Promise.reject(new TypeError("fetch failed")),
        save: () => Promise.reject(new TypeError("fetch failed")),
        destroy: () => Promise.resolve(),
      };
      const store = new CookieStore({ secrets: SECRET_A, revocation: failing });
      const saved = record({ user: "ada" });
      const cookies = jar(await store.seal(ID, saved, "session"));
      await assert.rejects(store.open(getter(cookies), "session"), StoreUnavailableError);
      await assert.rejects(store.revoke(ID, saved), StoreUnavailableError);
    });
  });

  describe("cache of sealed and opened tokens", () => {
    it("opens a token it sealed, and a second time one it opened, without decryption", async () => {
      await countingDecrypts(async (decrypts) => {
        const saved = record({ user: "ada", cart: [1, 2] });
        const store = new CookieStore({ secrets: SECRET_A });
        const own = jar(await store.seal(ID, saved, "session"));
        assert.deepEqual(await store.open(getter(own), "session"), { id: ID, record: saved, stale: false });
        assert.equal(decrypts(), 0, "its own seal opens from the cache");

        const foreign = jar(await new CookieStore({ secrets: SECRET_A }).seal(ID, saved, "session"));
        const first = await store.open(getter(foreign), "session");
        assert.equal(decrypts(), 1, "a token sealed elsewhere is decrypted once");
        (first!.record.data.cart as number[]).push(3); // a caller changing what it got back
        const second = await store.open(getter(foreign), "session");
        assert.equal(decrypts(), 1, "and opens from the cache the second time");
        assert.deepEqual(second, { id: ID, record: saved, stale: false });
        assert.notEqual(second!.record, first!.record);
      });
    });

    it("serves chunked tokens and the retired-secret flag from the cache too", async () => {
      await countingDecrypts(async (decrypts) => {
        const saved = record({ blob: randomText(3000) });
        const small = new CookieStore({ secrets: SECRET_A, chunkSize: 1000 });
        const chunks = jar(await small.seal(ID, saved, "session"));
        assert.ok(chunks.size > 1);
        assert.deepEqual((await small.open(getter(chunks), "session"))?.record, saved);
        assert.equal(decrypts(), 0);

        const old = jar(await new CookieStore({ secrets: SECRET_A }).seal(ID, saved, "session"));
        const rotated = new CookieStore({ secrets: [SECRET_B, SECRET_A] });
        assert.equal((await rotated.open(getter(old), "session"))?.stale, true);
        assert.equal((await rotated.open(getter(old), "session"))?.stale, true);
        assert.equal(decrypts(), 1);
      });
    });

    it("still refuses an expired token on a hit", async () => {
      await countingDecrypts(async (decrypts) => {
        let now = 1_700_000_000_000;
        const store = new CookieStore({ secrets: SECRET_A, now: () => now });
        const cookies = jar(await store.seal(ID, record({ user: "ada" }, now, 5000), "session"));
        assert.ok(await store.open(getter(cookies), "session"));
        now += 5000;
        await assert.rejects(store.open(getter(cookies), "session"), {
          name: "TypeError",
          message: /expired/,
        });
        await assert.rejects(store.open(getter(cookies), "session"), {
          name: "TypeError",
          message: /expired/,
        });
        assert.equal(decrypts(), 1, "the entry was dropped once expired: the last open decrypted");
      });
    });

    it("still refuses a revoked token on a hit", async () => {
      await countingDecrypts(async (decrypts) => {
        const store = new CookieStore({ secrets: SECRET_A, revocation: new MemoryStore() });
        const saved = record({ user: "ada" });
        const cookies = jar(await store.seal(ID, saved, "session"));
        assert.ok(await store.open(getter(cookies), "session"));
        assert.ok(await store.open(getter(cookies), "session"));
        assert.equal(decrypts(), 0);
        await store.revoke(ID, saved);
        await assert.rejects(store.open(getter(cookies), "session"), {
          name: "TypeError",
          message: /revoked/,
        });
        assert.equal(decrypts(), 0, "refused on the cached entry");
        await assert.rejects(store.open(getter(cookies), "session"), {
          name: "TypeError",
          message: /revoked/,
        });
        assert.equal(decrypts(), 1, "and never cached again");
      });
    });

    it("never serves a tampered token from the cache", async () => {
      await countingDecrypts(async (decrypts) => {
        const store = new CookieStore({ secrets: SECRET_A });
        const [cookie] = await store.seal(ID, record({ user: "ada" }), "session");
        assert.ok(await store.open(getter(jar([cookie!])), "session"));
        for (const segment of [0, 2, 3, 4]) {
          const forged = new Map([["session", tamper(cookie!.value, segment)]]);
          await assert.rejects(store.open(getter(forged), "session"), {
            name: "TypeError",
            message: INVALID,
          });
          await assert.rejects(store.open(getter(forged), "session"), {
            name: "TypeError",
            message: INVALID,
          });
        }
        // A changed header is refused before decryption; a changed iv, ciphertext or tag is
        // decrypted, refused, and decrypted again the second time: never cached.
        assert.equal(decrypts(), 6);
        assert.ok(await store.open(getter(jar([cookie!])), "session"));
        assert.equal(decrypts(), 6, "the genuine token still opens from the cache");
      });
    });

    it("decrypts every time with cacheSize 0", async () => {
      await countingDecrypts(async (decrypts) => {
        const store = new CookieStore({ secrets: SECRET_A, cacheSize: 0 });
        const cookies = jar(await store.seal(ID, record({ user: "ada" }), "session"));
        await store.open(getter(cookies), "session");
        await store.open(getter(cookies), "session");
        assert.equal(decrypts(), 2);
      });
    });

    it("keeps at most two generations of cacheSize tokens", async () => {
      await countingDecrypts(async (decrypts) => {
        const store = new CookieStore({ secrets: SECRET_A, cacheSize: 2 });
        const jars = [];
        for (let i = 0; i < 5; i++) jars.push(jar(await store.seal(ID, record({ i }), "session")));
        await store.open(getter(jars[4]!), "session");
        await store.open(getter(jars[3]!), "session");
        assert.equal(decrypts(), 0, "the newest two generations are cached");
        await store.open(getter(jars[0]!), "session");
        assert.equal(decrypts(), 1, "the oldest token was evicted");
      });
    });
  });

  describe("configuration", () => {
    it("rejects missing or short secrets with a TypeError", () => {
      assert.throws(() => new CookieStore({ secrets: "too short" }), {
        name: "TypeError",
        message: /at least 32/,
      });
      assert.throws(() => new CookieStore({ secrets: [SECRET_A, "x".repeat(31)] }), {
        name: "TypeError",
        message: /secret 1/,
      });
      assert.throws(() => new CookieStore({ secrets: [] }), TypeError);
      assert.throws(() => new CookieStore({} as never), TypeError);
      assert.throws(() => new CookieStore({ secrets: [42] } as never), TypeError);
      assert.ok(new CookieStore({ secrets: "x".repeat(32) }));
    });

    it("rejects out-of-range limits with a RangeError", () => {
      assert.throws(() => new CookieStore({ secrets: SECRET_A, chunkSize: 5000 }), RangeError);
      assert.throws(() => new CookieStore({ secrets: SECRET_A, chunkSize: 10 }), RangeError);
      assert.throws(() => new CookieStore({ secrets: SECRET_A, maxCookies: 0 }), RangeError);
      assert.throws(() => new CookieStore({ secrets: SECRET_A, maxCookies: 2.5 }), RangeError);
      assert.throws(() => new CookieStore({ secrets: SECRET_A, maxPayloadBytes: -1 }), RangeError);
      assert.throws(() => new CookieStore({ secrets: SECRET_A, compress: -1 }), RangeError);
      assert.throws(() => new CookieStore({ secrets: SECRET_A, cacheSize: -1 }), RangeError);
      assert.throws(() => new CookieStore({ secrets: SECRET_A, cacheSize: 1.5 }), RangeError);
    });
  });
});

describe("CookieStore through withSession", () => {
  const SIGNING = "signing secret: at least 32 characters long";

  /**
   * An app: `/` counts visits, `/read` only reads, `/big` stores a large blob, `/small` drops it,
   * `/logout` destroys, `/slow` waits for `hold` and then writes.
   */
  function app(
    store: CookieStore,
    events: InvalidCookieEvent[] = [],
    extra: { hold?: Promise<void>; now?: () => number } = {},
  ) {
    return withSession(async (request: Request) => {
      const session = await getSession<{ visits?: number; blob?: string; late?: boolean }>(request);
      const path = new URL(request.url).pathname;
      if (path === "/big") session.set("blob", randomText(10_000));
      if (path === "/small") session.delete("blob");
      if (path === "/logout") session.destroy();
      if (path === "/") session.update("visits", (n = 0) => n + 1);
      if (path === "/slow") {
        await extra.hold;
        session.set("late", true);
      }
      return new Response(String(session.get("visits") ?? 0));
    }, {
      store,
      secrets: SIGNING,
      onInvalidCookie: (event) => events.push(event),
      ...(extra.now ? { now: extra.now } : {}),
    });
  }

  it("keeps the session in the cookie across requests", async () => {
    const client = new Client(app(new CookieStore({ secrets: SECRET_A })));
    assert.equal(await client.text("/"), "1");
    assert.deepEqual([...client.jar.keys()], ["session"]);
    assert.equal(await client.text("/"), "2");
    assert.equal(await client.text("/"), "3");
  });

  it("moves to chunk cookies and back, clearing the cookies it no longer uses", async () => {
    const client = new Client(app(new CookieStore({ secrets: SECRET_A })));
    await client.text("/");
    const grown = await client.fetch("/big");
    await grown.text();
    assert.ok(!client.jar.has("session"));
    assert.ok(client.jar.has("session.0") && client.jar.has("session.2"));
    assert.ok(grown.headers.getSetCookie().some((c) => /^session=;/.test(c)), "single cookie cleared");
    assert.equal(await client.text("/"), "2");
    const shrunk = await client.fetch("/small");
    await shrunk.text();
    assert.deepEqual([...client.jar.keys()], ["session"]);
    assert.equal(await client.text("/"), "3");
  });

  it("re-seals a cookie sealed with a retired secret with the current one", async () => {
    const client = new Client(app(new CookieStore({ secrets: SECRET_A })));
    await client.text("/");
    const oldKid = decodeHeader(client.jar.get("session")!).kid;
    const rotated = new Client(app(new CookieStore({ secrets: [SECRET_B, SECRET_A] })));
    rotated.jar = new Map(client.jar);
    assert.equal(await rotated.text("/"), "2");
    assert.notEqual(decodeHeader(rotated.jar.get("session")!).kid, oldKid);
    const onlyNew = new Client(app(new CookieStore({ secrets: SECRET_B })));
    onlyNew.jar = new Map(rotated.jar);
    assert.equal(await onlyNew.text("/"), "3");
  });

  it("starts a fresh session on a tampered cookie and reports it", async () => {
    const events: InvalidCookieEvent[] = [];
    const client = new Client(app(new CookieStore({ secrets: SECRET_A }), events));
    await client.text("/");
    await client.text("/");
    client.jar.set("session", tamper(client.jar.get("session")!, 3));
    assert.equal(await client.text("/"), "1");
    assert.equal(events.length, 1);
    assert.match(String((events[0]!.detail as Error).message), /decryption failed/);
  });

  it("with a revocation store, a copy of the cookie is dead after logout", async () => {
    const handler = app(new CookieStore({ secrets: SECRET_A, revocation: new MemoryStore() }));
    const client = new Client(handler);
    await client.text("/");
    await client.text("/");
    const thief = client.clone();
    assert.equal(await thief.text("/"), "3");
    await client.text("/logout");
    assert.equal(await thief.text("/"), "1"); // the stolen copy no longer opens
  });

  it("without one, a copy of the cookie outlives logout (what capabilities.revocation: false means)", async () => {
    const client = new Client(app(new CookieStore({ secrets: SECRET_A })));
    await client.text("/");
    const copy = client.clone();
    await client.text("/logout");
    assert.equal(await copy.text("/"), "2");
  });

  it("sends no Set-Cookie on a read-only request", async () => {
    const client = new Client(app(new CookieStore({ secrets: SECRET_A })));
    await client.text("/");
    const read = await client.fetch("/read");
    assert.equal(await read.text(), "1");
    assert.deepEqual(read.headers.getSetCookie(), []);
  });

  it("expires after idleTimeout of inactivity, by the sealed expiry", async () => {
    let now = 1_700_000_000_000;
    const client = new Client(
      app(new CookieStore({ secrets: SECRET_A, now: () => now }), [], { now: () => now }),
    );
    await client.text("/");
    assert.equal(await client.text("/"), "2");
    now += 3600_000; // the default idleTimeout
    assert.equal(await client.text("/"), "1");
  });

  it("destroy expires every chunk cookie", async () => {
    const client = new Client(app(new CookieStore({ secrets: SECRET_A })));
    await client.text("/");
    await client.text("/big");
    assert.ok(client.jar.size >= 3);
    const bye = await client.fetch("/logout");
    await bye.text();
    assert.equal(client.jar.size, 0);
    assert.ok(bye.headers.getSetCookie().every((c) => /Max-Age=0/.test(c)));
  });

  it("with a revocation store, stays logged out when logout races a slow in-flight write", async () => {
    const hold = gate();
    const handler = app(new CookieStore({ secrets: SECRET_A, revocation: new MemoryStore() }), [], {
      hold: hold.promise,
    });
    const client = new Client(handler);
    await client.text("/");
    const slow = client.fetch("/slow");
    await new Promise((resolve) => setTimeout(resolve, 20)); // the slow request has opened the session
    await (await client.fetch("/logout")).text();
    hold.open();
    const late = await slow;
    await late.text();
    client.absorb(late); // the browser keeps the late cookie: it carries the revoked session
    assert.ok(client.jar.has("session"));
    assert.equal(await client.text("/"), "1", "the revoked session did not come back");
  });

  it("without one, a slow in-flight write brings a logged-out session back (documented limit)", async () => {
    const hold = gate();
    const client = new Client(app(new CookieStore({ secrets: SECRET_A }), [], { hold: hold.promise }));
    await client.text("/");
    const slow = client.fetch("/slow");
    await new Promise((resolve) => setTimeout(resolve, 20));
    await (await client.fetch("/logout")).text();
    hold.open();
    await (await slow).text();
    assert.equal(await client.text("/"), "2");
  });

  it("answers 503 when the revocation store is down, instead of a fresh session", async () => {
    const failing: SessionStore = {
      capabilities: { compareAndSet: true, ttl: false },
      load: () => Promise.reject(new Error("connection refused")),
      save: () => Promise.resolve(true),
      destroy: () => Promise.resolve(),
    };
    const sealer = new CookieStore({ secrets: SECRET_A });
    const client = new Client(app(sealer));
    await client.text("/");
    const down = new Client(app(new CookieStore({ secrets: SECRET_A, revocation: failing })));
    down.jar = new Map(client.jar);
    assert.equal((await down.fetch("/")).status, 503);
  });
});
