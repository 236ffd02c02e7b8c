// `destroy()` after the response (in a streamed body) needs a Set-Cookie that can no longer be
// sent (the cookie to clear): like a late `regenerate()`, it is reported to `onError` as
// SessionStateError and nothing is written. Once, the record was ended with the cookie left in
// the browser, and for the ended record's grace (60 s) that browser's next log in was refused
// with 409 as "a request in flight during a log out".
import { it } from "node:test";
import assert from "node:assert/strict";
import { getSession, MemoryStore, withSession } from "../../mod.ts";

const SECRET = "a secret of at least thirty-two characters";

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
  }, {
    store: new MemoryStore(),
    secrets: [SECRET],
    onError: (e) => {
      errors.push(e);
    },
  });

  const login = await handler(new Request("https://example.com/login", { method: "POST" }));
  const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
  const logout = await handler(new Request("https://example.com/logout", { headers: { cookie } }));
  assert.equal(await logout.text(), "goodbye");
  assert.equal(logout.headers.get("set-cookie"), null); // the cookie could not be cleared
  await new Promise((r) => setTimeout(r, 50));

  // The browser still sends the cookie it holds: the user signs in again.
  const again = await handler(
    new Request("https://example.com/login", { method: "POST", headers: { cookie } }),
  );
  assert.equal(
    again.status,
    200,
    `the log in after a streamed log out is refused: ${again.status}, onError: ${
      errors.map(String).join("; ")
    }`,
  );
});
