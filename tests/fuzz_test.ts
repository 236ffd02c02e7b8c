// Property-based fuzzing of withSession with fast-check: hostile Cookie headers, cookie values,
// stored records (corrupt JSON, wrong types, huge values written straight into real stores) and
// options. Whatever comes in: no uncaught exception, no 5xx (there is no store outage here), and
// never another session's data.
//
// FUZZ_RUNS sets the total number of cases across the properties (`npm run fuzz` runs 100,000);
// the default keeps `npm test` short. FUZZ_SEED replays a run.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { Redis } from "ioredis";
import { SessionDataError } from "../src/errors.ts";
import { getSession, withSession } from "../src/with_session.ts";
import type { SessionOptions } from "../src/options.ts";
import type { SessionStore, StoredSession } from "../src/store.ts";
import { storageKeyOf } from "../src/id.ts";
import { SessionConflictError } from "../src/errors.ts";
import { MemoryStore } from "../src/stores/memory.ts";
import { FileStore } from "../src/stores/file.ts";
import { RedisStore } from "../src/stores/redis.ts";

const TOTAL = Number(process.env.FUZZ_RUNS ?? 3_000);
const SEED = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
/** Each property's share of FUZZ_RUNS. */
const share = (fraction: number) => ({
  numRuns: Math.max(20, Math.round(TOTAL * fraction)),
  ...(SEED === undefined ? {} : { seed: SEED }),
  endOnFailure: true,
});

const SECRET = "fuzzing secret: at least thirty-two characters long";
const SESSIONS = 6;
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

// Anything thrown where nobody awaits it is a failure of the whole file.
const stray: unknown[] = [];
const onStray = (error: unknown) => void stray.push(error);
process.on("uncaughtException", onStray);
process.on("unhandledRejection", onStray);
after(() => {
  process.off("uncaughtException", onStray);
  process.off("unhandledRejection", onStray);
  assert.deepEqual(stray, [], "no uncaught exception or unhandled rejection");
});

type Data = { owner?: number; hits?: number };

/** Runs a property; a failure reports the counterexample and the assertion that failed. */
async function fuzz<Ts extends [unknown, ...unknown[]]>(
  property: fc.IAsyncPropertyWithHooks<Ts>,
  parameters: fc.Parameters<Ts>,
): Promise<void> {
  const details = await fc.check(property, parameters);
  if (details.failed) {
    const cause = details.errorInstance as Error | undefined;
    throw new Error(`${fc.defaultReportMessage(details)}\n${cause?.stack ?? String(cause)}`, { cause });
  }
}

/** The app under fuzz: reads the owner mark, and on `/hit` also writes. */
function app(store: SessionStore, errors: unknown[], extra: Partial<SessionOptions> = {}) {
  return withSession(async (req: Request) => {
    const url = new URL(req.url);
    const session = await getSession<Data>(req);
    // Stored data here is arbitrary (no schema): the app counts only what is a number.
    if (url.pathname === "/hit") session.update("hits", (n) => (typeof n === "number" ? n + 1 : 1));
    if (url.pathname === "/claim") session.set("owner", Number(url.searchParams.get("owner")));
    return Response.json({ owner: session.get("owner") ?? null, data: session.toJSON() });
  }, {
    store,
    secrets: SECRET,
    onError: (error) => {
      errors.push(error);
    },
    ...extra,
  });
}

function tryRequest(path: string, cookie: string): Request | undefined {
  try {
    return new Request(new URL(path, "https://app.example"), { headers: { cookie } });
  } catch {
    return undefined; // not a header a client can send (NUL, CR, LF, non-Latin-1): nothing to test
  }
}

interface Known {
  value: string;
  id: string;
  sig: string;
  mac: string;
  key: string;
}

/** Creates the sessions whose data must never leak to anyone else. */
async function plant(handler: (r: Request) => Promise<Response>): Promise<Known[]> {
  const known: Known[] = [];
  for (let owner = 0; owner < SESSIONS; owner++) {
    const response = await handler(new Request(`https://app.example/claim?owner=${owner}`));
    assert.equal(response.status, 200);
    const value = response.headers.getSetCookie()[0]!.split(";")[0]!.slice("session=".length);
    const [id, sig] = value.split(".") as [string, string];
    known.push({ value, id, sig, mac: macBytes(sig), key: await storageKeyOf(id) });
  }
  return known;
}

/** The MAC bytes a signature decodes to, however it is padded. */
function macBytes(sig: string): string {
  try {
    return atob(sig.replace(/-/g, "+").replace(/_/g, "/"));
  } catch {
    return "";
  }
}

/** Whether a Cookie header carries owner k's credential somewhere (same id, same MAC bytes). */
function carries(header: string, k: Known): boolean {
  for (let at = header.indexOf(`${k.id}.`); at >= 0; at = header.indexOf(`${k.id}.`, at + 1)) {
    const sig = /^[A-Za-z0-9_-]*/.exec(header.slice(at + k.id.length + 1))![0];
    if (sig.length >= 43 && macBytes(sig.slice(0, 43)) === k.mac) return true;
  }
  return false;
}

function ownerOf(body: string): number | null {
  return (JSON.parse(body) as { owner: number | null }).owner;
}

/** Pieces a hostile Cookie header is built from. */
function fragment(known: Known[]): fc.Arbitrary<string> {
  const k = fc.integer({ min: 0, max: SESSIONS - 1 });
  const text = fc.string({ unit: "binary-ascii", maxLength: 40 });
  return fc.oneof(
    k.map((i) => `session=${known[i]!.value}`),
    fc.tuple(k, k).map(([i, j]) => `session=${known[i]!.id}.${known[j]!.sig}`),
    k.map((i) => `session="${known[i]!.value}"`),
    fc.tuple(k, text).map(([i, junk]) => `session=${known[i]!.value}${junk}`),
    fc.tuple(k, text).map(([i, junk]) => `session=${junk}${known[i]!.value}`),
    fc.tuple(k, fc.nat({ max: 75 })).map(([i, cut]) => `session=${known[i]!.value.slice(0, cut)}`),
    fc.tuple(
      fc.constantFrom("session", "Session", " session ", "session\t", "sessio", "xsession", "session.0"),
      text,
    )
      .map(([name, value]) => `${name}=${value}`),
    fc.tuple(text, text).map(([name, value]) => `${name}=${value}`),
    fc.string({ unit: "binary", maxLength: 30 }),
    fc.constantFrom("", "=", ";", "session", "session=", "=session", '""', "session==", "%73ession=x"),
  );
}

function header(known: Known[]): fc.Arbitrary<string> {
  return fc.tuple(
    fc.array(fragment(known), { maxLength: 6 }),
    fc.array(fc.constantFrom("; ", ";", " ; ", ";;", ", ", "\t;"), { minLength: 6, maxLength: 6 }),
  ).map(([parts, seps]) => parts.map((part, i) => (i === 0 ? part : seps[i]! + part)).join(""));
}

describe(`fuzz (${TOTAL} cases)`, () => {
  it("hostile Cookie headers: never another session's data, never a write to it", async () => {
    const store = new MemoryStore();
    const errors: unknown[] = [];
    const handler = app(store, errors);
    const known = await plant(handler);
    const hits = new Array<number>(SESSIONS).fill(0);
    await fuzz(
      fc.asyncProperty(header(known), fc.boolean(), async (cookie, write) => {
        const req = tryRequest(write ? "/hit" : "/read", cookie);
        if (req === undefined) return;
        const response = await handler(req);
        assert.equal(response.status, 200);
        const owner = ownerOf(await response.text());
        if (owner !== null) {
          assert.ok(
            carries(cookie, known[owner]!),
            `owner ${owner} answered without its credential: ${cookie}`,
          );
          if (write) hits[owner]!++;
        }
        for (const set of response.headers.getSetCookie()) {
          // Only a fresh session's cookie or a clearing one: a presented id is never echoed back.
          assert.ok(!known.some((k) => set.includes(k.id)), `a known id was re-issued: ${set}`);
        }
      }),
      share(0.3),
    );
    for (let owner = 0; owner < SESSIONS; owner++) {
      const record = await store.load(known[owner]!.key);
      assert.equal(record?.data.owner, owner, "every planted session keeps its owner");
      assert.equal(record?.data.hits ?? 0, hits[owner], `session ${owner} got exactly its own writes`);
    }
    assert.deepEqual(errors, []);
  });

  it("hostile session cookie values: only the exact credential opens a session", async () => {
    const store = new MemoryStore();
    const errors: unknown[] = [];
    const handler = app(store, errors);
    const known = await plant(handler);
    const k = fc.integer({ min: 0, max: SESSIONS - 1 });
    const mutated = fc.tuple(
      k,
      fc.nat(),
      fc.string({ unit: "binary-ascii", maxLength: 3 }),
      fc.nat({ max: 3 }),
    )
      .map(([i, at, insert, remove]) => {
        const value = known[i]!.value;
        const p = at % (value.length + 1);
        return value.slice(0, p) + insert + value.slice(p + remove);
      });
    const value = fc.oneof(
      mutated,
      fc.string({ unit: "binary-ascii", maxLength: 300 }),
      fc.string({ unit: "binary", maxLength: 100 }),
      fc.base64String({ maxLength: 120 }),
      fc.stringMatching(/^[A-Za-z0-9_-]{32}\.[A-Za-z0-9_-]{43}$/),
      fc.stringMatching(/^[A-Za-z0-9_.\-/\\%]{0,90}$/),
      fc.string({ unit: "grapheme-ascii", minLength: 257, maxLength: 5000 }),
    );
    await fuzz(
      fc.asyncProperty(value, async (v) => {
        const req = tryRequest("/read", `session=${v}`);
        if (req === undefined) return;
        const response = await handler(req);
        assert.equal(response.status, 200);
        const owner = ownerOf(await response.text());
        if (owner !== null) {
          const k = known[owner]!;
          // The value as the Cookie header parser reads it: up to a ";" or a "," (some clients join
          // cookies with a comma, src/cookie.ts), trimmed, unquoted.
          const read = v.split(/[;,]/)[0]!.trim().replace(/^"(.*)"$/, "$1");
          const [id, sig = ""] = read.split(".");
          assert.equal(id, k.id, `opened session ${owner} with ${JSON.stringify(v)}`);
          assert.equal(macBytes(sig), k.mac, `opened session ${owner} with ${JSON.stringify(v)}`);
        }
      }),
      share(0.3),
    );
    assert.deepEqual(errors, []);
  });

  describe("corrupt, mistyped and huge stored records", () => {
    let redis: Redis;
    let dir: string;
    const prefix = `websession-fuzz:${crypto.randomUUID().slice(0, 8)}:`;
    before(async () => {
      redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
      dir = await mkdtemp(join(tmpdir(), "websession-fuzz-"));
    });
    after(async () => {
      let cursor = "0";
      do {
        const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
        if (keys.length > 0) await redis.del(...keys);
        cursor = next;
      } while (cursor !== "0");
      redis.disconnect();
      await rm(dir, { recursive: true, force: true });
    });

    const now = Date.now();
    const time = fc.oneof(
      fc.constant(now + 60_000),
      fc.constant(now - 1),
      fc.integer({ min: now - 10 ** 9, max: now + 10 ** 9 }),
      fc.double(),
      fc.constantFrom(0, -1, 1e308, -1e308, Number.MAX_SAFE_INTEGER),
      fc.jsonValue({ maxDepth: 1 }),
    );
    const data = fc.oneof(
      fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 6 }),
      fc.record({
        owner: fc.oneof(fc.integer(), fc.jsonValue({ maxDepth: 1 })),
        hits: fc.jsonValue({ maxDepth: 1 }),
      }),
      fc.record({ __flash: fc.jsonValue({ maxDepth: 2 }) }),
      fc.constantFrom({ __proto__: { owner: 1 } }, JSON.parse('{"__proto__":{"owner":1}}'), {
        constructor: { prototype: {} },
      }),
      fc.string({ unit: "grapheme", minLength: 1000, maxLength: 4000 }).map((s) => ({ big: s.repeat(64) })),
      fc.jsonValue({ maxDepth: 2 }),
    );
    const recordLike = fc.oneof(
      fc.record({
        data,
        version: fc.oneof(fc.integer({ min: 1, max: 5 }), fc.jsonValue({ maxDepth: 1 })),
        createdAt: time,
        expiresAt: time,
      }),
      fc.record({
        data,
        version: fc.constant(1),
        createdAt: fc.constant(now - 1000),
        expiresAt: fc.constant(now + 60_000),
      }),
      fc.jsonValue({ maxDepth: 3 }),
    );
    /** Raw text as it would sit in a file or a Redis key. */
    const raw = fc.oneof(
      recordLike.map((record) => JSON.stringify(record) ?? "null"),
      recordLike.chain((record) => {
        const text = JSON.stringify(record) ?? "null";
        return fc.nat({ max: text.length }).map((cut) => text.slice(0, cut)); // torn write
      }),
      fc.string({ unit: "binary", maxLength: 200 }),
      fc.constantFrom(
        "",
        "{",
        "null",
        "[]",
        '{"version":1}',
        "\u0000",
        '{"version":1,"createdAt":0,"expiresAt":1e999,"data":{}}',
      ),
    );

    /** One round: plant a session, overwrite its record behind withSession's back, use it. */
    async function round(
      handler: (r: Request) => Promise<Response>,
      store: SessionStore,
      errors: unknown[],
      overwrite: (key: string) => Promise<void>,
      allowed: (error: unknown) => boolean = () => false,
    ): Promise<void> {
      const created = await handler(new Request("https://app.example/claim?owner=7"));
      const cookie = created.headers.getSetCookie()[0]!.split(";")[0]!;
      const key = await storageKeyOf(cookie.slice("session=".length).split(".")[0]!);
      // The neighbour's mark is a number the generators never produce.
      const mark = 2 ** 52 + Math.floor(Math.random() * 2 ** 40);
      const other = await handler(new Request(`https://app.example/claim?owner=${mark}`));
      const otherCookie = other.headers.getSetCookie()[0]!.split(";")[0]!;
      await overwrite(key);
      for (const path of ["/read", "/hit", "/hit", "/read"]) {
        const response = await handler(new Request(`https://app.example${path}`, { headers: { cookie } }));
        assert.ok(response.status < 500, `status ${response.status}: ${String(errors.at(-1))}`);
        const body = await response.text();
        if (response.status !== 200) continue;
        assert.notEqual(ownerOf(body), mark, "never another session's data");
        const next = response.headers.getSetCookie()[0]?.split(";")[0];
        if (next !== undefined && next !== "session=") assert.notEqual(next, otherCookie);
      }
      const again = await handler(
        new Request("https://app.example/read", { headers: { cookie: otherCookie } }),
      );
      assert.equal(ownerOf(await again.text()), mark, "the neighbouring session is untouched");
      assert.deepEqual(errors.filter((error) => !allowed(error)), []);
      errors.length = 0;
      await store.destroy(key);
    }

    it("MemoryStore: records of any shape saved through the store API", async () => {
      const store = new MemoryStore();
      const errors: unknown[] = [];
      const handler = app(store, errors);
      await fuzz(
        fc.asyncProperty(recordLike, async (record) => {
          await round(handler, store, errors, async (key) => {
            await store.destroy(key);
            try {
              await store.save(key, record as StoredSession, null);
            } catch (error) {
              // The store API itself may refuse a value that is not a record at all.
              assert.ok(error instanceof TypeError || error instanceof SessionDataError, String(error));
            }
          });
        }),
        share(0.1),
      );
    });

    it("FileStore: raw file contents", async () => {
      const store = new FileStore({ dir, onCorrupt: () => {} });
      const errors: unknown[] = [];
      const handler = app(store, errors);
      await fuzz(
        fc.asyncProperty(raw, async (text) => {
          await round(handler, store, errors, (key) => writeFile(join(dir, `${key}.json`), text));
        }),
        share(0.05),
      );
    });

    it("RedisStore: raw values under the session's key", async () => {
      const store = new RedisStore({ client: redis, prefix, onCorrupt: () => {} });
      const errors: unknown[] = [];
      // maxAttempts 2: see the todo below, a record RedisStore loads but cannot update ends in 409.
      const handler = app(store, errors, { maxAttempts: 2 });
      await fuzz(
        fc.asyncProperty(raw, async (text) => {
          await round(
            handler,
            store,
            errors,
            async (key) => void (await redis.set(prefix + key, text, "PX", 60_000)),
            (error) => error instanceof SessionConflictError,
          );
        }),
        share(0.05),
      );
    });
    it("RedisStore: a record it loads, it can also update (found by fuzzing)", async () => {
      const store = new RedisStore({ client: redis, prefix, onCorrupt: () => {} });
      const handler = app(store, [], { maxAttempts: 2 });
      const created = await handler(new Request("https://app.example/claim?owner=1"));
      const cookie = created.headers.getSetCookie()[0]!.split(";")[0]!;
      const key = await storageKeyOf(cookie.slice("session=".length).split(".")[0]!);
      const now = Date.now();
      const record = { data: { owner: 1 }, version: 1, createdAt: now, expiresAt: now + 60_000 };
      await redis.set(prefix + key, JSON.stringify(record), "PX", 60_000);
      assert.deepEqual((await store.load(key))?.data, { owner: 1 });
      const response = await handler(new Request("https://app.example/hit", { headers: { cookie } }));
      assert.equal(response.status, 200);
      assert.equal((await store.load(key))?.data.hits, 1);
    });
  });

  it("random options: refused at construction, or every response well-formed and below 500", async () => {
    const seconds = fc.oneof(
      fc.constant(undefined),
      fc.integer({ min: 1, max: 10 ** 6 }),
      fc.double({ min: 0, max: 1e7, noNaN: true }),
      fc.constantFrom(
        0,
        -1,
        0.5,
        NaN,
        Infinity,
        -Infinity,
        1e9,
        1e12, // larger values: see the todo below
        "60" as unknown as number,
        null as unknown as number,
      ),
    );
    const name = fc.oneof(
      fc.constantFrom(
        undefined,
        "session",
        "__Host-s",
        "__Secure-s",
        "__host-x",
        "a;b",
        "a b",
        "",
        "s=1",
        "ünï",
      ),
      fc.string({ unit: "binary-ascii", maxLength: 12 }),
    );
    const options = fc.record({
      idleTimeout: seconds,
      absoluteTimeout: seconds,
      touchAfter: seconds,
      conflict: fc.constantFrom(undefined, "merge", "retry", "reject", "overwrite", "bogus"),
      maxAttempts: fc.constantFrom(undefined, 1, 2, 30, 0, -1, 1.5, NaN),
      secrets: fc.constantFrom<unknown>(
        SECRET,
        [SECRET, "x".repeat(32)],
        "short",
        [],
        [SECRET, 42],
        undefined,
      ),
      cookie: fc.option(
        fc.record({
          name,
          path: fc.oneof(
            fc.constantFrom(undefined, "/", "/app", "", "app", "/a;b", "/\u00e9"),
            fc.string({ unit: "binary-ascii", maxLength: 8 }),
          ),
          domain: fc.constantFrom(
            undefined,
            "app.example",
            ".app.example",
            "a;b",
            "",
            "-bad-.example",
            "localhost",
          ),
          secure: fc.constantFrom(undefined, true, false),
          httpOnly: fc.constantFrom(undefined, true, false),
          sameSite: fc.constantFrom(undefined, "Strict", "Lax", "None", "lax", "bogus"),
          partitioned: fc.constantFrom(undefined, true, false),
          persistent: fc.constantFrom(undefined, true, false),
        }, { requiredKeys: [] }),
        { nil: undefined },
      ),
    }, { requiredKeys: [] });
    const steps = fc.array(
      fc.record({
        path: fc.constantFrom("/hit", "/read", "/claim?owner=1"),
        wait: fc.oneof(fc.nat({ max: 5_000 }), fc.nat({ max: 10 ** 10 })),
      }),
      { minLength: 1, maxLength: 6 },
    );
    await fuzz(
      fc.asyncProperty(options, steps, async (raw, script) => {
        let now = Date.now();
        const clock = () => now;
        const store = new MemoryStore({ now: clock });
        const errors: unknown[] = [];
        let handler: (r: Request) => Promise<Response>;
        try {
          handler = app(store, errors, { ...(raw as Partial<SessionOptions>), now: clock });
        } catch (error) {
          assert.ok(
            error instanceof TypeError || error instanceof RangeError,
            `refused with ${String(error)}`,
          );
          return;
        }
        let cookie = "";
        let hits = 0;
        for (const step of script) {
          now += step.wait;
          const response = await handler(
            new Request(`https://app.example${step.path}`, { headers: cookie ? { cookie } : {} }),
          );
          assert.ok(response.status < 500, `status ${response.status}: ${String(errors.at(-1))}`);
          const body = JSON.parse(await response.text()) as { data: Data };
          const seen = body.data.hits ?? 0;
          assert.ok(seen <= hits + 1, `hits ${seen} after ${hits}`);
          hits = step.path === "/hit" ? seen : Math.max(hits, seen);
          for (const set of response.headers.getSetCookie()) {
            assertWellFormed(set);
            const pair = set.split(";")[0]!;
            cookie = pair.endsWith("=") ? "" : pair;
          }
        }
        assert.deepEqual(errors, []);
      }),
      share(0.2),
    );
  });

  it("huge timeouts still give a well-formed Set-Cookie (found by fuzzing)", async () => {
    for (const timeout of [1e13, 1e15, 1e300]) {
      let handler: (r: Request) => Promise<Response>;
      try {
        handler = app(new MemoryStore(), [], { idleTimeout: timeout, absoluteTimeout: timeout });
      } catch (error) {
        assert.ok(error instanceof RangeError); // refusing such a timeout is as good
        continue;
      }
      const response = await handler(new Request("https://app.example/hit"));
      for (const set of response.headers.getSetCookie()) assertWellFormed(set);
    }
  });
});

const ATTRIBUTE =
  /^(Path=\/[\x20-\x3a\x3c-\x7e]*|Domain=[A-Za-z0-9.-]+|HttpOnly|Secure|SameSite=(Strict|Lax|None)|Partitioned|Max-Age=\d+|Expires=.+)$/;

/** A Set-Cookie value a browser accepts as written: token name, cookie-octets, valid attributes. */
function assertWellFormed(header: string): void {
  const [pair, ...attributes] = header.split("; ");
  assert.match(pair!, /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+=[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*$/, header);
  for (const attribute of attributes) {
    assert.match(attribute, ATTRIBUTE, header);
    if (attribute.startsWith("Expires=")) {
      assert.ok(!Number.isNaN(Date.parse(attribute.slice(8))), `invalid Expires in ${header}`);
    }
  }
}
