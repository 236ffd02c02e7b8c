// "Log out everywhere" (`endUserSessions`, docs/guides/users.md) ends every session of the user:
// "Everywhere: a request whose session was ended meanwhile (log out, log in, endUserSessions) is
// refused" (docs/guides/concurrency.md), and concurrent requests end "as if they had run one
// after another".
//
// Symptom: a request of one of the user's sessions that calls `regenerate()` (a privilege change,
// an id rotation: what a stolen cookie's holder can trigger) while the user clicks "log out
// everywhere" escapes it. If `endUserSessions` runs between the regenerate's two writes (the old
// record's tombstone, then the new record), it finds the old session already ended ("gone"),
// answers 0 ended, and returns; the new session, holding the user, is then created and stays
// live, its cookie sent. Neither serial order gives that: log out everywhere first refuses the
// regenerate (its session is ended); the regenerate first has its new session ended.
//
// Suspected cause: src/users.ts:366 (`end()`) treats a record that is no longer the user's live
// session as "gone" without asking whether it was a regenerate's tombstone whose successor now
// carries the user, and `endUserSessions` reads the user index once (before the successor is
// indexed) and never again; the regenerate's second write (src/backends/server.ts:156,
// `create()` after `ended()`) checks nothing against a log out everywhere that ran meanwhile.
import { it } from "node:test";
import assert from "node:assert/strict";
import {
  endUserSessions,
  getSession,
  listUserSessions,
  type SessionOptions,
  withSession,
} from "../../mod.ts";
import { userSessions } from "../../src/users/options.ts";
import { HookStore } from "./hook_store.ts";

const SECRET = "a secret of at least thirty-two characters";

type Data = { user?: string; n?: number };

it("log out everywhere racing a regenerate() of one of the user's sessions leaves none live", async () => {
  const store = new HookStore();
  const errors: unknown[] = [];
  const options: SessionOptions<Data> = {
    store,
    secrets: [SECRET],
    users: userSessions({ userKey: "user" }),
    onError: (e) => void errors.push(e),
  };
  const handler = withSession(async (req: Request) => {
    const session = await getSession<Data>(req);
    const path = new URL(req.url).pathname;
    if (path === "/login") {
      session.regenerate();
      session.set("user", "ada");
      return new Response("signed in");
    }
    if (path === "/read") return new Response(JSON.stringify(session.toJSON()));
    session.regenerate(); // /elevate: a privilege change rotates the id
    session.update("n", (n = 0) => n + 1);
    return new Response("rotated");
  }, options);

  const login = await handler(new Request("https://example.com/login", { method: "POST" }));
  const cookie = login.headers.get("set-cookie")!.split(";")[0]!;

  // The user (elsewhere) logs out everywhere right after the regenerate's tombstone lands, and
  // gets as far as it can (reading the user's index, ending what it finds) while the regenerate's
  // answer is on its way back.
  let everywhere: Promise<number> | undefined;
  store.afterSave = async (record) => {
    if (record.data.__ended === true && everywhere === undefined) {
      store.afterSave = undefined;
      everywhere = endUserSessions(options, { user: "ada" });
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  const elevate = await handler(
    new Request("https://example.com/elevate", { method: "POST", headers: { cookie } }),
  );
  const ended = await everywhere!;
  const live = await listUserSessions(options, "ada");
  const issued = elevate.headers.getSetCookie()[0]?.split(";")[0];
  const reads = issued === undefined
    ? "(no cookie)"
    : await (await handler(new Request("https://example.com/read", { headers: { cookie: issued } }))).text();
  assert.equal(
    live.length,
    0,
    `endUserSessions ended ${ended} and returned, yet ${live.length} session of the user is live: /elevate answered ${elevate.status} with a cookie that reads ${reads}`,
  );
});
