// The attack checklist: one named test per attack, each driving withSession with plain Requests
// the way an attacker's client would, against real stores (MemoryStore, FileStore on disk).
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getSession, withSession } from "../src/with_session.ts";
import type { InvalidCookieEvent, SessionOptions } from "../src/options.ts";
import type { SessionStore } from "../src/store.ts";
import { createSessionId, storageKeyOf } from "../src/id.ts";
import { Signer } from "../src/signing.ts";
import { isEnded } from "../src/store.ts";
import { MemoryStore } from "../src/stores/memory.ts";
import { FileStore } from "../src/stores/file.ts";
import { Client, type Counted, counted, gate } from "./conformance/client.ts";
import { sleep } from "./conformance/util.ts";

const SECRET = "security suite secret: thirty-two characters or more";
const OTHER_SECRET = "another application's secret, also 32+ characters";
const OLD_SECRET = "a retired secret that signed cookies last month!!";

type Data = Record<string, unknown>;

interface App {
  handler: (request: Request, ...rest: unknown[]) => Promise<Response>;
  invalid: InvalidCookieEvent[];
  errors: unknown[];
}

/** A small app: each route does one thing to the session. */
function app(store: SessionStore, extra: Partial<SessionOptions<Data>> = {}, hold?: Promise<void>): App {
  const invalid: InvalidCookieEvent[] = [];
  const errors: unknown[] = [];
  const handler = withSession(async (req: Request) => {
    const url = new URL(req.url);
    const session = await getSession<Data>(req);
    switch (url.pathname) {
      case "/count":
        return new Response(String(session.update("visits", (n = 0) => (n as number) + 1)));
      case "/read":
        return new Response(session.size === 0 ? "none" : JSON.stringify(session.toJSON()));
      case "/set": {
        const body = await req.json() as Record<string, unknown>;
        for (const [key, value] of Object.entries(body)) session.set(key, value);
        return new Response("ok");
      }
      case "/login":
        session.regenerate();
        session.set("user", url.searchParams.get("user") ?? "ada");
        return new Response("welcome");
      case "/logout":
        session.destroy();
        return new Response("bye");
      case "/slow":
        await hold;
        session.set("late", true);
        return new Response("late");
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
    ...extra,
  });
  return { handler, invalid, errors };
}

function request(path: string, cookie?: string, init: RequestInit = {}): Request {
  const headers = new Headers(init.headers);
  if (cookie !== undefined) headers.set("cookie", cookie);
  return new Request(new URL(path, "https://app.example"), { ...init, headers });
}

/** The value of the session cookie a response sets, if any. */
function setValue(response: Response, name = "session"): string | undefined {
  for (const header of response.headers.getSetCookie()) {
    if (header.startsWith(`${name}=`)) return header.slice(name.length + 1).split(";")[0];
  }
  return undefined;
}

/** A logged-in client whose session holds `visits: 1`. */
async function visitor(handler: App["handler"]): Promise<Client> {
  const client = new Client(handler);
  assert.equal(await client.text("/count"), "1");
  assert.ok(client.jar.get("session"));
  return client;
}

/**
 * Presents `cookie` and checks that it was refused before any store read: a fresh, empty
 * session, the given reason reported, and no Set-Cookie carrying the presented id.
 */
async function refused(a: App, c: Counted, cookie: string, reason: string): Promise<void> {
  const before = a.invalid.length;
  c.reset();
  const response = await a.handler(request("/read", cookie));
  assert.equal(response.status, 200, cookie.slice(0, 80));
  assert.equal(await response.text(), "none", cookie.slice(0, 80));
  assert.equal(c.calls.load, 0, `no store read for ${cookie.slice(0, 80)}`);
  assert.equal(c.calls.save, 0);
  assert.equal(a.invalid.length, before + 1, `one invalid-cookie event for ${cookie.slice(0, 80)}`);
  assert.equal(a.invalid.at(-1)?.reason, reason, cookie.slice(0, 80));
}

function flip(text: string, at: number): string {
  const c = text[at]!;
  // The last of 43 signature characters carries 2 padding bits: stay canonical there, so the
  // altered value reaches the HMAC check instead of failing the encoding check.
  const other = at === 42 && text.length === 43 ? (c === "A" ? "E" : "A") : c === "A" ? "B" : "A";
  return text.slice(0, at) + other + text.slice(at + 1);
}

const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe("attack checklist", () => {
  it("tampered signature", async (t) => {
    const c = counted(new MemoryStore());
    const a = app(c.store);
    const good = (await visitor(a.handler)).jar.get("session")!;
    const [id, sig] = good.split(".") as [string, string];
    for (const at of [0, 21, 41]) await refused(a, c, `session=${id}.${flip(sig, at)}`, "signature");
    for (const at of [0, 16, 31]) await refused(a, c, `session=${flip(id, at)}.${sig}`, "signature");
    // The genuine cookie still works afterwards.
    assert.equal(await (await a.handler(request("/read", `session=${good}`))).text(), '{"visits":1}');

    await t.test("a signature altered in the padding bits of its last character is refused", async () => {
      const last = sig.at(-1)!;
      const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
      const index = alphabet.indexOf(last);
      for (let low = 0; low < 4; low++) {
        const variant = alphabet[(index & ~3) | low]!;
        if (variant === last) continue;
        await refused(a, c, `session=${id}.${sig.slice(0, 42)}${variant}`, "signature");
      }
    });
  });

  it("truncated signature", async () => {
    const c = counted(new MemoryStore());
    const a = app(c.store);
    const good = (await visitor(a.handler)).jar.get("session")!;
    const [id, sig] = good.split(".") as [string, string];
    for (const cut of [42, 32, 1]) await refused(a, c, `session=${id}.${sig.slice(0, cut)}`, "malformed");
    await refused(a, c, `session=${id}.`, "malformed");
    await refused(a, c, `session=${id}`, "malformed");
    await refused(a, c, `session=${id.slice(0, 31)}.${sig}`, "malformed");
  });

  it("signature with trailing garbage", async () => {
    const c = counted(new MemoryStore());
    const a = app(c.store);
    const good = (await visitor(a.handler)).jar.get("session")!;
    for (const tail of ["x", ".", "=", "==", "%00", ".AAAA", "\\", good]) {
      await refused(a, c, `session=${good}${tail}`, "malformed");
    }
    await refused(a, c, `session=${good} trailing`, "malformed");
    await refused(a, c, `session=x${good}`, "malformed");
  });

  it("forged id of the right shape", async () => {
    const c = counted(new MemoryStore());
    const a = app(c.store);
    const good = (await visitor(a.handler)).jar.get("session")!;
    const [id] = good.split(".") as [string];
    const randomSig = () =>
      btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))))
        .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    await refused(a, c, `session=${createSessionId()}.${randomSig()}`, "signature");
    await refused(a, c, `session=${id}.${randomSig()}`, "signature");
    await refused(a, c, `session=${"A".repeat(32)}.${"A".repeat(43)}`, "signature");
  });

  it("id from another app's secret", async () => {
    const c = counted(new MemoryStore());
    const ours = app(c.store);
    const theirs = app(c.store, { secrets: OTHER_SECRET }); // the very same store
    const foreign = await visitor(theirs.handler);
    foreign.jar.set("session", foreign.jar.get("session")!);
    await refused(ours, c, `session=${foreign.jar.get("session")}`, "signature");
    // And the other way round.
    const mine = (await visitor(ours.handler)).jar.get("session")!;
    await refused(theirs, c, `session=${mine}`, "signature");
  });

  it("path traversal and NUL in ids (FileStore)", async () => {
    const root = await mkdtemp(join(tmpdir(), "websession-security-"));
    dirs.push(root);
    const dir = join(root, "sessions");
    const store = new FileStore({ dir });
    const c = counted(store);
    const a = app(c.store);
    const good = (await visitor(a.handler)).jar.get("session")!;
    const sig = good.split(".")[1]!;
    const hostile = [
      `../../../../etc/passwd.${sig}`,
      `..%2F..%2F..%2Fetc%2Fpasswd.${sig}`,
      `${"../".repeat(10)}x.${sig}`,
      `%00${"A".repeat(29)}.${sig}`,
      `${"A".repeat(16)}/${"A".repeat(15)}.${sig}`,
      `${"A".repeat(16)}\\${"A".repeat(15)}.${sig}`,
    ];
    for (const value of hostile) await refused(a, c, `session=${value}`, "malformed");
    // A NUL cannot even travel in a header; the store itself refuses such keys before any path.
    assert.throws(() => request("/read", `session=${"A".repeat(16)}\0${"A".repeat(15)}.${sig}`), TypeError);
    for (
      const key of ["../../etc/passwd", `${"A".repeat(42)}\0`, `${"A".repeat(20)}/../${"A".repeat(19)}`, "."]
    ) {
      await assert.rejects(store.load(key), TypeError, JSON.stringify(key));
      await assert.rejects(
        store.save(key, { data: {}, version: 1, createdAt: 0, expiresAt: Date.now() + 1000 }, null),
        TypeError,
      );
      await assert.rejects(store.destroy(key), TypeError);
    }
    assert.deepEqual(
      (await readdir(root)).sort(),
      ["sessions"],
      "nothing written beside the session directory",
    );
    for (const name of await readdir(dir)) assert.match(name, /^[A-Za-z0-9_-]{43}$/); // a directory per hashed key
  });

  it("oversize cookie", async () => {
    const c = counted(new MemoryStore());
    const a = app(c.store);
    const good = (await visitor(a.handler)).jar.get("session")!;
    for (const size of [257, 4096, 100_000]) await refused(a, c, `session=${"A".repeat(size)}`, "oversized");
    await refused(a, c, `session=${good}${".".repeat(300)}`, "oversized");
    // A huge header of other cookies does not hide or break a genuine session cookie.
    const noise = `pad=${"x".repeat(64_000)}`;
    const response = await a.handler(request("/read", `${noise}; session=${good}`));
    assert.equal(await response.text(), '{"visits":1}');
  });

  it("many cookies", async () => {
    const c = counted(new MemoryStore());
    const a = app(c.store);
    const good = (await visitor(a.handler)).jar.get("session")!;
    const lookalikes = [
      "xsession",
      "session_",
      "session1",
      "Session",
      "SESSION",
      "session.0",
      "_session",
      "sessions",
    ];
    const others = [
      ...Array.from({ length: 2000 }, (_, i) => `c${i}=${i}`),
      ...lookalikes.map((name) => `${name}=${createSessionId()}.${"A".repeat(43)}`),
    ];
    c.reset();
    const mixed = [...others.slice(0, 1000), `session=${good}`, ...others.slice(1000)].join("; ");
    const response = await a.handler(request("/read", mixed));
    assert.equal(await response.text(), '{"visits":1}', "the session cookie is found among 2,008 others");
    assert.equal(c.calls.load, 1);
    // Look-alike names never stand in for the session cookie.
    c.reset();
    const none = await a.handler(request("/read", others.join("; ")));
    assert.equal(await none.text(), "none");
    assert.equal(c.calls.load, 0);
    assert.equal(none.headers.get("set-cookie"), null, "a request without the session cookie gets no cookie");
  });

  it("duplicate session cookies: the value naming a live session wins, nothing is cleared", async () => {
    const c = counted(new MemoryStore());
    const a = app(c.store);
    const good = (await visitor(a.handler)).jar.get("session")!;
    const other = (await visitor(a.handler)).jar.get("session")!;
    const loggedOut = new Client(a.handler);
    await loggedOut.text("/count");
    const ended = loggedOut.jar.get("session")!;
    await loggedOut.text("/logout");
    const forged = `${"A".repeat(32)}.${good.slice(good.lastIndexOf(".") + 1)}`;
    for (
      const cookie of [
        `session=${good}; session=${good}`,
        `session=${good}; session=${other}`,
        `session=${other};session=${good}`,
        `session=garbage; session=${good}`,
        `session=${forged}; session=${good}`,
        `session=${ended}; session=${good}`,
        `session=${good}; session=${ended}`,
        ` session = ${good} , session=${ended}`,
      ] as const
    ) {
      const response = await a.handler(request("/count", cookie));
      assert.equal(response.status, 200, cookie.slice(0, 80));
      assert.deepEqual(response.headers.getSetCookie(), [], `no Set-Cookie for ${cookie.slice(0, 80)}`);
    }
    const read = async (value: string) =>
      JSON.parse(await (await a.handler(request("/read", `session=${value}`))).text());
    assert.equal((await read(good)).visits, 8, "seven counted on the first live value");
    assert.equal((await read(other)).visits, 2, "one counted where it came first");
  });

  it("unicode and __proto__ / constructor keys in data", async () => {
    const store = new MemoryStore();
    const a = app(store);
    const client = new Client(a.handler);
    const data: Record<string, unknown> = JSON.parse(
      '{"__proto__":{"admin":true},"constructor":{"prototype":{"admin":true}},"prototype":1,' +
        '"hasOwnProperty":"no","toString":"str","valueOf":0,"ключ":"значение","🔑":"🗝️","e\\u0301":"é",' +
        '"\\u2028":"line separator","":"empty key","nested":{"__proto__":{"x":1},"a":["\\ud83d\\ude00"]}}',
    );
    const response = await client.fetch("/set", { method: "POST", body: JSON.stringify(data) });
    assert.equal(response.status, 200);
    const back = JSON.parse(await client.text("/read"));
    assert.deepEqual(Object.keys(back).sort(), Object.keys(data).sort());
    assert.deepEqual(back.__proto__, { admin: true });
    assert.ok(Object.hasOwn(back, "__proto__"), "__proto__ stays an own data key");
    assert.equal(back["🔑"], "🗝️");
    assert.equal(back.nested.a[0], "😀");
    // Nothing leaked into any prototype, here or in the stored record.
    assert.equal(({} as Record<string, unknown>).admin, undefined);
    assert.equal((Object.prototype as unknown as Record<string, unknown>).admin, undefined);
    const key = await storageKeyOf(client.jar.get("session")!.split(".")[0]!);
    const record = (await store.load(key))!;
    assert.ok(Object.hasOwn(record.data, "__proto__"));
    assert.equal(Object.getPrototypeOf(record.data), Object.prototype);
    assert.equal((record.data as { admin?: unknown }).admin, undefined);
    // An update after reload keeps every key intact (the merge path rebuilds the data).
    assert.equal(await client.text("/count"), "1");
    assert.deepEqual(
      Object.keys(JSON.parse(await client.text("/read"))).sort(),
      [...Object.keys(data), "visits"].sort(),
    );
    // The reserved flash key cannot be written as data.
    await assert.rejects(client.fetch("/set", { method: "POST", body: '{"__flash":{"x":1}}' }), /reserved/);
  });

  it("expired cookie replayed", async () => {
    let now = Date.now();
    const c = counted(new MemoryStore({ now: () => now }));
    const a = app(c.store, { idleTimeout: 60, absoluteTimeout: 120, now: () => now });
    const client = await visitor(a.handler);
    const stolen = client.jar.get("session")!;
    now += 91_000; // idle past idleTimeout + touchAfter (60 + 30 s)
    const response = await a.handler(request("/read", `session=${stolen}`));
    assert.equal(await response.text(), "none", "idle-expired cookie");
    assert.equal(a.invalid.at(-1)?.reason, "unknown");
    // Kept alive by activity, a session still dies at absoluteTimeout, even if the store keeps it.
    let t = Date.now();
    const lenient = new MemoryStore(); // its own clock: it would still hand the record back
    const b = app(lenient, { idleTimeout: 60, absoluteTimeout: 120, now: () => t });
    const active = await visitor(b.handler);
    const copy = active.jar.get("session")!;
    for (let i = 0; i < 3; i++) {
      t += 50_000;
      assert.notEqual(await active.text("/count"), "none");
    }
    const key = await storageKeyOf(copy.split(".")[0]!);
    assert.ok(await lenient.load(key), "the store still has the record");
    const replay = await b.handler(request("/read", `session=${copy}`));
    assert.equal(await replay.text(), "none", "absolute-expired cookie");
    assert.equal(b.invalid.at(-1)?.reason, "unknown");
  });

  it("cookie replayed after logout", async () => {
    const c = counted(new MemoryStore());
    const a = app(c.store);
    const client = new Client(a.handler);
    await client.text("/login?user=ada");
    const stolen = client.jar.get("session")!;
    const key = await storageKeyOf(stolen.split(".")[0]!);
    const logout = await client.fetch("/logout");
    assert.match(logout.headers.getSetCookie()[0]!, /^session=; .*Max-Age=0/);
    assert.ok(isEnded(await c.store.load(key)), "a tombstone, not a session");
    const replay = await a.handler(request("/read", `session=${stolen}`));
    assert.equal(await replay.text(), "none");
    assert.equal(a.invalid.at(-1)?.reason, "ended");
    assert.deepEqual(replay.headers.getSetCookie(), []);
    // Writing through the replayed cookie is refused; the old id stays dead.
    const write = await a.handler(request("/count", `session=${stolen}`));
    assert.equal(write.status, 409);
    assert.deepEqual(write.headers.getSetCookie(), []);
    assert.ok(isEnded(await c.store.load(key)), "not resurrected");
  });

  it("retired secret", async () => {
    const c = counted(new MemoryStore());
    const old = app(c.store, { secrets: OLD_SECRET });
    const stale = (await visitor(old.handler)).jar.get("session")!;
    const current = app(c.store, { secrets: SECRET });
    await refused(current, c, `session=${stale}`, "signature");
    // While still listed as a verifier it works, and the cookie is re-signed with the first secret.
    const rotating = app(c.store, { secrets: [SECRET, OLD_SECRET] });
    const response = await rotating.handler(request("/read", `session=${stale}`));
    assert.equal(await response.text(), '{"visits":1}');
    const resigned = setValue(response)!;
    assert.notEqual(resigned, stale);
    assert.equal(
      await (await current.handler(request("/read", `session=${resigned}`))).text(),
      '{"visits":1}',
    );
  });

  it("cookie injection through option values (`;` in name/path/domain)", async () => {
    const store = new MemoryStore();
    const hostile: SessionOptions["cookie"][] = [
      { name: "session; Domain=evil.example" },
      { name: "a=b" },
      { name: "a b" },
      { name: "a,b" },
      { name: "" },
      { name: "sess\r\nSet-Cookie: x=1" },
      { path: "/; Domain=evil.example" },
      { path: "/\r\nX-Injected: 1" },
      { path: "relative" },
      { domain: "app.example; Secure" },
      { domain: "app.example\r\nX: 1" },
      { domain: "evil.example/path" },
      { domain: "a;b" },
    ];
    for (const cookie of hostile) {
      assert.throws(
        () => withSession(() => new Response(), { store, secrets: SECRET, cookie }),
        TypeError,
        JSON.stringify(cookie),
      );
    }
    // Options resolved per request are checked the same way: the request fails closed, and no
    // Set-Cookie carrying the injected attribute is ever sent.
    const perRequest = withSession(async (req: Request) => {
      (await getSession(req)).set("x", 1);
      return new Response("ok");
    }, () => ({ store, secrets: SECRET, cookie: { path: "/; Domain=evil.example" } }));
    const originalError = console.error;
    console.error = () => {};
    try {
      const response = await perRequest(request("/"));
      assert.equal(response.status, 500);
      assert.equal(response.headers.get("set-cookie"), null);
    } finally {
      console.error = originalError;
    }
  });

  it("`SameSite=None` without `Secure`", async () => {
    const store = new MemoryStore();
    assert.throws(
      () =>
        withSession(() => new Response(), {
          store,
          secrets: SECRET,
          cookie: { sameSite: "None", secure: false },
        }),
      TypeError,
    );
    assert.throws(
      () =>
        withSession(() => new Response(), {
          store,
          secrets: SECRET,
          cookie: { partitioned: true, secure: false },
        }),
      TypeError,
    );
    assert.throws(
      () =>
        withSession(() => new Response(), { store, secrets: SECRET, cookie: { sameSite: "none" as "None" } }),
      TypeError,
    );
    const a = app(store, { cookie: { sameSite: "None", partitioned: true } });
    const response = await a.handler(request("/count"));
    const [header] = response.headers.getSetCookie();
    assert.match(header!, /; Secure;/);
    assert.match(header!, /; SameSite=None/);
    assert.match(header!, /; Partitioned/);
  });

  it("`__Host-` misuse", async () => {
    const store = new MemoryStore();
    for (
      const cookie of [
        { name: "__Host-session", secure: false },
        { name: "__Host-session", path: "/app" },
        { name: "__Host-session", domain: "app.example" },
        { name: "__host-session", domain: "app.example" },
        { name: "__Secure-session", secure: false },
        { name: "__SECURE-session", secure: false },
      ]
    ) {
      assert.throws(
        () => withSession(() => new Response(), { store, secrets: SECRET, cookie }),
        TypeError,
        JSON.stringify(cookie),
      );
    }
    const a = app(store, { cookie: { name: "__Host-session" } });
    const client = new Client(a.handler);
    const response = await client.fetch("/count");
    const [header] = response.headers.getSetCookie();
    assert.match(header!, /^__Host-session=[^;]+; Path=\/; HttpOnly; Secure; SameSite=Lax; Max-Age=/);
    assert.doesNotMatch(header!, /Domain=/i);
    assert.equal(await client.text("/count"), "2");
  });

  it("timing-safe comparison", async () => {
    // Signatures are compared by crypto.subtle.verify (constant time), never as strings: a
    // signature wrong in its first or in its last character costs the same HMAC verification
    // per secret, and nothing short-circuits on a common prefix.
    const secrets = [`timing ${crypto.randomUUID()} secret`, `timing ${crypto.randomUUID()} older`];
    const store = new MemoryStore();
    const a = app(store, { secrets });
    const good = (await visitor(a.handler)).jar.get("session")!;
    const [id, sig] = good.split(".") as [string, string];
    const subtle = crypto.subtle;
    const original = subtle.verify;
    const calls: Array<{ algorithm: unknown; macLength: number }> = [];
    Object.defineProperty(subtle, "verify", {
      configurable: true,
      writable: true,
      value: function verify(this: SubtleCrypto, ...args: Parameters<SubtleCrypto["verify"]>) {
        calls.push({ algorithm: args[0], macLength: (args[2] as Uint8Array).byteLength });
        return original.apply(this, args);
      },
    });
    try {
      for (const at of [0, 1, 41, 42]) {
        calls.length = 0;
        const response = await a.handler(request("/read", `session=${id}.${flip(sig, at)}`));
        assert.equal(await response.text(), "none");
        assert.equal(
          calls.length,
          secrets.length,
          `one constant-time verification per secret (position ${at})`,
        );
        for (const call of calls) {
          assert.equal(call.algorithm, "HMAC");
          assert.equal(call.macLength, 32);
        }
      }
    } finally {
      delete (subtle as unknown as Record<string, unknown>).verify;
    }
    assert.equal(subtle.verify, original);
  });

  it("fixation (unknown id never adopted)", async () => {
    const c = counted(new MemoryStore());
    const a = app(c.store);
    // An attacker holding a correctly signed id the store never issued (say, from a leaked
    // signing oracle or an expired session) cannot make the server adopt it.
    const planted = createSessionId();
    const { value } = await new Signer([SECRET]).issue(planted);
    const response = await a.handler(request("/count", `session=${value}`));
    assert.equal(await response.text(), "1");
    assert.equal(a.invalid.at(-1)?.reason, "unknown");
    const issued = setValue(response)!;
    assert.notEqual(issued.split(".")[0], planted, "a fresh id is issued");
    assert.equal(await c.store.load(await storageKeyOf(planted)), null, "the planted id has no record");
    // The planted cookie keeps being unknown afterwards.
    assert.equal(await (await a.handler(request("/read", `session=${value}`))).text(), "none");
  });

  it("regenerate on login", async () => {
    const c = counted(new MemoryStore());
    const a = app(c.store);
    // The attacker's own valid, anonymous session is planted in the victim's browser...
    const victim = await visitor(a.handler);
    const planted = victim.jar.get("session")!;
    const plantedKey = await storageKeyOf(planted.split(".")[0]!);
    // ...and the victim logs in with it.
    const login = await victim.fetch("/login?user=victim");
    assert.equal(login.status, 200);
    const fresh = victim.jar.get("session")!;
    assert.notEqual(fresh.split(".")[0], planted.split(".")[0], "login issues a new id");
    assert.ok(isEnded(await c.store.load(plantedKey)), "the planted session is ended");
    assert.deepEqual(
      JSON.parse(await victim.text("/read")),
      { visits: 1, user: "victim" },
      "data carried over",
    );
    const attacker = await a.handler(request("/read", `session=${planted}`));
    assert.equal(await attacker.text(), "none", "the attacker's copy logs in nobody");
  });

  it("session flooding (MemoryStore bound)", async () => {
    const store = new MemoryStore({ maxSessions: 100 });
    const a = app(store);
    // Visitors who never write create nothing at all.
    for (let i = 0; i < 500; i++) assert.equal(await (await a.handler(request("/read"))).text(), "none");
    assert.equal(await store.count(), 0);
    // Visitors who write are bounded: the oldest are dropped, memory does not grow.
    let last: Response | undefined;
    for (let i = 0; i < 1000; i++) last = await a.handler(request("/count"));
    assert.equal(await store.count(), 100);
    const newest = setValue(last!)!;
    assert.equal(await (await a.handler(request("/read", `session=${newest}`))).text(), '{"visits":1}');
  });

  it("no `Set-Cookie` cached (`Vary`, `Cache-Control`)", async (t) => {
    const store = new MemoryStore();
    const handler = withSession(async (req: Request) => {
      const url = new URL(req.url);
      const session = await getSession(req);
      if (url.pathname === "/count") session.update("visits", (n = 0) => (n as number) + 1);
      if (url.pathname === "/redirect") {
        session.set("user", "ada");
        return Response.redirect("https://app.example/home", 303);
      }
      const headers = new Headers({ vary: "Accept-Encoding" });
      const cache = url.searchParams.get("cache");
      if (cache !== null) headers.set("cache-control", cache);
      return new Response(String(session.get("visits") ?? "none"), { headers });
    }, { store, secrets: SECRET });

    const created = await handler(request("/count"));
    assert.ok(setValue(created));
    assert.equal(created.headers.get("cache-control"), "private, no-store");
    assert.equal(created.headers.get("vary"), "Accept-Encoding, Cookie");
    const cookie = `session=${setValue(created)}`;

    const read = await handler(request("/read", cookie));
    assert.equal(read.headers.get("set-cookie"), null);
    assert.equal(
      read.headers.get("vary"),
      "Accept-Encoding, Cookie",
      "a response that depends on the session varies on Cookie",
    );

    const redirect = await handler(request("/redirect"));
    assert.equal(redirect.status, 303);
    assert.ok(setValue(redirect), "immutable redirect headers still get the cookie");
    assert.equal(redirect.headers.get("cache-control"), "private, no-store");
    assert.match(redirect.headers.get("vary") ?? "", /Cookie/);

    await t.test("a handler's public Cache-Control never lets a Set-Cookie be shared", async () => {
      const response = await handler(request("/count?cache=public%2C%20max-age%3D600"));
      assert.ok(setValue(response));
      const cc = response.headers.get("cache-control") ?? "";
      assert.ok(/\b(private|no-store)\b/i.test(cc) || /no-cache="?set-cookie/i.test(cc), `got "${cc}"`);
    });

    await t.test("only a real private or no-store directive counts, never one inside a quoted string", async () => {
      const cases: Array<[string, string]> = [
        ['public, max-age=60, ext="a,private,b"', 'private, max-age=60, ext="a,private,b"'],
        ['ext="no-store", S-MaxAge=60, max-age=5', 'private, ext="no-store", max-age=5'],
        ['ext="a\\",private", public', 'private, ext="a\\",private"'],
        ['private="set-cookie", public, max-age=60', "private, max-age=60"],
        ["private, s-maxage=60, max-age=5", "private, max-age=5"],
        ["no-store, public", "no-store"],
        ["PRIVATE , max-age=0", "PRIVATE , max-age=0"],
      ];
      for (const [given, sent] of cases) {
        const response = await handler(request(`/count?cache=${encodeURIComponent(given)}`));
        assert.ok(setValue(response));
        assert.equal(response.headers.get("cache-control"), sent, given);
      }
    });
  });

  it("logout racing in-flight writes", async () => {
    for (const conflict of ["merge", "retry", "reject", "overwrite"] as const) {
      const inner = new MemoryStore();
      const c = counted(inner);
      const hold = gate();
      // The held request stands for one on another process: no turns.
      const a = app(c.store, { conflict, locking: "explicit" }, hold.promise);
      const client = new Client(a.handler);
      await client.text("/login?user=ada");
      const key = await storageKeyOf(client.jar.get("session")!.split(".")[0]!);
      const slow = client.clone().fetch("/slow");
      await sleep(10); // the slow request has loaded the session and waits
      const logout = await client.fetch("/logout");
      assert.match(logout.headers.getSetCookie()[0]!, /Max-Age=0/);
      hold.open();
      const late = await slow;
      assert.ok(isEnded(await c.store.load(key)), `${conflict}: the logged-out session was not resurrected`);
      // Even a re-run (retry) finds the session ended: its change is refused, never a new session.
      assert.equal(late.status, 409, `${conflict}: answered ${late.status}`);
      assert.deepEqual(late.headers.getSetCookie(), [], `${conflict}: the late response touches no cookie`);
      assert.equal(await inner.count(), 1, `${conflict}: nothing written but the tombstone`);
    }
  });

  it("streaming after headers sent", async (t) => {
    const inner = new MemoryStore();
    const c = counted(inner);
    const errors: unknown[] = [];
    const handler = withSession(async (req: Request, ..._platform: unknown[]) => {
      const url = new URL(req.url);
      const session = await getSession(req);
      const late = (change: () => void) =>
        new Response(
          new ReadableStream({
            async start(controller) {
              controller.enqueue(new TextEncoder().encode("head\n"));
              await sleep(5);
              change();
              controller.close();
            },
          }),
        );
      switch (url.pathname) {
        case "/count":
          session.update("visits", (n = 0) => (n as number) + 1);
          return new Response("ok");
        case "/stream-update":
          return late(() => session.update("visits", (n = 0) => (n as number) + 100));
        case "/stream-regenerate":
          return late(() => {
            session.regenerate();
            session.set("user", "mallory");
          });
        case "/stream-new":
          return late(() => session.set("user", "too late"));
        default:
          return new Response("?", { status: 404 });
      }
    }, { store: c.store, secrets: SECRET, onError: (error) => void errors.push(error) });

    const client = new Client(handler);
    await client.text("/count");
    const key = await storageKeyOf(client.jar.get("session")!.split(".")[0]!);

    // A change made while the body streams is saved when it ends (no cookie needed).
    await client.text("/stream-update");
    for (let i = 0; i < 100 && (await c.store.load(key))?.data.visits !== 101; i++) await sleep(5);
    assert.equal((await c.store.load(key))?.data.visits, 101);

    // A change that would need a new cookie cannot happen after the headers: it is reported,
    // the old session stays as it was, and nothing new is written.
    c.reset();
    await client.text("/stream-regenerate");
    for (let i = 0; i < 100 && errors.length === 0; i++) await sleep(5);
    assert.equal((errors[0] as Error)?.name, "SessionStateError");
    assert.equal(c.calls.save, 0);
    assert.equal((await c.store.load(key))?.data.visits, 101, "the old session is intact");
    assert.equal((await c.store.load(key))?.data.user, undefined);

    const stranger = new Client(handler);
    await stranger.text("/stream-new");
    for (let i = 0; i < 100 && errors.length < 2; i++) await sleep(5);
    assert.equal((errors[1] as Error)?.name, "SessionStateError");
    assert.equal(stranger.jar.size, 0);
    assert.equal(await inner.count(), 1);

    await t.test("the late save is handed to the runtime's waitUntil", async () => {
      const waited: Promise<unknown>[] = [];
      const ctx = { waitUntil: (promise: Promise<unknown>) => void waited.push(promise) };
      const response = await handler(request("/stream-update", client.cookie), {}, ctx);
      await response.text();
      for (let i = 0; i < 20 && waited.length === 0; i++) await sleep(5);
      assert.equal(waited.length, 1, "the late save was given to waitUntil");
      await Promise.all(waited);
      assert.equal((await c.store.load(key))?.data.visits, 201);
    });
  });
});

describe("secrets and encodings", () => {
  it("refuses a secret listed twice, naming the positions and never the secret", async () => {
    const other = "another secret of at least thirty-two characters";
    const { CookieStore } = await import("../src/stores/cookie.ts");
    const attempts: Array<[string, () => unknown]> = [
      ["withSession", () => withSession(() => new Response("ok"), { secrets: [SECRET, other, SECRET] })],
      ["CookieStore", () => new CookieStore({ secrets: [SECRET, other, SECRET] })],
    ];
    for (const [what, attempt] of attempts) {
      assert.throws(attempt, (error: unknown) => {
        assert.ok(error instanceof TypeError, what);
        assert.equal(
          error.message,
          "Invalid secrets: secret 2 is the same as secret 0: list each secret once",
        );
        assert.ok(!error.message.includes(SECRET), "the secret itself is not in the message");
        return true;
      });
    }
    assert.ok(withSession(() => new Response("ok"), { secrets: [SECRET, other] }));
  });

  it("a signed id's signature and every part of a sealed cookie have one spelling", async () => {
    const { isCanonicalBase64Url } = await import("../src/signing.ts");
    const { encodeBase64Url } = await import("../src/id.ts");
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (let length = 0; length < 12; length++) {
      const text = encodeBase64Url(crypto.getRandomValues(new Uint8Array(length)));
      assert.ok(isCanonicalBase64Url(text), text);
      // Every other last character that decodes to the same bytes is refused.
      const spare = text.length % 4 === 2 ? 15 : text.length % 4 === 3 ? 3 : 0;
      for (let bits = 1; bits <= spare; bits++) {
        const last = alphabet.indexOf(text.at(-1)!);
        const respelled = text.slice(0, -1) + alphabet[(last & ~spare) | bits]!;
        assert.equal(isCanonicalBase64Url(respelled), false, respelled);
      }
    }
    for (const text of ["A", "AAAAA", "AA=", "AA+A", "AA/A", "AA A"]) {
      assert.equal(isCanonicalBase64Url(text), false);
    }
  });
});

describe("a Response object the handler reuses across requests", () => {
  // A module-level `204` or redirect returned to every caller: a cookie added to that object
  // would be sent to the next caller too, signing them in as the previous one.
  const SHARED_NO_CONTENT = new Response(null, { status: 204 });
  const SHARED_REDIRECT = new Response(null, { status: 303, headers: { location: "/home" } });

  async function walk(handler: (request: Request) => Promise<Response>): Promise<void> {
    const ada = await handler(request("/login?user=ada", undefined, { method: "POST" }));
    const adaCookie = setValue(ada);
    assert.ok(adaCookie, "the log in sets a cookie");
    assert.equal(
      SHARED_NO_CONTENT.headers.get("set-cookie"),
      null,
      "the shared object is never given a cookie",
    );
    assert.equal(SHARED_REDIRECT.headers.get("set-cookie"), null);

    // Another visitor, no cookie, same shared object: no cookie of Ada's.
    const anon = await handler(request("/noop"));
    assert.deepEqual(anon.headers.getSetCookie(), [], "a visitor who changed nothing gets no cookie");
    const bob = await handler(request("/login?user=bob", undefined, { method: "POST" }));
    const cookies = bob.headers.getSetCookie();
    assert.equal(cookies.length, 1, `one cookie, Bob's own: ${cookies.join(" | ")}`);
    assert.notEqual(setValue(bob), adaCookie);
    const who = await handler(request("/whoami", `session=${setValue(bob)}`));
    assert.equal(await who.text(), "bob");
    const redirect = await handler(request("/logout", `session=${adaCookie}`, { method: "POST" }));
    assert.equal(redirect.status, 303);
    assert.equal(redirect.headers.get("location"), "/home");
    assert.match(redirect.headers.getSetCookie()[0] ?? "", /Max-Age=0/);
    assert.equal(SHARED_REDIRECT.headers.get("set-cookie"), null);
    const next = await handler(request("/logout"));
    assert.deepEqual(next.headers.getSetCookie(), [], "the next caller is not logged out by Ada's cookie");
  }

  function route(
    req: Request,
    session: {
      get(k: string): unknown;
      set(k: string, v: unknown): unknown;
      regenerate(): void;
      destroy(): void;
    },
  ): Response {
    const url = new URL(req.url);
    if (url.pathname === "/login") {
      session.regenerate();
      session.set("user", url.searchParams.get("user"));
      return SHARED_NO_CONTENT;
    }
    if (url.pathname === "/logout") {
      session.destroy();
      return SHARED_REDIRECT;
    }
    if (url.pathname === "/whoami") return new Response(String(session.get("user")));
    return SHARED_NO_CONTENT;
  }

  it("withSession copies it before adding Set-Cookie", async () => {
    const store = new MemoryStore();
    await walk(
      withSession(async (req: Request) => route(req, await getSession(req)), { store, secrets: SECRET }),
    );
  });

  it("websession/hono copies it before adding Set-Cookie", async () => {
    const { Hono } = await import("hono");
    const { sessionMiddleware, getSession: honoSession } = await import("../src/adapters/hono.ts");
    const app = new Hono();
    app.use(sessionMiddleware({ store: new MemoryStore(), secrets: SECRET }));
    app.all("*", async (c) => route(c.req.raw, await honoSession(c)));
    await walk(async (req) => await app.fetch(req));
  });

  it("websession/react-router copies it before adding Set-Cookie", async () => {
    const { sessionMiddleware, getSession: routerSession } = await import("../src/adapters/react_router.ts");
    const middleware = sessionMiddleware({ store: new MemoryStore(), secrets: SECRET });
    await walk(async (req) => {
      const values = new Map<unknown, unknown>();
      const context = {
        get: (k: unknown) => values.get(k) ?? null,
        set: (k: unknown, v: unknown) => void values.set(k, v),
      };
      const args = { request: req, context, params: {} } as unknown as Parameters<typeof middleware>[0];
      return await middleware(
        args,
        async () => route(req, await routerSession(context as never)),
      ) as Response;
    });
  });

  it("never copies a 101 protocol switch, which cannot be constructed", async () => {
    const { withSessionHeaders } = await import("../src/headers.ts");
    // A 101 cannot be built with `new Response` outside Deno/Workers: stand in for one.
    const upgrade = Object.create(Response.prototype, {
      status: { value: 101 },
      headers: { value: new Headers({ upgrade: "websocket" }) },
    }) as Response;
    const sent = withSessionHeaders(upgrade, ["session=x; Path=/"]);
    assert.equal(sent, upgrade);
    assert.equal(upgrade.headers.get("set-cookie"), "session=x; Path=/");
    const plain = new Response("x");
    assert.equal(withSessionHeaders(plain, []), plain, "no cookie: no copy");
    assert.equal(plain.headers.get("vary"), "Cookie");
  });
});
