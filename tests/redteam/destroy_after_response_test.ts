// Red team: `destroy()` made after the response (in a streamed body) ends the record although the
// cookie can no longer be cleared, and nothing is reported. The browser keeps the old cookie;
// for the next 60 s every request of that browser is taken for "a request in flight during a
// log out", so its log in (any write) is refused with 409 "Session was ended by a concurrent
// request": the user is locked out of signing in again for a minute by their own log out.
//
// Docs (concurrency.md): "A change that needs a new cookie after the headers were sent (a new
// session, regenerate()) cannot reach the client: it is reported to onError as
// SessionStateError and nothing is written." A destroy needs a Set-Cookie too (to clear it), but
// src/backends/server.ts `startCommit` only refuses late changes that create an id
// (`h.responded && h.isNew && hasData(h) && ...`): a late destroy has no data, so `saveRecord`
// writes the tombstone, `ended()` sets `clearCookie`, and `nothingToCreate` drops the clearing
// because `h.responded`. The ended record's grace (`endedInFlight`, src/conflict.ts) then
// refuses the same browser's next write.
import { it } from "node:test";
import assert from "node:assert/strict";
import { getSession, MemoryStore, withSession } from "../../mod.ts";

const SECRET = "red team secret of at least thirty-two chars";

it("a log out made while the body streams does not lock the browser out of logging in again", async () => {
  const errors: unknown[] = [];
  const handler = withSession(async (req: Request) => {
    const session = await getSession<{ user?: string }>(req);
    const path = new URL(req.url).pathname;
    if (path === "/login") {
      session.regenerate();
      session.set("user", "ada");
      return new Response("signed in");
    }
    if (path === "/logout") {
      const body = new ReadableStream<Uint8Array>({
        async start(controller) {
          await new Promise((r) => setTimeout(r, 10)); // the headers are gone
          session.destroy();
          controller.enqueue(new TextEncoder().encode("goodbye"));
          controller.close();
        },
      });
      return new Response(body);
    }
    return new Response(session.get("user") ?? "anonymous");
  }, { store: new MemoryStore(), secrets: [SECRET], onError: (e) => { errors.push(e); } });

  const login = await handler(new Request("https://example.com/login", { method: "POST" }));
  const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
  const logout = await handler(new Request("https://example.com/logout", { headers: { cookie } }));
  assert.equal(await logout.text(), "goodbye");
  assert.equal(logout.headers.get("set-cookie"), null); // the cookie could not be cleared
  await new Promise((r) => setTimeout(r, 50));

  // The browser still sends the cookie it holds: the user signs in again.
  const again = await handler(new Request("https://example.com/login", { method: "POST", headers: { cookie } }));
  assert.equal(
    again.status,
    200,
    `the log in after a streamed log out is refused: ${again.status}, onError: ${errors.map(String).join("; ")}`,
  );
});
