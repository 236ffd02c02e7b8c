/**
 * Running a handler again on a request whose body it may have read, without buffering bodies.
 *
 * A body is never copied before the handler asks for its session: until `getSession()`, the body
 * streams through untouched (an upload through a handler that never asks costs nothing). From
 * then on, at most `maxReplayBytes` of it are recorded as the handler reads them. The request can
 * be run again when its body was never read (the unread stream is handed on) or was read whole
 * after `getSession()` within the bound (the recorded bytes are replayed); otherwise it cannot,
 * and a conflict that would need it is refused.
 *
 * @module
 */

/** What became of a request body while its handler ran. */
export interface BodyRecord {
  /**
   * `idle`: nothing read, session not asked for yet; `recording`; `done`: read whole and
   * recorded; `missed`: read before the session was asked for; `over`: larger than the bound.
   */
  state: "idle" | "recording" | "done" | "missed" | "over";
  chunks: Uint8Array[];
  bytes: number;
  limit: number;
}

/**
 * A request like `original` whose body is watched by a {@linkcode BodyRecord}. A request without
 * a body is rebuilt as it is.
 */
export function watched(original: Request, body: ReadableStream<Uint8Array> | null, limit: number): {
  request: Request;
  record: BodyRecord;
} {
  const record: BodyRecord = { state: "idle", chunks: [], bytes: 0, limit };
  if (body === null) return { request: rebuild(original, null), record: { ...record, state: "done" } };
  const watching = body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        if (record.state === "idle") record.state = "missed";
        else if (record.state === "recording") {
          record.bytes += chunk.byteLength;
          if (record.bytes > record.limit) {
            record.state = "over";
            record.chunks = [];
          } else {
            record.chunks.push(chunk.slice());
          }
        }
        controller.enqueue(chunk);
      },
      flush() {
        if (record.state === "recording") record.state = "done";
      },
    }),
  );
  return { request: rebuild(original, watching), record };
}

/** The session was asked for: record what the handler reads from now on. */
export function startRecording(record: BodyRecord | undefined): void {
  if (record !== undefined && record.state === "idle") record.state = "recording";
}

/** Whether the request that ran with `record` can run again. */
export function replayable(request: Request, record: BodyRecord): boolean {
  return !request.bodyUsed || record.state === "done";
}

/**
 * The request to run again, watched anew: the unread body handed on, or the recorded bytes.
 * Call only when {@linkcode replayable}.
 */
export function again(
  original: Request,
  previous: Request,
  record: BodyRecord,
): { request: Request; record: BodyRecord } {
  if (!previous.bodyUsed) return watched(original, previous.body, record.limit);
  const bytes = new Uint8Array(record.bytes);
  let at = 0;
  for (const chunk of record.chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  // Replayed from memory: it stays replayable as it is.
  return { request: rebuild(original, bytes), record };
}

/**
 * A copy of `original`'s method, URL, headers, abort signal (and Workers' `cf`) with another body. Built from parts, not with
 * `clone()` or `new Request(original)`: servers such as srvx hand over Request subclasses the
 * constructor cannot copy, and `clone()` makes Deno warn about the request's abort signal.
 */
function rebuild(original: Request, body: BodyInit | null): Request {
  // On Workers the request's `cf` (location, TLS details) goes with it.
  const init: RequestInit & { duplex?: "half"; cf?: unknown } = {
    method: original.method,
    headers: original.headers,
  };
  const cf = (original as { cf?: unknown }).cf;
  if (cf !== undefined) init.cf = cf;
  if (body !== null) {
    init.body = body;
    init.duplex = "half";
  }
  const request = new Request(original.url, init);
  // So does the client's abort signal (a long poll stops when the client leaves, and gives up its
  // turn), read from the original only when the handler reads it: Deno.serve warns at the
  // application's users when a request's signal is read at all.
  Object.defineProperty(request, "signal", { get: () => original.signal, configurable: true });
  return request;
}
