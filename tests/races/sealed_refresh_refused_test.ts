// Rule: an expiry refresh never refuses a request. docs/guides/concurrency.md ("Expiry refreshes
// never refuse a request": "A refresh that loses a race (another request saved, or ended the
// session, meanwhile) is simply dropped ... so the answer is never a 409"), and the README: "409
// only where nothing can serialize them". A request that only read can always be put before the
// write or the log out it raced.
//
// Symptom: on `CookieStore` with a `revocation` store, a read-only GET whose expiry refresh is
// due (the session idle past `touchAfter`: a browser restarted with two tabs of the app, a
// page's parallel fetches after a coffee break) is answered 409 when a request of the same
// session in another tab wrote, or logged out, while the GET ran: the handler's page is thrown
// away for "Session changed concurrently: version "2" was sealed by another request" (or
// "Session ended").
//
// Suspected cause: src/backends/sealed.ts `commit` re-seals to extend the expiry, and `seal()`
// returns the revocation store's SessionConflictError (src/stores/cookie/revocation.ts
// `expectedFor`: a newer version, or a tombstone) as the request's error, whether or not the
// request changed anything; a server store's refresh that loses is dropped instead
// (src/backends/server.ts `notSaved`, `touchRecord`).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { MemoryStore } from "../../mod.ts";
import { CookieStore } from "../../src/stores/cookie.ts";
import { cookieOf, during, raceApp, request, said, SECRET } from "./race_app.ts";

/**
 * A CookieStore app with a revocation store on a clock of its own. Any path but the default
 * routes and `/note` only reads, and waits at the hold after reading, so that another request
 * runs while it is in flight.
 */
function app() {
  let clock = Date.now();
  const now = () => clock;
  const store = new CookieStore({ secrets: [SECRET], revocation: new MemoryStore({ now }), now });
  const race = raceApp<{ user?: string; note?: string }>({ store, now }, {
    "/note": (session) => {
      session.set("note", "written in the other tab");
      return new Response("noted");
    },
    "*": async (session, _request, app) => {
      const user = session.get("user") ?? "anonymous";
      await app.hold.passed();
      return new Response(user);
    },
  });
  return { ...race, advance: (ms: number) => void (clock += ms) };
}

/** Signs in, lets the session idle past `touchAfter`, then runs `path` while a GET /read is in flight. */
async function readDuring(path: string) {
  const race = app();
  const cookie = cookieOf(await race.handler(request("/login")));
  race.advance(31 * 60_000); // past touchAfter (half the one-hour idleTimeout): the read refreshes the expiry
  const { first: read, meanwhile: other } = await during(
    race,
    () => race.handler(request("/read", cookie, "GET")),
    () => race.handler(request(path, cookie)),
  );
  assert.equal(other.status, 200);
  return { read, body: await read.text(), said: said(race) };
}

describe("CookieStore with revocation: a read-only request whose refresh loses a race", () => {
  it("is served when another tab wrote meanwhile", async () => {
    const { read, body, said } = await readDuring("/note");
    assert.equal(read.status, 200, `the read-only GET was answered ${read.status} (${said})`);
    assert.equal(body, "ada");
    assert.deepEqual(read.headers.getSetCookie(), [], "a refresh that lost sends no cookie");
  });

  it("is served when another tab logged out meanwhile", async () => {
    const { read, body, said } = await readDuring("/logout");
    assert.equal(read.status, 200, `the read-only GET was answered ${read.status} (${said})`);
    assert.equal(body, "ada");
    assert.deepEqual(read.headers.getSetCookie(), [], "no cookie for a session logged out meanwhile");
  });
});
