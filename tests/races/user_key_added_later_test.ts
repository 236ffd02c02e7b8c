// Rule: "log out everywhere" ends every live session of the user. docs/guides/users.md: with
// `userKey`, `endUserSessions` ends "every one ("log out everywhere" after a password change)";
// docs/guides/options.md (`userKey`): the index lets `listUserSessions` and `endUserSessions` "list
// and end them". Nothing in the docs says that sessions signed in before `userKey` was set (a
// rolling deploy that adds it, or the PostgreSQL upgrade whose `migrate()` adds `user_id`, docs/
// stores/postgres.md "Upgrading") are left out.
//
// Symptom: an app signs users in with `user` in the session; a later deploy adds
// `userKey: "user"`. A session signed in before that deploy keeps being used (read-only requests,
// whose expiry refreshes are touches) for hours under the new deploy; then the user changes their
// password and the app calls `endUserSessions(options, { user })`: it lists 0 sessions, returns 0,
// and the old cookie is still signed in as that user. No error, no warning: the call reports
// success while an attacker's copy of the cookie stays live (up to `absoluteTimeout`, 7 days; a
// remembered one 90).
//
// Suspected cause: the index is only written by a save that carries `index`
// (src/conflict.ts:314, src/backends/server.ts:320, `indexOf(record.data, userKey)`); an expiry
// refresh (`touchRecord`, src/backends/server.ts:281, `store.touch(key, expiresAt, version)`)
// never indexes, and nothing indexes a loaded record that holds the user under `userKey` but was
// written without it (it has no `__meta`, src/users/sign_in.ts noteMeta), so such a session is
// indexed only if and when the handler happens to change its data.
import { it } from "node:test";
import assert from "node:assert/strict";
import { endUserSessions, getSession, listUserSessions, MemoryStore, withSession } from "../../mod.ts";
import { userSessions } from "../../src/users/options.ts";

const SECRET = "a secret of at least thirty-two characters";

it("a session signed in before userKey was set is ended by endUserSessions after the deploy that sets it", async () => {
  let clock = Date.now();
  const now = () => clock;
  const store = new MemoryStore({ now });
  const app = async (req: Request) => {
    const session = await getSession<{ user?: string }>(req);
    if (new URL(req.url).pathname === "/login") {
      session.regenerate();
      session.set("user", "ada");
    }
    return new Response(session.get("user") ?? "anonymous");
  };
  // Deploy 1: no sessions per user yet.
  const before = withSession(app, { store, secrets: SECRET, now });
  // Deploy 2, same store and secret: sessions per user, for "log out everywhere".
  const options = { store, secrets: SECRET, now, users: userSessions({ userKey: "user" }) };
  const after = withSession(app, options);

  const login = await before(new Request("https://example.com/login", { method: "POST" }));
  const cookie = login.headers.get("set-cookie")!.split(";")[0]!;

  // The user keeps browsing under deploy 2 for three hours (each expiry refresh is a touch).
  for (let i = 0; i < 6; i++) {
    clock += 30 * 60_000;
    const page = await after(new Request("https://example.com/", { headers: { cookie } }));
    assert.equal(await page.text(), "ada");
  }

  // Password changed: log out everywhere.
  const listed = await listUserSessions(options, "ada");
  const ended = await endUserSessions(options, { user: "ada" });
  const page = await after(new Request("https://example.com/", { headers: { cookie } }));
  assert.equal(
    await page.text(),
    "anonymous",
    `the session survived "log out everywhere" (listed ${listed.length}, ended ${ended}): still signed in`,
  );
});
