// MemcachedStore when its Memcached goes away mid-run: on a throwaway memcached (never the shared
// one on 11211), through memcache-client.
//
// Two outages. Paused (SIGSTOP, then SIGCONT): the server keeps its items, so the shared outage
// scenario applies whole: 503 while down, never a new id, every acknowledged write there after.
// Killed (SIGKILL, then a new process): Memcached keeps nothing on disk and restarts empty, so
// every session is lost; what must still hold is 503 while down and never a new id while down,
// and after the restart a returning browser gets a new id, never its old one back.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { MemcacheClient } from "memcache-client";
import { getSession, withSession } from "../../src/with_session.ts";
import { MemcachedStore } from "../../src/stores/memcached.ts";
import { Client } from "../conformance/client.ts";
import { randomKey, sleep } from "../conformance/util.ts";
import { outageScenario } from "./outage.ts";
import type { Throwaway } from "./servers.ts";
import { skipWithoutMemcachedProgram } from "../services.ts";
import { answers, type Child, freePort, start as startChild } from "../spawn.ts";

/** Whether the server answers `version` (a paused server accepts but never answers). */
const answering = (port: number) => answers(port, "version\r\n", "VERSION");

async function until(check: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await sleep(25);
  }
}

interface ThrowawayMemcached extends Throwaway {
  /** Pauses the server (SIGSTOP): it keeps its items and its port, and answers nothing. */
  pause(): Promise<void>;
  /** Resumes a paused server (SIGCONT) and waits until it answers. */
  resume(): Promise<void>;
}

/** Starts a throwaway `memcached` in the foreground on a free loopback port. */
async function throwawayMemcached(): Promise<ThrowawayMemcached> {
  const port = await freePort();
  const args = ["-l", "127.0.0.1", "-p", String(port), "-U", "0", "-m", "64"];
  if (process.getuid?.() === 0) args.unshift("-u", "root");
  let child: Child | undefined;

  async function start(): Promise<void> {
    child = await startChild("memcached", args, { ready: () => answering(port) });
  }
  async function stop(): Promise<void> {
    await child?.stop("SIGKILL");
    child = undefined;
  }
  await start();
  return {
    port,
    start,
    stop,
    async pause() {
      child?.signal("SIGSTOP");
      await until(async () => !(await answering(port)), "memcached to pause");
    },
    async resume() {
      child?.signal("SIGCONT");
      await until(() => answering(port), `memcached on port ${port} to resume`);
    },
    destroy: stop,
  };
}

/** Fails fast while the server is away (a paused one accepts but never answers) and reconnects. */
function connect(port: number): { client: MemcacheClient; close(): void } {
  const client = new MemcacheClient({ server: `127.0.0.1:${port}`, cmdTimeout: 300, connectTimeout: 300 });
  return { client, close: () => client.shutdown() };
}

const SECRET = "outage test secret, at least thirty-two characters";
const CLIENTS = 8;

function idOf(value: string | undefined): string | undefined {
  return value?.split(".")[0];
}

function cookieIds(response: Response): (string | undefined)[] {
  return response.headers.getSetCookie().map((cookie) => idOf(cookie.split(";")[0]!.split("=")[1]));
}

/**
 * The killed-server scenario: sessions exist, traffic flows, the server is killed in the middle
 * of it and a new, empty one starts on the same port.
 */
async function restartScenario(store: MemcachedStore, server: Throwaway): Promise<{ failed: number }> {
  const errors: unknown[] = [];
  const handler = withSession(async (req: Request) => {
    const session = await getSession<{ n?: number }>(req);
    if (new URL(req.url).pathname === "/inc") session.update("n", (n = 0) => n + 1);
    return new Response(String(session.get("n") ?? 0));
  }, { store, secrets: SECRET, onError: (error) => void errors.push(error) });
  const browsers = Array.from({ length: CLIENTS }, () => new Client(handler));
  for (const browser of browsers) {
    assert.equal(await browser.text("/inc"), "1");
    assert.equal(await browser.text("/inc"), "2");
  }
  const ids = browsers.map((browser) => idOf(browser.jar.get("session")));
  assert.ok(ids.every((id) => id !== undefined));

  let stopping = false;
  let failed = 0;
  const problems: string[] = [];
  const traffic = browsers.map(async (browser, i) => {
    while (!stopping) {
      const response = await browser.fetch("/inc");
      await response.body?.cancel();
      if (response.status === 503) {
        failed++;
        if (response.headers.getSetCookie().length > 0) problems.push(`browser ${i}: Set-Cookie on a 503`);
      } else if (response.status !== 200) {
        problems.push(`browser ${i}: status ${response.status}`);
      } else if (cookieIds(response).some((id) => id !== ids[i])) {
        problems.push(`browser ${i}: a new id on a 200`);
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

  // While it is down: reads and writes answer 503 and no cookie; no browser loses its id.
  for (const [i, browser] of browsers.entries()) {
    for (const path of ["/read", "/inc"]) {
      const response = await browser.fetch(path);
      assert.equal(response.status, 503, `${path} while down`);
      assert.deepEqual(response.headers.getSetCookie(), []);
      await response.body?.cancel();
    }
    assert.equal(idOf(browser.jar.get("session")), ids[i], "the browser keeps its id");
  }
  const newcomer = await new Client(handler).fetch("/inc");
  assert.equal(newcomer.status, 503, "a new session cannot be saved while down");
  assert.deepEqual(newcomer.headers.getSetCookie(), []);
  await newcomer.body?.cancel();
  assert.deepEqual([...new Set(errors.map((error) => (error as { code?: unknown }).code))], [
    "ERR_SESSION_STORE_UNAVAILABLE",
  ]);

  // A new, empty Memcached: every session is gone. A returning browser starts over under a new
  // id; its old id is never brought back to life.
  await server.start();
  await until(
    async () => {
      try {
        await store.load(randomKey());
        return true;
      } catch {
        return false;
      }
    },
    "the store to answer again",
    15_000,
  );
  for (const [i, browser] of browsers.entries()) {
    assert.equal(await browser.text("/read"), "0", `browser ${i}: its session did not survive the restart`);
    const response = await browser.fetch("/inc");
    assert.equal(response.status, 200);
    assert.equal(await response.text(), "1");
    const [id] = cookieIds(response);
    assert.ok(id !== undefined && id !== ids[i], `browser ${i}: a new id after the restart`);
  }
  return { failed };
}

describe("MemcachedStore over memcache-client through a Memcached outage", {
  skip: skipWithoutMemcachedProgram(),
}, () => {
  let server: ThrowawayMemcached;
  before(async () => {
    server = await throwawayMemcached();
  });
  after(async () => {
    await server?.destroy();
  });

  it("paused server: 503 and no new ids while down, every acknowledged write there after", async () => {
    const { client, close } = connect(server.port);
    try {
      const store = new MemcachedStore({ client, prefix: "outage:" });
      const { failed } = await outageScenario(store, {
        port: server.port,
        stop: () => server.pause(),
        start: () => server.resume(),
        destroy: () => server.destroy(),
      });
      assert.ok(failed > 0);
    } finally {
      close();
    }
  });

  it("killed server: 503 and no new ids while down; restarted empty, sessions start over", async () => {
    const { client, close } = connect(server.port);
    try {
      const { failed } = await restartScenario(
        new MemcachedStore({ client, prefix: "restart:" }),
        server,
      );
      assert.ok(failed > 0);
    } finally {
      close();
    }
  });
});
