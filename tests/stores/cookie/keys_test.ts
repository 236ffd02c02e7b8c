// The cookie store's sealing (src/stores/cookie/keys.ts): compact JWEs another JOSE implementation
// opens and seals with the derived key, a key per secret named by its kid (rotation), what a
// forged seal opens as, and deflate (kept only when shorter, capped when inflated).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { base64url, compactDecrypt, CompactEncrypt } from "jose";
import { CookieStore } from "../../../src/stores/cookie.ts";
import type { InvalidCookieEvent } from "../../../src/options.ts";
import type { SealedCookie, StoredSession } from "../../../src/store.ts";
import { Client } from "../../conformance/client.ts";
import {
  app,
  decodeHeader,
  deriveForInterop,
  ID,
  jar,
  opens,
  randomText,
  record,
  refused,
  SECRET_A,
  SECRET_B,
  tamper,
} from "./seals.ts";

/** A forgery: the seal under its protected header changed by `changes` (the rest kept). */
function header(changes: Record<string, unknown>): (token: string) => string {
  return function withHeader(token) {
    const forged = base64url.encode(JSON.stringify({ ...decodeHeader(token), ...changes }));
    return [forged, ...token.split(".").slice(1)].join(".");
  };
}

/** `token`'s header over the rest of another secret's seal. */
async function spliced(token: string): Promise<string> {
  const theirs =
    (await new CookieStore({ secrets: SECRET_B }).seal(ID, record({ user: "eve" }), "session"))[0]!;
  return [token.split(".")[0], ...theirs.value.split(".").slice(1)].join(".");
}

describe("CookieStore: sealing", () => {
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

    it("re-seals a cookie sealed with a retired secret with the current one, through withSession", async () => {
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
  });

  describe("invalid cookies open as malformed, with a detail that says why", () => {
    const store = new CookieStore({ secrets: SECRET_A });
    const forgeries: Array<[label: string, forge: (token: string) => string | Promise<string>, RegExp]> = [
      ["tampered ciphertext", (token) => tamper(token, 3), /decryption failed/],
      ["tampered authentication tag", (token) => tamper(token, 4), /decryption failed/],
      ["tampered initialization vector", (token) => tamper(token, 2), /decryption failed/],
      ["tampered header, kid kept", header({ x: 1 }), /decryption failed/],
      ["header naming an unknown kid", header({ kid: "AAAAAAAA" }), /unknown key/],
      ["a seal from another secret under this store's kid", spliced, /decryption failed/],
      ["an algorithm other than dir + A256GCM", header({ enc: "A128GCM" }), /algorithm not allowed/],
    ];
    for (const [label, forge, why] of forgeries) {
      it(label, async () => {
        const token = (await store.seal(ID, record({ user: "ada" }), "session"))[0]!.value;
        await refused(store, new Map([["session", await forge(token)]]), "malformed", why);
      });
    }

    it("starts a fresh session on a tampered cookie and reports it, through withSession", async () => {
      const events: InvalidCookieEvent[] = [];
      const client = new Client(app(new CookieStore({ secrets: SECRET_A }), events));
      await client.text("/");
      await client.text("/");
      client.jar.set("session", tamper(client.jar.get("session")!, 3));
      assert.equal(await client.text("/"), "1");
      assert.equal(events.length, 1);
      assert.match(String((events[0]!.detail as Error).message), /decryption failed/);
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
});
