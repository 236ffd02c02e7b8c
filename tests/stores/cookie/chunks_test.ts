// The cookie store's chunks (src/stores/cookie/chunks.ts): a seal within one cookie, or split
// over numbered cookies within the per-cookie limit, `maxCookies` and the Cookie header budget,
// and joined again only when every chunk is there, in order.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { CookieStore } from "../../../src/stores/cookie.ts";
import { SessionTooLargeError } from "../../../src/errors.ts";
import type { SealedCookie, StoredSession } from "../../../src/store.ts";
import { Client } from "../../conformance/client.ts";
import { app, ID, INVALID, jar, opens, randomText, record, refused, SECRET_A } from "./seals.ts";

/** Bytes the cookies take in a `Cookie` header: `name=value` pairs joined by `; `. */
function headerBytes(cookies: SealedCookie[]): number {
  return cookies.map((c) => `${c.name}=${c.value}`).join("; ").length;
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

/** Damage done to the `count` cookies of a chunked seal. */
type Damage = (cookies: Map<string, string>, count: number) => void;

function dropSecond(cookies: Map<string, string>): void {
  cookies.delete("session.1");
}

function dropLast(cookies: Map<string, string>, count: number): void {
  cookies.delete(`session.${count - 1}`);
}

function truncateSecond(cookies: Map<string, string>): void {
  cookies.set("session.1", cookies.get("session.1")!.slice(0, -10));
}

/** Swaps the second and third chunks. */
function reordered(cookies: Map<string, string>): void {
  const one = cookies.get("session.1")!;
  cookies.set("session.1", cookies.get("session.2")!);
  cookies.set("session.2", one);
}

describe("CookieStore: chunks", () => {
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

    const damaged: Array<[label: string, damage: Damage, why: RegExp]> = [
      ["treats a missing chunk as malformed", dropSecond, /chunk "session.1" of \d is missing/],
      ["treats a missing last chunk as malformed", dropLast, /is missing/],
      ["treats a truncated chunk as malformed", truncateSecond, INVALID],
      ["treats reordered chunks as malformed", reordered, INVALID],
    ];
    for (const [label, damage, why] of damaged) {
      it(label, async () => {
        const sealed = (await big()).cookies;
        const cookies = jar(sealed);
        damage(cookies, sealed.length);
        await refused(store, cookies, "malformed", why);
      });
    }

    it("ignores a leftover chunk past the count (an older, longer seal)", async () => {
      const { saved, cookies } = await big();
      const withExtra = jar(cookies);
      withExtra.set(`session.${cookies.length}`, randomText(100));
      assert.deepEqual((await opens(store, withExtra)).record, saved);
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

  describe("through withSession", () => {
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
  });
});
