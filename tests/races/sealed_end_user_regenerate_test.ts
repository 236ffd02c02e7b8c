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
import { getSession, withSession } from "../../mod.ts";
import { CookieStore } from "../../src/stores/cookie.ts";
import { HookStore } from "./hook_store.ts";

const SECRET = "a secret of at least thirty-two characters";

type Data = { user?: string; n?: number };

function app() {
  const revocation = new HookStore();
  const store = new CookieStore({ secrets: [SECRET], revocation, userKey: "user" });
  const errors: unknown[] = [];
  const state: { hold: Promise<void> | undefined } = { hold: undefined };
  const handler = withSession(async (req: Request) => {
    const session = await getSession<Data>(req);
    switch (new URL(req.url).pathname) {
      case "/login":
        session.regenerate();
        session.set("user", "ada");
        return new Response("signed in");
      case "/read":
        return new Response(session.get("user") ?? "anonymous");
      default: // /elevate: a privilege change rotates the id
        await state.hold;
        session.regenerate();
        session.update("n", (n = 0) => n + 1);
        return new Response("rotated");
    }
  }, { store, onError: (e) => void errors.push(e) });
  return { handler, store, revocation, errors, state };
}

/** Who the cookies `response` sets open as, through `handler`. */
async function issuedTo(
  handler: (req: Request) => Promise<Response>,
  response: Response,
): Promise<string> {
  const issued = response.headers.getSetCookie().map((c) => c.split(";", 1)[0]!).filter((c) =>
    !c.endsWith("=")
  );
  if (issued.length === 0) return "(no cookie)";
  const read = await handler(
    new Request("https://example.com/read", { headers: { cookie: issued.join("; ") } }),
  );
  return await read.text();
}

describe("CookieStore endUser racing a regenerate() of one of the user's sessions", () => {
  it("leaves no session of the user when it runs while the regenerate's handler runs", async () => {
    const { handler, store, errors, state } = app();
    const login = await handler(new Request("https://example.com/login", { method: "POST" }));
    const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
    let release!: () => void;
    state.hold = new Promise((resolve) => (release = resolve));
    const elevating = handler(
      new Request("https://example.com/elevate", { method: "POST", headers: { cookie } }),
    );
    await new Promise((resolve) => setTimeout(resolve, 20));
    await store.endUser("ada"); // log out everywhere, done
    release();
    const elevate = await elevating;
    assert.equal(
      await issuedTo(handler, elevate),
      "(no cookie)",
      `after endUser returned, /elevate answered ${elevate.status} with a cookie signed in as the user (onError: ${
        errors.map(String).join("; ")
      })`,
    );
    assert.equal(elevate.status, 409);
  });

  it("leaves no session of the user when it runs between the old seal's end and the new seal", async () => {
    const { handler, store, revocation, errors } = app();
    const login = await handler(new Request("https://example.com/login", { method: "POST" }));
    const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
    // Log out everywhere right after the regenerate's tombstone lands, before the new seal.
    let everywhere: Promise<void> | undefined;
    revocation.afterSave = async (record) => {
      if (record.data.__ended === true && everywhere === undefined) {
        revocation.afterSave = undefined;
        everywhere = store.endUser("ada");
        await everywhere;
      }
    };
    const elevate = await handler(
      new Request("https://example.com/elevate", { method: "POST", headers: { cookie } }),
    );
    assert.ok(everywhere !== undefined, "the regenerate wrote its tombstone");
    await everywhere;
    const reads = await issuedTo(handler, elevate);
    assert.notEqual(
      reads,
      "ada",
      `after endUser returned, /elevate answered ${elevate.status} with a cookie signed in as the user (onError: ${
        errors.map(String).join("; ")
      })`,
    );
  });
});
