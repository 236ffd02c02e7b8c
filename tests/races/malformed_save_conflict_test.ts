// A store's `save` answer is checked: "A store that answers anything else breaks the contract;
// the core reports it as a failed save (a `StoreUnavailableError`, logged) rather than take it for
// a refusal" (src/store_rules.ts `checkedSaveResult`); the record in a `SaveConflict` is "the
// record the store holds now" (src/store.ts `SaveConflict.current`; docs/stores/writing-a-store.md),
// and bad input gets "a clear error or a safe fallback (never a crash, never data loss)".
//
// Symptom: a third-party store whose refusal reports a `current` that is not a record (no `data`,
// an array, a version read back as a string, as a Redis hash answers) is taken at its word:
// - `{ current: { version: 3 } }` or `{ current: [] }`: `withSession` rejects with a bare
//   `TypeError: Cannot read properties of undefined (reading '__ended')`, outside `onError`
//   (no 503, the runtime's own 500, nothing logged by the library);
// - `{ current: { ...record, version: "3" } }`: the core merges onto it and hands the store a
//   record whose version is the string "31" ("3" + 1) with expectedVersion "3".
// The same record read through `load()` is refused (`toStoredSession`, invalid "unknown").
//
// Suspected cause: src/store_rules.ts:361-373 `checkedSaveResult` only checks that `current` is an
// object, not a record (`toStoredSession`); src/conflict.ts:409-419 `wonBy` hands it on, and
// src/conflict.ts:291-297 / 399 (`isEnded(current)`, `version: current.version + 1`) use it.
import { it } from "node:test";
import assert from "node:assert/strict";
import { getSession, MemoryStore, type SessionStore, withSession } from "../../mod.ts";

const SECRET = "a secret of at least thirty-two characters";

/**
 * A store that, once armed, lets another process win the next compare-and-set and then reports
 * the winner the way `shape` says.
 */
function misreporting(shape: (current: Record<string, unknown>) => unknown) {
  const memory = new MemoryStore();
  const handed: Array<{ version: unknown; expected: unknown }> = [];
  let armed = false;
  const store: SessionStore = {
    capabilities: memory.capabilities,
    load: (key) => memory.load(key),
    destroy: (key) => memory.destroy(key),
    touch: (key, expiresAt, version) => memory.touch(key, expiresAt, version),
    async save(key, record, expected, index) {
      handed.push({ version: record.version, expected });
      if (!armed) return await memory.save(key, record, expected, index);
      armed = false;
      const now = (await memory.load(key))!;
      await memory.save(
        key,
        { ...now, data: { ...now.data, other: true }, version: now.version + 1 },
        now.version,
      );
      const refused = await memory.save(key, record, expected, index);
      assert.notEqual(refused, true);
      return shape((refused as unknown as { current: Record<string, unknown> }).current) as never;
    },
  };
  return { store, handed, arm: () => void (armed = true) };
}

async function run(shape: (current: Record<string, unknown>) => unknown) {
  const { store, handed, arm } = misreporting(shape);
  const errors: unknown[] = [];
  const app = withSession(async (req: Request) => {
    const session = await getSession<{ n?: number }>(req);
    return new Response(String(session.update("n", (n = 0) => n + 1)));
  }, { store, secrets: SECRET, onError: (error) => void errors.push(error) });
  const first = await app(new Request("https://example.com/", { method: "POST" }));
  const cookie = first.headers.get("set-cookie")!.split(";")[0]!;
  arm();
  let outcome: number | string;
  try {
    outcome =
      (await app(new Request("https://example.com/", { method: "POST", headers: { cookie } }))).status;
  } catch (error) {
    outcome = `withSession rejected: ${error}`;
  }
  return { outcome, errors, handed };
}

it("a SaveConflict whose current has no data is a clear store error, not a crash", async () => {
  const { outcome, errors } = await run((current) => ({ current: { version: current.version } }));
  assert.equal(outcome, 503, String(outcome));
  assert.equal((errors[0] as Error)?.name, "StoreUnavailableError");
});

it("a SaveConflict whose current is an array is a clear store error, not a crash", async () => {
  const { outcome, errors } = await run(() => ({ current: [] }));
  assert.equal(outcome, 503, String(outcome));
  assert.equal((errors[0] as Error)?.name, "StoreUnavailableError");
});

it('a SaveConflict whose version is a string is never merged onto (no version "31")', async () => {
  const { handed } = await run((current) => ({ current: { ...current, version: String(current.version) } }));
  const bad = handed.filter((h) =>
    typeof h.version !== "number" || (h.expected !== null && typeof h.expected !== "number")
  );
  assert.deepEqual(bad, [], `the core handed the store ${JSON.stringify(bad)}`);
});
