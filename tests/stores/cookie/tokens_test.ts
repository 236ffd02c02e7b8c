// The cookie store's opening of a seal (src/stores/cookie/tokens.ts): only the one canonical
// spelling of a seal is decrypted, a payload must be a session that has not expired, and the
// cache of tokens sealed or opened before spares a decryption without sparing any check.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { CompactEncrypt } from "jose";
import { CookieStore } from "../../../src/stores/cookie.ts";
import { MemoryStore } from "../../../src/stores/memory.ts";
import { Client } from "../../conformance/client.ts";
import {
  app,
  deriveForInterop,
  ID,
  INVALID,
  jar,
  opens,
  randomText,
  record,
  refused,
  SECRET_A,
  SECRET_B,
  tamper,
} from "./seals.ts";

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/**
 * Another spelling of base64url `text` that decodes to the same bytes: its last character with an
 * unused low bit set. `length` is the length of the whole part when `text` is only its end.
 */
function respell(text: string, length = text.length): string {
  const index = ALPHABET.indexOf(text.at(-1)!);
  assert.ok(length % 4 === 2 || length % 4 === 3, "the part has unused bits");
  return text.slice(0, -1) + ALPHABET[index | 1]!;
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

describe("CookieStore: opening", () => {
  describe("invalid cookies open as malformed, with a detail that says why", () => {
    const store = new CookieStore({ secrets: SECRET_A });

    async function rejects(value: string, why: RegExp): Promise<void> {
      await refused(store, new Map([["session", value]]), "malformed", why);
    }

    it("a seal respelled in non-canonical base64url, in any part, single or chunked, before decryption", async () => {
      await countingDecrypts(async (decrypts) => {
        const fresh = new CookieStore({ secrets: SECRET_A, cacheSize: 0 });
        const token = (await fresh.seal(ID, record({ user: "ada" }), "session"))[0]!.value;
        const parts = token.split(".");
        // Parts whose last character carries unused bits: the header and the tag always do.
        const spare = parts.flatMap((part, i) => (part.length % 4 === 0 ? [] : [i]));
        assert.ok(spare.includes(0) && spare.includes(4), `parts with spare bits: ${spare.join(", ")}`);
        for (const index of spare) {
          const respelled = [...parts];
          respelled[index] = respell(parts[index]!);
          await refused(
            fresh,
            new Map([["session", respelled.join(".")]]),
            "malformed",
            /canonical base64url/,
          );
        }
        assert.equal(decrypts(), 0, "refused before any decryption");
        await opens(fresh, new Map([["session", token]])); // the canonical spelling still opens

        const small = new CookieStore({ secrets: SECRET_A, chunkSize: 1000, cacheSize: 0 });
        const chunks = jar(await small.seal(ID, record({ blob: randomText(3000) }), "session"));
        const last = `session.${chunks.size - 1}`;
        const tail = chunks.get(last)!; // ends with the tag
        const respelled = new Map(chunks).set(last, tail.slice(0, -1) + respell(tail.slice(-1), 22));
        const before = decrypts();
        await refused(small, respelled, "malformed", /canonical base64url/);
        assert.equal(decrypts(), before, "a chunked seal too is refused before decryption");
      });
    });

    it("garbage", async () => {
      await rejects("not-a-seal", /malformed/);
      await rejects("a.b.c.d.e", /malformed/);
    });

    it("a payload that is not a session (a JWE of other JSON under the right key)", async () => {
      const { key, kid } = await deriveForInterop(SECRET_A);
      const token = await new CompactEncrypt(new TextEncoder().encode('{"sub":"ada"}'))
        .setProtectedHeader({ alg: "dir", enc: "A256GCM", kid })
        .encrypt(key);
      await rejects(token, /malformed payload/);
    });

    it("expired, by the injected clock", async () => {
      let now = 1_700_000_000_000;
      const clocked = new CookieStore({ secrets: SECRET_A, now: () => now });
      const cookies = jar(await clocked.seal(ID, record({ user: "ada" }, now, 1000), "session"));
      now += 999;
      await opens(clocked, cookies);
      now += 1;
      await refused(clocked, cookies, "malformed", /expired/);
    });

    it("expires after idleTimeout of inactivity, by the sealed expiry", async () => {
      let now = 1_700_000_000_000;
      const client = new Client(
        app(new CookieStore({ secrets: SECRET_A, now: () => now }), [], { now: () => now }),
      );
      await client.text("/");
      assert.equal(await client.text("/"), "2");
      now += 5400_000; // idle past the default idleTimeout + touchAfter (3600 + 1800 s)
      assert.equal(await client.text("/"), "1");
    });
  });

  describe("cache of sealed and opened tokens", () => {
    it("opens a token it sealed, and a second time one it opened, without decryption", async () => {
      await countingDecrypts(async (decrypts) => {
        const saved = record({ user: "ada", cart: [1, 2] });
        const store = new CookieStore({ secrets: SECRET_A });
        const own = jar(await store.seal(ID, saved, "session"));
        assert.deepEqual(await opens(store, own), { id: ID, record: saved, stale: false });
        assert.equal(decrypts(), 0, "its own seal opens from the cache");

        const foreign = jar(await new CookieStore({ secrets: SECRET_A }).seal(ID, saved, "session"));
        const first = await opens(store, foreign);
        assert.equal(decrypts(), 1, "a token sealed elsewhere is decrypted once");
        (first.record.data.cart as number[]).push(3); // a caller changing what it got back
        const second = await opens(store, foreign);
        assert.equal(decrypts(), 1, "and opens from the cache the second time");
        assert.deepEqual(second, { id: ID, record: saved, stale: false });
        assert.notEqual(second.record, first.record);
      });
    });

    it("serves chunked tokens and the retired-secret flag from the cache too", async () => {
      await countingDecrypts(async (decrypts) => {
        const saved = record({ blob: randomText(3000) });
        const small = new CookieStore({ secrets: SECRET_A, chunkSize: 1000 });
        const chunks = jar(await small.seal(ID, saved, "session"));
        assert.ok(chunks.size > 1);
        assert.deepEqual((await opens(small, chunks)).record, saved);
        assert.equal(decrypts(), 0);

        const old = jar(await new CookieStore({ secrets: SECRET_A }).seal(ID, saved, "session"));
        const rotated = new CookieStore({ secrets: [SECRET_B, SECRET_A] });
        assert.equal((await opens(rotated, old)).stale, true);
        assert.equal((await opens(rotated, old)).stale, true);
        assert.equal(decrypts(), 1);
      });
    });

    it("still refuses an expired token on a hit", async () => {
      await countingDecrypts(async (decrypts) => {
        let now = 1_700_000_000_000;
        const store = new CookieStore({ secrets: SECRET_A, now: () => now });
        const cookies = jar(await store.seal(ID, record({ user: "ada" }, now, 5000), "session"));
        await opens(store, cookies);
        now += 5000;
        await refused(store, cookies, "malformed", /expired/);
        await refused(store, cookies, "malformed", /expired/);
        assert.equal(decrypts(), 1, "the entry was dropped once expired: the last open decrypted");
      });
    });

    it("still checks a hit against the revocation store", async () => {
      await countingDecrypts(async (decrypts) => {
        const store = new CookieStore({ secrets: SECRET_A, revocation: new MemoryStore() });
        const now = Date.now();
        const v1 = jar(await store.seal(ID, record({ n: 1 }, now, 60_000, 1), "session"));
        await opens(store, v1);
        await opens(store, v1);
        assert.equal(decrypts(), 0);
        const v2 = jar(await store.seal(ID, record({ n: 2 }, now, 60_000, 2), "session"));
        await refused(store, v1, "superseded");
        assert.equal(decrypts(), 0, "refused on the cached entry");
        await refused(store, v1, "superseded");
        assert.equal(decrypts(), 1, "and never cached again");
        await store.revoke(ID, record({}, now, 60_000, 0));
        await refused(store, v2, "ended");
        assert.equal(decrypts(), 1, "the latest seal, refused on its cached entry");
      });
    });

    it("never serves a tampered token from the cache", async () => {
      await countingDecrypts(async (decrypts) => {
        const store = new CookieStore({ secrets: SECRET_A });
        const [cookie] = await store.seal(ID, record({ user: "ada" }), "session");
        await opens(store, jar([cookie!]));
        for (const segment of [0, 2, 3, 4]) {
          const forged = new Map([["session", tamper(cookie!.value, segment)]]);
          await refused(store, forged, "malformed", INVALID);
          await refused(store, forged, "malformed", INVALID);
        }
        // A changed header is refused before decryption; a changed iv, ciphertext or tag is
        // decrypted, refused, and decrypted again the second time: never cached.
        assert.equal(decrypts(), 6);
        await opens(store, jar([cookie!]));
        assert.equal(decrypts(), 6, "the genuine token still opens from the cache");
      });
    });

    it("decrypts every time with cacheSize 0", async () => {
      await countingDecrypts(async (decrypts) => {
        const store = new CookieStore({ secrets: SECRET_A, cacheSize: 0 });
        const cookies = jar(await store.seal(ID, record({ user: "ada" }), "session"));
        await opens(store, cookies);
        await opens(store, cookies);
        assert.equal(decrypts(), 2);
      });
    });

    it("keeps at most two generations of cacheSize tokens", async () => {
      await countingDecrypts(async (decrypts) => {
        const store = new CookieStore({ secrets: SECRET_A, cacheSize: 2 });
        const jars = [];
        for (let i = 0; i < 5; i++) jars.push(jar(await store.seal(ID, record({ i }), "session")));
        await opens(store, jars[4]!);
        await opens(store, jars[3]!);
        assert.equal(decrypts(), 0, "the newest two generations are cached");
        await opens(store, jars[0]!);
        assert.equal(decrypts(), 1, "the oldest token was evicted");
      });
    });
  });
});
