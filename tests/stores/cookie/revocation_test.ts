// The cookie store's revocation store (src/stores/cookie/revocation.ts): the version of each
// session's live seal or a tombstone, so that a replayed or ended seal does not open; with
// `userKey`, a generation per user that `endUser` moves on. And what a store without one cannot
// stop (the documented limits), through withSession.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { base64url } from "jose";
import { CookieStore } from "../../../src/stores/cookie.ts";
import { MemoryStore } from "../../../src/stores/memory.ts";
import { SessionConflictError, SessionTooLargeError, StoreUnavailableError } from "../../../src/errors.ts";
import {
  ENDED_BY_KEY,
  ENDED_KEY,
  type InvalidSeal,
  isEnded,
  type OpenedSession,
  type SessionStore,
} from "../../../src/store.ts";
import { Client, counted, gate } from "../../conformance/client.ts";
import { getSession, withSession } from "../../../mod.ts";
import { ENDED_GRACE_MS } from "../../../src/conflict.ts";
import { app, getter, ID, jar, opens, randomText, record, refused, SECRET_A } from "./seals.ts";

/** What `open` answered, without the detail: `{ invalid, at }`, or the id of an opened session. */
function pick(result: OpenedSession | InvalidSeal | null): unknown {
  if (result === null) return null;
  if ("invalid" in result) return { invalid: result.invalid, at: result.at };
  return { id: result.id };
}

/** SHA-256 of `text` in base64url: how the revocation store keys a session id, never the id. */
async function sha256(text: string): Promise<string> {
  return base64url.encode(
    new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text))),
  );
}

/** A browser at two visits of the app over a revocation store, all on one clock the case moves. */
async function twoVisits(): Promise<{ client: Client; clock: { now: number } }> {
  const clock = { now: 1_700_000_000_000 };
  const now = () => clock.now;
  const store = new CookieStore({ secrets: SECRET_A, revocation: new MemoryStore({ now }), now });
  const client = new Client(app(store, [], { now }));
  await client.text("/");
  await client.text("/");
  return { client, clock };
}

describe("CookieStore: revocation", () => {
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
      // A revoke that carries no data on is a log out: its old seal may still log in.
      assert.deepEqual(tombstone!.data, { [ENDED_KEY]: true, at: now, [ENDED_BY_KEY]: "destroy" });
      assert.equal((await store.open(getter(v2), "session") as { destroyed?: boolean }).destroyed, true);
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

  describe("through withSession", () => {
    it("without one, a copy of the cookie outlives logout (what capabilities.revocation: false means)", async () => {
      const client = new Client(app(new CookieStore({ secrets: SECRET_A })));
      await client.text("/");
      const copy = client.clone();
      await client.text("/logout");
      assert.equal(await copy.text("/"), "2");
    });

    it("with a revocation store that lost the session's record, logout still ends it, and changes no cookie", async () => {
      // The record lapsed or was evicted: nothing says whether a log in replaced this session
      // meanwhile, so the browser may hold a newer cookie. Ended all the same, without the grace
      // that would refuse this browser's next write as one in flight.
      class Forgetful extends MemoryStore {
        readonly keys = new Set<string>();
        override save(...args: Parameters<MemoryStore["save"]>): ReturnType<MemoryStore["save"]> {
          this.keys.add(args[0]);
          return super.save(...args);
        }
      }
      const revocation = new Forgetful();
      const client = new Client(app(new CookieStore({ secrets: SECRET_A, revocation })));
      await client.text("/");
      await client.text("/");
      for (const key of revocation.keys) await revocation.destroy(key);
      const copy = client.clone();
      const logout = await client.fetch("/logout");
      assert.equal(logout.status, 200);
      assert.deepEqual(
        logout.headers.getSetCookie(),
        [],
        "no cookie cleared: a newer one may be the browser's",
      );
      assert.equal(await copy.text("/read"), "0", "the old seal opens no more");
      const write = await copy.fetch("/");
      assert.equal(write.status, 200, "no grace: the next write starts a new session at once");
      assert.equal(await write.text(), "1");
      assert.equal(write.headers.getSetCookie().length, 1);
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
      const { client, clock } = await twoVisits();
      const lost = client.clone(); // the browser never got the response to the next write
      assert.equal(await client.text("/"), "3");
      clock.now += 1_000; // a request in flight when the newer cookie was sealed, or a double submit
      const inFlight = await lost.fetch("/");
      await inFlight.text();
      assert.equal(inFlight.status, 409, "refused while the newer cookie may be on its way");
      assert.deepEqual(inFlight.headers.getSetCookie(), []);
      clock.now += ENDED_GRACE_MS; // long after: the browser evidently missed the newer cookie
      const afresh = await lost.fetch("/");
      assert.equal(afresh.status, 200);
      assert.equal(await afresh.text(), "1", "a fresh session, never the superseded data");
      assert.ok(
        afresh.headers.getSetCookie().some((c) => c.startsWith("session=")),
        "and its cookie is sent",
      );
      assert.equal(await lost.text("/"), "2", "it is not locked out");
    });

    it("with a revocation store, a copy of the cookie presented long after logout starts a fresh, empty session", async () => {
      const { client, clock } = await twoVisits();
      const copy = client.clone();
      await client.text("/logout");
      clock.now += ENDED_GRACE_MS - 1;
      assert.equal((await copy.fetch("/")).status, 409, "within the grace: taken for a request in flight");
      clock.now += 1;
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
  });
});
