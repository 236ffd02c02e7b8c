// Rule: concurrent requests of one session end as if they ran one after another; a 409 only where
// nothing can serialize them. README ("Within one process ... requests of one session take turns
// ... a request that arrives while another of its session is in flight waits before loading and
// is handed the turn when the other's commit is done, so none is refused"), docs/guides/locking.md,
// docs/guides/options.md (`locking: "implicit"`, waits at most 10 s).
//
// Symptom: two POSTs of one session in one process, the first still running (well within the
// 10 s wait). The machine's clock steps forward 20 s meanwhile (NTP correcting a clock that ran
// slow). The second request does not wait: it takes the turn the first still holds, both run at
// once, and the first is refused with 409 (its `get`/`set` read a value the second changed, and a
// POST cannot run again). Without the clock step the second waits and both answer 200.
//
// Suspected cause: src/turns.ts:107 and :114 decide that a held turn was "held past any wait"
// by the wall clock (`now - state.since > waitMs`, `since` from `Date.now()`), which steps; the
// wait itself is a `setTimeout` (monotonic), so only the steal is affected.
import { it } from "node:test";
import assert from "node:assert/strict";
import { getSession, MemoryStore, withSession } from "../../mod.ts";

const SECRET = "a secret of at least thirty-two characters";

it("a clock stepped forward does not let a second request take the turn the first still holds", async () => {
  const realNow = Date.now;
  let release = (): void => {};
  const gate = new Promise<void>((resolve) => (release = resolve));
  const handler = withSession(async (req: Request) => {
    const session = await getSession<{ n?: number }>(req);
    const n = session.get("n") ?? 0; // looked at: a concurrent change cannot be merged into a POST
    if (req.headers.has("x-slow")) await gate;
    session.set("n", n + 1);
    return new Response(String(n + 1));
  }, { store: new MemoryStore(), secrets: SECRET, onError: () => new Response("refused", { status: 409 }) });

  const first = await handler(new Request("https://example.com/", { method: "POST" }));
  const cookie = first.headers.get("set-cookie")!.split(";")[0]!;
  const post = (headers: Record<string, string>) =>
    handler(new Request("https://example.com/", { method: "POST", headers: { cookie, ...headers } }));

  const slow = post({ "x-slow": "1" });
  await new Promise((resolve) => setTimeout(resolve, 50)); // the slow one holds the turn
  Date.now = () => realNow() + 20_000; // the clock steps forward 20 s
  let statuses: number[];
  try {
    const quick = post({});
    await new Promise((resolve) => setTimeout(resolve, 50));
    release();
    statuses = [(await slow).status, (await quick).status];
  } finally {
    Date.now = realNow;
  }
  const last = await handler(new Request("https://example.com/", { method: "POST", headers: { cookie } }));
  assert.deepEqual(
    { statuses, n: await last.text() },
    { statuses: [200, 200], n: "4" },
    "a request that the turns would have serialized was refused",
  );
});
