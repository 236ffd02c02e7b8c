// The session conformance suite: drives withSession with plain Requests against a real store.
// Every store runs it, the sealed CookieStore too; cases that need compare-and-set are skipped by
// capability, and those that read a server store's records or signed ids by the store's kind.
import { after, before, describe, it as test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { getSession, withSession } from "../../src/with_session.ts";
import { commitSession, openSession } from "../../src/open_session.ts";
import { withSessionHeaders } from "../../src/headers.ts";
import { headerTransport } from "../../src/transport.ts";
import { SessionError } from "../../src/errors.ts";
import type { Session } from "../../src/session.ts";
import { endUserSessions, listUserSessions } from "../../src/users.ts";
import type { InvalidCookieEvent, SessionOptions } from "../../src/options.ts";
import type { OpenedSession, SealedSessionStore, SessionStore, StoredSession } from "../../src/store.ts";
import { storageKeyOf } from "../../src/id.ts";
import { isEnded, isSealedStore } from "../../src/store.ts";
import { Client, type Counted, counted, countedSealed, gate } from "./client.ts";
import { sleep } from "./util.ts";
import { assertRichValuesRoundTrip } from "./rich_values.ts";
import { userSessions } from "../../src/users/options.ts";

export interface SessionSuiteOptions {
  open: () => SessionStore | SealedSessionStore | Promise<SessionStore | SealedSessionStore>;
  close?: () => void | Promise<void>;
  /**
   * A sealed store's outage: makes what it depends on (its revocation store) fail, or answer
   * again. A server store's calls are failed through the suite's counter instead.
   */
  outage?: (down: boolean) => void;
  /**
   * Which API drives the app: `withSession` (the default), or the request-free
   * `openSession`/`commitSession` pair, which cannot run a handler again (a conflict that would
   * need it is a 409) and saves nothing after the response.
   */
  api?: "withSession" | "request-free";
}

type Api = "withSession" | "request-free";
type Handler = (request: Request, ...rest: unknown[]) => Promise<Response>;

/**
 * What `withSession` does, built the way an application that never hands its Request to
 * websession would: `openSession` on the first `get(req)`, `commitSession` when the handler
 * returns, the `Set-Cookie` values on the response.
 */
function requestFree(
  fn: (request: Request, ...rest: unknown[]) => Promise<Response>,
  options: SessionOptions<Data>,
): { handler: Handler; get: (request: Request) => Promise<Session<Data>> } {
  const opened = new WeakMap<Request, Promise<Session<Data>>>();
  const answer = async (error: unknown, request: Request): Promise<Response> => {
    if (!(error instanceof SessionError)) throw error;
    const response = await options.onError?.(error, request);
    return response instanceof Response ? response : new Response(null, { status: error.status });
  };
  const handler: Handler = async (request, ...rest) => {
    let response: Response;
    try {
      response = await fn(request, ...rest);
    } catch (error) {
      return await answer(error, request);
    }
    const session = opened.get(request);
    if (session === undefined) return response;
    let cookies: string[];
    try {
      cookies = await commitSession(await session);
    } catch (error) {
      await response.body?.cancel();
      return await answer(error, request);
    }
    return withSessionHeaders(response, cookies);
  };
  const get = (request: Request): Promise<Session<Data>> => {
    let session = opened.get(request);
    if (session === undefined) opened.set(request, session = openSession<Data>(request, options));
    return session;
  };
  return { handler, get };
}

/**
 * How long a case may run before it fails. Node's test runner waits for a case forever, and a
 * request left waiting on a gate that never opens (or on a store that never answers) keeps it
 * waiting while a client with open connections keeps the process alive: a case that hangs must
 * fail with a message, not take the rest of the run's time. (The workerd runner bounds every
 * case to the same 60 s.)
 */
const CASE_TIMEOUT_MS = 60_000;

/** `it`, bounded by {@linkcode CASE_TIMEOUT_MS}. */
function it(name: string, fn: (t: TestContext) => void | Promise<void>): void {
  test(name, { timeout: CASE_TIMEOUT_MS }, fn);
}

/** Resolves to what `pending` resolves to, or fails with `what` once `ms` have passed. */
async function within<T>(pending: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([pending, late]);
  } finally {
    clearTimeout(timer);
  }
}

const SECRET = "test secret: at least thirty-two characters long";
/** Why a sealed store cannot save what changes after the response started. */
const LATE = "a sealed session cannot change after the response was sent: its cookie went with the headers";
const OLD_SECRET = "an older secret, also at least 32 characters";

type Data = {
  visits?: number;
  user?: string;
  msg?: string;
  late?: boolean;
  list?: string[];
  cart?: string[];
  paid?: boolean;
  [mark: `mark-${string}`]: number;
};

/** The app every case drives. Routes are small and each does one thing to the session. */
function makeApp(
  api: Api,
  store: SessionStore | SealedSessionStore,
  extra: Partial<SessionOptions<Data>> = {},
  hooks: { hold?: Promise<void> } = {},
) {
  const invalid: InvalidCookieEvent[] = [];
  const errors: unknown[] = [];
  let runs = 0;
  let charges = 0;
  let get = (req: Request) => getSession<Data>(req);
  const wrap = (fn: (req: Request) => Promise<Response>, options: SessionOptions<Data>): Handler => {
    if (api === "withSession") return withSession(fn, options);
    const built = requestFree(fn, options);
    get = built.get;
    return built.handler;
  };
  const handler = wrap(async (req: Request) => {
    runs++;
    const url = new URL(req.url);
    const session = await get(req);
    switch (url.pathname) {
      case "/count":
        return new Response(String(session.update("visits", (n = 0) => n + 1)));
      case "/read":
        return new Response(String(session.get("visits") ?? "none"));
      case "/getset": {
        // What people write: read, compute, write back.
        const n = (session.get("visits") ?? 0) + 1;
        await hooks.hold;
        session.set("visits", n);
        return new Response(String(n));
      }
      case "/mark": {
        // Writes a key of its own and shows a shared value it does not depend on.
        const name = url.searchParams.get("name")!;
        session.set(`mark-${name}`, 1);
        return new Response(String(session.peek("visits") ?? "none"));
      }
      case "/add": {
        await hooks.hold;
        session.update("cart", (cart = []) => [...cart, url.searchParams.get("item") ?? "book"]);
        return new Response("added");
      }
      case "/early": {
        // Saves part of its work early, then reads, waits and writes more.
        session.update("visits", (n = 0) => n + 1);
        await session.save();
        const seen = session.get("msg");
        await hooks.hold;
        session.set("late", seen === undefined);
        return new Response("early");
      }
      case "/set-msg":
        session.set("msg", "changed");
        return new Response("set");
      case "/slow-logout":
        await hooks.hold;
        session.destroy();
        return new Response("bye");
      case "/goodbye":
        session.destroy();
        session.flash("msg", "goodbye");
        return new Response("bye");
      case "/stream-late": {
        // The session is first asked for after the response started.
        const body = new ReadableStream<Uint8Array>({
          async start(controller) {
            controller.enqueue(new TextEncoder().encode("part 1\n"));
            await sleep(10);
            const late = await get(req);
            late.update("visits", (n = 0) => n + 10);
            controller.enqueue(new TextEncoder().encode("part 2\n"));
            controller.close();
          },
        });
        return new Response(body);
      }
      case "/push":
        session.update("list", (list = []) => [...list, url.searchParams.get("item")!]);
        return new Response("ok");
      case "/login":
        session.regenerate();
        session.set("user", url.searchParams.get("user") ?? "ada");
        return new Response(session.id);
      case "/logout":
        session.destroy();
        return new Response("bye");
      case "/flash":
        session.flash("msg", url.searchParams.get("msg") ?? "hello");
        return new Response("flashed");
      case "/show":
        return new Response(session.get("msg") ?? "none");
      case "/whoami":
        return new Response(session.get("user") ?? "none");
      case "/charge": {
        // A side effect outside the session, made once under a lock.
        const lock = await session.lock({ wait: Number(url.searchParams.get("wait") ?? 10) });
        const paid = session.get("paid") === true;
        if (!paid) {
          charges++;
          await hooks.hold;
          session.set("paid", true);
        }
        await session.save();
        await lock.release();
        return new Response(paid ? "already paid" : "charged");
      }
      case "/name":
        session.set("user", url.searchParams.get("user")!);
        return new Response("named");
      case "/touch":
        session.touch();
        return new Response("touched");
      case "/slow": {
        await hooks.hold;
        session.set("late", true);
        return new Response("late");
      }
      case "/stream": {
        const body = new ReadableStream<Uint8Array>({
          async start(controller) {
            controller.enqueue(new TextEncoder().encode("part 1\n"));
            await sleep(20);
            session.update("visits", (n = 0) => n + 100);
            controller.enqueue(new TextEncoder().encode("part 2\n"));
            controller.close();
          },
        });
        return new Response(body);
      }
      case "/stream-new": {
        const body = new ReadableStream<Uint8Array>({
          async start(controller) {
            await sleep(10);
            session.set("user", "too late");
            controller.enqueue(new TextEncoder().encode("done"));
            controller.close();
          },
        });
        return new Response(body);
      }
      default:
        return new Response("not found", { status: 404 });
    }
  }, {
    store,
    secrets: SECRET,
    onInvalidCookie: (event) => invalid.push(event),
    onError: (error) => {
      errors.push(error);
    },
    // A request held mid-flight while another of its session acts stands for a request on
    // another process: the two do not take turns (locking "explicit"), the compare-and-set and
    // the merge decide. Turns have their own cases.
    ...(hooks.hold === undefined ? {} : { locking: "explicit" as const }),
    ...extra,
  });
  return { handler, invalid, errors, runs: () => runs, charges: () => charges };
}

function cookieValue(response: Response, name = "session"): string | undefined {
  for (const header of response.headers.getSetCookie()) {
    if (header.startsWith(`${name}=`)) return header.slice(name.length + 1).split(";")[0];
  }
  return undefined;
}

async function keyOf(client: Client): Promise<string> {
  return await storageKeyOf(client.jar.get("session")!.split(".")[0]!);
}

async function until(check: () => Promise<boolean>, ms = 2_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await sleep(10);
  }
}

/** Runs the shared session cases under `describe(name)`. */
export function sessionSuite(name: string, options: SessionSuiteOptions): void {
  const api = options.api ?? "withSession";
  const app = (
    store: SessionStore | SealedSessionStore,
    extra: Partial<SessionOptions<Data>> = {},
    hooks: { hold?: Promise<void> } = {},
  ) => makeApp(api, store, extra, hooks);
  /** Skips a case that needs the handler run again, or a save after the response. */
  const needsWrapper = (t: { skip: (message: string) => void }): boolean => {
    if (api === "withSession") return false;
    t.skip("the request-free API cannot run a handler again or save after the response");
    return true;
  };
  const through = api === "withSession" ? "withSession" : "openSession and commitSession";
  describe(`${name}: sessions through ${through}`, () => {
    let opened: SessionStore | SealedSessionStore;
    /** The server store under test; cases that read its records do not run on a sealed store. */
    let inner: SessionStore;
    let c: Counted<SessionStore | SealedSessionStore>;
    before(async () => {
      opened = await options.open();
      if (!isSealedStore(opened)) inner = opened;
    });
    after(async () => {
      await options.close?.();
    });
    const fresh = () => (c = isSealedStore(opened) ? countedSealed(opened) : counted(opened));
    const cas = () => opened.capabilities.compareAndSet;
    const sealed = () => isSealedStore(opened);
    /** A sealed store with a revocation store: an ended or superseded seal no longer opens. */
    const revocation = () => isSealedStore(opened) && opened.capabilities.revocation;
    /** Skips a case on a sealed store, saying why. */
    const serverOnly = (t: { skip: (message: string) => void }, why: string): boolean => {
      if (!sealed()) return false;
      t.skip(why);
      return true;
    };
    /** Skips a case that needs an ended session's copies refused: on a sealed store, by revocation. */
    const needsEnd = (t: { skip: (message: string) => void }): boolean => {
      if (!sealed() || revocation()) return false;
      t.skip("without a revocation store, a copy of a sealed cookie outlives its session's end");
      return true;
    };
    /**
     * The record behind the session the cookies in `jar` name: the server store's record, or
     * what the sealed store opens from them (`null` when it opens none).
     */
    const stored = async (jar: Map<string, string>): Promise<StoredSession | null> => {
      if (!isSealedStore(opened)) {
        return await opened.load(await storageKeyOf(jar.get("session")!.split(".")[0]!));
      }
      const result = await opened.open((name) => jar.get(name), "session");
      return result === null || "invalid" in result ? null : result.record;
    };
    /** Whether the session the cookies in `jar` name was ended: a tombstone, or a seal refused as ended. */
    const ended = async (jar: Map<string, string>): Promise<boolean> => {
      if (!isSealedStore(opened)) return isEnded(await stored(jar));
      const result = await opened.open((name) => jar.get(name), "session");
      return result !== null && "invalid" in result && result.invalid === "ended";
    };
    /** A fresh counter, the app, and a client holding a stored session (visits = 1). */
    const returning = async (
      extra: Partial<SessionOptions<Data>> = {},
      hooks: { hold?: Promise<void> } = {},
    ) => {
      fresh();
      const running = app(c.store, extra, hooks);
      const client = new Client(running.handler);
      await client.text("/count");
      c.reset();
      return { ...running, client };
    };
    /** A held /slow request loses the race to a concurrent /count, then finishes. */
    const race = async (extra: Partial<SessionOptions<Data>>) => {
      const hold = gate();
      const running = await returning(extra, { hold: hold.promise });
      const slow = running.client.clone().fetch("/slow");
      await sleep(20); // the slow request has loaded the session and is waiting
      await running.client.text("/count");
      hold.open();
      return { ...running, slow: await slow };
    };

    it("costs nothing when the handler never asks for the session", async () => {
      fresh();
      const handler = withSession(() => new Response("plain"), { store: c.store, secrets: SECRET });
      const response = await handler(
        new Request("https://app.example/", { headers: { cookie: "session=abc" } }),
      );
      assert.equal(await response.text(), "plain");
      assert.deepEqual(c.calls, { load: 0, save: 0, destroy: 0, touch: 0 });
      assert.equal(response.headers.get("set-cookie"), null);
      assert.equal(response.headers.get("vary"), null);
    });

    it("sends no cookie and writes nothing until the session holds data", async () => {
      fresh();
      const { handler } = app(c.store);
      const client = new Client(handler);
      const response = await client.fetch("/read");
      assert.equal(await response.text(), "none");
      assert.equal(response.headers.get("set-cookie"), null);
      assert.equal(c.calls.save, 0);
      assert.equal(c.calls.load, 0, "no cookie: nothing to load");
    });

    it("creates a session with a signed cookie and the default attributes", async () => {
      fresh();
      const { handler } = app(c.store);
      const client = new Client(handler);
      const response = await client.fetch("/count");
      assert.equal(await response.text(), "1");
      const [header, ...more] = response.headers.getSetCookie();
      assert.deepEqual(more, [], "one cookie");
      // `id.signature`, or `id.version.signature` for stores with stale reads; or the seal.
      const value = sealed() ? /[A-Za-z0-9_.-]+/ : /[A-Za-z0-9_-]{32}(\.[1-9][0-9]*)?\.[A-Za-z0-9_-]{43}/;
      const attributes = "; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=5400; Expires=";
      assert.match(header!, new RegExp(`^session=${value.source}${attributes}`));
      assert.equal(response.headers.get("vary"), "Cookie");
      assert.equal(response.headers.get("cache-control"), "private, no-store");
      assert.equal(c.calls.save, 1);
      const record = await stored(client.jar);
      assert.deepEqual(record?.data, { visits: 1 });
      assert.equal(record?.version, 1);
    });

    it("reads once and writes once per changed request, re-sending the cookie only if it carries the version", async () => {
      const { client } = await returning();
      const response = await client.fetch("/count");
      assert.equal(await response.text(), "2");
      if (opened.capabilities.staleReads) {
        // The cookie carries the version the client saw, so it changes with every write.
        assert.match(response.headers.getSetCookie()[0] ?? "", /^session=[A-Za-z0-9_-]{32}\.2\./);
      } else if (sealed()) {
        // The cookie is the record: a new seal with every write.
        assert.match(response.headers.getSetCookie()[0] ?? "", /^session=[A-Za-z0-9_.-]+; /);
      } else {
        assert.equal(response.headers.get("set-cookie"), null);
      }
      assert.equal(c.calls.load, 1);
      assert.equal(c.calls.save, 1);
      assert.equal((await stored(client.jar))?.version, 2);
    });

    it("writes nothing and sends no Set-Cookie on a read-only request", async () => {
      const { client } = await returning();
      const response = await client.fetch("/read");
      assert.equal(await response.text(), "1");
      assert.equal(response.headers.get("set-cookie"), null);
      assert.deepEqual(c.calls, { load: 1, save: 0, destroy: 0, touch: 0 });
      assert.equal(response.headers.get("vary"), "Cookie");
    });

    it("reaches exactly 151 with 5 clients x 30 concurrent increments (CherryPy's check)", async (t) => {
      if (!cas()) return t.skip("store cannot compare-and-set");
      fresh();
      const { handler, errors } = app(c.store);
      const first = new Client(handler);
      assert.equal(await first.text("/count"), "1");
      const clients = Array.from({ length: 5 }, () => first.clone());
      await Promise.all(clients.map(async (client) => {
        for (let i = 0; i < 30; i++) assert.equal((await client.fetch("/count")).status, 200);
      }));
      assert.deepEqual(errors, []);
      assert.equal(await first.text("/read"), "151");
    });

    it("loses none of 50 concurrent increments on one session", async (t) => {
      if (!cas()) return t.skip("store cannot compare-and-set");
      const { errors, client } = await returning();
      const responses = await Promise.all(Array.from({ length: 50 }, () => client.clone().fetch("/count")));
      assert.deepEqual(responses.map((r) => r.status), Array(50).fill(200));
      assert.deepEqual(errors, []);
      assert.equal(await client.text("/read"), "51");
    });

    it("keeps every concurrent list append (update replays on the fresh value)", async (t) => {
      if (!cas()) return t.skip("store cannot compare-and-set");
      const { client } = await returning();
      await Promise.all(Array.from({ length: 20 }, (_, i) => client.clone().fetch(`/push?item=${i}`)));
      const record = await inner.load(await keyOf(client));
      assert.deepEqual(
        [...(record?.data.list as string[])].sort(),
        Array.from({ length: 20 }, (_, i) => String(i)).sort(),
      );
    });

    it("stays logged out when logout races a slow in-flight write", async (t) => {
      if (!cas() && !revocation()) return t.skip("store cannot compare-and-set");
      fresh();
      const hold = gate();
      const { handler } = app(c.store, {}, { hold: hold.promise });
      const client = new Client(handler);
      await client.text("/login?user=ada");
      const jar = new Map(client.jar);
      const slow = client.clone().fetch("/slow");
      await sleep(20); // the slow request has loaded the session and is waiting
      const logout = await client.fetch("/logout");
      assert.match(logout.headers.getSetCookie()[0]!, /Max-Age=0/);
      hold.open();
      const late = await slow;
      assert.equal(late.status, 409, "a change to an ended session is refused, never answered as success");
      assert.deepEqual(late.headers.getSetCookie(), [], "and it touches no cookie");
      assert.ok(await ended(jar), "the destroyed session was not resurrected");
      assert.equal(await client.text("/read"), "none", "and the browser stays logged out");
    });

    it("regenerate gives a new id and kills the old one", async (t) => {
      if (needsEnd(t)) return;
      const { handler, invalid, client } = await returning();
      const before = client.jar.get("session")!;
      const old = new Map(client.jar);
      await client.text("/login?user=grace");
      const afterLogin = client.jar.get("session")!;
      assert.notEqual(afterLogin, before);
      assert.ok(await ended(old), "the old record is a tombstone");
      const record = await stored(client.jar);
      assert.deepEqual(record?.data, { visits: 1, user: "grace" }, "data carried over");
      const attacker = new Client(handler);
      attacker.jar.set("session", before);
      const read = await attacker.fetch("/read");
      assert.equal(await read.text(), "none");
      assert.deepEqual(read.headers.getSetCookie(), []);
      assert.equal(invalid.at(-1)?.reason, "ended");
      const write = await attacker.fetch("/count");
      assert.equal(write.status, 409, "the old id cannot start a session of its own");
      assert.deepEqual(write.headers.getSetCookie(), []);
    });

    it("destroy deletes the record and expires the cookie", async (t) => {
      if (needsEnd(t)) return;
      const { handler, client } = await returning();
      const jar = new Map(client.jar);
      const replay = new Client(handler);
      replay.jar.set("session", client.jar.get("session")!); // a stolen copy
      assert.equal(await replay.text("/read"), "1", "the copy opens while the session lives");
      const response = await client.fetch("/logout");
      assert.match(
        response.headers.getSetCookie()[0]!,
        /^session=; Path=\/; .*Max-Age=0; Expires=Thu, 01 Jan 1970/,
      );
      assert.ok(await ended(jar));
      assert.equal(client.jar.size, 0);
      assert.equal(await replay.text("/read"), "none", "a cookie replayed after logout opens nothing");
      assert.equal((await replay.fetch("/count")).status, 409, "nor writes");
    });

    it("rotates secrets: old cookies still verify and are re-signed with the new secret", async (t) => {
      if (serverOnly(t, "a sealed cookie is sealed with the store's own secrets, not signed")) return;
      fresh();
      const old = app(c.store, { secrets: OLD_SECRET });
      const client = new Client(old.handler);
      await client.text("/count");
      const oldValue = client.jar.get("session")!;
      const rotated = app(c.store, { secrets: [SECRET, OLD_SECRET] });
      const response = await rotated.handler(
        new Request("https://app.example/read", { headers: { cookie: `session=${oldValue}` } }),
      );
      assert.equal(await response.text(), "1");
      const resigned = cookieValue(response);
      assert.ok(resigned && resigned !== oldValue, "re-signed with the first secret");
      assert.equal(resigned.split(".")[0], oldValue.split(".")[0], "same id");
      const retired = app(c.store, { secrets: SECRET });
      const again = new Client(retired.handler);
      again.jar.set("session", resigned);
      assert.equal(await again.text("/read"), "1");
      again.jar.set("session", oldValue);
      assert.equal(await again.text("/read"), "none");
      assert.equal(retired.invalid.at(-1)?.reason, "signature");
    });

    it("keeps a session active within idleTimeout, and ends it once idle past idleTimeout + touchAfter", async () => {
      let now = Date.now();
      const { invalid, client } = await returning({ idleTimeout: 4, touchAfter: 2, now: () => now });
      now += 1_500; // activity 1.5 s after the last write: not yet due for a touch
      assert.equal(await client.text("/read"), "1");
      now += 3_500; // 3.5 s idle, within idleTimeout: guaranteed
      assert.equal(await client.text("/read"), "1", "a session active within idleTimeout stays");
      now += 6_001; // idle past idleTimeout + touchAfter: gone
      assert.equal(await client.text("/read"), "none");
      assert.equal(invalid.at(-1)?.reason, "unknown");
    });

    it("expires after absoluteTimeout however active", async () => {
      let now = Date.now();
      const { client } = await returning({ idleTimeout: 60, absoluteTimeout: 150, now: () => now });
      for (let i = 0; i < 4; i++) {
        now += 35_000;
        assert.equal(await client.text("/count"), String(i + 2));
      }
      now += 35_000; // 175 s after creation
      assert.equal(await client.text("/read"), "none");
    });

    it("touches an unchanged browser-session cookie's record after touchAfter, without rewriting it", async (t) => {
      if (serverOnly(t, "a sealed session has no record on a server to touch: it is sealed again")) return;
      let now = Date.now();
      const { client } = await returning({
        idleTimeout: 600,
        touchAfter: 300,
        now: () => now,
        cookie: { persistent: false },
      });
      const key = await keyOf(client);
      const created = (await inner.load(key))!;
      now += 299_000;
      c.reset();
      let response = await client.fetch("/read");
      assert.equal(c.calls.save + c.calls.touch, 0);
      now += 2_000;
      response = await client.fetch("/read");
      assert.deepEqual(response.headers.getSetCookie(), [], "no Max-Age to refresh");
      assert.equal(c.calls.save + c.calls.touch, 1);
      const touched = (await inner.load(key))!;
      assert.equal(touched.expiresAt, now + 900_000, "idleTimeout + touchAfter");
      if (inner.touch) assert.equal(touched.version, created.version, "touch does not rewrite");
    });

    it("refreshes a persistent cookie only through a version-checked touch or save that proves the session live", async () => {
      let now = Date.now();
      const { client } = await returning({ idleTimeout: 600, touchAfter: 300, now: () => now });
      const created = (await stored(client.jar))!;
      now += 299_000;
      c.reset();
      let response = await client.fetch("/read");
      assert.equal(response.headers.get("set-cookie"), null);
      assert.equal(c.calls.save + c.calls.touch, 0);
      now += 2_000;
      response = await client.fetch("/read");
      assert.match(response.headers.get("set-cookie")!, /Max-Age=900;/);
      assert.equal(c.calls.save + c.calls.touch, 1);
      const touched = (await stored(client.jar))!;
      assert.equal(touched.expiresAt, now + 900_000);
      assert.ok(touched.expiresAt > created.expiresAt);
      assert.deepEqual(touched.data, created.data, "the data is unchanged");
      if (inner?.touch) assert.equal(touched.version, created.version, "a touch, not a rewrite");
      // touch() forces it
      now += 1_000;
      response = await client.fetch("/touch");
      assert.match(response.headers.get("set-cookie")!, /Max-Age=900;/);
    });

    it("shows a flash value once, on the next request", async () => {
      fresh();
      const { handler } = app(c.store);
      const client = new Client(handler);
      await client.text("/flash?msg=saved!");
      assert.equal(await client.text("/show"), "saved!");
      assert.equal(await client.text("/show"), "none");
    });

    it("starts a fresh session for tampered, garbage, oversized and duplicate cookies", async (t) => {
      if (serverOnly(t, "a sealed cookie is no signed id: its bad forms are the store's own cases")) return;
      const { handler, invalid, client } = await returning();
      const good = client.jar.get("session")!;
      const id = good.slice(0, good.indexOf("."));
      const sig = good.slice(good.lastIndexOf(".") + 1);
      const flip = (s: string) => (s[0] === "A" ? "B" : "A") + s.slice(1);
      const cases: Array<[string, string]> = [
        [`session=${flip(id)}.${sig}`, "signature"],
        [`session=${id}.${flip(sig)}`, "signature"],
        [`session=${id}.${sig.slice(0, 20)}`, "malformed"],
        [`session=${good}x`, "malformed"],
        [`session=${"A".repeat(32)}.${"B".repeat(43)}`, "signature"],
        [`session=../../etc/passwd.${sig}`, "malformed"],
        [`session=${"x".repeat(5000)}`, "oversized"],
        ["session=", "malformed"],
        ["session", "none"],
      ];
      for (const [cookie, reason] of cases) {
        const before = invalid.length;
        c.reset();
        const response = await handler(new Request("https://app.example/read", { headers: { cookie } }));
        assert.equal(response.status, 200, cookie);
        assert.equal(await response.text(), "none", cookie);
        assert.equal(c.calls.load, 0, `no store read for ${cookie.slice(0, 40)}`);
        if (reason === "none") assert.equal(invalid.length, before);
        else assert.equal(invalid.at(-1)?.reason, reason, cookie.slice(0, 60));
      }
    });

    it("answers 503 on a store outage, never a new id, and the data is intact afterwards", async (t) => {
      if (sealed() && options.outage === undefined) {
        return t.skip("a sealed store that needs no server is never down");
      }
      const down = (value: boolean) => (sealed() ? options.outage!(value) : void (c.down = value));
      fresh();
      const handler = withSession(async (req: Request) => {
        const session = await getSession<Data>(req);
        return new Response(String(session.update("visits", (n = 0) => n + 1)));
      }, {
        store: c.store,
        secrets: SECRET,
        onError: (error) => new Response((error as Error).name, { status: 503 }),
      });
      const client = new Client(handler);
      await client.text("/");
      const value = client.jar.get("session");
      down(true);
      const response = await client.fetch("/");
      assert.equal(response.status, 503);
      assert.equal(await response.text(), "StoreUnavailableError");
      assert.equal(response.headers.get("set-cookie"), null, "no new id during an outage");
      down(false);
      assert.equal(client.jar.get("session"), value);
      assert.equal(await client.text("/"), "2");
    });

    it("saves changes made while a streamed body is produced", async (t) => {
      if (needsWrapper(t) || serverOnly(t, LATE)) return;
      const { client } = await returning();
      const response = await client.fetch("/stream");
      assert.equal(await response.text(), "part 1\npart 2\n");
      const key = await keyOf(client);
      await until(async () => (await inner.load(key))?.data.visits === 101);
      assert.equal(await client.text("/read"), "101");
    });

    it("reports, and does not write, a new session created after the headers were sent", async (t) => {
      if (needsWrapper(t)) return;
      fresh();
      const { handler, errors } = app(c.store);
      const client = new Client(handler);
      const response = await client.fetch("/stream-new");
      assert.equal(await response.text(), "done");
      await until(() => Promise.resolve(errors.length > 0));
      assert.equal((errors[0] as Error).name, "SessionStateError");
      assert.equal(c.calls.save, 0);
      assert.equal(client.jar.size, 0);
    });

    it("serializes get-then-set increments over GET: all answered, none lost (re-run)", async (t) => {
      if (needsWrapper(t)) return;
      if (!cas()) return t.skip("store cannot compare-and-set");
      const { errors, client, runs } = await returning();
      const before = runs();
      const responses = await Promise.all(Array.from({ length: 10 }, () => client.clone().fetch("/getset")));
      assert.deepEqual(responses.map((r) => r.status), Array(10).fill(200));
      const shown = (await Promise.all(responses.map((r) => r.text()))).map(Number).sort((a, b) => a - b);
      assert.deepEqual(shown, Array.from({ length: 10 }, (_, i) => i + 2), "each saw a distinct value");
      assert.deepEqual(errors, []);
      assert.equal(await client.text("/read"), "11");
      assert.ok(runs() - before >= 10);
    });

    it("serializes get-then-set increments over POST: every 2xx counted, the rest refused", async (t) => {
      if (!cas()) return t.skip("store cannot compare-and-set");
      const { client } = await returning({
        onError: (e) => new Response(null, { status: (e as { status: number }).status }),
      });
      const responses = await Promise.all(
        Array.from({ length: 10 }, () => client.clone().fetch("/getset", { method: "POST" })),
      );
      const ok = responses.filter((r) => r.status === 200).length;
      assert.ok(ok >= 1);
      assert.deepEqual(
        responses.filter((r) => r.status !== 200).map((r) => r.status),
        Array(10 - ok).fill(409),
      );
      for (const r of responses) if (r.status !== 200) assert.deepEqual(r.headers.getSetCookie(), []);
      assert.equal(await client.text("/read"), String(1 + ok), "final value = start + number of 2xx");
    });

    it("gives one flash value to exactly one of 10 parallel requests", async (t) => {
      if (needsWrapper(t)) return;
      if (!cas()) return t.skip("store cannot compare-and-set");
      const { client } = await returning();
      await client.text("/flash?msg=once");
      const shown = await Promise.all(Array.from({ length: 10 }, () => client.clone().text("/show")));
      assert.deepEqual(shown.filter((m) => m === "once"), ["once"]);
      assert.equal(shown.filter((m) => m === "none").length, 9);
    });

    it("merges writers of disjoint keys with no re-run and no refusal", async (t) => {
      if (!cas()) return t.skip("store cannot compare-and-set");
      const { errors, client, runs } = await returning();
      const before = runs();
      const responses = await Promise.all(
        Array.from({ length: 20 }, (_, i) => client.clone().fetch(`/mark?name=${i}`, { method: "POST" })),
      );
      assert.deepEqual(responses.map((r) => r.status), Array(20).fill(200));
      assert.equal(runs() - before, 20, "no handler ran twice");
      assert.deepEqual(errors, []);
      const record = await inner.load(await keyOf(client));
      for (let i = 0; i < 20; i++) assert.equal(record?.data[`mark-${i}`], 1);
      assert.equal(record?.data.visits, 1);
    });

    it("loses no update and refuses none with 100 concurrent update() writers", async (t) => {
      if (!cas()) return t.skip("store cannot compare-and-set");
      const { errors, client } = await returning();
      const responses = await Promise.all(
        Array.from({ length: 100 }, () => client.clone().fetch("/count", { method: "POST" })),
      );
      assert.deepEqual(responses.map((r) => r.status), Array(100).fill(200));
      assert.deepEqual(errors, []);
      assert.equal(await client.text("/read"), "101");
    });

    it("refuses, without touching cookies, a write that loaded before a login regenerated the session", async (t) => {
      if (!cas() && !revocation()) return t.skip("store cannot compare-and-set");
      const hold = gate();
      const { client, handler } = await returning({}, { hold: hold.promise });
      const add = client.clone().fetch("/add?item=pen"); // loads with the pre-login cookie, waits
      await sleep(20);
      const login = await client.fetch("/login?user=ada");
      assert.equal(login.status, 200);
      const loggedIn = client.jar.get("session")!;
      hold.open();
      const added = await add;
      assert.equal(added.status, 409, "never 200 for an item that is on no session");
      assert.deepEqual(added.headers.getSetCookie(), [], "the new cookie is not deleted");
      const after = new Client(handler);
      after.jar.set("session", loggedIn);
      const record = await stored(after.jar);
      assert.equal(record?.data.user, "ada");
    });

    it("serves a late read-only request with the pre-login cookie as a fresh session, sending no cookie", async (t) => {
      if (!cas() && !revocation()) return t.skip("store cannot compare-and-set");
      const { client } = await returning();
      const stale = client.clone();
      await client.text("/login?user=ada");
      const late = await stale.fetch("/read");
      assert.equal(await late.text(), "none");
      assert.deepEqual(late.headers.getSetCookie(), [], "C1 survives in the browser");
      assert.equal(await client.text("/read"), "1", "still logged in with the data");
    });

    it("lets a browser that missed the new cookie start over once the end is long past", async (t) => {
      if (!cas() && !revocation()) return t.skip("store cannot compare-and-set");
      let now = Date.now();
      const { client } = await returning({ now: () => now });
      const missed = client.clone(); // its login response never arrived
      await client.text("/login?user=ada");
      const inFlight = await missed.fetch("/count");
      assert.equal(inFlight.status, 409, "just after the login: taken for a request in flight");
      now += 61_000;
      const later = await missed.fetch("/count");
      assert.equal(later.status, 200, "a minute later: the old cookie is unknown, not locked out");
      assert.match(
        later.headers.getSetCookie()[0] ?? "",
        /^session=[^;]+; /,
        "a new session with its own cookie",
      );
      assert.notEqual(missed.jar.get("session"), client.jar.get("session"));
      assert.equal(await client.text("/read"), "1", "the logged-in browser keeps its session");
    });

    it("lets a browser whose logged-out cookie came back log in at once, and nothing else", async (t) => {
      if (!cas() && !revocation()) return t.skip("store cannot compare-and-set");
      const { client } = await returning();
      await client.text("/login?user=ada");
      const back = client.clone(); // the cookie a response that arrived late puts back
      assert.equal((await client.fetch("/logout", { method: "POST" })).status, 200);
      const write = await back.clone().fetch("/count", { method: "POST" });
      assert.equal(write.status, 409, "a write that is no log in: taken for a request in flight");
      assert.deepEqual(write.headers.getSetCookie(), []);
      const login = await back.fetch("/login?user=bob", { method: "POST" });
      assert.equal(login.status, 200, "a log in starts a new session: nothing of the old one lives on");
      assert.equal(login.headers.getSetCookie().length >= 1, true);
      assert.equal(await back.text("/whoami"), "bob");
      assert.equal(await back.text("/read"), "none", "none of the logged-out session's data");
    });

    it("ends the session on a log out whose cookie another tab's write replaced meanwhile", async (t) => {
      if (!cas() && !revocation()) return t.skip("store cannot compare-and-set");
      const { client } = await returning();
      await client.text("/login?user=ada");
      const behind = client.clone(); // the log out's tab: the write's response has not reached it
      assert.equal((await client.fetch("/count", { method: "POST" })).status, 200);
      const logout = await behind.fetch("/logout", { method: "POST" });
      assert.equal(logout.status, 200);
      assert.match(logout.headers.getSetCookie()[0] ?? "", /Max-Age=0/, "the log out clears the cookie");
      assert.equal(await client.text("/whoami"), "none", "the write's newer cookie opens nothing");
    });

    it("refuses a log in with a cookie another log in replaced: its data lives on in the newer session", async (t) => {
      if (!cas() && !revocation()) return t.skip("store cannot compare-and-set");
      const { client } = await returning(); // visits: 1
      const before = client.clone(); // a second click on "log in", sent before the first answered
      await client.text("/login?user=ada");
      const again = await before.fetch("/login?user=ada", { method: "POST" });
      assert.equal(again.status, 409, "a new session would hide the data the first log in carried on");
      assert.deepEqual(again.headers.getSetCookie(), []);
      assert.equal(await client.text("/read"), "1");
      assert.equal(await client.text("/whoami"), "ada");
    });

    it("never applies an early save() twice: a later conflict refuses only what came after", async (t) => {
      if (!cas()) return t.skip("store cannot compare-and-set");
      const hold = gate();
      const { client, runs } = await returning({}, { hold: hold.promise });
      const before = runs();
      const early = client.clone().fetch("/early"); // a GET: re-runnable, until its save landed
      await sleep(30);
      assert.equal((await client.fetch("/set-msg", { method: "POST" })).status, 200);
      hold.open();
      const answered = await early;
      assert.equal(answered.status, 409, "what it read changed after its save: the rest is refused");
      // No new session, nothing cleared: at most the cookie of what the early save stored (on a
      // store with stale reads it carries the version that save wrote).
      const id = (value: string | undefined) =>
        (value ?? "").split(";")[0]!.replace(/^session=/, "").split(".")[0];
      for (const cookie of answered.headers.getSetCookie()) {
        assert.equal(id(cookie), id(client.jar.get("session")), `the same session, not another: ${cookie}`);
        assert.doesNotMatch(cookie, /Max-Age=0/);
      }
      assert.equal(runs() - before, 2, "the handler ran once, never again after its save landed");
      const record = await inner.load(await keyOf(client));
      assert.equal(record?.data.visits, 2, "the early increment landed exactly once");
      assert.equal(record?.data.late, undefined, "what came after the save did not land");
    });

    it("leaves a concurrent login's cookie alone when a logout in flight finds the session it ended", async (t) => {
      if (!cas() && !revocation()) return t.skip("store cannot compare-and-set");
      const hold = gate();
      const { client } = await returning({}, { hold: hold.promise });
      const logout = client.clone().fetch("/slow-logout", { method: "POST" }); // loads, waits
      await sleep(30);
      const login = await client.fetch("/login?user=ada", { method: "POST" });
      assert.equal(login.status, 200);
      hold.open();
      const out = await logout;
      assert.deepEqual(
        out.headers.getSetCookie().filter((c) => /Max-Age=0/.test(c)),
        [],
        "C1 is not cleared",
      );
      assert.equal(await client.text("/whoami"), "ada", "the login stands");
    });

    it("leaves a concurrent login's cookie alone when a logout in flight outlives the old session", async (t) => {
      if (!cas() && !revocation()) return t.skip("store cannot compare-and-set");
      let now = Date.now();
      const hold = gate();
      const { client } = await returning({ now: () => now, idleTimeout: 600 }, { hold: hold.promise });
      const logout = client.clone().fetch("/slow-logout", { method: "POST" }); // loads, waits
      await sleep(30);
      const login = await client.fetch("/login?user=ada", { method: "POST" });
      assert.equal(login.status, 200);
      now += 700_000; // the old session (and its tombstone) would have expired by now
      hold.open();
      const out = await logout;
      assert.equal(out.status, 200);
      assert.deepEqual(
        out.headers.getSetCookie().filter((c) => /Max-Age=0/.test(c)),
        [],
        "C1 is not cleared",
      );
    });

    it("keeps logout's goodbye flash when a slow request with the old cookie lands after it", async (t) => {
      if (!cas() && !revocation()) return t.skip("store cannot compare-and-set");
      const hold = gate();
      const { client } = await returning({}, { hold: hold.promise });
      const slow = client.clone().fetch("/add");
      await sleep(20);
      const bye = await client.fetch("/goodbye");
      assert.equal(bye.status, 200);
      hold.open();
      const late = await slow;
      assert.equal(late.status, 409);
      assert.deepEqual(late.headers.getSetCookie(), []);
      // A read-only request with the old cookie after the logout does not clear the new one.
      assert.equal(await client.text("/show"), "goodbye");
    });

    it("uses the cookie value that names a live session when the browser sends several", async (t) => {
      if (serverOnly(t, "a sealed store's cookies are no signed ids: its duplicates are its own cases")) {
        return;
      }
      const { client, handler, invalid } = await returning();
      const good = client.jar.get("session")!;
      const id = good.slice(0, good.indexOf("."));
      const stale = `${id.split("").reverse().join("")}.${good.slice(good.lastIndexOf(".") + 1)}`;
      // An expired session of an older deploy, still signed: verifies, names nothing.
      const old = new Client(handler);
      await old.text("/count");
      const other = old.jar.get("session")!;
      await old.text("/logout");
      for (
        const cookie of [
          `session=${stale}; session=${good}`,
          `session=${good}; session=${stale}`,
          `session=${other}; session=${good}`,
          `session=garbage, session=${good}`,
        ]
      ) {
        const response = await handler(new Request("https://app.example/count", { headers: { cookie } }));
        assert.equal(response.status, 200, cookie);
        assert.deepEqual(response.headers.getSetCookie().filter((c) => /Max-Age=0/.test(c)), [], cookie);
      }
      assert.equal(await client.text("/read"), "5", "every request counted on the live session");
      assert.ok(invalid.length > 0);
    });

    it("saves a session first asked for after the response started", async (t) => {
      if (needsWrapper(t) || serverOnly(t, LATE)) return;
      const waited: Promise<unknown>[] = [];
      const { client } = await returning();
      const response = await client.fetch("/stream-late", {
        extra: [{ waitUntil: (p: Promise<unknown>) => waited.push(p) }],
      });
      assert.equal(await response.text(), "part 1\npart 2\n");
      await until(() => Promise.resolve(waited.length > 0));
      await Promise.all(waited);
      assert.equal(await client.text("/read"), "11");
    });

    it("serializes a side effect outside the session under session.lock()", async (t) => {
      if (!opened.capabilities.locks) return t.skip("store cannot hold a lock");
      fresh();
      // The first request reaches the store's lock late, as on a loaded machine: the case must
      // not depend on how soon it takes it.
      let slowed = false;
      const counter = c.store as SessionStore; // a store with locks is a server store
      const store: SessionStore = {
        ...counter,
        async lock(key, owner, ttlMs) {
          if (!slowed) {
            slowed = true;
            await sleep(100);
          }
          return await counter.lock!(key, owner, ttlMs);
        },
      };
      const hold = gate();
      const { handler, charges } = app(store, {}, { hold: hold.promise });
      const client = new Client(handler);
      await client.text("/count");
      try {
        const first = client.clone().fetch("/charge", { method: "POST" }); // takes the lock, waits
        // Only once the first request holds the lock (it has charged and waits on the gate): a
        // request sent earlier could take the lock itself and then wait on the gate, which
        // opens only after its answer.
        await until(() => Promise.resolve(charges() === 1), 10_000);
        const refused = await within(
          client.clone().fetch("/charge?wait=0", { method: "POST" }),
          5_000,
          "a request with wait: 0 while the lock is held",
        );
        assert.equal(refused.status, 409, "wait: 0 refuses at once while the lock is held");
        const second = client.clone().fetch("/charge", { method: "POST" }); // waits for the lock
        await sleep(30);
        hold.open();
        assert.equal(await (await first).text(), "charged");
        assert.equal(await (await second).text(), "already paid");
        assert.equal(charges(), 1, "charged once");
      } finally {
        hold.open(); // never leaves a request waiting on the gate
      }
    });

    it("lists a user's sessions and ends the others, even for requests in flight", async (t) => {
      if (!opened.capabilities.users) return t.skip("store keeps no index per user");
      fresh();
      const hold = gate();
      const options = { users: userSessions({ userKey: "user" }) };
      const { handler } = app(c.store, options, { hold: hold.promise });
      const user = `ada-${crypto.randomUUID().slice(0, 8)}`;
      const phone = new Client(handler);
      const laptop = new Client(handler);
      const tablet = new Client(handler);
      for (const device of [phone, laptop, tablet]) await device.text(`/login?user=${user}`);
      const sessionOptions = { store: c.store, secrets: SECRET, users: userSessions({ userKey: "user" }) };
      // A session that gets its user by an update (no regenerate) is indexed too.
      const kiosk = new Client(handler);
      await kiosk.text("/count");
      await kiosk.text(`/name?user=${user}`);
      assert.ok(
        (await listUserSessions(sessionOptions, user)).some((s) =>
          s.data.visits === 1 && s.data.user === user
        ),
      );
      assert.equal(await endUserSessions(sessionOptions, { user, keys: [await keyOf(kiosk)] }), 1);
      const listed = await listUserSessions(sessionOptions, user);
      assert.equal(listed.length, 3);
      assert.ok(listed.every((s) => s.data.user === user && s.expiresAt > Date.now()));
      // The laptop has a write in flight when the phone signs out the other devices.
      const inflight = laptop.clone().fetch("/slow");
      await sleep(20);
      const keep = await keyOf(phone);
      const ended = await endUserSessions(sessionOptions, {
        user,
        keys: listed.filter((s) => s.key !== keep).map((s) => s.key),
      });
      assert.equal(ended, 2);
      hold.open();
      const late = await inflight;
      assert.equal(late.status, 409, "the in-flight write on an ended session is refused");
      assert.deepEqual(late.headers.getSetCookie(), []);
      assert.equal(await laptop.text("/read"), "none");
      assert.equal(await tablet.text("/read"), "none");
      // Signed out from elsewhere: the tablet may sign in again at once (no newer cookie of its
      // own exists, so there is no grace to wait out).
      const again = await tablet.fetch(`/login?user=${user}`, { method: "POST" });
      assert.equal(again.status, 200, "a device signed out remotely signs in again at once");
      assert.equal(again.headers.getSetCookie().length, 1);
      assert.equal(await endUserSessions(sessionOptions, { user, keys: [await keyOf(tablet)] }), 1);
      const left = await listUserSessions(sessionOptions, user);
      assert.deepEqual(left.map((s) => s.key), [keep]);
      assert.equal(await endUserSessions(sessionOptions, { user }), 1, "log out everywhere");
      assert.deepEqual(await listUserSessions(sessionOptions, user), []);
    });

    it("answers 409 under the reject policy when a concurrent write wins", async (t) => {
      if (!cas()) return t.skip("store cannot compare-and-set");
      const { client, slow } = await race({
        conflict: "reject",
        onError: (e) => new Response(null, { status: (e as { status: number }).status }),
      });
      assert.equal(slow.status, 409);
      const record = await inner.load(await keyOf(client));
      assert.equal(record?.data.late, undefined);
      assert.equal(record?.data.visits, 2);
    });

    it("re-runs the handler on fresh data under the retry policy", async (t) => {
      if (needsWrapper(t)) return;
      if (!cas()) return t.skip("store cannot compare-and-set");
      const { client, slow, runs } = await race({ conflict: "retry" });
      assert.equal(slow.status, 200);
      assert.equal(runs(), 4, "the slow handler ran twice");
      const record = await inner.load(await keyOf(client));
      assert.deepEqual(record?.data, { visits: 2, late: true });
    });

    it("lets the last write win under the overwrite policy", async (t) => {
      if (!cas()) return t.skip("store cannot compare-and-set");
      const { client, slow } = await race({ conflict: "overwrite" });
      assert.equal(slow.status, 200);
      const record = await inner.load(await keyOf(client));
      assert.deepEqual(record?.data, { visits: 1, late: true }, "the concurrent increment was overwritten");
    });

    it("takes options from the handler's arguments and passes them through", async () => {
      fresh();
      const seen: unknown[] = [];
      const waited: Promise<unknown>[] = [];
      const handler = withSession(
        async (req: Request, env: { SECRET: string }, ctx: { waitUntil(p: Promise<unknown>): void }) => {
          seen.push(env, ctx);
          const session = await getSession<Data>(req);
          session.set("user", "env");
          return new Response("ok");
        },
        (_req, env) => ({ store: c.store, secrets: env.SECRET }),
      );
      const env = { SECRET };
      const ctx = { waitUntil: (p: Promise<unknown>) => waited.push(p) };
      const response = await handler(new Request("https://app.example/"), env, ctx);
      assert.equal(response.status, 200);
      assert.equal(seen[0], env);
      assert.equal(seen[1], ctx);
      assert.ok(cookieValue(response));
    });

    it("round-trips Date, Map, Set, URL and BigInt under the richValues serializer, and reads older plain JSON", async () => {
      fresh();
      await assertRichValuesRoundTrip(c.store, cas());
    });

    it("starts a fresh session when stored data fails the schema", async () => {
      fresh();
      const schema = {
        "~standard": {
          version: 1 as const,
          vendor: "test",
          validate: (value: unknown) =>
            typeof (value as Data).visits === "number" || (value as Data).visits === undefined
              ? { value: value as Data }
              : { issues: [{ message: "visits must be a number" }] },
        },
      };
      const { handler, invalid } = app(c.store, { schema });
      const client = new Client(handler);
      await client.text("/count");
      if (isSealedStore(opened)) {
        // What another deploy sealed: the same session with other data.
        const { id, record } = (await opened.open((name) =>
          client.jar.get(name), "session")) as OpenedSession;
        const next = { ...record, data: { visits: "lots" }, version: record.version + 1 };
        for (const cookie of await opened.seal(id, next, "session")) {
          client.jar.set(cookie.name, cookie.value);
        }
        assert.equal(await client.text("/read"), "none");
        assert.equal(invalid.at(-1)?.reason, "data");
        return;
      }
      const key = await keyOf(client);
      const record = (await inner.load(key))!;
      if (cas()) {
        assert.ok(
          await inner.save(
            key,
            { ...record, data: { visits: "lots" }, version: record.version + 1 },
            record.version,
          ),
        );
      } else {
        await inner.save(
          key,
          { ...record, data: { visits: "lots" }, version: record.version + 1 },
          record.version,
        );
      }
      assert.equal(await client.text("/read"), "none");
      assert.equal(invalid.at(-1)?.reason, "data");
    });

    it("carries the session in a header (transport): a token that rotates and ends, never a cookie", async (t) => {
      if (api !== "withSession") return t.skip("the transport's token is sent by withSession here");
      if (serverOnly(t, "a sealed store keeps the whole session in cookies")) return;
      const handler = withSession(async (req: Request) => {
        const session = await getSession<Data>(req);
        const path = new URL(req.url).pathname;
        if (path === "/login") {
          session.regenerate();
          session.set("user", "ada");
        } else if (path === "/logout") session.destroy();
        return new Response(session.get("user") ?? "anonymous");
      }, { store: fresh().store, secrets: SECRET, transport: headerTransport() });
      const call = async (path: string, token?: string) => {
        const headers: Record<string, string> = token === undefined
          ? {}
          : { authorization: `Bearer ${token}` };
        const response = await handler(
          new Request(`https://example.com${path}`, { method: "POST", headers }),
        );
        assert.deepEqual(response.headers.getSetCookie(), [], path);
        return { text: await response.text(), token: response.headers.get("session-token") };
      };
      const login = await call("/login");
      assert.ok(login.token !== null && login.token !== "");
      assert.equal((await call("/me", login.token)).text, "ada");
      const again = await call("/login", login.token);
      assert.ok(again.token !== null && again.token !== "" && again.token !== login.token);
      assert.equal((await call("/me", login.token)).text, "anonymous"); // ended by the log in
      const logout = await call("/logout", again.token!);
      assert.equal(logout.token, "");
      assert.equal((await call("/me", again.token!)).text, "anonymous");
    });
  });
}
