// The round-trip scenario shared by the remote stores' tests: drive withSession through every
// kind of request and check exactly which backend calls each one makes.
import assert from "node:assert/strict";
import { getSession, withSession } from "../../src/with_session.ts";
import type { SessionStore } from "../../src/store.ts";
import { Client } from "./client.ts";

/** The calls a store is expected to make for each kind of request. */
export interface ExpectedCalls {
  /** A new session's first save. */
  create: string[];
  /** Loading a session with a valid cookie. */
  read: string[];
  /** Saving a changed session (no conflict). */
  update: string[];
}

/**
 * Runs the scenario: no cookie, a handler that never asks, a new session, a read-only request,
 * two changed requests, and a forged signature. `sent` is the list the caller's recording client
 * appends each backend call's name to; `httpRequests`, for a client speaking HTTP through a test
 * bridge, counts the bridge's requests, which must equal the calls.
 *
 * @returns How many backend calls the scenario made in all.
 */
export async function assertRoundTrips(
  store: SessionStore,
  sent: string[],
  secret: string,
  calls: ExpectedCalls,
  httpRequests?: () => number,
): Promise<number> {
  const requestsBefore = httpRequests?.() ?? 0;
  const handler = withSession(async (req: Request) => {
    const path = new URL(req.url).pathname;
    if (path === "/static") return new Response("static");
    const session = await getSession<{ n?: number }>(req);
    if (path === "/inc") session.update("n", (n = 0) => n + 1);
    return new Response(String(session.get("n") ?? 0));
  }, { store, secrets: secret });
  const browser = new Client(handler);
  let total = 0;
  async function expect(path: string, expected: string[], who = browser): Promise<void> {
    sent.length = 0;
    await who.text(path);
    assert.deepEqual(sent, expected, `${path} with${who.jar.size ? "" : "out"} a cookie`);
    total += expected.length;
  }
  await expect("/read", []); // no cookie: nothing to load
  await expect("/static", []);
  await expect("/inc", calls.create); // a new session: one create
  await expect("/static", []); // a valid cookie the handler never asks about
  await expect("/read", calls.read); // read-only: no write
  await expect("/inc", [...calls.read, ...calls.update]);
  await expect("/inc", [...calls.read, ...calls.update]);
  sent.length = 0;
  assert.equal(await browser.text("/read"), "3");
  total += sent.length;
  const forged = browser.clone();
  const [id, signature] = browser.jar.get("session")!.split(".") as [string, string];
  const flipped = signature[5] === "A" ? "B" : "A"; // a middle character: every bit of it counts
  forged.jar.set("session", `${id}.${signature.slice(0, 5)}${flipped}${signature.slice(6)}`);
  await expect("/read", [], forged); // a bad signature never reaches the backend
  if (httpRequests !== undefined) {
    // Over HTTP every backend call was one request: no hidden extra round trips.
    assert.equal(httpRequests() - requestsBefore, total);
  }
  return total;
}
