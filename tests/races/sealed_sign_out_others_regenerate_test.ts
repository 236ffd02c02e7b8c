// Rule: "sign out other devices" keeps the device that asked. docs/stores/cookie.md: "All but the
// current one: `endUser(user, { except: session.id })`; the current session keeps opening";
// README: concurrent requests "end as if they had run one after another", and never "a user's
// cookie cleared by another request's accident". The server-store race is
// tests/races/sign_out_others_regenerate_test.ts.
//
// Symptom: on `CookieStore` with a revocation store and `userKey`, the user clicks "sign out other
// devices" in one tab while another tab of the same browser rotates the session's id
// (`regenerate()`). A sealed session takes no turns, so this happens in a single process. When
// the rotation lands first (or between the sign-out's read and its write), `endUser` keeps the
// id the sign-out request loaded, which the rotation just ended, and ends its successor, the
// browser's own new cookie: the browser that asked to stay signed in is signed out.
//
// Suspected cause: src/stores/cookie/revocation.ts keeps exactly the session whose id `except`
// names (`sealedUnder`: `keep === key`); the seal a `regenerate()` made of that session carries
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { CookieStore } from "../../src/stores/cookie.ts";
import { HookStore } from "./hook_store.ts";
import { cookieOf, raceApp, request, said, SECRET, whoIs } from "./race_app.ts";

function app() {
  const revocation = new HookStore();
  const store = new CookieStore({ secrets: [SECRET], revocation, userKey: "user" });
  const race = raceApp<{ user?: string }>({ store }, {
    "/others": async (session, _request, app) => {
      const user = session.get("user")!;
      await app.hold.passed();
      await store.endUser(user, { except: session.id }); // sign out other devices
      return new Response("others signed out");
    },
  });
  return { ...race, revocation };
}

/** Signs the phone in, then this browser; starts "sign out other devices" on this browser, held. */
async function signOutOthersHeld(race: ReturnType<typeof app>) {
  const phone = cookieOf(await race.handler(request("/login")));
  const cookie = cookieOf(await race.handler(request("/login")));
  const release = race.hold.close();
  const signingOut = race.handler(request("/others", cookie));
  await new Promise((resolve) => setTimeout(resolve, 20));
  race.hold.open();
  return { phone, cookie, release, signingOut };
}

/** The browser that asked, on its rotated cookie, is signed in; the phone is not. */
async function assertKept(
  race: ReturnType<typeof app>,
  { rotated, phone, others }: { rotated: string; phone: string; others: Response },
) {
  assert.equal(
    await whoIs(race, rotated),
    "ada",
    `"sign out other devices" answered ${others.status} and signed out the browser that asked (${
      said(race)
    })`,
  );
  assert.equal(await whoIs(race, phone), "anonymous");
}

describe("CookieStore endUser(user, { except }) racing a regenerate() of the kept session", () => {
  it("keeps the browser signed in when the regenerate lands first", async () => {
    const race = app();
    const { phone, cookie, release, signingOut } = await signOutOthersHeld(race);
    const rotated = cookieOf(await race.handler(request("/elevate", cookie)));
    release();
    const others = await signingOut;
    await assertKept(race, { rotated, phone, others });
  });

  it("keeps the browser signed in when it runs between the regenerate's two writes", async () => {
    const race = app();
    const { phone, cookie, release, signingOut } = await signOutOthersHeld(race);
    // The sign-out, loaded before, writes right after the regenerate's tombstone lands.
    let ran = false;
    race.revocation.afterSave = async (record) => {
      if (record.data.__ended === true && !ran) {
        ran = true;
        race.revocation.afterSave = undefined;
        release();
        await signingOut;
      }
    };
    const rotated = cookieOf(await race.handler(request("/elevate", cookie)));
    assert.ok(ran, "the regenerate wrote its tombstone");
    const others = await signingOut;
    await assertKept(race, { rotated, phone, others });
  });
});
