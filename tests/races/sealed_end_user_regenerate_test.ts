// Rule: "log out everywhere" on CookieStore ends every session of the user. docs/stores/cookie.md
// ("Ending a user's sessions"): `store.endUser(user)` moves the user's generation on, "and every
// seal made before opens as ended, a request in flight with one included (its write is refused
// with 409)"; docs/guides/concurrency.md: concurrent requests end "as if they had run one after
// another". The same race on a server store is tests/races/end_user_sessions_regenerate_test.ts.
//
// Symptom: a request of one of the user's sessions that calls `regenerate()` (a privilege change,
// an id rotation: what a stolen cookie's holder can trigger) while the user clicks "log out
// everywhere" escapes it. Its response carries a new cookie that opens signed in as the user,
// after `endUser` returned. Neither serial order gives that: log out everywhere first leaves the
// request an empty session (it would carry no user over); the regenerate first has its new
// session ended with the others.
//
// Suspected cause: the regenerate's new seal has a new id, unknown to the revocation store, so
// `Revocation.record` (src/stores/cookie/revocation.ts) finds no previous seal to refuse
// (`#refuseEndedUser` returns at once on `current === null`) and records the new seal under the
// user's generation as it reads it *after* `endUser` moved it; and `revoke()` of the old seal
// never asks whether its user's sessions were ended since it was sealed.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { CookieStore } from "../../src/stores/cookie.ts";
import { HookStore } from "./hook_store.ts";
import { cookieOf, during, raceApp, request, said, SECRET, whoIs } from "./race_app.ts";

type Data = { user?: string; n?: number };

function app() {
  const revocation = new HookStore();
  const store = new CookieStore({ secrets: [SECRET], revocation, userKey: "user" });
  const race = raceApp<Data>({ store }, {
    // A privilege change rotates the id, after waiting at the hold.
    "/elevate": async (session, _request, app) => {
      await app.hold.passed();
      session.regenerate();
      session.update("n", (n = 0) => n + 1);
      return new Response("rotated");
    },
  });
  return { ...race, store, revocation };
}

/** Who the cookies `response` sets open as. */
async function issuedTo(race: ReturnType<typeof app>, response: Response): Promise<string> {
  const issued = response.headers.getSetCookie().map((c) => c.split(";", 1)[0]!).filter((c) =>
    !c.endsWith("=")
  );
  return issued.length === 0 ? "(no cookie)" : await whoIs(race, issued.join("; "));
}

describe("CookieStore endUser racing a regenerate() of one of the user's sessions", () => {
  it("leaves no session of the user when it runs while the regenerate's handler runs", async () => {
    const race = app();
    const cookie = cookieOf(await race.handler(request("/login")));
    const { first: elevate } = await during(
      race,
      () => race.handler(request("/elevate", cookie)),
      () => race.store.endUser("ada"), // log out everywhere, done
    );
    assert.equal(
      await issuedTo(race, elevate),
      "(no cookie)",
      `after endUser returned, /elevate answered ${elevate.status} with a cookie signed in as the user (${
        said(race)
      })`,
    );
    assert.equal(elevate.status, 409);
  });

  it("leaves no session of the user when it runs between the old seal's end and the new seal", async () => {
    const race = app();
    const cookie = cookieOf(await race.handler(request("/login")));
    // Log out everywhere right after the regenerate's tombstone lands, before the new seal.
    let everywhere: Promise<void> | undefined;
    race.revocation.afterSave = async (record) => {
      if (record.data.__ended === true && everywhere === undefined) {
        race.revocation.afterSave = undefined;
        everywhere = race.store.endUser("ada");
        await everywhere;
      }
    };
    const elevate = await race.handler(request("/elevate", cookie));
    assert.ok(everywhere !== undefined, "the regenerate wrote its tombstone");
    await everywhere;
    assert.notEqual(
      await issuedTo(race, elevate),
      "ada",
      `after endUser returned, /elevate answered ${elevate.status} with a cookie signed in as the user (${
        said(race)
      })`,
    );
  });
});
