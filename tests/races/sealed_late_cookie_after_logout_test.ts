// Rule: "never a logged-out session brought back" and CherryPy refuses nobody: a 409 only where
// no serial order serves the request (docs/guides/concurrency.md).
//
// Symptom, on CookieStore with a revocation store, when a write of another tab reaches the
// server before a log out but its response reaches the browser after the log out's (its seal
// supersedes the one the log out carried):
// 1. the log out answered "signed out" and ended nothing: the write's cookie, arriving last,
//    kept the browser signed in;
// 2. with the log out done, that late cookie (of the logged-out session) made every log in of
//    the browser answer 409 for the 60 s grace after the log out.
//
// Causes: a seal superseded meanwhile opened as an empty session, so its `destroy()` had no
// session to end (a server store's log out ends the session its cookie names whatever version
// it read); and the grace refused every request that would start a new session, a log in
// included, though after a log out nothing of the old session lives on that it could hide.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { MemoryStore } from "../../mod.ts";
import { CookieStore } from "../../src/stores/cookie.ts";
import { cookieOf, raceApp, request, said, SECRET, whoIs } from "./race_app.ts";

function app() {
  const store = new CookieStore({ secrets: [SECRET], revocation: new MemoryStore(), userKey: "user" });
  const race = raceApp<{ user?: string; n?: number; notice?: string }>({ store }, {
    "/add": (session) => (session.update("n", (n = 0) => n + 1), new Response("added")),
    // A log out that leaves a notice for the next page: a session of its own, under a new id.
    "/bye": (session) => {
      session.destroy();
      session.set("notice", "bye");
      return new Response("signed out");
    },
    "/notice": (session) => new Response(session.get("notice") ?? "none"),
  });
  return { ...race, store };
}

describe("CookieStore with revocation: a log out overtaken by another tab's write", () => {
  it("ends the session though its seal was superseded, and the late cookie opens nothing", async () => {
    const race = app();
    const signedIn = cookieOf(await race.handler(request("/login")));
    const write = await race.handler(request("/add", signedIn)); // its response is slow to arrive
    assert.equal(write.status, 200);
    const logout = await race.handler(request("/logout", signedIn));
    assert.equal(logout.status, 200);
    assert.match(logout.headers.getSetCookie()[0] ?? "", /Max-Age=0/, "the log out clears the cookie");
    const late = cookieOf(write); // the write's response arrives now
    assert.equal(await whoIs(race, late), "anonymous", `the logged-out session came back (${said(race)})`);
    assert.equal(await whoIs(race, signedIn), "anonymous");
  });

  it("lets the browser holding the late cookie log in at once, and refuses what is no log in", async () => {
    const race = app();
    const signedIn = cookieOf(await race.handler(request("/login")));
    const write = await race.handler(request("/add", signedIn));
    const latest = cookieOf(write);
    assert.equal((await race.handler(request("/logout", latest))).status, 200);
    const refused = await race.handler(request("/add", latest));
    assert.equal(refused.status, 409, "a write that is no log in: taken for a request in flight");
    assert.deepEqual(refused.headers.getSetCookie(), []);
    const login = await race.handler(request("/login", latest));
    assert.equal(login.status, 200, `the log in was answered ${login.status} (${said(race)})`);
    assert.equal(await whoIs(race, cookieOf(login)), "ada");
  });

  it("leaves the log out's notice in a session of its own, under a new id", async () => {
    const race = app();
    const signedIn = cookieOf(await race.handler(request("/login")));
    const write = await race.handler(request("/add", signedIn));
    const bye = await race.handler(request("/bye", signedIn));
    assert.equal(bye.status, 200, `the log out with a notice was answered ${bye.status} (${said(race)})`);
    const notice = cookieOf(bye);
    assert.equal(await (await race.handler(request("/notice", notice, "GET"))).text(), "bye");
    assert.equal(await whoIs(race, notice), "anonymous");
    assert.equal(await whoIs(race, cookieOf(write)), "anonymous", "the logged-out session stays ended");
  });

  it("lets a browser log in at once after log out everywhere, whichever seal of its session it holds", async () => {
    const race = app();
    const signedIn = cookieOf(await race.handler(request("/login")));
    assert.equal((await race.handler(request("/add", signedIn))).status, 200); // its response is slow
    await race.store.endUser("ada"); // log out everywhere: no grace, nothing newer of the browser's
    const login = await race.handler(request("/login", signedIn));
    assert.equal(login.status, 200, `the log in was answered ${login.status} (${said(race)})`);
    assert.equal(await whoIs(race, cookieOf(login)), "ada");
  });
});
