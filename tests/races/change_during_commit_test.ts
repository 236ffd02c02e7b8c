// A change made while a save is in flight (a streamed body while the handler's commit waits on the
// store, code after an unawaited `save()`) is not in that save: it is kept and saved by the next
// commit, late when the response has gone (docs/guides/concurrency.md). Once, the commit cleared
// the whole operation log when its store call returned, and such a change was lost without a word.
import { it } from "node:test";
import assert from "node:assert/strict";
import { getSession, MemoryStore, withSession } from "../../mod.ts";

const SECRET = "a secret of at least thirty-two characters";

/** A MemoryStore with the latency of a network store, telling when a save is in flight. */
class SlowStore extends MemoryStore {
  saving: (() => void) | undefined;
  /** Every key a record was first created under, in order. */
  created: string[] = [];
  override async save(...args: Parameters<MemoryStore["save"]>) {
    if (args[2] === null) this.created.push(args[0]);
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
  }, {
    store,
    secrets: [SECRET],
    onError: (e) => {
      errors.push(e);
    },
  });
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
  }, {
    store: new MemoryStore(),
    secrets: [SECRET],
    onError: (e) => {
      errors.push(e);
    },
  });
  const first = await handler(new Request("https://example.com/"));
  const cookie = first.headers.get("set-cookie")!.split(";")[0]!;
  assert.equal((await handler(new Request("https://example.com/", { headers: { cookie } }))).status, 200);
  const read = await handler(new Request("https://example.com/read", { headers: { cookie } }));
  assert.deepEqual(errors, []);
  assert.deepEqual(
    JSON.parse(await read.text()),
    { a: 1, x: 2 },
    "the second request's update of x was lost",
  );
});

for (const [end, expected] of [["destroy", "no live session"], ["regenerate", "a new id"]] as const) {
  it(`${end}() by a streamed body while a new session's first save is in flight ends that record: ${expected}`, async () => {
    const store = new SlowStore();
    const errors: unknown[] = [];
    const handler = withSession(async (req: Request) => {
      const session = await getSession<Data>(req);
      if (new URL(req.url).pathname === "/read") return new Response(JSON.stringify(session.toJSON()));
      session.set("a", 1);
      const inFlight = new Promise<void>((resolve) => (store.saving = resolve));
      const body = new ReadableStream<Uint8Array>({
        async start(controller) {
          await inFlight; // the first record is being written
          store.saving = undefined;
          session[end]();
          controller.enqueue(new TextEncoder().encode("streamed"));
          controller.close();
        },
      });
      return new Response(body);
    }, { store, secrets: [SECRET], onError: (e) => void errors.push(e) });
    const response = await handler(new Request("https://example.com/"));
    assert.equal(await response.text(), "streamed");
    await settle();
    assert.deepEqual(errors, []);
    // The record written before the end is ended (a tombstone), whatever the response says.
    const first = await store.load(store.created[0]!);
    assert.equal(first?.data.__ended, true, `the first record is ended: ${JSON.stringify(first?.data)}`);
    const last = response.headers.getSetCookie().at(-1)!;
    if (end === "destroy") {
      assert.match(last, /Max-Age=0|Expires=Thu, 01 Jan 1970/, `the cookie is cleared: ${last}`);
      assert.equal(store.created.length, 1, "nothing else was created");
    } else {
      const read = await handler(
        new Request("https://example.com/read", { headers: { cookie: last.split(";")[0]! } }),
      );
      assert.deepEqual(JSON.parse(await read.text()), { a: 1 }, "the new id carries the data");
      assert.equal(store.created.length, 2, "the new id's record");
    }
  });
}
