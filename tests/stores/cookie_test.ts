import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { base64url, compactDecrypt, CompactEncrypt } from "jose";
import { CookieStore } from "../../src/stores/cookie.ts";
import { MemoryStore } from "../../src/stores/memory.ts";
import { SessionConflictError, SessionTooLargeError, StoreUnavailableError } from "../../src/errors.ts";
import {
  ENDED_KEY,
  type InvalidSeal,
  isEnded,
  type OpenedSession,
  type SealedCookie,
  type SessionStore,
  type StoredSession,
} from "../../src/store.ts";
import { randomKey } from "../conformance/util.ts";
import { Client, counted, gate } from "../conformance/client.ts";
import { getSession, withSession } from "../../mod.ts";
import type { InvalidCookieEvent } from "../../src/options.ts";
import { ENDED_GRACE_MS } from "../../src/conflict.ts";

const SECRET_A = "secret A: at least thirty-two characters long";
const SECRET_B = "secret B: at least thirty-two characters long";
const ID = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const INVALID = /^Invalid session cookie: /;

function record(data: Record<string, unknown>, now = Date.now(), ttl = 60_000, version = 1): StoredSession {
  return { data, version, createdAt: now, expiresAt: now + ttl };
}

/** A cookie getter over the cookies a seal returned (what the browser would send back). */
function jar(cookies: SealedCookie[]): Map<string, string> {
  return new Map(cookies.map((cookie) => [cookie.name, cookie.value]));
}

function getter(cookies: Map<string, string>): (name: string) => string | undefined {
  return (name) => cookies.get(name);
}

/** Opens and requires a session: fails the test on `null` or an invalid seal. */
async function opens(
  store: CookieStore,
  cookies: Map<string, string>,
  name = "session",
): Promise<OpenedSession> {
  const result = await store.open(getter(cookies), name);
  assert.ok(result !== null && !("invalid" in result), `did not open: ${JSON.stringify(result)}`);
  return result;
}

/** Opens and requires an invalid seal of the given kind, whose detail message matches `why`. */
async function refused(
  store: CookieStore,
  cookies: Map<string, string>,
  kind: InvalidSeal["invalid"],
  why?: RegExp,
  name = "session",
): Promise<void> {
  const result = await store.open(getter(cookies), name);
  assert.ok(result !== null && "invalid" in result, `opened: ${JSON.stringify(result)}`);
  assert.equal(result.invalid, kind);
  if (why !== undefined) {
    assert.ok(result.detail instanceof Error);
    assert.match(result.detail.message, INVALID);
    assert.match(result.detail.message, why);
  }
}

/** What `open` answered, without the detail: `{ invalid, at }`, or the id of an opened session. */
function pick(result: OpenedSession | InvalidSeal | null): unknown {
  if (result === null) return null;
  if ("invalid" in result) return { invalid: result.invalid, at: result.at };
  return { id: result.id };
}

/** Bytes the cookies take in a `Cookie` header: `name=value` pairs joined by `; `. */
function headerBytes(cookies: SealedCookie[]): number {
  return cookies.map((c) => `${c.name}=${c.value}`).join("; ").length;
}

/** Random base64url text: deflate gains little on it, so it stays large when sealed. */
function randomText(length: number): string {
  let text = "";
  while (text.length < length) text += randomKey();
  return text.slice(0, length);
}

function decodeHeader(token: string): Record<string, unknown> {
  return JSON.parse(new TextDecoder().decode(base64url.decode(token.split(".")[0]!)));
}

/** Changes the first character of segment `index` of a compact JWE (never a padding-only bit). */
function tamper(token: string, index: number): string {
  const parts = token.split(".");
  const segment = parts[index]!;
  parts[index] = (segment[0] === "A" ? "B" : "A") + segment.slice(1);
  return parts.join(".");
}

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
 * The key a secret seals with, derived here independently of the store (HKDF-SHA-256, the
 * store's documented salt and info), with the `kid` it is named by: what another JOSE
 * implementation needs to open the store's seals, or to seal for it.
 */
async function deriveForInterop(secret: string): Promise<{ key: CryptoKey; kid: string }> {
  const encode = (text: string) => new TextEncoder().encode(text);
  const base = await crypto.subtle.importKey("raw", encode(secret), "HKDF", false, ["deriveBits"]);
  const params = (info: string) => ({
    name: "HKDF",
    hash: "SHA-256",
    salt: encode("websession cookie store"),
    info: encode(info),
  });
  const keyBits = await crypto.subtle.deriveBits(params("websession/cookie-store/A256GCM/v1"), base, 256);
  const kidBits = await crypto.subtle.deriveBits(params("websession/cookie-store/kid/v1"), base, 48);
  const key = await crypto.subtle.importKey("raw", keyBits, "AES-GCM", false, ["encrypt", "decrypt"]);
  return { key, kid: base64url.encode(new Uint8Array(kidBits)) };
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

/**
 * The longest blob of `randomText` whose session `store` still seals, and the cookies of it: a
 * binary search between a length that seals and one that does not. Lengths are searched, not
 * assumed monotonic (deflate may shrink a longer text better): the result is always a length that
 * seals next to one that does not.
 */
async function largestAccepted(
  store: CookieStore,
  blob: string,
): Promise<{ length: number; cookies: SealedCookie[]; saved: StoredSession }> {
  const now = Date.now();
  const attempt = async (length: number) => {
    const saved = record({ blob: blob.slice(0, length) }, now);
    try {
      return { saved, cookies: await store.seal(ID, saved, "session") };
    } catch (error) {
      if (error instanceof SessionTooLargeError) return undefined;
      throw error;
    }
  };
  let lo = 0;
  let hi = blob.length;
  assert.ok(await attempt(lo), "an empty blob seals");
  assert.equal(await attempt(hi), undefined, "the whole blob does not");
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (await attempt(mid)) lo = mid;
    else hi = mid;
  }
  return { length: lo, ...(await attempt(lo))! };
}

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

  it("reveals nothing: no data, no id, and a header of alg, enc and a short kid", async () => {
    const store = new CookieStore({ secrets: SECRET_A });
    const [cookie] = await store.seal(ID, record({ user: "ada-lovelace" }), "session");
    const value = cookie!.value;
    assert.ok(!value.includes(ID));
    assert.ok(!new TextDecoder().decode(base64url.decode(value.split(".")[3]!)).includes("ada-lovelace"));
    const header = decodeHeader(value);
    assert.deepEqual(Object.keys(header).sort(), ["alg", "enc", "kid"]);
    assert.equal(header.alg, "dir");
    assert.equal(header.enc, "A256GCM");
    assert.match(String(header.kid), /^[A-Za-z0-9_-]{8}$/);
    assert.equal(value.split(".")[1], ""); // dir: no encrypted key
  });

  it("seals standard compact JWEs that jose opens with the derived key alone, plain or deflated", async () => {
    const sealer = new CookieStore({ secrets: SECRET_A });
    const { key, kid } = await deriveForInterop(SECRET_A);
    const cases: Array<[StoredSession, string | undefined]> = [
      [record({ user: "ada" }), undefined],
      [record({ list: "abc".repeat(400) }), "DEF"],
    ];
    for (const [saved, zip] of cases) {
      const [cookie] = await sealer.seal(ID, saved, "session");
      const [header, encryptedKey, iv, ciphertext, tag] = cookie!.value.split(".");
      assert.equal(encryptedKey, "");
      assert.equal(iv!.length, 16); // 96 bits
      assert.equal(tag!.length, 22); // 128 bits
      assert.ok(ciphertext!.length > 0);
      assert.equal(decodeHeader(header!).kid, kid);
      assert.equal(decodeHeader(header!).zip, zip);
      // No option but the algorithms: a plain RFC 7516 consumer opens it.
      const { plaintext, protectedHeader } = await compactDecrypt(cookie!.value, key, {
        keyManagementAlgorithms: ["dir"],
        contentEncryptionAlgorithms: ["A256GCM"],
      });
      assert.equal(protectedHeader.zip, zip);
      assert.deepEqual(JSON.parse(new TextDecoder().decode(plaintext)), { id: ID, record: saved });
    }
    // A fresh iv for every seal.
    const ivs = new Set<string>();
    for (let i = 0; i < 300; i++) {
      ivs.add((await sealer.seal(ID, record({}), "session"))[0]!.value.split(".")[2]!);
    }
    assert.equal(ivs.size, 300);
  });

  it("opens what another JOSE producer sealed with the derived key and kid, plain or deflated", async () => {
    const { key, kid } = await deriveForInterop(SECRET_A);
    const opener = new CookieStore({ secrets: SECRET_A, cacheSize: 0 });
    for (const zip of [undefined, "DEF"] as const) {
      const saved = record({ from: "elsewhere", zip: zip ?? "none", pad: "xy".repeat(300) });
      const token = await new CompactEncrypt(
        new TextEncoder().encode(JSON.stringify({ id: ID, record: saved })),
      )
        .setProtectedHeader({ alg: "dir", enc: "A256GCM", kid, ...(zip && { zip }) })
        .encrypt(key);
      assert.deepEqual(await opens(opener, new Map([["session", token]])), {
        id: ID,
        record: saved,
        stale: false,
      });
    }
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

  describe("rotation", () => {
    it("opens a cookie sealed with a retired secret as stale, and seals with the first", async () => {
      const old = new CookieStore({ secrets: SECRET_A });
      const rotated = new CookieStore({ secrets: [SECRET_B, SECRET_A] });
      const saved = record({ user: "ada" });
      const oldCookies = await old.seal(ID, saved, "session");
      const opened = await opens(rotated, jar(oldCookies));
      assert.equal(opened.stale, true);
      assert.deepEqual(opened.record, saved);

      const newCookies = await rotated.seal(ID, saved, "session");
      assert.notEqual(decodeHeader(newCookies[0]!.value).kid, decodeHeader(oldCookies[0]!.value).kid);
      assert.equal((await opens(rotated, jar(newCookies))).stale, false);
      // The new seal is the new secret's alone: a store knowing only the old one refuses it.
      await refused(old, jar(newCookies), "malformed", /unknown key/);
    });

    it("refuses a cookie once its secret is dropped from the list", async () => {
      const cookies = await new CookieStore({ secrets: SECRET_A }).seal(ID, record({}), "session");
      await refused(new CookieStore({ secrets: SECRET_B }), jar(cookies), "malformed", /unknown key/);
    });
  });

  describe("invalid cookies open as malformed, with a detail that says why", () => {
    const store = new CookieStore({ secrets: SECRET_A });

    async function sealed(): Promise<string> {
      return (await store.seal(ID, record({ user: "ada" }), "session"))[0]!.value;
    }

    async function rejects(value: string, why: RegExp): Promise<void> {
      await refused(store, new Map([["session", value]]), "malformed", why);
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
      const forged = base64url.encode(JSON.stringify({ ...decodeHeader(token), x: 1 }));
      await rejects([forged, ...token.split(".").slice(1)].join("."), /decryption failed/);
    });

    it("header naming an unknown kid", async () => {
      const token = await sealed();
      const forged = base64url.encode(JSON.stringify({ ...decodeHeader(token), kid: "AAAAAAAA" }));
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
      const header = base64url.encode(JSON.stringify({ ...decodeHeader(token), enc: "A128GCM" }));
      await rejects([header, ...token.split(".").slice(1)].join("."), /algorithm not allowed/);
    });

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
  });

  describe("size: the Cookie header budget and per-cookie limits", () => {
    it("by default, the largest session accepted stays within 6144 bytes of Cookie header, one byte more is refused", async () => {
      const store = new CookieStore({ secrets: SECRET_A });
      const blob = randomText(12_500); // ~12.5 KB: sealed into ~17 KB of cookies before the budget
      await assert.rejects(store.seal(ID, record({ blob }), "session"), {
        name: "SessionTooLargeError",
        message: /over maxCookieHeaderBytes "6144"/,
      });
      const { length, cookies, saved } = await largestAccepted(store, blob);
      const bytes = headerBytes(cookies);
      assert.ok(bytes <= 6144, `${bytes} bytes`);
      assert.ok(bytes > 6144 - 100, `${bytes} bytes: the budget, not another limit, stopped it`);
      assert.ok(cookies.every((c) => c.name.length + c.value.length <= 4096));
      assert.deepEqual((await opens(store, jar(cookies))).record, saved);
      await assert.rejects(
        store.seal(ID, record({ blob: blob.slice(0, length + 1) }), "session"),
        SessionTooLargeError,
      );
    });

    it("counts names, values and the '; ' between cookies against maxCookieHeaderBytes", async () => {
      const store = new CookieStore({ secrets: SECRET_A, compress: false, chunkSize: 500, maxCookies: 20 });
      const saved = record({ blob: randomText(2000) });
      const cookies = await store.seal(ID, saved, "session");
      assert.ok(cookies.length >= 5);
      const bytes = headerBytes(cookies);
      // The same session against a budget of exactly its size, and one byte less.
      const exact = new CookieStore({
        secrets: SECRET_A,
        compress: false,
        chunkSize: 500,
        maxCookies: 20,
        maxCookieHeaderBytes: bytes,
      });
      const sealed = await exact.seal(ID, saved, "session");
      assert.equal(headerBytes(sealed), bytes);
      assert.deepEqual((await opens(exact, jar(sealed))).record, saved);
      const under = new CookieStore({
        secrets: SECRET_A,
        compress: false,
        chunkSize: 500,
        maxCookies: 20,
        maxCookieHeaderBytes: bytes - 1,
      });
      await assert.rejects(under.seal(ID, saved, "session"), {
        name: "SessionTooLargeError",
        message: new RegExp(
          `${bytes} bytes of Cookie header sealed, over maxCookieHeaderBytes "${bytes - 1}"`,
        ),
      });
    });

    it("a larger maxCookieHeaderBytes lets a ~10 KB session split over numbered cookies, and reassembles it", async () => {
      const store = new CookieStore({ secrets: SECRET_A, maxCookieHeaderBytes: 20_000 });
      const saved = record({ blob: randomText(10_000) });
      const cookies = await store.seal(ID, saved, "session");
      assert.ok(cookies.length >= 3, `${cookies.length} cookies`);
      assert.deepEqual(cookies.map((c) => c.name), cookies.map((_, i) => `session.${i}`));
      for (const cookie of cookies) {
        assert.ok(cookie.value.length <= 3800, `${cookie.value.length} characters`);
        assert.match(cookie.value, /^[A-Za-z0-9_.-]+$/);
      }
      assert.ok(cookies[0]!.value.startsWith(`${cookies.length}.`));
      assert.ok(headerBytes(cookies) <= 20_000);
      assert.deepEqual(await opens(store, jar(cookies)), { id: ID, record: saved, stale: false });
    });

    it("keeps every cookie's name and value within 4096 bytes, even with a long name", async () => {
      const name = `session_${"n".repeat(200)}`;
      const store = new CookieStore({ secrets: SECRET_A, chunkSize: 4000, maxCookieHeaderBytes: 20_000 });
      const saved = record({ blob: randomText(8000) });
      const cookies = await store.seal(ID, saved, name);
      assert.ok(cookies.length >= 2);
      for (const cookie of cookies) {
        assert.ok(
          cookie.name.length + cookie.value.length <= 4096,
          `${cookie.name.length + cookie.value.length}`,
        );
      }
      assert.deepEqual((await opens(store, jar(cookies), name)).record, saved);
      const single = await store.seal(ID, record({ blob: randomText(2500) }), name);
      assert.equal(single.length, 1);
      assert.ok(single[0]!.name.length + single[0]!.value.length <= 4096);
    });

    it("refuses with SessionTooLargeError beyond maxCookies", async () => {
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

  describe("chunking", () => {
    const store = new CookieStore({ secrets: SECRET_A, maxCookieHeaderBytes: 20_000 });

    async function big(): Promise<{ saved: StoredSession; cookies: SealedCookie[] }> {
      const saved = record({ blob: randomText(10_000) });
      return { saved, cookies: await store.seal(ID, saved, "session") };
    }

    it("splits a session just over one cookie into two within the default budget", async () => {
      const defaults = new CookieStore({ secrets: SECRET_A });
      const saved = record({ blob: randomText(4000) });
      const cookies = await defaults.seal(ID, saved, "session");
      assert.deepEqual(cookies.map((c) => c.name), ["session.0", "session.1"]);
      assert.ok(headerBytes(cookies) <= 6144);
      assert.deepEqual((await opens(defaults, jar(cookies))).record, saved);
    });

    it("honours a smaller chunkSize", async () => {
      const small = new CookieStore({ secrets: SECRET_A, chunkSize: 500, maxCookies: 10 });
      const saved = record({ blob: randomText(2000) });
      const cookies = await small.seal(ID, saved, "s");
      assert.ok(cookies.length >= 5);
      assert.ok(cookies.every((c) => c.value.length <= 500));
      assert.deepEqual((await opens(small, jar(cookies), "s")).record, saved);
    });

    it("treats a missing chunk as malformed", async () => {
      const cookies = jar((await big()).cookies);
      cookies.delete("session.1");
      await refused(store, cookies, "malformed", /chunk "session.1" of \d is missing/);
    });

    it("treats a missing last chunk as malformed", async () => {
      const sealed = (await big()).cookies;
      const cookies = jar(sealed);
      cookies.delete(`session.${sealed.length - 1}`);
      await refused(store, cookies, "malformed", /is missing/);
    });

    it("treats a truncated chunk as malformed", async () => {
      const cookies = jar((await big()).cookies);
      cookies.set("session.1", cookies.get("session.1")!.slice(0, -10));
      await refused(store, cookies, "malformed", INVALID);
    });

    it("ignores a leftover chunk past the count (an older, longer seal)", async () => {
      const { saved, cookies } = await big();
      const withExtra = jar(cookies);
      withExtra.set(`session.${cookies.length}`, randomText(100));
      assert.deepEqual((await opens(store, withExtra)).record, saved);
    });

    it("treats reordered chunks as malformed", async () => {
      const cookies = jar((await big()).cookies);
      const one = cookies.get("session.1")!;
      cookies.set("session.1", cookies.get("session.2")!);
      cookies.set("session.2", one);
      await refused(store, cookies, "malformed", INVALID);
    });

    it("treats a first chunk without a valid count as malformed", async () => {
      const cookies = jar((await big()).cookies);
      const head = cookies.get("session.0")!;
      cookies.set("session.0", head.slice(head.indexOf(".") + 1));
      await refused(store, cookies, "malformed", /chunk count/);
      cookies.set("session.0", `9.${head.slice(head.indexOf(".") + 1)}`);
      await refused(store, cookies, "malformed", /outside 2 to maxCookies/);
    });

    it("when both a single cookie and chunks are present, opens the newer record", async () => {
      const older = record({ blob: randomText(10_000) });
      const newer = { ...record({ user: "ada" }), version: 2 };
      const cookies = jar([
        ...(await store.seal(ID, older, "session")),
        ...(await store.seal(ID, newer, "session")),
      ]);
      assert.ok(cookies.has("session") && cookies.has("session.0"));
      assert.deepEqual((await opens(store, cookies)).record, newer);
      cookies.set("session", "garbage");
      assert.deepEqual((await opens(store, cookies)).record, older);
    });
  });

  describe("compression", () => {
    it("makes a repetitive payload smaller, marks it zip DEF in the protected header, and round-trips", async () => {
      const saved = record({
        items: Array.from({ length: 200 }, (_, i) => ({ sku: `item-${i % 7}`, qty: 1 })),
      });
      const plain = await new CookieStore({
        secrets: SECRET_A,
        compress: false,
        maxCookieHeaderBytes: 20_000,
      })
        .seal(ID, saved, "session");
      const store = new CookieStore({ secrets: SECRET_A });
      const packed = await store.seal(ID, saved, "session");
      const size = (cookies: SealedCookie[]) => cookies.reduce((n, c) => n + c.value.length, 0);
      assert.ok(size(packed) * 4 < size(plain), `${size(packed)} vs ${size(plain)}`);
      assert.equal(packed.length, 1);
      const header = decodeHeader(packed[0]!.value);
      assert.equal(header.zip, "DEF");
      assert.equal(header.crit, undefined);
      assert.deepEqual((await opens(store, jar(packed))).record, saved);
      // A store that does not compress still opens compressed seals.
      const noCompress = new CookieStore({ secrets: SECRET_A, compress: false });
      assert.deepEqual((await opens(noCompress, jar(packed))).record, saved);
    });

    it("keeps a deflated seal only when it is shorter, and tries none below the threshold", async () => {
      const tries = new CookieStore({ secrets: SECRET_A, compress: 0 });
      const never = new CookieStore({ secrets: SECRET_A, compress: false });
      let plain = 0;
      for (let i = 0; i < 20; i++) {
        // Small and random: deflate saves a few bytes at most, sometimes less than `"zip":"DEF"` costs.
        const id = randomText(32);
        const saved = record({ t: randomText(40) }, 0, 1);
        const [tried] = await tries.seal(id, saved, "session");
        const [unzipped] = await never.seal(id, saved, "session");
        assert.ok(tried!.value.length <= unzipped!.value.length, "never longer than the plain seal");
        if (decodeHeader(tried!.value).zip === undefined) plain++;
        else assert.ok(tried!.value.length < unzipped!.value.length);
      }
      assert.ok(plain > 0, "the seals deflate could not shorten stayed plain");
      const defaults = new CookieStore({ secrets: SECRET_A });
      const [below] = await defaults.seal(ID, record({ text: "a".repeat(300) }), "session");
      assert.equal(decodeHeader(below!.value).zip, undefined); // under the 512-byte threshold
    });

    it("caps decompression: a deflate bomb is refused without inflating it", async () => {
      // 8 MB of one character deflates to about 8 KB: it fits in a raised budget.
      const sealer = new CookieStore({
        secrets: SECRET_A,
        maxPayloadBytes: 16 * 1024 * 1024,
        maxCookieHeaderBytes: 32_768,
        maxCookies: 10,
      });
      const cookies = await sealer.seal(ID, record({ bomb: "a".repeat(8 * 1024 * 1024) }), "session");
      const opener = new CookieStore({ secrets: SECRET_A, cacheSize: 0 }); // default cap: 128 KiB
      await refused(
        opener,
        jar(cookies),
        "malformed",
        /decompressed payload exceeds maxPayloadBytes "131072"/,
      );
      const lenient = new CookieStore({
        secrets: SECRET_A,
        maxPayloadBytes: 16 * 1024 * 1024,
        maxCookies: 10,
      });
      const opened = await opens(lenient, jar(cookies));
      assert.equal((opened.record.data.bomb as string).length, 8 * 1024 * 1024);
    });
  });

  describe("revocation store: only the latest seal of a live session opens", () => {
    it("refuses an older seal of a live session as superseded: no rollback by replay", async () => {
      const revocation = new MemoryStore();
      const store = new CookieStore({ secrets: SECRET_A, revocation });
      assert.equal(store.capabilities.revocation, true);
      const now = Date.now();
      const before = jar(await store.seal(ID, record({ credits: 10 }, now, 60_000, 1), "session"));
      const after = jar(await store.seal(ID, record({ credits: 0 }, now, 60_000, 2), "session"));
      await refused(store, before, "superseded", /version "1" was superseded by version "2"/);
      assert.equal((await opens(store, after)).record.data.credits, 0);
      // Another instance sharing the revocation store refuses it too: nothing is per process.
      const other = new CookieStore({ secrets: SECRET_A, revocation, cacheSize: 0 });
      await refused(other, before, "superseded");
      assert.equal((await opens(other, after)).record.data.credits, 0);
    });

    it("without one, an older seal of a live session still opens (replay: what revocation: false means)", async () => {
      const store = new CookieStore({ secrets: SECRET_A });
      const now = Date.now();
      const before = jar(await store.seal(ID, record({ credits: 10 }, now, 60_000, 1), "session"));
      await store.seal(ID, record({ credits: 0 }, now, 60_000, 2), "session");
      assert.equal((await opens(store, before)).record.data.credits, 10);
    });

    it("records each seal's version by compare-and-set: one store write per seal, one read per open", async () => {
      const revocation = counted(new MemoryStore());
      const store = new CookieStore({ secrets: SECRET_A, revocation: revocation.store });
      const now = Date.now();
      const v1 = jar(await store.seal(ID, record({ n: 1 }, now, 60_000, 1), "session"));
      assert.deepEqual(revocation.calls, { load: 0, save: 1, destroy: 0, touch: 0 });
      await opens(store, v1); // from the token cache: still checked
      assert.equal(revocation.calls.load, 1);
      await store.seal(ID, record({ n: 2 }, now, 60_000, 2), "session");
      assert.deepEqual(revocation.calls, { load: 1, save: 2, destroy: 0, touch: 0 });
    });

    it("keeps in the revocation store only the version, the times and a fingerprint of the data", async () => {
      const now = Date.now();
      const revocation = new MemoryStore();
      const store = new CookieStore({ secrets: SECRET_A, revocation, now: () => now + 7 });
      const saved = record({ user: "ada-lovelace", card: "4111 1111 1111 1111" }, now, 60_000, 3);
      await store.seal(ID, saved, "session");
      assert.equal(await revocation.count(), 1);
      const kept = await revocation.load(await sha256(ID)); // keyed by a hash of the id, never the id
      assert.deepEqual(Object.keys(kept!.data).sort(), ["at", "digest"]);
      assert.equal(kept!.data.at, now + 7, "when it was sealed, by the store's clock");
      assert.match(String(kept!.data.digest), /^[A-Za-z0-9_-]{43}$/);
      assert.equal(kept!.version, 3);
      assert.equal(kept!.expiresAt, saved.expiresAt);
      assert.ok(!JSON.stringify(kept).includes("ada-lovelace") && !JSON.stringify(kept).includes("4111"));
    });

    it("refuses a concurrent seal of the same version with different data; accepts one with the same data", async () => {
      const revocation = new MemoryStore();
      const store = new CookieStore({ secrets: SECRET_A, revocation });
      const now = Date.now();
      await store.seal(ID, record({ cart: [] }, now, 60_000, 1), "session");
      // Two requests opened version 1; both seal a version 2.
      const winner = jar(await store.seal(ID, record({ cart: ["book"] }, now, 60_000, 2), "session"));
      await assert.rejects(store.seal(ID, record({ cart: ["pen"] }, now, 60_000, 2), "session"), {
        name: "SessionConflictError",
        message: /version "2" was sealed by another request/,
      });
      assert.deepEqual((await opens(store, winner)).record.data, { cart: ["book"] });
      // Concurrent expiry refreshes of unchanged data are the session as it stands: both seal.
      const refresh = jar(await store.seal(ID, record({ cart: ["book"] }, now + 1000, 60_000, 2), "session"));
      assert.deepEqual((await opens(store, refresh)).record.data, { cart: ["book"] });
      assert.deepEqual((await opens(store, winner)).record.data, { cart: ["book"] });
    });

    it("works with a revocation store that answers a refused save with plain false", async () => {
      const inner = new MemoryStore();
      const plain: SessionStore = {
        capabilities: inner.capabilities,
        load: (key) => inner.load(key),
        save: async (key, next, expected) => (await inner.save(key, next, expected)) === true,
        destroy: (key) => inner.destroy(key),
      };
      const store = new CookieStore({ secrets: SECRET_A, revocation: plain });
      const now = Date.now();
      const v1 = jar(await store.seal(ID, record({ n: 1 }, now, 60_000, 1), "session"));
      await store.seal(ID, record({ n: 2 }, now, 60_000, 2), "session");
      await refused(store, v1, "superseded");
      await assert.rejects(store.seal(ID, record({ n: 9 }, now, 60_000, 2), "session"), SessionConflictError);
      await store.revoke(ID, record({}, now, 60_000, 2));
      await assert.rejects(store.seal(ID, record({ n: 3 }, now, 60_000, 3), "session"), {
        name: "SessionConflictError",
        message: /ended/,
      });
    });

    it("opens a seal the revocation store has no record of, and records the session on its next seal", async () => {
      const now = Date.now();
      // Sealed before a revocation store was configured.
      const earlier = jar(
        await new CookieStore({ secrets: SECRET_A }).seal(ID, record({ n: 4 }, now, 60_000, 4), "session"),
      );
      const revocation = new MemoryStore();
      const store = new CookieStore({ secrets: SECRET_A, revocation });
      assert.equal((await opens(store, earlier)).record.version, 4);
      const next = jar(await store.seal(ID, record({ n: 5 }, now, 60_000, 5), "session"));
      await refused(store, earlier, "superseded");
      await opens(store, next);
    });

    it("writes nothing to the revocation store when the session is too large", async () => {
      const revocation = counted(new MemoryStore());
      const store = new CookieStore({ secrets: SECRET_A, revocation: revocation.store });
      await assert.rejects(
        store.seal(ID, record({ blob: randomText(12_500) }), "session"),
        SessionTooLargeError,
      );
      assert.equal(revocation.calls.save, 0);
    });

    it("refuses every seal of a revoked session as ended, with a tombstone until it would have expired", async () => {
      let now = 1_700_000_000_000;
      const revocation = new MemoryStore({ now: () => now });
      const store = new CookieStore({ secrets: SECRET_A, revocation, now: () => now });
      const v1 = jar(await store.seal(ID, record({ n: 1 }, now, 5000, 1), "session"));
      const v2 = jar(await store.seal(ID, record({ n: 2 }, now, 5000, 2), "session"));
      const otherId = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
      const other = jar(await store.seal(otherId, record({ n: 1 }, now, 5000, 1), "session"));
      await store.revoke(ID, record({}, now, 5000, 0));
      await refused(store, v2, "ended", /destroyed or regenerated/);
      await refused(store, v1, "ended");
      assert.equal((await opens(store, other)).id, otherId, "only that session");
      const tombstone = await revocation.load(await sha256(ID));
      assert.ok(isEnded(tombstone));
      assert.deepEqual(tombstone!.data, { [ENDED_KEY]: true, at: now });
      await store.revoke(ID, record({}, now, 5000, 0)); // idempotent
      await assert.rejects(store.seal(ID, record({ n: 3 }, now, 5000, 3), "session"), {
        name: "SessionConflictError",
        message: /ended/,
      });
      now += 5000;
      assert.equal(await revocation.load(await sha256(ID)), null, "gone once every seal has expired");
    });

    it("tells when a seal was superseded or its session ended (at, by the injected clock)", async () => {
      let now = 1_700_000_000_000;
      const revocation = new MemoryStore({ now: () => now });
      const store = new CookieStore({ secrets: SECRET_A, revocation, now: () => now });
      const createdAt = now;
      const v1 = jar(await store.seal(ID, record({ n: 1 }, createdAt, 600_000, 1), "session"));
      now += 1_000;
      const v2 = jar(await store.seal(ID, record({ n: 2 }, createdAt, 600_000, 2), "session"));
      now += 5_000;
      const v3 = jar(await store.seal(ID, record({ n: 3 }, createdAt, 600_000, 3), "session"));
      // The newest seal's time: exactly when v2 was superseded, and no earlier than when v1 was.
      assert.deepEqual(pick(await store.open(getter(v2), "session")), {
        invalid: "superseded",
        at: createdAt + 6_000,
      });
      assert.deepEqual(pick(await store.open(getter(v1), "session")), {
        invalid: "superseded",
        at: createdAt + 6_000,
      });
      now += 30_000;
      await store.revoke(ID, record({}, createdAt, 600_000, 3));
      for (const cookies of [v1, v2, v3]) {
        assert.deepEqual(pick(await store.open(getter(cookies), "session")), {
          invalid: "ended",
          at: createdAt + 36_000,
        });
      }
      now += 30_000;
      await store.revoke(ID, record({}, createdAt, 600_000, 3)); // again: the first end stands
      assert.deepEqual(pick(await store.open(getter(v3), "session")), {
        invalid: "ended",
        at: createdAt + 36_000,
      });
    });

    it("without a revocation store, says so and revoke changes nothing", async () => {
      const store = new CookieStore({ secrets: SECRET_A });
      const saved = record({ user: "ada" });
      const cookies = jar(await store.seal(ID, saved, "session"));
      await store.revoke(ID, saved);
      assert.equal(store.capabilities.revocation, false);
      await opens(store, cookies);
    });

    it("reports a revocation store failure as StoreUnavailableError, never as an invalid cookie", async () => {
      const down = counted(new MemoryStore());
      const store = new CookieStore({ secrets: SECRET_A, revocation: down.store });
      const saved = record({ user: "ada" });
      const cookies = jar(await store.seal(ID, saved, "session"));
      down.down = true;
      await assert.rejects(store.open(getter(cookies), "session"), StoreUnavailableError);
      await assert.rejects(store.seal(ID, { ...saved, version: 2 }, "session"), StoreUnavailableError);
      await assert.rejects(store.revoke(ID, saved), StoreUnavailableError);
      down.down = false;
      await opens(store, cookies); // nothing was recorded while it was down
    });
  });

  describe("generations per user (userKey): ending every session of a user", () => {
    const PHONE = "phone-session-id-0000000000000000";
    const LAPTOP = "laptop-session-id-000000000000000";
    const TABLET = "tablet-session-id-000000000000000";

    function clocked(start = 1_700_000_000_000) {
      const clock = { now: start };
      const revocation = counted(new MemoryStore({ now: () => clock.now }));
      const store = new CookieStore({
        secrets: SECRET_A,
        revocation: revocation.store,
        userKey: "user",
        now: () => clock.now,
      });
      return { clock, revocation, store };
    }

    it("ends every session of a user sealed before endUser, and only that user's", async () => {
      const { clock, store } = clocked();
      const ada = (v = 1) => record({ user: "ada", note: "x" }, clock.now, 600_000, v);
      const phone = jar(await store.seal(PHONE, ada(), "session"));
      const laptop = jar(await store.seal(LAPTOP, ada(), "session"));
      const grace = jar(await store.seal(TABLET, record({ user: "grace" }, clock.now), "session"));
      const anonymous = jar(await store.seal(ID, record({ cart: [1] }, clock.now), "session"));
      clock.now += 10_000;
      await store.endUser("ada");
      for (const cookies of [phone, laptop]) {
        assert.deepEqual(pick(await store.open(getter(cookies), "session")), {
          invalid: "ended",
          at: clock.now,
        });
      }
      await refused(store, phone, "ended", /every session of its user was ended/);
      assert.equal(
        ((await store.open(getter(phone), "session")) as InvalidSeal).remote,
        true,
        "ended from elsewhere: the browser may sign in again at once, no grace",
      );
      assert.equal((await opens(store, grace)).id, TABLET);
      assert.equal((await opens(store, anonymous)).id, ID);
      // A login after it opens; so does one on another instance sharing the revocation store.
      clock.now += 1;
      const again = jar(await store.seal("new-phone-session-id-000000000000", ada(), "session"));
      assert.equal((await opens(store, again)).record.data.user, "ada");
      // Sealing an ended session again is refused: it was ended, not merely superseded.
      await assert.rejects(store.seal(PHONE, ada(2), "session"), {
        name: "SessionConflictError",
        message: /every session of its user was ended/,
      });
    });

    it("with except, keeps the current session, which takes the new generation on its next seal", async () => {
      const { clock, store } = clocked();
      const ada = (v: number) => record({ user: "ada" }, clock.now, 600_000, v);
      const phone = jar(await store.seal(PHONE, ada(1), "session"));
      const laptop = jar(await store.seal(LAPTOP, ada(1), "session"));
      const tablet = jar(await store.seal(TABLET, ada(1), "session"));
      clock.now += 1_000;
      await store.endUser("ada", { except: PHONE }); // "sign out other devices", from the phone
      await refused(store, laptop, "ended");
      await refused(store, tablet, "ended");
      assert.equal((await opens(store, phone)).id, PHONE, "kept without being sealed again");
      clock.now += 1_000;
      await store.endUser("ada", { except: PHONE }); // asked again before the phone wrote
      assert.equal((await opens(store, phone)).id, PHONE, "still kept");
      const resealed = jar(await store.seal(PHONE, ada(2), "session"));
      await refused(store, phone, "superseded");
      assert.equal((await opens(store, resealed)).record.version, 2);
      clock.now += 1_000;
      await store.endUser("ada", { except: LAPTOP }); // kept no more: another device asked
      await refused(store, resealed, "ended");
      clock.now += 1_000;
      await store.endUser("ada");
      await refused(store, laptop, "ended", /every session of its user/);
    });

    it("refuses to seal again, as SessionConflictError, a session whose user was ended while a request was in flight", async () => {
      const { clock, store } = clocked();
      const ada = (v: number) => record({ user: "ada", n: v }, clock.now, 600_000, v);
      await store.seal(PHONE, ada(1), "session");
      await store.seal(LAPTOP, ada(1), "session");
      // Both devices' requests opened version 1; the phone signs out the others meanwhile.
      await store.endUser("ada", { except: PHONE });
      await assert.rejects(store.seal(LAPTOP, ada(2), "session"), {
        name: "SessionConflictError",
        message: /Session ended: every session of its user was ended/,
      });
      // Nor does switching to another user let the ended session live on.
      await assert.rejects(
        store.seal(LAPTOP, record({ user: "grace" }, clock.now, 600_000, 2), "session"),
        SessionConflictError,
      );
      await assert.rejects(
        store.seal(LAPTOP, record({}, clock.now, 600_000, 2), "session"),
        SessionConflictError,
      );
      const kept = jar(await store.seal(PHONE, ada(2), "session"));
      assert.equal((await opens(store, kept)).record.data.n, 2);
    });

    it("moves the generation on even when the clock goes back", async () => {
      const { clock, store } = clocked();
      await store.endUser("ada");
      clock.now -= 3_600_000; // another server's clock, an hour behind
      const later = jar(await store.seal(PHONE, record({ user: "ada" }, clock.now, 600_000), "session"));
      assert.equal((await opens(store, later)).id, PHONE);
      await store.endUser("ada");
      await refused(store, later, "ended");
    });

    it("ends a user's session sealed before userKey was set, and opens it until then", async () => {
      const { clock, revocation } = clocked();
      const before = new CookieStore({
        secrets: SECRET_A,
        revocation: revocation.store,
        now: () => clock.now,
      });
      const cookies = jar(await before.seal(PHONE, record({ user: "ada" }, clock.now), "session"));
      const store = new CookieStore({
        secrets: SECRET_A,
        revocation: revocation.store,
        userKey: "user",
        now: () => clock.now,
      });
      assert.equal((await opens(store, cookies)).id, PHONE);
      await store.endUser("ada");
      await refused(store, cookies, "ended");
    });

    it("keeps in the revocation store only hashes of the user id, the generation and times, for 400 days", async () => {
      const { clock, revocation, store } = clocked();
      const start = clock.now;
      await store.seal(PHONE, record({ user: "ada-lovelace" }, clock.now), "session");
      const session = await revocation.store.load(await sha256(PHONE));
      const userKey = await sha256("websession/cookie-store/user-generation\u0000ada-lovelace");
      assert.deepEqual(session!.data, { digest: session!.data.digest, at: start, user: userKey, g: 0 });
      assert.equal(await revocation.store.load(userKey), null, "nothing per user until one is ended");
      clock.now += 5;
      await store.endUser("ada-lovelace", { except: PHONE });
      const generation = await revocation.store.load(userKey);
      assert.deepEqual(generation!.data, { g: start + 5, at: start + 5, keep: await sha256(PHONE), kept: 0 });
      assert.equal(generation!.expiresAt, start + 5 + 400 * 86_400_000);
      await store.seal(PHONE, record({ user: "ada-lovelace" }, start, 60_000, 2), "session");
      assert.equal((await revocation.store.load(await sha256(PHONE)))!.data.g, start + 5);
      assert.ok(!JSON.stringify([session, generation]).includes("ada"));
    });

    it("costs, for a session holding a user, two reads per open and two reads and a write per seal", async () => {
      const { clock, revocation, store } = clocked();
      const calls = () => ({ ...revocation.calls });
      const cookies = jar(await store.seal(PHONE, record({ user: "ada" }, clock.now), "session"));
      assert.deepEqual(calls(), { load: 2, save: 1, destroy: 0, touch: 0 });
      await opens(store, cookies);
      assert.deepEqual(calls(), { load: 4, save: 1, destroy: 0, touch: 0 });
      // A session holding no user: one read per open, one read and a write per seal.
      const anonymous = jar(await store.seal(ID, record({ cart: [] }, clock.now), "session"));
      assert.deepEqual(calls(), { load: 5, save: 2, destroy: 0, touch: 0 });
      await opens(store, anonymous);
      assert.deepEqual(calls(), { load: 6, save: 2, destroy: 0, touch: 0 });
      await store.endUser("ada");
      assert.deepEqual(calls(), { load: 7, save: 3, destroy: 0, touch: 0 });
    });

    it("refuses misuse: userKey without a revocation store or reserved, endUser without userKey", async () => {
      assert.throws(() => new CookieStore({ secrets: SECRET_A, userKey: "user" }), {
        name: "TypeError",
        message: /needs a revocation store/,
      });
      for (const userKey of ["", "__ended", 5]) {
        assert.throws(
          () =>
            new CookieStore({ secrets: SECRET_A, revocation: new MemoryStore(), userKey: userKey as string }),
          TypeError,
        );
      }
      await assert.rejects(
        new CookieStore({ secrets: SECRET_A, revocation: new MemoryStore() }).endUser("ada"),
        { name: "SessionConfigError" },
      );
      const { store } = clocked();
      await assert.rejects(store.endUser(""), TypeError);
      await assert.rejects(store.endUser("ada", { except: "" }), TypeError);
      assert.equal(store.capabilities.users, undefined, "it cannot list a user's sessions");
    });

    it("reports a revocation store failure in endUser as StoreUnavailableError", async () => {
      const { revocation, store } = clocked();
      revocation.down = true;
      await assert.rejects(store.endUser("ada"), StoreUnavailableError);
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
      assert.throws(() => new CookieStore({ secrets: SECRET_A, maxCookieHeaderBytes: 10 }), RangeError);
      assert.throws(
        () => new CookieStore({ secrets: SECRET_A, maxCookieHeaderBytes: 1.5e3 + 0.5 }),
        RangeError,
      );
      assert.throws(() => new CookieStore({ secrets: SECRET_A, maxCookies: 0 }), RangeError);
      assert.throws(() => new CookieStore({ secrets: SECRET_A, maxCookies: 2.5 }), RangeError);
      assert.throws(() => new CookieStore({ secrets: SECRET_A, maxPayloadBytes: -1 }), RangeError);
      assert.throws(() => new CookieStore({ secrets: SECRET_A, compress: -1 }), RangeError);
      assert.throws(() => new CookieStore({ secrets: SECRET_A, cacheSize: -1 }), RangeError);
      assert.throws(() => new CookieStore({ secrets: SECRET_A, cacheSize: 1.5 }), RangeError);
    });
  });
});

async function sha256(text: string): Promise<string> {
  return base64url.encode(
    new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text))),
  );
}

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
      if (path === "/big") session.set("blob", randomText(4000)); // two chunk cookies
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
    assert.ok(client.jar.has("session.0") && client.jar.has("session.1"));
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
    assert.equal(await thief.text("/read"), "2");
    await client.text("/logout");
    assert.equal(await thief.text("/read"), "0", "the stolen copy no longer opens");
    assert.equal((await thief.fetch("/")).status, 409, "nor writes");
  });

  it("without one, a copy of the cookie outlives logout (what capabilities.revocation: false means)", async () => {
    const client = new Client(app(new CookieStore({ secrets: SECRET_A })));
    await client.text("/");
    const copy = client.clone();
    await client.text("/logout");
    assert.equal(await copy.text("/"), "2");
  });

  it("with a revocation store, a replayed older cookie neither opens nor rolls the session back", async () => {
    const handler = app(new CookieStore({ secrets: SECRET_A, revocation: new MemoryStore() }));
    const client = new Client(handler);
    await client.text("/");
    await client.text("/");
    const replay = client.clone(); // the cookie as it was at 2 visits
    assert.equal(await client.text("/"), "3");
    const read = await replay.fetch("/read");
    assert.equal(await read.text(), "0", "served as a fresh, empty session");
    assert.deepEqual(read.headers.getSetCookie(), [], "the browser's newer cookie is left alone");
    assert.equal((await replay.fetch("/")).status, 409, "a change on the replayed cookie is refused");
    assert.equal(await client.text("/read"), "3", "the latest cookie still holds the session");
  });

  it("with a revocation store, a browser that lost a response is refused writes only while it could be in flight, then starts afresh", async () => {
    let now = 1_700_000_000_000;
    const clock = () => now;
    const store = new CookieStore({
      secrets: SECRET_A,
      revocation: new MemoryStore({ now: clock }),
      now: clock,
    });
    const client = new Client(app(store, [], { now: clock }));
    await client.text("/");
    await client.text("/");
    const lost = client.clone(); // the browser never got the response to the next write
    assert.equal(await client.text("/"), "3");
    now += 1_000; // a request in flight when the newer cookie was sealed, or a double submit
    const inFlight = await lost.fetch("/");
    await inFlight.text();
    assert.equal(inFlight.status, 409, "refused while the newer cookie may be on its way");
    assert.deepEqual(inFlight.headers.getSetCookie(), []);
    now += ENDED_GRACE_MS; // long after: the browser evidently missed the newer cookie
    const afresh = await lost.fetch("/");
    assert.equal(afresh.status, 200);
    assert.equal(await afresh.text(), "1", "a fresh session, never the superseded data");
    assert.ok(afresh.headers.getSetCookie().some((c) => c.startsWith("session=")), "and its cookie is sent");
    assert.equal(await lost.text("/"), "2", "it is not locked out");
  });

  it("with a revocation store, a copy of the cookie presented long after logout starts a fresh, empty session", async () => {
    let now = 1_700_000_000_000;
    const clock = () => now;
    const store = new CookieStore({
      secrets: SECRET_A,
      revocation: new MemoryStore({ now: clock }),
      now: clock,
    });
    const client = new Client(app(store, [], { now: clock }));
    await client.text("/");
    await client.text("/");
    const copy = client.clone();
    await client.text("/logout");
    now += ENDED_GRACE_MS - 1;
    assert.equal((await copy.fetch("/")).status, 409, "within the grace: taken for a request in flight");
    now += 1;
    assert.equal(await copy.text("/"), "1", "after it: a new session, without the ended one's data");
  });

  it("with userKey, endUser signs out the other devices, a request in flight included, then everywhere", async () => {
    const hold = gate();
    const store = new CookieStore({ secrets: SECRET_A, revocation: new MemoryStore(), userKey: "user" });
    const handler = withSession(async (request: Request) => {
      const session = await getSession<{ user?: string; n?: number }>(request);
      const url = new URL(request.url);
      if (url.pathname === "/login") {
        session.regenerate();
        session.set("user", url.searchParams.get("user")!);
      }
      if (url.pathname === "/others") await store.endUser(session.get("user")!, { except: session.id });
      if (url.pathname === "/everywhere") await store.endUser(session.get("user")!);
      if (url.pathname === "/slow") {
        await hold.promise;
        session.update("n", (n = 0) => n + 1);
      }
      return new Response(session.get("user") ?? "none");
    }, { store, secrets: "signing secret: at least 32 characters long" });
    const [phone, laptop, tablet] = [new Client(handler), new Client(handler), new Client(handler)];
    for (const device of [phone, laptop, tablet]) assert.equal(await device.text("/login?user=ada"), "ada");
    const grace = new Client(handler);
    await grace.text("/login?user=grace");
    const inFlight = laptop.fetch("/slow"); // opened before the phone signs out the others
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(await phone.text("/others"), "ada");
    hold.open();
    const late = await inFlight;
    await late.text();
    assert.equal(late.status, 409, "the in-flight write of a signed-out device is refused");
    assert.deepEqual(late.headers.getSetCookie(), [], "and sends no cookie");
    assert.equal(await laptop.text("/read"), "none");
    assert.equal(await tablet.text("/read"), "none");
    assert.equal(await phone.text("/read"), "ada", "the device that asked stays signed in");
    assert.equal(await phone.text("/slow"), "ada", "and can write");
    assert.equal(await grace.text("/read"), "grace", "another user is untouched");
    assert.equal(await phone.text("/everywhere"), "ada");
    assert.equal(await phone.text("/read"), "none", "log out everywhere ends the asking device too");
  });

  it("without one, a replayed older cookie opens and rolls the session back (documented limit)", async () => {
    const client = new Client(app(new CookieStore({ secrets: SECRET_A })));
    await client.text("/");
    await client.text("/");
    const replay = client.clone();
    assert.equal(await client.text("/"), "3");
    assert.equal(await replay.text("/read"), "2");
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
    now += 5400_000; // idle past the default idleTimeout + touchAfter (3600 + 1800 s)
    assert.equal(await client.text("/"), "1");
  });

  it("destroy expires every chunk cookie", async () => {
    const client = new Client(app(new CookieStore({ secrets: SECRET_A })));
    await client.text("/");
    await client.text("/big");
    assert.ok(client.jar.size >= 2);
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
    assert.equal(late.status, 409, "the late write to the ended session is refused");
    client.absorb(late);
    assert.ok(!client.jar.has("session"), "and sends no cookie");
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
