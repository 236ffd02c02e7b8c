// The outage scenario every real backend runs: sessions exist, traffic flows, the server dies in
// the middle of it, then comes back. During the outage requests must get 503 and never a new
// session id; afterwards every session must be there with every acknowledged write.
import assert from "node:assert/strict";
import { getSession, withSession } from "../../src/with_session.ts";
import type { SessionStore } from "../../src/store.ts";
import { Client } from "../conformance/client.ts";
import { randomKey, sleep } from "../conformance/util.ts";
import type { Throwaway } from "./servers.ts";

const SECRET = "outage test secret, at least thirty-two characters";
const CLIENTS = 8;

function idOf(value: string | undefined): string | undefined {
  return value?.split(".")[0];
}

function app(store: SessionStore, errors: unknown[]) {
  return withSession(async (req: Request) => {
    const session = await getSession<{ n?: number }>(req);
    if (new URL(req.url).pathname === "/inc") session.update("n", (n = 0) => n + 1);
    return new Response(String(session.get("n") ?? 0));
  }, {
    store,
    secrets: SECRET,
    // Recorded, not logged; returning nothing leaves the status to withSession (503).
    onError: (error) => void errors.push(error),
  });
}

/** Waits until the store answers again (the client reconnects on its own schedule). */
async function reachable(store: SessionStore, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      await store.load(randomKey());
      return;
    } catch (error) {
      if (Date.now() > end) throw error;
      await sleep(50);
    }
  }
}

/**
 * Runs the scenario against `store`, whose client talks to `server`.
 *
 * @returns What happened, for the caller to report or check further.
 */
export async function outageScenario(
  store: SessionStore,
  server: Throwaway,
): Promise<{ during: number; failed: number }> {
  const errors: unknown[] = [];
  const handler = app(store, errors);
  const clients = Array.from({ length: CLIENTS }, () => new Client(handler));

  // Sessions that exist before the outage.
  for (const client of clients) {
    assert.equal(await client.text("/inc"), "1");
    assert.equal(await client.text("/inc"), "2");
  }
  const ids = clients.map((client) => idOf(client.jar.get("session")));
  assert.ok(ids.every((id) => id !== undefined));
  const acknowledged = clients.map(() => 2);
  const attempted = clients.map(() => 2);

  // Traffic from every client while the server dies in the middle of it.
  let stopping = false;
  let during = 0;
  let failed = 0;
  const problems: string[] = [];
  const traffic = clients.map(async (client, i) => {
    while (!stopping) {
      attempted[i]!++;
      const response = await client.fetch("/inc");
      const body = await response.text();
      during++;
      const cookies = response.headers.getSetCookie();
      if (response.status === 200) {
        acknowledged[i] = Number(body);
        if (cookies.some((cookie) => idOf(cookie.split(";")[0]!.split("=")[1]) !== ids[i])) {
          problems.push(`client ${i}: a new id on a 200`);
        }
      } else if (response.status === 503) {
        failed++;
        if (cookies.length > 0) problems.push(`client ${i}: Set-Cookie on a 503: ${cookies.join(" | ")}`);
      } else {
        problems.push(`client ${i}: status ${response.status}`);
      }
      await sleep(5);
    }
  });
  await sleep(150);
  await server.stop();
  await sleep(300);
  stopping = true;
  await Promise.all(traffic);
  assert.deepEqual(problems, []);
  assert.ok(failed > 0, "no request failed although the server was down");

  // While it is down: every kind of request that needs the store answers 503, with no cookie.
  for (const [i, client] of clients.entries()) {
    for (const path of ["/read", "/inc"]) {
      const response = await client.fetch(path);
      assert.equal(response.status, 503, `${path} while down`);
      assert.deepEqual(response.headers.getSetCookie(), []);
      await response.body?.cancel();
    }
    assert.equal(idOf(client.jar.get("session")), ids[i], "the client keeps its id");
  }
  const newcomer = await new Client(handler).fetch("/inc");
  assert.equal(newcomer.status, 503, "a new session cannot be saved while down");
  assert.deepEqual(newcomer.headers.getSetCookie(), []);
  await newcomer.body?.cancel();

  const codes = new Set(errors.map((error) => (error as { code?: unknown }).code));
  assert.deepEqual([...codes], ["ERR_SESSION_STORE_UNAVAILABLE"]);

  // Back up: every session is there, with every acknowledged write and no phantom ones.
  await server.start();
  await reachable(store);
  for (const [i, client] of clients.entries()) {
    const response = await client.fetch("/read");
    assert.equal(response.status, 200);
    const n = Number(await response.text());
    assert.ok(
      n >= acknowledged[i]! && n <= attempted[i]!,
      `client ${i}: ${n} not within [${acknowledged[i]}, ${attempted[i]}]`,
    );
    assert.equal(await client.text("/inc"), String(n + 1));
    assert.equal(idOf(client.jar.get("session")), ids[i], "same id after the restart");
  }
  return { during, failed };
}
