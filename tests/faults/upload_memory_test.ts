// A large upload through a wrapped handler is never buffered: not before getSession() (a handler
// that never asks costs nothing), and after it only up to maxReplayBytes. Measured as the memory
// held by ArrayBuffers once a garbage collection ran, while the handler still holds the request.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { getSession, MemoryStore, withSession } from "../../mod.ts";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const MiB = 1024 * 1024;
const SIZE = 96 * MiB;

/** A body of `size` bytes made as it is read, in 1 MiB chunks. */
function upload(size: number): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent >= size) return controller.close();
      controller.enqueue(new Uint8Array(MiB).fill(sent / MiB));
      sent += MiB;
    },
  });
}

/** Reads a body to its end and returns how many bytes it had. */
async function drain(body: ReadableStream<Uint8Array>): Promise<number> {
  let bytes = 0;
  for await (const chunk of body) bytes += chunk.byteLength;
  return bytes;
}

function held(): number {
  gc();
  return process.memoryUsage().arrayBuffers;
}

describe("uploads", () => {
  for (const asks of [false, true]) {
    it(`a ${SIZE / MiB} MiB PUT through a handler that ${asks ? "asks for" : "never asks for"} its session holds no copy of it`, async () => {
      const before = held();
      let peak = 0;
      const handler = withSession(async (req: Request) => {
        if (asks) await getSession(req);
        const bytes = await drain(req.body!);
        peak = held() - before; // the whole body has passed; what is still held?
        return new Response(String(bytes));
      }, { store: new MemoryStore(), secrets: "uploads test secret, at least 32 characters" });
      const response = await handler(
        new Request("https://app.example/upload", {
          method: "PUT",
          body: upload(SIZE),
          duplex: "half",
        } as RequestInit),
      );
      assert.equal(await response.text(), String(SIZE));
      // A copy would hold the whole body (96 MiB) and more; a current Node's streams in flight hold up
      // to half of it on a busy machine.
      assert.ok(peak < SIZE * 0.75, `held ${(peak / MiB).toFixed(1)} MiB after the body passed`);
    });
  }
});
