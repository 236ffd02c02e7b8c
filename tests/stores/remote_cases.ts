// Helpers shared by the server stores' tests: records, the characters a store may fail to keep
// (and their valid neighbours), a race of writers that checks every reported current record,
// the requests that tell a data error from an outage through withSession, and a client that
// records the calls a store makes through it.
import assert from "node:assert/strict";
import { getSession, withSession } from "../../src/with_session.ts";
import type { SaveConflict, SaveResult, SessionStore, StoredSession } from "../../src/store.ts";

/** A record with data, version and a lifetime from `now`. */
export function record(
  data: Record<string, unknown>,
  version = 1,
  ttl = 60_000,
  now = Date.now(),
): StoredSession {
  return { data, version, createdAt: now, expiresAt: now + ttl };
}

/**
 * A record whose JSON text is exactly `length` characters, padded with `fill`. It lives an hour:
 * a size hook makes its records when the file loads, minutes before its case runs.
 */
export function recordOfLength(length: number, fill: string): StoredSession {
  const base = record({ blob: "" }, 1, 3_600_000);
  const pad = length - JSON.stringify(base).length;
  return { ...base, data: { blob: fill.repeat(pad) } };
}

/**
 * Wraps a driver's client so that every call the store makes through it is recorded in `sent`,
 * by the name `nameOf` gives it (a command, a statement's verb); calls it names `undefined` go
 * through unrecorded.
 */
export function recordingClient<T extends object>(
  client: T,
  nameOf: (property: string, args: unknown[]) => string | undefined,
): { client: T; sent: string[] } {
  const sent: string[] = [];
  const proxy = new Proxy(client, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof property !== "string" || typeof value !== "function") return value;
      return (...args: unknown[]) => {
        const name = nameOf(property, args);
        if (name !== undefined) sent.push(name);
        return Reflect.apply(value, target, args);
      };
    },
  });
  return { client: proxy, sent };
}

/**
 * The Redis command a call through a client sends (ioredis `call`, node-redis `sendCommand` on one
 * node or a cluster, the script and key methods of each client), upper case; `undefined` for any
 * other property.
 */
export function redisCommandOf(property: string, args: unknown[]): string | undefined {
  const names: Record<string, () => string> = {
    call: () => String(args[0]),
    // A cluster's sendCommand takes the key and whether it reads only before the command.
    sendCommand: () => String((args.find(Array.isArray) as string[])[0]),
    evalSha: () => "EVALSHA",
    evalsha: () => "EVALSHA",
    eval: () => "EVAL",
    get: () => "GET",
    del: () => "DEL",
    scan: () => "SCAN",
  };
  return Object.hasOwn(names, property) ? names[property]!().toUpperCase() : undefined;
}

/**
 * Data holding U+0000 or a lone UTF-16 surrogate: what PostgreSQL `jsonb` cannot hold. Each
 * entry names where the character sits; the message of a refusal must name that place.
 */
export const UNSTORABLE: [label: string, data: Record<string, unknown>, place: string][] = [
  ["U+D800 (first high surrogate) alone", { v: "\ud800" }, '"v"'],
  ["U+DBFF (last high surrogate) alone", { v: "\udbff" }, '"v"'],
  ["U+DC00 (first low surrogate) alone", { v: "\udc00" }, '"v"'],
  ["U+DFFF (last low surrogate) alone", { v: "\udfff" }, '"v"'],
  ["a high surrogate at the end of text", { v: "text\ud800" }, '"v"'],
  ["a high surrogate before an ordinary character", { v: "\ud800a" }, '"v"'],
  ["a reversed pair (low before high)", { v: "\udc00\ud800" }, '"v"'],
  ["a high surrogate before a valid pair", { v: "\ud800\ud83d\ude00" }, '"v"'],
  ["a low surrogate after a valid pair", { v: "\ud83d\ude00\ude00" }, '"v"'],
  ["a literal backslash before a lone surrogate", { v: "\\\ud800" }, '"v"'],
  ["a lone surrogate in a key", { ["key\ud800"]: 1 }, '"key\\ud800"'],
  ["a lone low surrogate as a key", { ["\udfff"]: 1 }, '"\\udfff"'],
  [
    "a lone surrogate nested in arrays and objects",
    { a: { b: [1, { c: ["x", "y\udc00z"] }] } },
    '"a.b[1].c[1]"',
  ],
  ["a lone surrogate in a key of a nested object", { a: [{ ["\udbffk"]: true }] }, '"a[0]"'],
  ["U+0000 alone", { v: "\u0000" }, '"v"'],
  ["U+0000 inside text", { v: "before\u0000after" }, '"v"'],
  ["U+0000 in a key", { ["a\u0000b"]: 1 }, '"a\\u0000b"'],
  ["U+0000 nested in an array", { list: [["ok", "\u0000"]] }, '"list[0][1]"'],
];

/**
 * Data every store must keep exactly: the valid neighbours of what `UNSTORABLE` holds, valid
 * surrogate pairs, and text that only looks like an escape.
 */
export const STORABLE: Record<string, unknown> = {
  firstPair: "\ud800\udc00", // U+10000
  lastPair: "\udbff\udfff", // U+10FFFF
  emoji: "🎉 \ud83d\ude00",
  ["🔑 key"]: "value ✓",
  controls: "\u0001\u0008\u001f\u007f",
  aroundSurrogates: "\ud7ff\ue000\ufeff\ufffd\uffff",
  escapesAsText: "\\u0000 \\ud800 \\\\ud800 \\",
  ["\\u0000 key"]: ["\\udc00"],
  nested: { deep: [{ "pair \ud83d\ude00": ["\u0001", "\ud800\udc00"] }] },
};

/** Numbers at the edges of what a double can hold: every JSON store must give them back as sent. */
export const NUMBERS: Record<string, number> = {
  max: Number.MAX_VALUE,
  min: Number.MIN_VALUE,
  maxSafe: Number.MAX_SAFE_INTEGER,
  beyondSafe: 2 ** 53 + 2,
  huge: 1e21,
  tiny: -1.5e-300,
  tenth: 0.1,
  third: 1 / 3,
  negative: -123456789.98765433,
};

function isConflict(result: SaveResult): result is SaveConflict {
  return typeof result === "object" && result !== null;
}

/**
 * Twenty writers race on one record, each saving once: it tries the version it knows, and on a
 * refusal takes the reported record's version and tries again. Checks that every refusal
 * reports a record (never plain `false`), whose version is above the one the writer expected
 * and which is exactly what the writer of that version saved; and that every writer lands once,
 * one version after another.
 *
 * @returns How many refusals were reported.
 */
export async function raceOfReportedConflicts(
  store: SessionStore,
  key: string,
  writers = 20,
): Promise<number> {
  const first = record({ writer: -1 });
  assert.equal(await store.save(key, first, null), true);
  const written = new Map<number, StoredSession>([[1, first]]);
  const reports: { expected: number; current: StoredSession | null; writer: number }[] = [];
  async function writer(i: number): Promise<void> {
    let expected = 1;
    for (let attempt = 0; attempt < writers; attempt++) {
      const mine = record({ writer: i, attempt, ["\ud83d\ude00"]: "\u0001" }, expected + 1);
      const result = await store.save(key, mine, expected);
      if (result === true) {
        assert.ok(!written.has(mine.version), `version ${mine.version} written twice`);
        written.set(mine.version, mine);
        return;
      }
      assert.ok(isConflict(result), `writer ${i} was refused without the current record`);
      reports.push({ expected, current: result.current, writer: i });
      assert.ok(result.current, `writer ${i} was told the record is gone`);
      expected = result.current.version;
    }
    assert.fail(`writer ${i} never landed`);
  }
  await Promise.all(Array.from({ length: writers }, (_, i) => writer(i)));
  assert.deepEqual(
    [...written.keys()].sort((a, b) => a - b),
    Array.from({ length: writers + 1 }, (_, i) => i + 1),
  );
  for (const { expected, current, writer } of reports) {
    assert.ok(
      current!.version > expected,
      `writer ${writer} expected ${expected}, was told ${current!.version}`,
    );
    assert.deepEqual(current, written.get(current!.version), `the report of version ${current!.version}`);
  }
  const last = await store.load(key);
  assert.deepEqual(last, written.get(writers + 1));
  return reports.length;
}

/**
 * Twenty creates race on one key: one wins; every other is refused with the winner's record
 * (or, where `allowFalse`, plain `false`, for a store that cannot see a row created while its
 * own statement ran).
 *
 * @returns How many refusals reported the winner.
 */
export async function raceOfCreates(store: SessionStore, key: string, allowFalse: boolean): Promise<number> {
  const records = Array.from({ length: 20 }, (_, i) => record({ creator: i }));
  const results = await Promise.all(records.map((mine) => store.save(key, mine, null)));
  const winners = results.flatMap((result, i) => (result === true ? [i] : []));
  assert.equal(winners.length, 1);
  const winner = records[winners[0]!]!;
  let reported = 0;
  for (const result of results) {
    if (result === true) continue;
    if (result === false) {
      assert.ok(allowFalse, "a refused create answered plain false");
      continue;
    }
    assert.deepEqual(result.current, winner);
    reported++;
  }
  assert.deepEqual(await store.load(key), winner);
  return reported;
}

/**
 * Drives `withSession` over `store`: one request starts a session and stores `value` under
 * `"note"`; when it succeeds, a second request with its cookie reads the note back.
 *
 * @returns The first response's status, the errors `onError` saw, and the note read back (as
 *   JSON text, so that a lone surrogate survives the response body).
 */
export async function storeThroughSession(
  store: SessionStore,
  value: unknown,
): Promise<{ status: number; errors: unknown[]; readBack?: string }> {
  const errors: unknown[] = [];
  const handler = withSession(async (req: Request) => {
    const session = await getSession<{ note?: unknown }>(req);
    if (req.method === "POST") session.set("note", value);
    return new Response(JSON.stringify(session.get("note") ?? null));
  }, {
    store,
    secrets: "data error test secret, at least 32 characters",
    onError: (error) => void errors.push(error),
  });
  const stored = await handler(new Request("https://app.example/", { method: "POST" }));
  await stored.body?.cancel();
  const cookie = stored.headers.getSetCookie()[0]?.split(";")[0];
  if (stored.status !== 200 || cookie === undefined) return { status: stored.status, errors };
  const read = await handler(new Request("https://app.example/", { headers: { cookie } }));
  return { status: stored.status, errors, readBack: await read.text() };
}
