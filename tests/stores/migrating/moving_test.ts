// How src/backends/moving.ts moves a browser from CookieStore to a server store without signing
// it out: `MigratingStore({ from: cookieStore, to })` in withSession, over real HTTP (node:http, a
// cookie jar over fetch), into MemoryStore, Redis and PostgreSQL. A browser signed in with a
// sealed cookie keeps its data and gets a signed id instead; concurrent requests with one seal
// converge on one server record with every write kept; a seal replayed after a later write or a
// log out brings nothing back; a seal ended (destroy, endUser), expired or tampered with is not
// moved.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { endUserSessions } from "../../../mod.ts";
import type { InvalidCookieReason } from "../../../src/options.ts";
import { isEnded, type SessionStore } from "../../../src/store.ts";
import { MemoryStore } from "../../../src/stores/memory.ts";
import { CookieStore, type CookieStoreOptions } from "../../../src/stores/cookie.ts";
import { MigratingStore } from "../../../src/stores/migrating.ts";
import { userSessions } from "../../../src/users/options.ts";
import { type RunningServer, serveFetch } from "../../http/server.ts";
import { JarClient } from "../../http/client.ts";
import { COOKIE_SECRET, listApp as app, movedKey, sealNames, SECRET, SIGNED, targets } from "./stores.ts";

for (const target of targets) {
  describe(`CookieStore to ${target.label} in withSession, over HTTP`, () => {
    let server: RunningServer;
    let handler: (req: Request) => Promise<Response>;
    let to: SessionStore;
    let close: () => Promise<void>;
    const reasons: InvalidCookieReason[] = [];
    before(async () => {
      ({ store: to, close } = await target.open());
      server = await serveFetch((req) => handler(req));
    });
    after(async () => {
      await server.close();
      await close();
    });
    /** Serves the sealed app, then the switched one (sharing the CookieStore's configuration). */
    const sealed = (cookies: CookieStore) => void (handler = app(cookies));
    const switched = (cookies: CookieStore) =>
      void (handler = app(new MigratingStore({ from: cookies, to }), {
        onInvalidCookie: (event) => void reasons.push(event.reason),
      }));
    const browser = () => new JarClient(server.url, []);
    /** A browser signed in as `user` on the sealed app, and the server key its seal moves to. */
    const signedIn = async (user: string, options: Partial<CookieStoreOptions> = {}) => {
      const cookies = new CookieStore({ secrets: COOKIE_SECRET, ...options });
      sealed(cookies);
      const tab = browser();
      await tab.request(`/login?user=${user}`);
      return { cookies, tab, key: await movedKey(cookies, tab.jar) };
    };

    it("keeps a signed-in browser's data and user, sends the signed id and clears the sealed chunks", async () => {
      const { cookies, tab, key } = await signedIn("ada", { chunkSize: 300 });
      await tab.request("/append?x=before");
      const chunks = sealNames(tab.jar);
      assert.ok(chunks.length > 1, `the seal takes several chunks: ${chunks}`);

      switched(cookies);
      const read = await tab.request("/read");
      assert.equal(read.status, 200);
      assert.deepEqual(JSON.parse(read.body), { user: "ada", list: ["before"] });
      assert.deepEqual([...tab.jar.keys()], ["session"], "only the signed id is left");
      assert.match(tab.jar.get("session")!, SIGNED);
      for (const chunk of chunks) {
        assert.ok(read.setCookies.some((c) => c.startsWith(`${chunk}=;`) && /Max-Age=0/.test(c)), chunk);
      }
      const record = await to.load(key);
      assert.deepEqual(record?.data.list, ["before"]);
      assert.equal(record?.data.user, "ada");

      // From now on the server store serves it: a write lands there, the next read sees it.
      assert.equal((await tab.request("/append?x=after")).status, 200);
      assert.deepEqual(JSON.parse((await tab.request("/read")).body).list, ["before", "after"]);
      assert.deepEqual((await to.load(key))?.data.list, ["before", "after"]);
    });

    it("ten concurrent requests with one seal end in one server session, every write kept", async () => {
      const { cookies, tab, key } = await signedIn("bob");
      await tab.request("/append?x=sealed");

      switched(cookies);
      const tabs = Array.from({ length: 10 }, () => tab.clone());
      const answers = await Promise.all(tabs.map((t, i) => t.request(`/append?x=${i}`)));
      assert.deepEqual(answers.map((a) => a.status), Array(10).fill(200));
      const ids = new Set(tabs.map((t) => t.jar.get("session")!.split(".")[0]));
      assert.equal(ids.size, 1, "one server session");
      const list = JSON.parse((await tabs[0]!.request("/read")).body).list as string[];
      assert.deepEqual([...list].sort(), ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "sealed"].sort());
      assert.equal(list[0], "sealed");
      assert.deepEqual((await to.load(key))?.data.list, list);
    });

    it("a seal replayed after a later write or a log out brings back no old data", async () => {
      const { cookies, tab, key } = await signedIn("cy");
      await tab.request("/append?x=old");
      const replay = tab.clone(); // a copy of the sealed cookie, taken before the switch

      switched(cookies);
      await tab.request("/append?x=new");
      assert.deepEqual(JSON.parse((await replay.clone().request("/read")).body).list, ["old", "new"]);

      assert.equal((await tab.request("/logout")).status, 200);
      assert.equal(isEnded(await to.load(key)), true);
      const read = await replay.clone().request("/read");
      assert.deepEqual(JSON.parse(read.body), { user: null, list: [] });
      const write = await replay.clone().request("/append?x=zombie");
      if (write.status === 200) assert.deepEqual(JSON.parse(write.body), { user: null, list: ["zombie"] });
      else assert.equal(write.status, 409);
      assert.equal(isEnded(await to.load(key)), true, "the tombstone stays");
    });

    it("a seal ended by destroy or by endUser is not moved", async () => {
      const revocation = new MemoryStore();
      const cookies = new CookieStore({ secrets: COOKIE_SECRET, revocation, userKey: "user" });
      sealed(cookies);
      const [left, everywhere, kept] = [browser(), browser(), browser()];
      await left.request("/login?user=dee");
      const leftCopy = left.clone();
      const leftKey = await movedKey(cookies, left.jar);
      await left.request("/logout");
      await everywhere.request("/login?user=eve");
      const everywhereKey = await movedKey(cookies, everywhere.jar);
      await kept.request("/login?user=fay");
      await cookies.endUser("eve");

      switched(cookies);
      reasons.length = 0;
      for (const tab of [leftCopy, everywhere]) {
        const read = await tab.request("/read");
        assert.deepEqual(JSON.parse(read.body), { user: null, list: [] });
        assert.equal(read.setCookies.length, 0);
      }
      assert.deepEqual(reasons, ["ended", "ended"]);
      assert.equal(await to.load(leftKey), null);
      assert.equal(await to.load(everywhereKey), null);
      // Another user's seal still moves.
      assert.equal(JSON.parse((await kept.request("/read")).body).user, "fay");
    });

    it("log out everywhere while seals are left: endUser on the seals first, then endUserSessions", async () => {
      const revocation = new MemoryStore();
      const cookies = new CookieStore({ secrets: COOKIE_SECRET, revocation, userKey: "user" });
      sealed(cookies);
      const [phone, laptop, tablet] = [browser(), browser(), browser()];
      for (const device of [phone, laptop, tablet]) await device.request("/login?user=gus");
      const options = {
        store: new MigratingStore({ from: cookies, to }),
        secrets: SECRET,
        users: userSessions({ userKey: "user" }),
      };
      handler = app(options.store, { users: userSessions({ userKey: "user" }) });
      const phoneSeal = phone.clone();
      await phone.request("/read"); // moved
      // endUserSessions alone ends the moved sessions only: a seal that has not moved yet still
      // moves, signed in (the documented limit).
      assert.equal(await endUserSessions(options, { user: "gus" }), 1);
      assert.equal(JSON.parse((await phone.request("/read")).body).user, null);
      assert.equal(JSON.parse((await phoneSeal.request("/read")).body).user, null, "a moved seal replayed");
      assert.equal(JSON.parse((await laptop.request("/read")).body).user, "gus");
      // The documented order: the seals first (none moves after it), then the moved sessions.
      await cookies.endUser("gus");
      assert.equal(await endUserSessions(options, { user: "gus" }), 1);
      for (const device of [laptop, tablet]) {
        assert.deepEqual(JSON.parse((await device.request("/read")).body), { user: null, list: [] });
      }
    });

    it("an expired seal is not moved", async () => {
      let clock = Date.now();
      const now = () => clock;
      const cookies = new CookieStore({ secrets: COOKIE_SECRET, now });
      handler = app(cookies, { now, idleTimeout: 60 });
      const tab = browser();
      await tab.request("/login?user=gus");
      const key = await movedKey(cookies, tab.jar);
      clock += 2 * 3600_000;
      reasons.length = 0;
      handler = app(new MigratingStore({ from: cookies, to }), {
        now,
        idleTimeout: 60,
        onInvalidCookie: (event) => void reasons.push(event.reason),
      });
      const read = await tab.request("/read");
      assert.deepEqual(JSON.parse(read.body), { user: null, list: [] });
      assert.deepEqual(reasons, ["malformed"]);
      assert.equal(await to.load(key), null);
    });

    it("a tampered seal is rejected", async () => {
      const { cookies, tab, key } = await signedIn("hal");
      const value = tab.jar.get("session")!;
      const at = value.length - 30; // inside the ciphertext
      tab.jar.set("session", value.slice(0, at) + (value[at] === "A" ? "B" : "A") + value.slice(at + 1));

      switched(cookies);
      reasons.length = 0;
      const read = await tab.request("/append?x=forged");
      assert.deepEqual(JSON.parse(read.body), { user: null, list: ["forged"] });
      assert.deepEqual(reasons, ["malformed"]);
      assert.equal(await to.load(key), null);
      assert.match(tab.jar.get("session")!, SIGNED, "a fresh session of its own");
    });
  });
}
