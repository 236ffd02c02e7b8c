// Red team: a change made by a streamed body while the handler's commit is in flight is lost.
//
// The docs (concurrency.md, session.md): "Changes made while a streamed body is still being
// produced are saved as they happen", and with-session.ts: "Changes made while the commit ran
// are saved late". A store with any latency (every remote store) leaves a window between the
// handler's return and the end of its compare-and-set; a stream that changes the session in it
// has its change silently dropped: the commit clears the whole operation log after its await
// (src/backends/server.ts `adopt`, `create`: `h.ops = []`), so `hasWork(h)` is false afterwards
// and no late save is scheduled. No error is reported (`onError` is not called).
import { it } from "node:test";
import assert from "node:assert/strict";
import { getSession, MemoryStore, withSession } from "../../mod.ts";

const SECRET = "red team secret of at least thirty-two chars";

/** A MemoryStore with the latency of a network store, telling when a save is in flight. */
class SlowStore extends MemoryStore {
  saving: (() => void) | undefined;
  override async save(...args: Parameters<MemoryStore["save"]>) {
    this.saving?.();
    await new Promise((r) => setTimeout(r, 20));
    return super.save(...args);
  }
}

type Data = { a?: number; b?: number };

function app(store: SlowStore, errors: unknown[]) {
  return withSession(async (req: Request) => {
    const session = await getSession<Data>(req);
    if (new URL(req.url).pathname === "/read") return new Response(JSON.stringify(session.toJSON()));
    session.update("a", (n = 0) => n + 1);
    const inFlight = new Promise<void>((resolve) => (store.saving = resolve));
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        await inFlight; // the commit of "a" is now waiting on the store
        store.saving = undefined;
        session.update("b", (n = 0) => n + 1);
        controller.enqueue(new TextEncoder().encode("streamed"));
        controller.close();
      },
    });
    return new Response(body);
  }, { store, secrets: [SECRET], onError: (e) => { errors.push(e); } });
}

async function settle(): Promise<void> {
  await new Promise((r) => setTimeout(r, 100));
}

it("a change made by a streamed body while a new session's first save is in flight is saved", async () => {
  const store = new SlowStore();
  const errors: unknown[] = [];
  const handler = app(store, errors);
  const first = await handler(new Request("https://example.com/"));
  assert.equal(await first.text(), "streamed");
  const cookie = first.headers.get("set-cookie")!.split(";")[0]!;
  await settle();
  const read = await handler(new Request("https://example.com/read", { headers: { cookie } }));
  assert.deepEqual(errors, []);
  assert.deepEqual(JSON.parse(await read.text()), { a: 1, b: 1 }, "b's update was silently lost");
});

it("a change made by a streamed body while an existing session's save is in flight is saved", async () => {
  const store = new SlowStore();
  const errors: unknown[] = [];
  const handler = app(store, errors);
  const first = await handler(new Request("https://example.com/"));
  await first.text();
  const cookie = first.headers.get("set-cookie")!.split(";")[0]!;
  await settle();
  const second = await handler(new Request("https://example.com/", { headers: { cookie } }));
  assert.equal(await second.text(), "streamed");
  await settle();
  const read = await handler(new Request("https://example.com/read", { headers: { cookie } }));
  assert.deepEqual(errors, []);
  const data = JSON.parse(await read.text()) as Data;
  assert.equal(data.a, 2);
  assert.equal(data.b, data.a, `b's update of the second request was silently lost: ${JSON.stringify(data)}`);
});

it("a change made while an explicit save() is in flight is saved (plain MemoryStore, no stream)", async () => {
  const errors: unknown[] = [];
  const handler = withSession(async (req: Request) => {
    const session = await getSession<{ a?: number; x?: number }>(req);
    if (new URL(req.url).pathname === "/read") return new Response(JSON.stringify(session.toJSON()));
    session.set("a", 1);
    const saving = session.save();
    session.update("x", (n = 0) => n + 1); // made after save() started, before it finished
    await saving;
    return new Response("ok");
  }, { store: new MemoryStore(), secrets: [SECRET], onError: (e) => { errors.push(e); } });
  const first = await handler(new Request("https://example.com/"));
  const cookie = first.headers.get("set-cookie")!.split(";")[0]!;
  assert.equal((await handler(new Request("https://example.com/", { headers: { cookie } }))).status, 200);
  const read = await handler(new Request("https://example.com/read", { headers: { cookie } }));
  assert.deepEqual(errors, []);
  assert.deepEqual(JSON.parse(await read.text()), { a: 1, x: 2 }, "the second request's update of x was lost");
});
