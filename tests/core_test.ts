// Unit tests of the core pieces: cookies, options, ids, signing, the Session API, and the
// response handling of withSession. Store behaviour is in tests/conformance/.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  getSession,
  MemoryStore,
  type Session,
  SessionConfigError,
  SessionConflictError,
  SessionError,
  type SessionEvent,
  StoreUnavailableError,
  withSession,
} from "../mod.ts";
import { createSessionId, isSessionId, storageKeyOf } from "../src/store_kit.ts";
import { parseCookies, readCookies, resolveCookieOptions, serializeCookie } from "../src/cookie.ts";
import { GenerationalCache, Signer } from "../src/signing.ts";
import { replay } from "../src/session_data.ts";
import { Client } from "./conformance/client.ts";
import type { SealedSessionStore } from "../src/store.ts";
import { sealedStore } from "../src/store_kit.ts";

const SECRET = "unit test secret of at least 32 characters";

describe("ids", () => {
  it("are 192 random bits in 32 base64url characters, never repeating", () => {
    const ids = new Set(Array.from({ length: 10_000 }, createSessionId));
    assert.equal(ids.size, 10_000);
    for (const id of [...ids].slice(0, 100)) assert.ok(isSessionId(id));
    // Every base64url character shows up: the encoding uses the full alphabet.
    const seen = new Set([...ids].join(""));
    assert.equal(seen.size, 64);
  });

  it("map to a SHA-256 storage key that is not the id", async () => {
    const id = createSessionId();
    const key = await storageKeyOf(id);
    assert.match(key, /^[A-Za-z0-9_-]{43}$/);
    assert.ok(!key.includes(id));
    assert.equal(await storageKeyOf(id), key);
    await assert.rejects(storageKeyOf("../../x"), TypeError);
  });
});

describe("cookie parsing", () => {
  it("finds one cookie among others, with spaces and quotes", () => {
    assert.deepEqual(readCookies("a=1;session=v1", "session"), ["v1"]);
    assert.deepEqual(readCookies("a=1;  session = v2 ; b=2", "session"), ["v2"]);
    assert.deepEqual(readCookies('session="v3"', "session"), ["v3"]);
    assert.deepEqual(readCookies("mysession=x; session_old=y", "session"), []);
    assert.deepEqual(readCookies("xsession=1", "session"), []);
    assert.deepEqual(readCookies(null, "session"), []);
    assert.deepEqual(readCookies("session=a; x=1; session=b", "session"), ["a", "b"]);
  });

  it("reads cookies a runtime joined with a comma (two Cookie fields in one Headers)", () => {
    assert.deepEqual(readCookies("a=1, session=v1", "session"), ["v1"]);
    assert.deepEqual(readCookies("session=v1, session=v2; b=2", "session"), ["v1", "v2"]);
    const headers = new Headers();
    headers.append("cookie", "a=1");
    headers.append("cookie", "session=v9");
    assert.deepEqual(readCookies(headers.get("cookie"), "session"), ["v9"]);
    assert.deepEqual(parseCookies(headers.get("cookie")).get("session"), ["v9"]);
  });

  it("parses a whole header, keeping every value of a repeated name", () => {
    const cookies = parseCookies('a=1; b=2; a=3; =x; junk; c="q"');
    assert.deepEqual(cookies.get("a"), ["1", "3"]);
    assert.deepEqual(cookies.get("c"), ["q"]);
  });

  it("serializes Max-Age and Expires together, and deletion as Max-Age=0", () => {
    const now = Date.UTC(2030, 0, 1);
    assert.equal(
      serializeCookie("s", "v", "; Path=/", 60, now),
      "s=v; Path=/; Max-Age=60; Expires=Tue, 01 Jan 2030 00:01:00 GMT",
    );
    assert.equal(
      serializeCookie("s", "", "; Path=/", 0, now),
      "s=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
    );
    assert.equal(serializeCookie("s", "v", "; Path=/", undefined, now), "s=v; Path=/");
    assert.throws(() => serializeCookie("s", "a;b", "", 1, now), TypeError);
  });
});

describe("cookie options", () => {
  it("default to HttpOnly; Secure; SameSite=Lax; Path=/", () => {
    assert.deepEqual(resolveCookieOptions(), {
      name: "session",
      persistent: true,
      secure: true,
      attributes: "; Path=/; HttpOnly; Secure; SameSite=Lax",
    });
  });

  it("write every attribute", () => {
    const o = resolveCookieOptions({
      name: "__Secure-s",
      domain: "example.com",
      path: "/app",
      sameSite: "None",
      partitioned: true,
    });
    assert.equal(
      o.attributes,
      "; Path=/app; Domain=example.com; HttpOnly; Secure; SameSite=None; Partitioned",
    );
  });

  it("refuse attribute injection and rules a browser would enforce silently", () => {
    const bad: Array<Parameters<typeof resolveCookieOptions>[0]> = [
      { name: "a;b" },
      { name: "a b" },
      { name: "" },
      { path: "/x; Domain=evil.com" },
      { path: "relative" },
      { domain: "evil.com; Secure" },
      { domain: "a..b" },
      { sameSite: "None", secure: false },
      { partitioned: true, secure: false },
      { name: "__Host-s", domain: "example.com" },
      { name: "__Host-s", path: "/app" },
      { name: "__Host-s", secure: false },
      { name: "__Secure-s", secure: false },
      { sameSite: "lax" as "Lax" },
    ];
    for (const options of bad) {
      assert.throws(() => resolveCookieOptions(options), TypeError, JSON.stringify(options));
    }
    assert.doesNotThrow(() => resolveCookieOptions({ name: "__Host-s" }));
  });
});

describe("options", () => {
  it("refuse missing, short or mistyped secrets at construction", () => {
    const h = () => new Response();
    assert.throws(() => withSession(h, {} as never), /secrets/);
    assert.throws(() => withSession(h, { secrets: "short" }), TypeError);
    assert.throws(() => withSession(h, { secrets: [] }), TypeError);
    assert.throws(() => withSession(h, { secrets: [SECRET, "short"] }), /secret 1/);
    assert.throws(() => withSession(h, { secrets: [SECRET, 42 as unknown as string] }), TypeError);
  });

  it("refuse nonsense timeouts, policies and hooks", () => {
    const h = () => new Response();
    assert.throws(() => withSession(h, { secrets: SECRET, idleTimeout: 0 }), RangeError);
    assert.throws(() => withSession(h, { secrets: SECRET, idleTimeout: NaN }), RangeError);
    assert.throws(() => withSession(h, { secrets: SECRET, idleTimeout: 401 * 86400 }), /at most|from 1 to/);
    assert.throws(() => withSession(h, { secrets: SECRET, idleTimeout: Infinity }), RangeError);
    assert.doesNotThrow(() => withSession(h, { secrets: SECRET, absoluteTimeout: Infinity }));
    assert.throws(() => withSession(h, { secrets: SECRET, touchAfter: 7200 }), RangeError);
    assert.throws(() => withSession(h, { secrets: SECRET, maxAttempts: 0 }), RangeError);
    assert.throws(() => withSession(h, { secrets: SECRET, conflict: "lock" as never }), TypeError);
    assert.throws(() => withSession(h, { secrets: SECRET, onError: "x" as never }), TypeError);
    assert.throws(() => withSession(h, { secrets: SECRET, store: {} as never }), TypeError);
    assert.throws(() => withSession(h, { secrets: SECRET, schema: {} as never }), TypeError);
    assert.throws(() => withSession("nope" as never, { secrets: SECRET }), TypeError);
  });

  it("warn once, at start-up, about an option they do not know, naming the one meant", async () => {
    const lines: string[] = [];
    const logger = { warn: (line: string) => void lines.push(line), error: () => {} };
    const options = { secrets: SECRET, logger, idleTimeOut: 60, secret: SECRET, cookieName: "sid" };
    const handler = withSession(() => new Response("ok"), options as never);
    assert.deepEqual(lines, [
      'websession: unknown option "idleTimeOut" is ignored (did you mean "idleTimeout"?)',
      'websession: unknown option "secret" is ignored (did you mean "secrets"?)',
      'websession: unknown option "cookieName" is ignored',
    ]);
    await handler(new Request("https://app.example/"));
    await handler(new Request("https://app.example/"));
    assert.equal(lines.length, 3, "said when resolved, not per request");
    withSession(() => new Response("ok"), { secrets: SECRET, logger, idleTimeout: 60 });
    assert.equal(lines.length, 3, "no word about known options");
  });

  it("answer 500 with a SessionConfigError when an options function returns bad options", async () => {
    const errors: unknown[] = [];
    const original = console.error;
    console.error = (e: unknown) => errors.push(e);
    try {
      const handler = withSession(() => new Response("never"), () => ({ secrets: "short" }));
      const response = await handler(new Request("https://app.example/"));
      assert.equal(response.status, 500);
      assert.ok(errors[0] instanceof SessionConfigError);
    } finally {
      console.error = original;
    }
  });
});

describe("errors", () => {
  it("carry stable codes and statuses", () => {
    assert.equal(new SessionConflictError("x").code, "ERR_SESSION_CONFLICT");
    assert.equal(new SessionConflictError("x").status, 409);
    const cause = new Error("down");
    const e = new StoreUnavailableError("x", { cause });
    assert.equal(e.status, 503);
    assert.equal(e.cause, cause);
    assert.equal(e.name, "StoreUnavailableError");
    assert.ok(e instanceof SessionError && e instanceof Error);
  });
});

describe("signing", () => {
  it("verifies what it signs, and nothing else", async () => {
    const signer = new Signer([SECRET]);
    const id = createSessionId();
    const { value, key } = await signer.issue(id);
    assert.deepEqual(await new Signer([SECRET]).verify(value), { id, key, rotated: false });
    assert.equal(await new Signer(["another secret of at least 32 characters"]).verify(value), "signature");
    assert.equal(await signer.verify(`${id}.`), "malformed");
    assert.equal(await signer.verify(id), "malformed");
    assert.equal(await signer.verify(`${id}.${"A".repeat(43)}`), "signature");
  });

  it("marks a value signed by a later secret as rotated", async () => {
    const old = "the old secret, at least thirty-two chars";
    const { value } = await new Signer([old]).issue(createSessionId());
    const result = await new Signer([SECRET, old]).verify(value);
    assert.ok(typeof result === "object" && result.rotated);
  });

  it("bounds its cache with two generations", () => {
    const cache = new GenerationalCache<number, number>(2);
    for (let i = 0; i < 10; i++) cache.set(i, i);
    assert.equal(cache.get(0), undefined);
    assert.equal(cache.get(9), 9);
    assert.equal(cache.get(8), 8, "the previous generation still answers");
  });
});

describe("Session", () => {
  // deno-lint-ignore no-explicit-any -- the tests store values of every type
  function app(fn: (s: Session<Record<string, any>>) => unknown, store = new MemoryStore()) {
    return withSession(async (req: Request) => {
      const session = await getSession(req);
      const out = await fn(session);
      return new Response(JSON.stringify(out ?? null));
    }, { store, secrets: SECRET });
  }

  it("behaves like a Map", async () => {
    const client = new Client(app((s) => {
      s.set("a", 1).set("b", { nested: [1, 2] });
      const seen = {
        has: s.has("a"),
        size: s.size,
        keys: [...s.keys()],
        values: [...s.values()],
        entries: [...s.entries()],
        iter: [...s],
        json: s.toJSON(),
      };
      const deleted = s.delete("a");
      const deletedAgain = s.delete("a");
      s.set("c", undefined);
      return { ...seen, deleted, deletedAgain, after: s.toJSON(), hasC: s.has("c") };
    }));
    assert.deepEqual(JSON.parse(await client.text("/")), {
      has: true,
      size: 2,
      keys: ["a", "b"],
      values: [1, { nested: [1, 2] }],
      entries: [["a", 1], ["b", { nested: [1, 2] }]],
      iter: [["a", 1], ["b", { nested: [1, 2] }]],
      json: { a: 1, b: { nested: [1, 2] } },
      deleted: true,
      deletedAgain: false,
      after: { b: { nested: [1, 2] } },
      hasC: false,
    });
  });

  it("keeps __proto__ and constructor as plain data", async () => {
    const store = new MemoryStore();
    const client = new Client(app((s) => {
      if (s.isNew) {
        s.set("__proto__", { polluted: true });
        s.set("constructor", "x");
      }
      return { proto: s.get("__proto__"), keys: [...s.keys()] };
    }, store));
    await client.text("/");
    const out = JSON.parse(await client.text("/"));
    assert.deepEqual(out, { proto: { polluted: true }, keys: ["__proto__", "constructor"] });
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  it("refuses the reserved flash key and non-string keys", async () => {
    const client = new Client(app((s) => {
      const errors = [];
      for (
        const f of [() => s.set("__flash", 1), () => s.set(1 as never, 1), () => s.update("k", "no" as never)]
      ) {
        try {
          f();
        } catch (e) {
          errors.push((e as Error).name);
        }
      }
      return errors;
    }));
    assert.deepEqual(JSON.parse(await client.text("/")), ["TypeError", "TypeError", "TypeError"]);
  });

  it("exposes id, isNew, version and expiresAt", async () => {
    const client = new Client(app((s) => {
      s.update("n", (n = 0) => n + 1);
      return {
        id: s.id,
        isNew: s.isNew,
        version: s.version,
        ttl: Math.round((s.expiresAt - Date.now()) / 1000),
      };
    }));
    const first = JSON.parse(await client.text("/"));
    assert.equal(first.isNew, true);
    assert.equal(first.version, 0);
    assert.equal(first.ttl, 5400, "idleTimeout + touchAfter: idleTimeout guaranteed after any request");
    const second = JSON.parse(await client.text("/"));
    assert.equal(second.id, first.id);
    assert.equal(second.isNew, false);
    assert.equal(second.version, 1);
    assert.equal(client.jar.get("session")!.split(".")[0], first.id);
  });

  it("save() writes early, and later changes are saved at the end", async () => {
    const store = new MemoryStore();
    let keyAtSave = "";
    const client = new Client(withSession(async (req: Request) => {
      const s = await getSession(req);
      s.set("step", 1);
      await s.save();
      keyAtSave = await storageKeyOf(s.id);
      assert.equal((await store.load(keyAtSave))?.data.step, 1);
      s.set("step", 2);
      return new Response("ok");
    }, { store, secrets: SECRET }));
    const response = await client.fetch("/");
    assert.equal(response.headers.getSetCookie().length, 1);
    const record = await store.load(keyAtSave);
    assert.equal(record?.data.step, 2);
    assert.equal(record?.version, 2);
  });

  it("getSession returns the same Session on every call and loads once", async () => {
    let loads = 0;
    const inner = new MemoryStore();
    const store = {
      capabilities: inner.capabilities,
      load: (key: string) => (loads++, inner.load(key)),
      save: inner.save.bind(inner),
      destroy: inner.destroy.bind(inner),
    };
    const client = new Client(withSession(async (req: Request) => {
      const [a, b] = await Promise.all([getSession(req), getSession(req)]);
      assert.equal(a, b);
      assert.equal(await getSession(req), a);
      a.set("x", 1);
      return new Response("ok");
    }, { store, secrets: SECRET }));
    await client.text("/");
    await client.text("/");
    assert.equal(loads, 1, "first request had no cookie; the second loaded once");
  });

  it("getSession outside withSession rejects with a TypeError naming withSession", async () => {
    await assert.rejects(
      getSession(new Request("https://x.example/")),
      (e: Error) => e instanceof TypeError && /withSession/.test(e.message),
    );
  });

  it("refuses cookie options of the wrong type (a string for the object, a string for a flag)", () => {
    const secrets = "a secret of at least thirty-two characters";
    const make = (cookie: unknown) => withSession(() => new Response(), { secrets, cookie: cookie as never });
    assert.throws(() => make("sid"), /Invalid cookie: expected an object/);
    assert.throws(() => make({ secure: "false" }), /Invalid cookie secure: expected true or false/);
    assert.throws(() => make({ httpOnly: 0 }), /Invalid cookie httpOnly/);
    make({ secure: false, httpOnly: true, persistent: false });
  });

  it("refuses a store that breaks the contract, never taking its answer for a refusal", async () => {
    const secrets = "a secret of at least thirty-two characters";
    const base = new MemoryStore();
    const noCapabilities = { load: (k: string) => base.load(k), save: () => Promise.resolve(true) };
    assert.throws(
      () => withSession(() => new Response(), { store: noCapabilities as never, secrets }),
      /capabilities/,
    );
    for (const answer of [undefined, "yes", 1, { other: 1 }]) {
      const errors: unknown[] = [];
      const broken = Object.assign(Object.create(base), { save: () => Promise.resolve(answer) });
      const handler = withSession(async (req: Request) => {
        (await getSession<{ n?: number }>(req)).set("n", 1);
        return new Response("ok");
      }, { store: broken, secrets, logger: { warn: () => {}, error: (e) => void errors.push(e) } });
      const response = await handler(new Request("https://x.example/"));
      assert.equal(response.status, 503, `save() answered ${String(answer)}`);
      assert.match(
        String((errors[0] as Error)?.cause ?? errors[0]),
        /save\(\) answered .*expected true, false or \{ current \}/,
      );
    }
  });

  it("says so when a handler asks with a copy of its request, or answers something that is no Response", async () => {
    const options = { store: new MemoryStore(), secrets: "a secret of at least thirty-two characters" };
    const copied = withSession(async (req: Request) => {
      await getSession(req.clone());
      return new Response("unreachable");
    }, options);
    await assert.rejects(copied(new Request("https://x.example/")), /not a copy or a clone/);
    for (const answer of [undefined, "text", { status: 200 }]) {
      const store = new MemoryStore();
      const handler = withSession(async (req: Request) => {
        (await getSession<{ n?: number }>(req)).set("n", 1);
        return answer as unknown as Response;
      }, { ...options, store });
      await assert.rejects(handler(new Request("https://x.example/")), /returned .*, not a Response/);
      assert.equal(await store.count(), 0, "nothing saved for a request that was not answered");
    }
  });
});

describe("replay", () => {
  it("re-runs update functions on the fresh value and applies the log in order", () => {
    const { data, flash, flashOut } = replay([
      { type: "update", key: "n", fn: (n) => ((n as number) ?? 0) + 1 },
      { type: "set", key: "a", value: 1 },
      { type: "delete", key: "gone" },
      { type: "flash", key: "msg", value: "hi" },
      { type: "consume", key: "old" },
    ], { n: 41, gone: true, keep: "yes", __flash: { old: "x", other: "y" } });
    assert.deepEqual(Object.fromEntries(data), { n: 42, keep: "yes", a: 1 });
    assert.deepEqual(Object.fromEntries(flash), { other: "y" });
    assert.deepEqual(Object.fromEntries(flashOut), { msg: "hi" });
    const cleared = replay([{ type: "clear" }, { type: "set", key: "b", value: 2 }], {
      a: 1,
      __flash: { m: 1 },
    });
    assert.deepEqual(Object.fromEntries(cleared.data), { b: 2 });
    assert.equal(cleared.flash.size, 0);
  });
});

describe("responses", () => {
  const make = (response: () => Response, cookie?: object) =>
    withSession(async (req: Request) => {
      (await getSession(req)).set("x", 1);
      return response();
    }, { store: new MemoryStore(), secrets: SECRET, cookie: cookie as never });

  it("decorate immutable responses such as Response.redirect()", async () => {
    const response = await make(() => Response.redirect("https://app.example/next", 303))(
      new Request("https://app.example/"),
    );
    assert.equal(response.status, 303);
    assert.equal(response.headers.get("location"), "https://app.example/next");
    assert.equal(response.headers.getSetCookie().length, 1);
  });

  it("keep the handler's Cache-Control, made private when it sets a cookie, and merge Vary", async () => {
    const respond = (cacheControl: string) =>
      make(() => new Response("x", { headers: { "cache-control": cacheControl, vary: "Accept-Encoding" } }))(
        new Request("https://app.example/"),
      );
    const kept = await respond("private, max-age=60");
    assert.equal(kept.headers.get("cache-control"), "private, max-age=60");
    assert.equal(kept.headers.get("vary"), "Accept-Encoding, Cookie");
    assert.equal((await respond("no-store")).headers.get("cache-control"), "no-store");
    assert.equal((await respond("no-cache")).headers.get("cache-control"), "private, no-cache");
    assert.equal(
      (await respond("public, max-age=600, s-maxage=3600")).headers.get("cache-control"),
      "private, max-age=600",
    );
  });

  it("send a browser-session cookie when persistent is false", async () => {
    const response = await make(() => new Response("x"), { persistent: false })(
      new Request("https://app.example/"),
    );
    const [cookie] = response.headers.getSetCookie();
    assert.doesNotMatch(cookie!, /Max-Age|Expires/);
  });

  it("use the configured name and attributes", async () => {
    const response = await make(() => new Response("x"), { name: "__Host-sid", sameSite: "Strict" })(
      new Request("https://app.example/"),
    );
    assert.match(
      response.headers.getSetCookie()[0]!,
      /^__Host-sid=[^;]+; Path=\/; HttpOnly; Secure; SameSite=Strict; Max-Age=5400/,
    );
  });

  it("let other errors of the handler propagate untouched", async () => {
    const handler = withSession(() => {
      throw new RangeError("app bug");
    }, { secrets: SECRET });
    await assert.rejects(handler(new Request("https://app.example/")), RangeError);
  });

  it("turn an unhandled StoreUnavailableError into onError's response", async () => {
    const store = new MemoryStore();
    const broken = {
      capabilities: store.capabilities,
      load: () => Promise.reject(new Error("ECONNREFUSED")),
      save: store.save.bind(store),
      destroy: store.destroy.bind(store),
    };
    const client = new Client(withSession(async (req: Request) => {
      (await getSession(req)).set("x", 1);
      return new Response("ok");
    }, { store, secrets: SECRET }));
    await client.text("/");
    const failing = withSession(async (req: Request) => {
      await getSession(req);
      return new Response("never");
    }, {
      store: broken,
      secrets: SECRET,
      onError: (e) => new Response((e as Error).message, { status: 599 }),
    });
    const response = await failing(
      new Request("https://app.example/", { headers: { cookie: client.cookie } }),
    );
    assert.equal(response.status, 599);
    assert.match(await response.text(), /ECONNREFUSED/);
  });

  it("hand the save of changes made after the response to ctx.waitUntil", async () => {
    const store = new MemoryStore();
    const waited: Promise<unknown>[] = [];
    let late!: () => void;
    const handler = withSession(
      async (req: Request, _env: unknown, _ctx: { waitUntil(p: Promise<unknown>): void }) => {
        const session = await getSession(req);
        if (session.isNew) session.set("n", 0);
        late = () => session.set("n", 1);
        return new Response("ok");
      },
      { store, secrets: SECRET },
    );
    const ctx = { waitUntil: (p: Promise<unknown>) => void waited.push(p) };
    const first = await handler(new Request("https://app.example/"), {}, ctx);
    const cookie = first.headers.getSetCookie()[0]!.split(";")[0]!;
    assert.equal(waited.length, 0, "nothing after the response yet");
    await handler(new Request("https://app.example/", { headers: { cookie } }), {}, ctx);
    late();
    assert.equal(waited.length, 1);
    await waited[0];
    const key = await storageKeyOf(cookie.slice("session=".length).split(".")[0]!);
    assert.equal((await store.load(key))?.data.n, 1);
  });

  it("carry the last seen version in the cookie for stores with stale reads", async () => {
    const inner = new MemoryStore();
    const seen: Array<number | undefined> = [];
    const store = {
      capabilities: { compareAndSet: true, ttl: false, staleReads: true },
      load: (key: string, minVersion?: number) => (seen.push(minVersion), inner.load(key)),
      save: inner.save.bind(inner),
      destroy: inner.destroy.bind(inner),
    };
    const client = new Client(withSession(async (req: Request) => {
      const session = await getSession<{ n: number }>(req);
      if (new URL(req.url).pathname === "/inc") session.update("n", (n = 0) => n + 1);
      return new Response(String(session.get("n")));
    }, { store, secrets: SECRET }));
    await client.text("/inc");
    assert.match(client.jar.get("session")!, /^[A-Za-z0-9_-]{32}\.1\.[A-Za-z0-9_-]{43}$/);
    const second = await client.fetch("/inc");
    assert.equal(await second.text(), "2");
    assert.match(
      second.headers.getSetCookie()[0]!,
      /^session=[A-Za-z0-9_-]{32}\.2\./,
      "re-sent with the new version",
    );
    const third = await client.fetch("/read");
    assert.equal(await third.text(), "2");
    assert.equal(third.headers.get("set-cookie"), null, "a read sends nothing");
    assert.deepEqual(seen, [1, 2]);
    // A forged version does not verify.
    const [id, , sig] = client.jar.get("session")!.split(".");
    client.jar.set("session", `${id}.9.${sig}`);
    assert.equal(await client.text("/read"), "undefined");
  });

  it("never hand out an id a handler has seen, even from an empty session", async () => {
    const secret = "a secret for the minting test, 32+ characters";
    const handler = withSession(async (req: Request) => {
      const session = await getSession(req);
      if (new URL(req.url).pathname === "/peek") return new Response(session.id);
      session.set("x", 1);
      return new Response(session.id);
    }, { store: new MemoryStore(), secrets: secret });
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const peek = await handler(new Request("https://app.example/peek"));
      assert.equal(peek.headers.get("set-cookie"), null);
      seen.add(await peek.text());
      const created = await handler(new Request("https://app.example/set"));
      const id = created.headers.getSetCookie()[0]!.slice("session=".length).split(".")[0]!;
      assert.equal(await created.text(), id);
      assert.ok(!seen.has(id), "an id shown by an empty session was reused");
      seen.add(id);
    }
    assert.equal(seen.size, 400);
  });

  it("need no secrets of their own with a sealed store, which seals with its own", async () => {
    // A sealed store for the core's contract only (no encryption): JSON in base64url.
    const plain: SealedSessionStore = {
      sealed: true,
      capabilities: { compareAndSet: false, ttl: true, revocation: false },
      open(get, name) {
        const value = get(name);
        if (value === undefined) return Promise.resolve(null);
        const { id, record } = JSON.parse(atob(value.replace(/-/g, "+").replace(/_/g, "/")));
        return Promise.resolve({ id, record, stale: false });
      },
      seal(id, record, name) {
        const value = btoa(JSON.stringify({ id, record })).replace(/\+/g, "-").replace(/\//g, "_").replace(
          /=+$/,
          "",
        );
        return Promise.resolve([{ name, value }]);
      },
    };
    assert.throws(() => withSession(() => new Response(), { store: new MemoryStore() }), /secrets/);
    // Its flow comes with it (sealedStore), so an application without one bundles none of it.
    assert.throws(() => withSession(() => new Response(), { store: { ...plain } }), /sealedStore\(\)/);
    assert.throws(
      () => sealedStore({ sealed: true } as unknown as SealedSessionStore),
      /open\(\) and seal\(\)/,
    );
    const client = new Client(withSession(async (req: Request) => {
      const session = await getSession<{ n: number }>(req);
      return new Response(String(session.update("n", (n = 0) => n + 1)));
    }, { store: sealedStore(plain) }));
    assert.equal(await client.text("/"), "1");
    assert.equal(await client.text("/"), "2");
  });
});

describe("insecure cookie warning", () => {
  it("warns once when a Secure cookie answers plain http on a host other than localhost", async () => {
    const warnings: string[] = [];
    const errors: unknown[] = [];
    const handler = withSession(async (req: Request) => {
      (await getSession<{ n?: number }>(req)).update("n", (n = 0) => n + 1);
      return new Response("ok");
    }, {
      store: new MemoryStore(),
      secrets: "a secret of at least thirty-two characters",
      logger: { warn: (message) => void warnings.push(String(message)), error: (e) => void errors.push(e) },
    });
    await handler(new Request("https://shop.example/"));
    await handler(new Request("http://localhost:8000/"));
    await handler(new Request("http://127.0.0.1:8000/"));
    await handler(new Request("http://shop.example/", { headers: { "x-forwarded-proto": "https" } }));
    assert.equal(warnings.length, 0, "https, localhost and a TLS-terminating proxy are fine");
    await handler(new Request("http://shop.example/"));
    await handler(new Request("http://shop.example/"));
    assert.equal(warnings.length, 1, "said once");
    assert.match(warnings[0]!, /plain-http request for "shop\.example".*secure: false/);
    const relaxed = withSession(async (req: Request) => {
      (await getSession<{ n?: number }>(req)).set("n", 1);
      return new Response("ok");
    }, {
      store: new MemoryStore(),
      secrets: "a secret of at least thirty-two characters",
      cookie: { secure: false },
      logger: { warn: (message) => void warnings.push(String(message)), error: () => {} },
    });
    await relaxed(new Request("http://shop.example/"));
    assert.equal(warnings.length, 1, "no warning without Secure");
    assert.deepEqual(errors, []);
  });
});

describe("instrumentation hook", () => {
  it("reports each load, save, touch, end, conflict, store call and invalid cookie, counted exactly", async () => {
    const events: SessionEvent[] = [];
    let now = Date.now();
    let release = (): void => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const handler = withSession(async (req: Request) => {
      const session = await getSession<{ n?: number; user?: string }>(req);
      const path = new URL(req.url).pathname;
      if (path === "/slow") {
        const n = session.get("n") ?? 0;
        await gate;
        session.set("n", n + 1);
      } else if (path === "/inc") session.update("n", (n = 0) => n + 1);
      else if (path === "/login") {
        session.regenerate();
        session.set("user", "ada");
      } else if (path === "/logout") session.destroy();
      return new Response("ok");
    }, {
      store: new MemoryStore(),
      secrets: "a secret of at least thirty-two characters",
      now: () => now,
      onEvent: (event) => void events.push(event),
      onError: () => new Response(null, { status: 409 }),
      locking: "explicit", // /slow is held while /inc runs: the two must not take turns
    });
    const client = new Client(handler);
    const kinds = () =>
      events.map((e) =>
        e.type === "store" ? `store:${e.operation}` : e.type === "conflict" ? `conflict:${e.outcome}` : e.type
      );
    await client.text("/inc"); // new session: load (not found), save (created)
    assert.deepEqual(kinds(), ["load", "store:save", "save"]);
    assert.deepEqual(
      events.filter((e) => e.type === "save").map((e) =>
        e.type === "save" && [e.created, e.version, e.attempts]
      ),
      [[true, 1, 1]],
    );
    events.length = 0;
    await client.text("/read"); // read-only: one load, one store read
    assert.deepEqual(kinds(), ["store:load", "load"]);
    events.length = 0;
    const slow = client.clone().fetch("/slow", { method: "POST" }); // reads n, waits
    await new Promise((resolve) => setTimeout(resolve, 10));
    await client.text("/inc");
    release();
    assert.equal((await slow).status, 409);
    assert.deepEqual(kinds().filter((k) => k.startsWith("conflict")), ["conflict:refused"]);
    assert.equal(kinds().filter((k) => k === "save").length, 1);
    events.length = 0;
    now += 3_000_000; // past touchAfter (1800 s): a version-checked touch, no rewrite of the data
    await client.text("/read");
    assert.deepEqual(kinds(), ["store:load", "load", "store:touch", "touch"]);
    events.length = 0;
    await client.text("/login");
    assert.deepEqual(kinds(), ["store:load", "load", "store:save", "regenerate", "store:save", "save"]);
    events.length = 0;
    await client.text("/logout");
    assert.deepEqual(kinds(), ["store:load", "load", "store:save", "destroy"]);
    events.length = 0;
    await handler(new Request("https://app.example/", { headers: { cookie: "session=nonsense" } }));
    assert.deepEqual(kinds(), ["invalid-cookie", "load"]);
    assert.ok(events.every((e) => e.type !== "load" || e.durationMs >= 0));
  });
});

describe("withSession inside withSession", () => {
  const SECRET_A = "nested layers secret, at least 32 characters";
  type Data = { app?: boolean; route?: number; user?: string };

  function layered(inner: Parameters<typeof withSession>[1], outer: Parameters<typeof withSession>[1]) {
    const route = withSession(async (req: Request) => {
      const session = await getSession<Data>(req);
      const path = new URL(req.url).pathname;
      if (path === "/login") {
        session.regenerate();
        session.set("user", "ada");
      } else if (path === "/write") session.update("route", (n = 0) => n + 1);
      return Response.json(session.toJSON());
    }, inner as never);
    return withSession(async (req: Request) => {
      const session = await getSession<Data>(req);
      session.set("app", true);
      return await route(req);
    }, outer as never);
  }

  it("one request has one session: an inner layer with the same cookie name joins the outer", async () => {
    const options = { store: new MemoryStore(), secrets: SECRET_A };
    const client = new Client(layered(options, options));
    const first = await client.fetch("/write");
    assert.equal(first.headers.getSetCookie().length, 1, "one cookie on a first visit");
    assert.deepEqual(await first.json(), { app: true, route: 1 });
    const login = await client.fetch("/login", { method: "POST" });
    assert.equal(login.status, 200, "a log in through both layers is not refused");
    assert.equal(login.headers.getSetCookie().length, 1);
    assert.deepEqual(await (await client.fetch("/read")).json(), { app: true, route: 1, user: "ada" });
    // Equal options in another object, same store and secrets: joins as well.
    const store = new MemoryStore();
    const again = new Client(layered({ store, secrets: SECRET_A }, { store, secrets: SECRET_A }));
    await again.fetch("/write");
    assert.deepEqual(await (await again.fetch("/write")).json(), { app: true, route: 2 });
  });

  it("the same cookie name with another store is a SessionConfigError, never two sessions", async () => {
    const errors: unknown[] = [];
    const inner = {
      store: new MemoryStore(),
      secrets: SECRET_A,
      onError: (e: unknown) => void errors.push(e),
    };
    const response = await layered(inner, { store: new MemoryStore(), secrets: SECRET_A })(
      new Request("https://app.example/write"),
    );
    assert.equal(response.status, 500);
    assert.equal(response.headers.getSetCookie().length, 1, "only the outer layer's session cookie");
    assert.ok(errors.some((e) => e instanceof SessionConfigError), "told through the inner layer's onError");
  });

  it("another cookie name is a session of its own; the outer one is still the outer's afterwards", async () => {
    const store = new MemoryStore();
    const client = new Client(
      layered({ store, secrets: SECRET_A, cookie: { name: "route" } }, { store, secrets: SECRET_A }),
    );
    const first = await client.fetch("/write");
    assert.deepEqual(first.headers.getSetCookie().map((c) => c.split("=")[0]).sort(), ["route", "session"]);
    assert.deepEqual(await first.json(), { route: 1 });
    assert.deepEqual(await (await client.fetch("/write")).json(), { route: 2 });
  });
});

describe("request bodies and re-runs", () => {
  const SECRET_B = "request bodies secret, at least 32 characters";

  /** A PUT whose handler reads the body, then loses its compare-and-set once (it re-runs). */
  async function conflicted(body: string, options: { maxReplayBytes?: number; readFirst?: boolean } = {}) {
    const store = new MemoryStore();
    const seen: string[] = [];
    let interfere = true;
    const handler = withSession(async (req: Request) => {
      const text = options.readFirst ? await req.text() : undefined;
      const session = await getSession<{ n?: number; body?: string }>(req);
      const n = session.get("n") ?? 0; // observed: a concurrent write makes the merge re-run
      const read = text ?? await req.text();
      seen.push(read);
      if (interfere) {
        interfere = false;
        // Another process writes the session meanwhile.
        const record = (await store.load(key!))!;
        await store.save(
          key!,
          { ...record, data: { ...record.data, n: 100 }, version: record.version + 1 },
          record.version,
        );
      }
      session.set("n", n + 1);
      session.set("body", read.slice(0, 8));
      return new Response("ok");
    }, { store, secrets: SECRET_B, locking: "explicit", ...options });
    // deno-lint-ignore prefer-const -- assigned once the session exists, read by the handler above
    let key: string | undefined;
    const client = new Client(handler);
    interfere = false;
    await client.fetch("/", { method: "PUT", body: "first" }); // creates the session
    key = await storageKeyOf(client.jar.get("session")!.split(".")[0]!);
    interfere = true;
    seen.length = 0;
    const response = await client.fetch("/", { method: "PUT", body });
    return { status: response.status, seen };
  }

  it("a body read after getSession() within the bound is replayed whole on a re-run", async () => {
    const body = "x".repeat(200_000);
    const { status, seen } = await conflicted(body);
    assert.equal(status, 200);
    assert.equal(seen.length, 2, "ran twice");
    assert.equal(seen[1], body, "the re-run read the same body");
  });

  it("a body over maxReplayBytes is never buffered: the request is refused instead of re-run", async () => {
    const { status, seen } = await conflicted("y".repeat(5_000), { maxReplayBytes: 1_000 });
    assert.equal(status, 409);
    assert.equal(seen.length, 1);
  });

  it("a body read before getSession() is not recorded: refused, not re-run", async () => {
    const { status, seen } = await conflicted("z".repeat(100), { readFirst: true });
    assert.equal(status, 409);
    assert.equal(seen.length, 1);
  });
});
