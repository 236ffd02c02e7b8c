/**
 * OpenTelemetry for websession: {@linkcode otelEvents} returns an `onEvent` hook that turns the
 * core's instrumentation events into spans and metrics through `@opentelemetry/api` alone. The
 * application's OpenTelemetry SDK (or its runtime's built-in one, as in Deno) samples, batches
 * and exports them; with no SDK registered every call is a no-op. `@opentelemetry/api` is an
 * optional peer dependency: only applications that import this module need it.
 *
 * Events arrive when an operation has finished, with its duration, so each span is created then
 * with explicit start and end times (`performance.now()` at the event, less the duration). Its
 * parent is the span active at that moment (`context.active()`): the request's server span when
 * an HTTP instrumentation made one and the runtime carries context across `await` (an
 * `AsyncLocalStorage` context manager). A store span and the session span it is part of are
 * therefore siblings under the request's span, not parent and child.
 *
 * Names follow OpenTelemetry's semantic conventions where they exist (database client spans and
 * metrics, `error.type`); the rest is under the `websession.` prefix.
 *
 * **Spans**
 *
 * | Span name | Kind | From event | Attributes |
 * | --- | --- | --- | --- |
 * | `{db.operation.name}`, or `{db.operation.name} {db.collection.name}` when `collection` is given (`load`, `save websession_sessions`) | `CLIENT` | `store` | `db.operation.name`, `db.system.name` (when `dbSystem` is given), `db.collection.name` (when `collection` is given), the `attributes` option, `error.type` (on failure; the span's status is then `ERROR` with the error's message) |
 * | `websession.load` | `INTERNAL` | `load` | `websession.operation.name` = `load`, `websession.session.found` |
 * | `websession.save` | `INTERNAL` | `save` | `websession.operation.name` = `save`, `websession.session.created`, `websession.session.version`, `websession.save.attempts` |
 * | `websession.touch`, `websession.destroy`, `websession.regenerate` | `INTERNAL` | `touch`, `destroy`, `regenerate` | `websession.operation.name` |
 *
 * `db.operation.name` is the store method called, one span per call whatever made it (a
 * request, `listUserSessions`, `endUserSessions`, `session.lock()`): `load`, `save` (a
 * tombstone that ends a session too), `destroy`, `touch`, `lock` and `unlock` (the lock of
 * `session.lock()`), `keysOfUser` (the index read of sessions per user), `time` (the store's
 * clock, read only for the grace of an ended session), `cleanup`, `count` (server stores); `open`, `seal`, `revoke` (`CookieStore`). `error.type` is the error's `name` (`SessionDataError`,
 * `ReplyError`), or its string `code` when the name is the generic `Error` (`ECONNREFUSED`),
 * or `_OTHER` for a thrown value that is not an object.
 *
 * **Span events** on the active span, when it is recording:
 *
 * | Event name | From event | Attributes |
 * | --- | --- | --- |
 * | `websession.conflict` | `conflict` | `websession.conflict.policy`, `websession.conflict.outcome`, `websession.conflict.attempt` |
 * | `websession.cookie.invalid` | `invalid-cookie` | `websession.cookie.invalid_reason` |
 * | `websession.session.end` | `end` | `websession.session.end_reason` (the user's id is not recorded: use `onEvent` for an audit log) |
 *
 * **Metrics** (durations in seconds, bucket boundaries advised as the database conventions do:
 * 1 ms, 5 ms, 10 ms, 50 ms, 100 ms, 0.5 s, 1 s, 5 s, 10 s)
 *
 * | Metric | Instrument, unit | Attributes |
 * | --- | --- | --- |
 * | `db.client.operation.duration` | histogram, `s` | as the store span: `db.operation.name`, `db.system.name`, `db.collection.name`, the `attributes` option, `error.type` |
 * | `websession.operation.duration` | histogram, `s` | `websession.operation.name` (`load`, `save`, `touch`, `destroy`, `regenerate`); `websession.session.found` (load); `websession.session.created` (save) |
 * | `websession.session.conflicts` | counter, `{conflict}` | `websession.conflict.policy` (`merge`, `retry`, `reject`, `overwrite`), `websession.conflict.outcome` (`merged`, `rerun`, `refused`) |
 * | `websession.session.ended` | counter, `{session}` | `websession.session.end_reason` (`logout`, `user`, `admin`, `limit`) |
 * | `websession.session.expired` | counter, `{session}` | `websession.session.expiry_source` (`load`, `cleanup`) |
 * | `websession.cookie.invalid` | counter, `{cookie}` | `websession.cookie.invalid_reason` (`malformed`, `oversized`, `signature`, `unknown`, `ended`, `superseded`, `data`: `InvalidCookieReason`) |
 *
 * `websession.operation.duration` counts only operations that succeeded (a failed one shows as a
 * store call with `error.type`). A conflict counted `merged` or `rerun` ended in a save or a
 * re-run; `refused` answered `409` (or was retried on a later attempt, which counts again).
 *
 * @example
 * ```ts
 * import { context, SpanKind } from "@opentelemetry/api";
 * import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
 * import { getSession, MemoryStore, withSession } from "websession";
 * import { otelEvents } from "websession/otel";
 * import assert from "node:assert/strict";
 *
 * const exporter = new InMemorySpanExporter();
 * const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
 * const handler = withSession(async (req: Request) => {
 *   (await getSession<{ n?: number }>(req)).update("n", (n = 0) => n + 1);
 *   return new Response("ok");
 * }, {
 *   store: new MemoryStore(),
 *   secrets: ["a secret of at least thirty-two characters"],
 *   onEvent: otelEvents({ tracer: provider.getTracer("websession"), dbSystem: "memory" }),
 * });
 * await handler(new Request("https://example.com/"));
 * const spans = exporter.getFinishedSpans();
 * assert.deepEqual(spans.map((span) => span.name), ["websession.load", "save", "websession.save"]);
 * assert.equal(spans[1]!.kind, SpanKind.CLIENT);
 * assert.equal(spans[1]!.attributes["db.system.name"], "memory");
 * assert.equal(spans[2]!.attributes["websession.session.created"], true);
 * ```
 *
 * @module
 */
import {
  type Attributes,
  context,
  type Counter,
  type Histogram,
  type Meter,
  metrics,
  SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
} from "@opentelemetry/api";
import type { EventHook, SessionEvent } from "./events.ts";

/** The instrumentation scope of the default tracer and meter. */
const SCOPE = "websession";

/** The database conventions' advised buckets for `db.client.operation.duration`, in seconds. */
const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10];

/**
 * Options of {@linkcode otelEvents}.
 *
 * @example
 * ```ts
 * import { otelEvents, type OtelEventsOptions } from "websession/otel";
 * import assert from "node:assert/strict";
 *
 * const options: OtelEventsOptions = {
 *   dbSystem: "redis",
 *   collection: "websession:",
 *   attributes: { "server.address": "127.0.0.1", "server.port": 6379 },
 * };
 * assert.equal(typeof otelEvents(options), "function");
 * ```
 */
export interface OtelEventsOptions {
  /**
   * The tracer spans are made with.
   * @default trace.getTracer("websession"), looked up at the first event
   */
  tracer?: Tracer;
  /**
   * The meter the instruments are made with. The global meter provider has no stand-in for a
   * provider registered later, so register the SDK before the first request.
   * @default metrics.getMeter("websession"), looked up at the first event
   */
  meter?: Meter;
  /**
   * `db.system.name` of store calls: the conventions' name of the store's backend where it has
   * one (`redis`, `postgresql`, `memcached`), else a lowercase name of your own (`deno_kv`,
   * `cloudflare_kv`, `file`, `memory`).
   * @default undefined (the attribute is left out: the hook cannot see which store it is)
   */
  dbSystem?: string;
  /**
   * `db.collection.name` of store calls (the PostgreSQL table, the Redis key prefix), also the
   * `{target}` of their span names.
   * @default undefined (left out)
   */
  collection?: string;
  /**
   * More attributes for store spans and `db.client.operation.duration`: `server.address`,
   * `server.port`, `db.namespace`. Keep them low-cardinality (they label metric data points).
   * @default {}
   */
  attributes?: Attributes;
}

interface Instruments {
  tracer: Tracer;
  storeDuration: Histogram;
  operationDuration: Histogram;
  conflicts: Counter;
  invalidCookies: Counter;
  ended: Counter;
  expired: Counter;
}

/**
 * Makes an `onEvent` hook that records websession's events as OpenTelemetry spans and metrics
 * (names and attributes in the module documentation). Pass it as the `onEvent` option of
 * `withSession`, `openSession` or an adapter's middleware. To keep your own hook as well, call
 * both: `onEvent: (event) => { otel(event); mine(event); }`.
 *
 * The hook never throws into a request: the core ignores an instrumentation failure.
 *
 * @param options Tracer, meter and the store's identity; see {@linkcode OtelEventsOptions}.
 * @returns The hook.
 * @throws {TypeError} When `dbSystem` or `collection` is given and is not a non-empty string,
 *   or `attributes` is not an object.
 *
 * @example
 * ```ts
 * import { getSession, MemoryStore, withSession } from "websession";
 * import { otelEvents } from "websession/otel";
 * import assert from "node:assert/strict";
 *
 * // With no OpenTelemetry SDK registered, the global tracer and meter do nothing.
 * const handler = withSession(async (req: Request) => {
 *   (await getSession(req)).set("user", "ada");
 *   return new Response("ok");
 * }, {
 *   store: new MemoryStore(),
 *   secrets: ["a secret of at least thirty-two characters"],
 *   onEvent: otelEvents({ dbSystem: "memory" }),
 * });
 * assert.equal((await handler(new Request("https://example.com/"))).status, 200);
 * ```
 */
export function otelEvents(options: OtelEventsOptions = {}): EventHook {
  const storeAttributes = storeAttributesOf(options);
  const target = options.collection === undefined ? "" : ` ${options.collection}`;
  let instruments: Instruments | undefined;

  return function recordSessionEvent(event: SessionEvent): void {
    const i = instruments ??= createInstruments(options.tracer, options.meter);
    switch (event.type) {
      case "store":
        return recordStoreCall(i, event, storeAttributes, target);
      case "load": {
        const found = { "websession.operation.name": "load", "websession.session.found": event.found };
        i.operationDuration.record(event.durationMs / 1000, found);
        internalSpan(i.tracer, "websession.load", event.durationMs, found);
        return;
      }
      case "save": {
        const created = { "websession.operation.name": "save", "websession.session.created": event.created };
        i.operationDuration.record(event.durationMs / 1000, created);
        internalSpan(i.tracer, "websession.save", event.durationMs, {
          ...created,
          "websession.session.version": event.version,
          "websession.save.attempts": event.attempts,
        });
        return;
      }
      case "touch":
      case "destroy":
      case "regenerate": {
        const attributes = { "websession.operation.name": event.type };
        i.operationDuration.record(event.durationMs / 1000, attributes);
        internalSpan(i.tracer, `websession.${event.type}`, event.durationMs, attributes);
        return;
      }
      default:
        return recordCount(i, event);
    }
  };
}

/** The options checked, and the attributes every store call carries. */
function storeAttributesOf(options: OtelEventsOptions): Attributes {
  for (const name of ["dbSystem", "collection"] as const) {
    const value = options[name];
    if (value !== undefined && (typeof value !== "string" || value === "")) {
      throw new TypeError(`otelEvents option "${name}" must be a non-empty string: got ${describe(value)}`);
    }
  }
  if (
    options.attributes !== undefined &&
    (typeof options.attributes !== "object" || options.attributes === null)
  ) {
    throw new TypeError(
      `otelEvents option "attributes" must be an object: got ${describe(options.attributes)}`,
    );
  }
  const attributes: Attributes = { ...options.attributes };
  if (options.dbSystem !== undefined) attributes["db.system.name"] = options.dbSystem;
  if (options.collection !== undefined) attributes["db.collection.name"] = options.collection;
  return attributes;
}

/** A store call: `db.client.operation.duration` and a client span ending now. */
function recordStoreCall(
  i: Instruments,
  event: Extract<SessionEvent, { type: "store" }>,
  storeAttributes: Attributes,
  target: string,
): void {
  const attributes: Attributes = { ...storeAttributes, "db.operation.name": event.operation };
  const failed = "error" in event;
  if (failed) attributes["error.type"] = errorType(event.error);
  i.storeDuration.record(event.durationMs / 1000, attributes);
  const end = performance.now();
  const span = i.tracer.startSpan(
    event.operation + target,
    { kind: SpanKind.CLIENT, startTime: end - event.durationMs, attributes },
    context.active(),
  );
  if (failed) span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(event.error) });
  span.end(end);
}

/** The counted events (conflicts, invalid cookies, ends, expiries), with an event on the active span. */
function recordCount(
  i: Instruments,
  event: Extract<SessionEvent, { type: "conflict" | "invalid-cookie" | "end" | "expire" }>,
): void {
  switch (event.type) {
    case "conflict": {
      const attributes = {
        "websession.conflict.policy": event.policy,
        "websession.conflict.outcome": event.outcome,
      };
      i.conflicts.add(1, attributes);
      activeSpanEvent("websession.conflict", { ...attributes, "websession.conflict.attempt": event.attempt });
      return;
    }
    case "invalid-cookie": {
      const attributes = { "websession.cookie.invalid_reason": event.reason };
      i.invalidCookies.add(1, attributes);
      activeSpanEvent("websession.cookie.invalid", attributes);
      return;
    }
    case "end": {
      const attributes = { "websession.session.end_reason": event.reason };
      i.ended.add(1, attributes);
      activeSpanEvent("websession.session.end", attributes);
      return;
    }
    case "expire":
      i.expired.add(event.count, { "websession.session.expiry_source": event.source });
      return;
  }
}

function createInstruments(tracer: Tracer | undefined, meter: Meter | undefined): Instruments {
  const m = meter ?? metrics.getMeter(SCOPE);
  const advice = { explicitBucketBoundaries: DURATION_BUCKETS };
  return {
    tracer: tracer ?? trace.getTracer(SCOPE),
    storeDuration: m.createHistogram("db.client.operation.duration", {
      description: "Duration of session store calls.",
      unit: "s",
      advice,
    }),
    operationDuration: m.createHistogram("websession.operation.duration", {
      description: "Duration of session loads, saves, touches, destroys and regenerations.",
      unit: "s",
      advice,
    }),
    conflicts: m.createCounter("websession.session.conflicts", {
      description: "Compare-and-set conflicts with another request's write, by policy and outcome.",
      unit: "{conflict}",
    }),
    ended: m.createCounter("websession.session.ended", {
      description: "Signed-in sessions ended, by reason.",
      unit: "{session}",
    }),
    expired: m.createCounter("websession.session.expired", {
      description: "Expired sessions found on a load or removed by cleanup.",
      unit: "{session}",
    }),
    invalidCookies: m.createCounter("websession.cookie.invalid", {
      description: "Presented session cookies that were not used, by reason.",
      unit: "{cookie}",
    }),
  };
}

function internalSpan(tracer: Tracer, name: string, durationMs: number, attributes: Attributes): void {
  const end = performance.now();
  tracer
    .startSpan(name, { kind: SpanKind.INTERNAL, startTime: end - durationMs, attributes }, context.active())
    .end(end);
}

function activeSpanEvent(name: string, attributes: Attributes): void {
  const span = trace.getSpan(context.active());
  if (span !== undefined && span.isRecording()) span.addEvent(name, attributes);
}

/** `error.type`: the error's name, its code when the name says nothing, or `_OTHER`. */
function errorType(error: unknown): string {
  if (typeof error !== "object" || error === null) return "_OTHER";
  const { name, code } = error as { name?: unknown; code?: unknown };
  if (typeof name === "string" && name !== "" && name !== "Error") return name;
  if (typeof code === "string" && code !== "") return code;
  return typeof name === "string" && name !== "" ? name : "_OTHER";
}

function errorMessage(error: unknown): string {
  if (typeof error === "object" && error !== null && typeof (error as Error).message === "string") {
    return (error as Error).message;
  }
  return String(error);
}

function describe(value: unknown): string {
  return typeof value === "string" ? `"${value}"` : String(value);
}
