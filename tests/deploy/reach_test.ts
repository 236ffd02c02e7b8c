// The reach features on Workers: tests/deploy/reach_worker.ts in Miniflare (workerd), on Durable
// Objects and on Workers KV, driven from outside with `dispatchFetch` as a native client and a
// browser would: the session in a header (headerTransport), CSRF (csrf()), rich values
// (serializer: richValues, and the switch from plain JSON), and signIn from websession/testing
// against the Worker's own store.
//
// Each Miniflare serves two Workers of the same script on the same bindings: "reach" (with
// richValues) and "plain" (RICH=0: no serializer, the Worker as it was before the switch). One
// Miniflare is one isolate, where requests of one session take turns (docs/runtimes/workers.md):
// there a counter loses no increment on KV either (KV's lost updates are across locations).
//
//   node --import tsx --test tests/deploy/reach_test.ts
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Redis as IoRedis } from "ioredis";
import { Log, LogLevel, Miniflare } from "miniflare";
import type { SessionOptions } from "../../mod.ts";
import { richValues } from "../../src/serializer.ts";
import type { SessionStore } from "../../src/store.ts";
import { storageKeyOf } from "../../src/store_kit.ts";
import { CloudflareKvStore } from "../../src/stores/cloudflare_kv.ts";
import { DurableObjectStore } from "../../src/stores/durable_object.ts";
import { RedisStore } from "../../src/stores/redis.ts";
import { signIn } from "../../src/testing.ts";
import { headerTransport } from "../../src/transport.ts";
import { startUpstashBridge, type UpstashBridge } from "../bridges/upstash.ts";
import { type Data, describeRich, richFor } from "./reach_values.ts";
import { nodeNamespace } from "../workers/miniflare.ts";
import { bundleWorker, COMPATIBILITY_DATE, dropPrefix, SECRET } from "./workerd.ts";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
/** The Worker's origin, as `request.url` shows it there. */
const ORIGIN = "https://reach.test";
/** Requests of one session fired at once. */
const CONCURRENCY = 20;
/** The least of them the Worker must have been serving at once. */
const LEAST_AT_ONCE = 10;
/**
 * A signed session id, the cookie's value and the token: the id, the version the client last saw
 * where the store reads by version (Workers KV, Durable Objects), and the signature.
 */
const TOKEN = /^[A-Za-z0-9_-]{32}(?:\.\d+)?\.[A-Za-z0-9_-]{43}$/;

type Init = { method?: string; headers?: Record<string, string>; body?: string };

/** A Miniflare serving the reach Worker twice over the same bindings. */
interface Served {
  mf: Miniflare;
  /** Sends a request to the Worker with richValues ("reach") or without a serializer ("plain"). */
  fetch(path: string, init?: Init, worker?: "reach" | "plain"): Promise<Response>;
  /** A store in this process over the Worker's own binding (Miniflare's proxy of it). */
  nodeStore(): Promise<SessionStore>;
  close(): Promise<void>;
}

async function serveReach(store: string, bindings: Record<string, string> = {}): Promise<Served> {
  const script = await bundleWorker("./reach_worker.ts");
  const worker = (
    name: string,
    rich: string,
    objects: string | { className: string; scriptName: string },
  ) => ({
    name,
    modules: [{ type: "ESModule" as const, path: "worker.js", contents: script }],
    compatibilityDate: COMPATIBILITY_DATE,
    bindings: { SESSION_SECRET: SECRET, STORE: store, RICH: rich, ...bindings },
    // One namespace id for both Workers: they share the same KV data.
    kvNamespaces: { SESSIONS_KV: "sessions" },
    durableObjects: { SESSIONS_DO: objects },
  });
  const mf = new Miniflare({
    workers: [
      worker("reach", "1", "SessionDurableObject"),
      // The same objects: the class of the "reach" Worker.
      worker("plain", "0", { className: "SessionDurableObject", scriptName: "reach" }),
    ],
    log: new Log(process.env.DEPLOY_VERBOSE === "1" ? LogLevel.WARN : LogLevel.NONE),
  });
  await mf.ready;
  const plain = await mf.getWorker("plain");
  return {
    mf,
    async fetch(path, init = {}, name = "reach") {
      const url = `${ORIGIN}${path}`;
      const response = name === "reach" ? await mf.dispatchFetch(url, init) : await plain.fetch(url, init);
      return response as unknown as Response;
    },
    async nodeStore() {
      if (store === "do") {
        const namespace = await nodeNamespace(mf, "SESSIONS_DO", "reach");
        return new DurableObjectStore({ namespace });
      }
      const namespace = await mf.getKVNamespace("SESSIONS_KV", "reach");
      return new CloudflareKvStore({ namespace });
    },
    close: () => mf.dispose(),
  };
}

/** A response's body as JSON. */
async function json<T = Record<string, unknown>>(response: Response): Promise<T> {
  const text = await response.text();
  assert.ok(response.ok, `${response.status}: ${text}`);
  return JSON.parse(text) as T;
}

/** The `name=value` of a response's session cookie. */
function cookieOf(response: Response): string {
  const line = response.headers.getSetCookie().find((value) => value.startsWith("session="));
  assert.ok(line !== undefined, `a session cookie in ${JSON.stringify(response.headers.getSetCookie())}`);
  return line.split(";", 1)[0]!;
}

/** GET /me: who is signed in, the counter, the note. */
async function me(
  served: Served,
  headers: Record<string, string>,
  worker?: "reach" | "plain",
): Promise<Record<string, unknown>> {
  return await json(await served.fetch("/me", { headers }, worker));
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
/** What a current browser adds to a request from a page of the same origin. */
const sameOrigin = { "sec-fetch-site": "same-origin" };

/**
 * The shared cases, against one store of the Worker. `versioned`: the store's reads may lag
 * (Workers KV), so the token carries the version the client last saw, and every write hands out
 * a new one.
 */
function reachSuite(label: string, store: "do" | "kv", versioned: boolean): void {
  describe(label, () => {
    let served: Served;
    before(async () => {
      served = await serveReach(store);
    });
    after(async () => {
      await served?.close();
    });

    /** Signs a native client in: an empty Bearer asks for the header transport. */
    async function nativeLogin(user: string): Promise<string> {
      const response = await served.fetch(`/login?user=${user}`, {
        method: "POST",
        headers: { authorization: "Bearer" },
      });
      assert.equal(response.status, 200, await response.clone().text());
      assert.deepEqual(response.headers.getSetCookie(), []);
      const token = response.headers.get("session-token");
      assert.match(token ?? "", TOKEN);
      await response.body?.cancel();
      return token!;
    }

    /** Signs a browser in (a same-origin POST): its cookie. */
    async function webLogin(user: string): Promise<string> {
      const response = await served.fetch(`/login?user=${user}`, { method: "POST", headers: sameOrigin });
      assert.equal(response.status, 200, await response.clone().text());
      assert.equal(response.headers.get("session-token"), null);
      await response.body?.cancel();
      return cookieOf(response);
    }

    describe("the session in a header (headerTransport({ cookie: true }))", () => {
      it("signs a native client in on the header: its token in Session-Token, never a Set-Cookie", async () => {
        const login = await served.fetch("/login?user=ada", {
          method: "POST",
          headers: { authorization: "Bearer" },
        });
        assert.equal(login.status, 200);
        assert.deepEqual(login.headers.getSetCookie(), []);
        const token = login.headers.get("session-token")!;
        assert.match(token, TOKEN);
        assert.match(login.headers.get("cache-control") ?? "", /private/);
        assert.match(login.headers.get("vary") ?? "", /Authorization/);
        await login.body?.cancel();

        const read = await served.fetch("/me", { headers: bearer(token) });
        assert.deepEqual(await json(read), { user: "ada", n: null, note: null });
        assert.equal(read.headers.get("session-token"), null); // the client's token stays as it is
        assert.deepEqual(read.headers.getSetCookie(), []);

        // The same request without the header is a cookie request (the web app's), never a token's.
        const web = await served.fetch("/login?user=bob", { method: "POST", headers: sameOrigin });
        assert.equal(web.status, 200);
        assert.equal(web.headers.get("session-token"), null);
        assert.match(cookieOf(web).slice("session=".length), TOKEN);
        await web.body?.cancel();
      });

      it(`keeps every increment of ${CONCURRENCY} requests of one token fired at once`, async () => {
        const token = await nativeLogin("ada");
        const answers = await Promise.all(
          Array.from(
            { length: CONCURRENCY },
            () => served.fetch("/count", { method: "POST", headers: bearer(token) }),
          ),
        );
        const id = token.split(".", 1)[0]!;
        const issued: string[] = [];
        for (const answer of answers) {
          assert.equal(answer.status, 200, await answer.clone().text());
          assert.deepEqual(answer.headers.getSetCookie(), []);
          const next = answer.headers.get("session-token");
          if (next !== null) issued.push(next);
          await answer.body?.cancel();
        }
        if (versioned) {
          // The token carries the version the client last saw: each write hands out the same
          // session's token with its new version (the client keeps the newest it got).
          assert.equal(issued.length, CONCURRENCY);
          for (const next of issued) {
            assert.match(next, TOKEN);
            assert.equal(next.split(".", 1)[0], id);
          }
          const versions = issued.map((next) => Number(next.split(".")[1])).sort((a, b) => a - b);
          assert.deepEqual(versions, Array.from({ length: CONCURRENCY }, (_, i) => i + 2));
        } else {
          assert.deepEqual(issued, []); // the client's token stays as it is
        }
        assert.equal((await me(served, bearer(token))).n, CONCURRENCY);
        assert.equal((await me(served, bearer(issued.at(-1) ?? token))).n, CONCURRENCY);
        const most = await json<Record<string, number>>(await served.fetch("/stats"));
        assert.ok(
          (most[`Bearer ${token}`] ?? 0) >= LEAST_AT_ONCE,
          `the Worker served at most ${most[`Bearer ${token}`]} of them at once, fewer than ${LEAST_AT_ONCE}`,
        );
      });

      it("ends the session on log out: an empty Session-Token, then the old token names an ended session", async () => {
        const token = await nativeLogin("ada");
        const logout = await served.fetch("/logout", { method: "POST", headers: bearer(token) });
        assert.equal(logout.status, 200);
        assert.equal(logout.headers.get("session-token"), ""); // drop the token
        assert.deepEqual(logout.headers.getSetCookie(), []);
        await logout.body?.cancel();

        // As documented: an empty session, no new token (the client may hold another already), and a
        // write refused with 409.
        const after = await served.fetch("/me", { headers: bearer(token) });
        assert.deepEqual(await json(after), { user: null, n: null, note: null });
        assert.equal(after.headers.get("session-token"), null);
        const write = await served.fetch("/count", { method: "POST", headers: bearer(token) });
        assert.equal(write.status, 409, await write.text());
        assert.equal(write.headers.get("session-token"), null);
        assert.deepEqual(await me(served, bearer(token)), { user: null, n: null, note: null });
      });

      it("answers a request that carries both the cookie and the header on the header only", async () => {
        const cookie = await webLogin("web");
        const token = await nativeLogin("native");
        const both = { cookie, ...bearer(token) };

        const read = await served.fetch("/me", { headers: both });
        assert.deepEqual(await json(read), { user: "native", n: null, note: null });
        assert.deepEqual(read.headers.getSetCookie(), []);
        assert.match(read.headers.get("vary") ?? "", /Authorization/);
        assert.match(read.headers.get("vary") ?? "", /Cookie/);

        const write = await served.fetch("/count", { method: "POST", headers: both });
        assert.equal(write.status, 200);
        assert.deepEqual(write.headers.getSetCookie(), []);
        await write.body?.cancel();
        assert.equal((await me(served, bearer(token))).n, 1);
        assert.deepEqual(await me(served, { cookie }), { user: "web", n: null, note: null });

        // An empty Bearer beside the cookie: on the header, with no session yet; the cookie is not read.
        const fresh = await served.fetch("/me", { headers: { cookie, authorization: "Bearer" } });
        assert.deepEqual(await json(fresh), { user: null, n: null, note: null });
        assert.deepEqual(fresh.headers.getSetCookie(), []);
      });
    });

    describe("CSRF (withSession(csrf(handler)))", () => {
      /** A browser's session with a CSRF token: its cookie and the token of GET /form. */
      async function form(): Promise<{ cookie: string; token: string }> {
        const page = await served.fetch("/form");
        const cookie = cookieOf(page);
        const { token } = await json<{ token: string }>(page);
        assert.ok(token.length > 0);
        return { cookie, token };
      }

      const note = (headers: Record<string, string>, text: string, body?: string) =>
        served.fetch(`/note?text=${text}`, {
          method: "POST",
          headers,
          ...(body === undefined ? {} : { body }),
        });

      it("refuses a cross-site POST, by Sec-Fetch-Site or by a foreign Origin, with 403 and why", async () => {
        const { cookie, token } = await form();
        const bySite = await note({ cookie, "sec-fetch-site": "cross-site" }, "a");
        assert.equal(bySite.status, 403);
        assert.match(bySite.headers.get("content-type") ?? "", /^text\/plain/);
        assert.match(await bySite.text(), /^Cross-site request refused/);
        const byOrigin = await note({ cookie, origin: "https://evil.example" }, "b");
        assert.equal(byOrigin.status, 403);
        assert.match(
          await byOrigin.text(),
          /^Cross-origin request refused: Origin "https:\/\/evil\.example"/,
        );
        // The session's token does not make a cross-site request same-site.
        const withToken = await note({ cookie, "sec-fetch-site": "cross-site", "x-csrf-token": token }, "c");
        assert.equal(withToken.status, 403);
        await withToken.body?.cancel();
        assert.equal((await me(served, { cookie })).note, null);
      });

      it("lets a same-origin POST through, by Sec-Fetch-Site or by its own Origin, without a token", async () => {
        const { cookie } = await form();
        assert.deepEqual(await json(await note({ cookie, ...sameOrigin }, "site")), { saved: "site" });
        assert.deepEqual(await json(await note({ cookie, origin: ORIGIN }, "origin")), { saved: "origin" });
        assert.equal((await me(served, { cookie })).note, "origin");
      });

      it("asks a request with neither header for the session's token: the X-CSRF-Token header or the _csrf field", async () => {
        const { cookie, token } = await form();
        const other = await form();
        const missing = await note({ cookie }, "none");
        assert.equal(missing.status, 403);
        assert.match(await missing.text(), /^CSRF token missing/);
        const foreign = await note({ cookie, "x-csrf-token": other.token }, "foreign");
        assert.equal(foreign.status, 403);
        assert.match(await foreign.text(), /^CSRF token invalid/);
        assert.equal((await me(served, { cookie })).note, null);

        assert.deepEqual(await json(await note({ cookie, "x-csrf-token": token }, "header")), {
          saved: "header",
        });
        const field = await note(
          { cookie, "content-type": "application/x-www-form-urlencoded" },
          "field",
          `_csrf=${encodeURIComponent(token)}&other=1`,
        );
        assert.deepEqual(await json(field), { saved: "field" });
        assert.equal((await me(served, { cookie })).note, "field");
      });

      it("lets a native client's request through unchecked: a browser never adds its header", async () => {
        const token = await nativeLogin("ada");
        const response = await note({ ...bearer(token), "sec-fetch-site": "cross-site" }, "native");
        assert.deepEqual(await json(response), { saved: "native" });
        assert.equal((await me(served, bearer(token))).note, "native");
      });
    });

    describe("rich values (serializer: richValues)", () => {
      it("keeps a Date, a Map, a Set, a URL and a BigInt from one request to the next", async () => {
        const token = await nativeLogin("ada");
        assert.deepEqual(
          await json(await served.fetch("/rich?seed=7", { method: "POST", headers: bearer(token) })),
          {
            stored: true,
          },
        );
        const seen = await json(await served.fetch("/rich", { headers: bearer(token) }));
        assert.deepEqual(seen, describeRich(richFor(7)));
        assert.equal(seen.big, (7n ** 5n + 1n).toString());
        // And once more after another write to the session.
        await json(await served.fetch("/count", { method: "POST", headers: bearer(token) }));
        assert.deepEqual(
          await json(await served.fetch("/rich", { headers: bearer(token) })),
          describeRich(richFor(7)),
        );
      });

      it("reads a session written as plain JSON before the switch, and writes it in its format from then on", async () => {
        const nodeStore = await served.nodeStore();
        // Before the switch: the Worker without a serializer signs in and writes.
        const login = await served.fetch("/login?user=early", {
          method: "POST",
          headers: { authorization: "Bearer" },
        }, "plain");
        const token = login.headers.get("session-token")!;
        assert.match(token, TOKEN);
        await login.body?.cancel();
        await json(
          await served.fetch("/note?text=plain", { method: "POST", headers: bearer(token) }, "plain"),
        );
        const key = await storageKeyOf(token.split(".")[0]!);
        const before = await nodeStore.load(key);
        assert.equal(before?.data.note, "plain");
        assert.equal(before?.data.__serializer, undefined, "written as plain JSON");

        // After: the Worker with richValues reads it, and writes it in its format.
        assert.deepEqual(await me(served, bearer(token)), { user: "early", n: null, note: "plain" });
        await json(await served.fetch("/rich?seed=3", { method: "POST", headers: bearer(token) }));
        assert.deepEqual(
          await json(await served.fetch("/rich", { headers: bearer(token) })),
          describeRich(richFor(3)),
        );
        assert.deepEqual(await me(served, bearer(token)), { user: "early", n: null, note: "plain" });
        const afterwards = await nodeStore.load(key);
        assert.equal(afterwards?.data.__serializer, "rich/1");
        assert.deepEqual(afterwards?.data.since, { $: "Date", v: richFor(3).since.toISOString() });

        // A Worker still without the serializer does not misread it: a fresh session (documented).
        assert.deepEqual(await me(served, bearer(token), "plain"), { user: null, n: null, note: null });
      });
    });

    describe("signIn (websession/testing) through the Worker's own binding", () => {
      /** The Worker's options, with a store over Miniflare's proxy of the same binding. */
      async function options(): Promise<SessionOptions<Data>> {
        return {
          store: await served.nodeStore(),
          secrets: [SECRET],
          transport: headerTransport({ cookie: true }),
          serializer: richValues,
        };
      }

      it("gives a cookie the Worker serves, with rich values signIn stored", async () => {
        const signed = await signIn<Data>(await options(), { user: "ada", ...richFor(11) }, { url: ORIGIN });
        assert.equal(signed.setCookie.length, 1);
        assert.equal(signed.cookies[0]!.domain, "reach.test");
        const read = await served.fetch("/me", { headers: { cookie: signed.cookie } });
        assert.deepEqual(await json(read), { user: "ada", n: null, note: null });
        assert.deepEqual(read.headers.getSetCookie(), []);
        assert.deepEqual(
          await json(await served.fetch("/rich", { headers: { cookie: signed.cookie } })),
          describeRich(richFor(11)),
        );
        // Other secrets: a cookie the Worker does not know.
        const forged = await signIn<Data>({ ...(await options()), secrets: [`${SECRET} (another)`] }, {
          user: "mallory",
        });
        assert.deepEqual(await me(served, { cookie: forged.cookie }), { user: null, n: null, note: null });
      });

      it("gives a native client's token the Worker serves on the header", async () => {
        const signed = await signIn<Data>(await options(), { user: "ada", n: 41 });
        assert.match(signed.token ?? "", TOKEN);
        const read = await served.fetch("/me", { headers: bearer(signed.token!) });
        assert.deepEqual(await json(read), { user: "ada", n: 41, note: null });
        assert.deepEqual(read.headers.getSetCookie(), []);
        await json(await served.fetch("/count", { method: "POST", headers: bearer(signed.token!) }));
        assert.equal((await me(served, bearer(signed.token!))).n, 42);
      });
    });
  });
}

describe("Workers (Miniflare): the session in a header, CSRF, rich values and signIn", () => {
  reachSuite("DurableObjectStore", "do", false);
  reachSuite("CloudflareKvStore (Miniflare's KV)", "kv", true);

  describe("RedisStore shared by the test and the Worker (@upstash/redis, REST bridge to the real Redis)", () => {
    const prefix = `websession-test:reach-${crypto.randomUUID().slice(0, 8)}:`;
    let bridge: UpstashBridge;
    let served: Served;
    let client: IoRedis;
    before(async () => {
      bridge = await startUpstashBridge({ redisUrl: REDIS_URL });
      served = await serveReach("redis", {
        UPSTASH_REDIS_REST_URL: bridge.url,
        UPSTASH_REDIS_REST_TOKEN: bridge.token,
        UPSTASH_DISABLE_TELEMETRY: "1",
        REDIS_PREFIX: prefix,
      });
      client = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
    });
    after(async () => {
      client?.disconnect();
      await served?.close();
      await bridge?.close();
      await dropPrefix(prefix);
    });

    it("signIn in the test's process (ioredis), the Worker reads the session (Upstash)", async () => {
      const store = new RedisStore({ client, prefix });
      const options: SessionOptions<Data> = { store, secrets: [SECRET], serializer: richValues };
      const signed = await signIn<Data>(options, { user: "ada", ...richFor(5) });
      const requests = bridge.requests;
      assert.deepEqual(await me(served, { cookie: signed.cookie }), { user: "ada", n: null, note: null });
      assert.deepEqual(
        await json(await served.fetch("/rich", { headers: { cookie: signed.cookie } })),
        describeRich(richFor(5)),
      );
      assert.ok(bridge.requests > requests, "the Worker's store reached Redis through the bridge");
      // What the Worker writes, the test's store reads.
      await json(
        await served.fetch("/count", { method: "POST", headers: { cookie: signed.cookie, ...sameOrigin } }),
      );
      const record = await store.load(await storageKeyOf(signed.cookie.split("=")[1]!.split(".")[0]!));
      assert.equal(record?.data.n, 1);
      assert.equal(record?.data.user, "ada");
    });
  });
});
