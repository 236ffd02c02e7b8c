// `session.lock()` "catches the session up to the stored record" (docs/guides/locking.md), and
// changes made while a save is in flight are kept for the next commit, never lost nor applied
// twice (docs/guides/concurrency.md: "as if they had run one after another", "never a silent
// lost update"; `update(key, fn)`: "no lost increments").
//
// Symptom: a request that takes `session.lock()` while its own save is in flight (code after an
// unawaited `save()`, or a streamed body that locks while the end commit waits on the store)
// stores one `update()` twice: a counter incremented once by one request goes from 1 to 3. A store
// whose write lands before its answer arrives (any network store: the acknowledgement travels
// back after the write is durable) is enough.
//
// Suspected cause: src/lock.ts:243 `catchUp()` loads the record, finds a version
// newer than `h.base` (this request's own save, landed but not yet acknowledged, so `adopt()` /
// `saved()` in src/backends/server.ts have not moved `h.base` on) and replays the whole operation
// log `h.ops` on it, including the operations that save already holds (the save's `included`
// ones). The session's maps then hold them twice, and the next commit (no merge needed: its base
// is the current version) writes those maps as they are.
import { it } from "node:test";
import assert from "node:assert/strict";
import { getSession, MemoryStore, withSession } from "../../mod.ts";

const SECRET = "a secret of at least thirty-two characters";

/** A network store's timing: the write lands at once, its acknowledgement arrives 30 ms later. */
class LateAnswerStore extends MemoryStore {
  slow = false;
  landed: (() => void) | undefined;
  override async save(...args: Parameters<MemoryStore["save"]>) {
    const result = await super.save(...args);
    if (this.slow) {
      this.landed?.();
      await new Promise((resolve) => setTimeout(resolve, 30));
    }
    return result;
  }
}

type Data = { n?: number; locked?: boolean };

async function run(
  app: (store: LateAnswerStore, errors: unknown[]) => (r: Request) => Promise<Response>,
): Promise<void> {
  const store = new LateAnswerStore();
  const errors: unknown[] = [];
  const handler = app(store, errors);
  const start = await handler(new Request("https://example.com/start", { method: "POST" }));
  const cookie = start.headers.get("set-cookie")!.split(";")[0]!;
  store.slow = true;
  const response = await handler(
    new Request("https://example.com/go", { method: "POST", headers: { cookie } }),
  );
  const body = await response.text();
  await new Promise((resolve) => setTimeout(resolve, 150)); // late saves of a streamed body
  store.slow = false;
  const read = await handler(new Request("https://example.com/read", { headers: { cookie } }));
  const final = JSON.parse(await read.text()) as Data;
  assert.equal(response.status, 200, `${body} ${errors}`);
  assert.deepEqual(errors, []);
  assert.equal(final.n, 2, `one update() of n (1 -> 2) was stored twice: ${JSON.stringify(final)}`);
  assert.equal(final.locked, true);
}

it("lock() after an unawaited save(): the save's update is not applied twice", async () => {
  await run((store, errors) =>
    withSession(async (req: Request) => {
      const session = await getSession<Data>(req);
      const path = new URL(req.url).pathname;
      if (path === "/read") return new Response(JSON.stringify(session.toJSON()));
      session.update("n", (n = 0) => n + 1);
      if (path === "/start") return new Response("ok");
      const saving = session.save();
      const lock = await session.lock();
      session.set("locked", true);
      await saving;
      await lock.release();
      return new Response("ok");
    }, { store, secrets: [SECRET], onError: (e) => void errors.push(e) })
  );
});

it("lock() in a streamed body while the end commit is in flight: the update is not applied twice", async () => {
  await run((store, errors) =>
    withSession(async (req: Request) => {
      const session = await getSession<Data>(req);
      const path = new URL(req.url).pathname;
      if (path === "/read") return new Response(JSON.stringify(session.toJSON()));
      session.update("n", (n = 0) => n + 1);
      if (path === "/start") return new Response("ok");
      const landed = new Promise<void>((resolve) => (store.landed = resolve));
      const body = new ReadableStream<Uint8Array>({
        async start(controller) {
          await landed; // the end commit's write has landed; its answer is on the way
          store.landed = undefined;
          const lock = await session.lock();
          session.set("locked", true);
          await lock.release();
          controller.enqueue(new TextEncoder().encode("streamed"));
          controller.close();
        },
      });
      return new Response(body);
    }, { store, secrets: [SECRET], onError: (e) => void errors.push(e) })
  );
});
