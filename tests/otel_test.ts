// websession/otel against the real OpenTelemetry SDK: a scripted mix of requests through
// withSession, each inside its own active request span, and the exact spans (in-memory span
// exporter) and metric data points (a metric reader collected on demand) it leaves.
//
// Context crosses `await` through an AsyncLocalStorage context manager written here (the SDK's
// own lives in a Node-only package); node:async_hooks keeps this file off workerd without
// nodejs_compat, and it runs on Node, Deno and Bun.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { AsyncLocalStorage } from "node:async_hooks";
import {
  type Attributes,
  type Context,
  context,
  type ContextManager,
  metrics,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { DataPointType, MeterProvider, MetricReader, type ResourceMetrics } from "@opentelemetry/sdk-metrics";
import {
  ATTR_DB_COLLECTION_NAME,
  ATTR_DB_OPERATION_NAME,
  ATTR_DB_SYSTEM_NAME,
  ATTR_ERROR_TYPE,
  ATTR_SERVER_ADDRESS,
  METRIC_DB_CLIENT_OPERATION_DURATION,
} from "@opentelemetry/semantic-conventions";
import {
  getSession,
  MemoryStore,
  type SessionOptions,
  type SessionStore,
  type StoredSession,
  withSession,
} from "../mod.ts";
import { CookieStore } from "../src/stores/cookie.ts";
import type { SaveResult } from "../src/store.ts";
import { otelEvents } from "../src/otel.ts";
import { endUserSessions, listUserSessions } from "../src/users.ts";
import { userSessions } from "../src/users/options.ts";

const SECRET = "otel test secret of at least 32 characters";
const NOW = 1_800_000_000_000;

/** The SDK's AsyncLocalStorage context manager, in a few lines. */
class AsyncContextManager implements ContextManager {
  #storage = new AsyncLocalStorage<Context>();
  active(): Context {
    return this.#storage.getStore() ?? ROOT_CONTEXT;
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    ctx: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return this.#storage.run(ctx, () => fn.apply(thisArg, args));
  }
  bind<T>(ctx: Context, target: T): T {
    if (typeof target !== "function") return target;
    const fn = target as (...args: unknown[]) => unknown;
    const run = (self: unknown, args: unknown[]) => this.with(ctx, () => fn.apply(self, args));
    return function bound(this: unknown, ...args: unknown[]) {
      return run(this, args);
    } as T;
  }
  enable(): this {
    return this;
  }
  disable(): this {
    this.#storage.disable();
    return this;
  }
}

/** A reader that exports nothing by itself: the test collects when it wants. */
class CollectingReader extends MetricReader {
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** A MemoryStore whose calls fail while `outage` is set, as a lost connection would. */
class FlakyStore implements SessionStore {
  readonly inner = new MemoryStore({ now: () => NOW });
  readonly capabilities = this.inner.capabilities;
  outage = false;

  load(key: string): Promise<StoredSession | null> {
    if (this.outage) return Promise.reject(new ConnectionClosedError("Connection is closed"));
    return this.inner.load(key);
  }
  save(key: string, record: StoredSession, expectedVersion: number | null): Promise<SaveResult> {
    if (this.outage) {
      const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:6379"), {
        code: "ECONNREFUSED",
      });
      return Promise.reject(refused);
    }
    return this.inner.save(key, record, expectedVersion);
  }
  destroy(key: string): Promise<void> {
    return this.inner.destroy(key);
  }
  touch(key: string, expiresAt: number, version: number): Promise<boolean> {
    return this.inner.touch(key, expiresAt, version);
  }
}

class ConnectionClosedError extends Error {
  override name = "ConnectionClosedError";
}

/** A promise with its resolver. */
function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** `name=value` of the session cookie a response sets. */
function cookieOf(response: Response): string {
  const line = response.headers.getSetCookie().find((c) => c.startsWith("session="));
  assert.ok(line, "a session cookie is set");
  return line.split(";")[0]!;
}

const silent = { warn() {}, error() {} };

describe("websession/otel", () => {
  const manager = new AsyncContextManager();
  before(() => {
    assert.ok(context.setGlobalContextManager(manager), "no other context manager is registered");
  });
  after(() => {
    context.disable();
  });

  it("records a scripted request mix as exact spans and metric data points", async () => {
    const exporter = new InMemorySpanExporter();
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const reader = new CollectingReader();
    const meterProvider = new MeterProvider({ readers: [reader] });
    const store = new FlakyStore();
    const gates = new Map<string, { entered: () => void; release: Promise<void> }>();

    const otel = otelEvents({
      tracer: tracerProvider.getTracer("websession"),
      meter: meterProvider.getMeter("websession"),
      dbSystem: "memory",
      collection: "sessions",
      attributes: { [ATTR_SERVER_ADDRESS]: "localhost" },
    });
    const durations: number[] = []; // of the events that make spans, in order
    const options: SessionOptions = {
      store,
      secrets: [SECRET],
      now: () => NOW,
      logger: silent,
      locking: "explicit", // two requests are held at a gate together: they must not take turns
      onEvent: (event) => {
        otel(event);
        if ("durationMs" in event) durations.push(event.durationMs);
      },
    };
    const handler = withSession(async (req: Request) => {
      const session = await getSession<{ n?: number; user?: string }>(req);
      const path = new URL(req.url).pathname;
      if (path === "/visit") session.set("n", 0);
      if (path === "/read") session.get("n");
      if (path === "/inc") {
        // Get, then set after a gate: two of these on one session race.
        const n = session.get("n")!;
        const gate = gates.get(req.headers.get("x-race")!)!;
        gate.entered();
        await gate.release;
        session.set("n", n + 1);
      }
      if (path === "/login") {
        session.set("user", "ada");
        session.regenerate();
      }
      if (path === "/logout") session.destroy();
      return new Response("ok");
    }, options);

    // Every request runs inside its own span, as under an HTTP server instrumentation.
    const requestTracer = tracerProvider.getTracer("test");
    const requestSpans = new Map<string, string>(); // span id -> label
    function send(label: string, method: string, path: string, headers: HeadersInit = {}): Promise<Response> {
      return requestTracer.startActiveSpan(label, { kind: SpanKind.SERVER }, async (span) => {
        requestSpans.set(span.spanContext().spanId, label);
        try {
          return await handler(new Request(`https://example.com${path}`, { method, headers }));
        } finally {
          span.end();
        }
      });
    }

    // 1. A new session.
    const visit = await send("new", "POST", "/visit");
    assert.equal(visit.status, 200);
    const first = cookieOf(visit);
    // 2. Read-only: no write.
    assert.equal((await send("read", "GET", "/read", { cookie: first })).status, 200);
    // 3. A get-then-set race of two POSTs: the first lands, the second is refused (409).
    const entered = { a: signal(), b: signal() };
    const release = { a: signal(), b: signal() };
    gates.set("a", { entered: entered.a.resolve, release: release.a.promise });
    gates.set("b", { entered: entered.b.resolve, release: release.b.promise });
    const raceA = send("race a", "POST", "/inc", { cookie: first, "x-race": "a" });
    await entered.a.promise;
    const raceB = send("race b", "POST", "/inc", { cookie: first, "x-race": "b" });
    await entered.b.promise;
    release.a.resolve();
    assert.equal((await raceA).status, 200);
    release.b.resolve();
    assert.equal((await raceB).status, 409);
    // 4. Log in: the session is regenerated under a new id.
    const login = await send("login", "POST", "/login", { cookie: first });
    assert.equal(login.status, 200);
    const second = cookieOf(login);
    assert.notEqual(second, first);
    // 5. The old cookie names an ended session; 6. a forged cookie does not verify.
    assert.equal((await send("ended cookie", "GET", "/read", { cookie: first })).status, 200);
    const value = second.slice("session=".length);
    const forged = `session=${value[0] === "A" ? "B" : "A"}${value.slice(1)}`;
    assert.equal((await send("forged cookie", "GET", "/read", { cookie: forged })).status, 200);
    // 7. Log out.
    assert.equal((await send("logout", "POST", "/logout", { cookie: second })).status, 200);
    // 8. The store goes away: a read, then a new session's write, fail (503).
    store.outage = true;
    assert.equal((await send("outage read", "GET", "/read", { cookie: second })).status, 503);
    assert.equal((await send("outage write", "POST", "/visit")).status, 503);

    // The spans websession made, in the order they ended, each under its request's span.
    const store_ = (operation: string, extra: Attributes = {}) => ({
      [ATTR_DB_SYSTEM_NAME]: "memory",
      [ATTR_DB_COLLECTION_NAME]: "sessions",
      [ATTR_SERVER_ADDRESS]: "localhost",
      [ATTR_DB_OPERATION_NAME]: operation,
      ...extra,
    });
    const ok = { code: SpanStatusCode.UNSET };
    const client = SpanKind.CLIENT;
    const internal = SpanKind.INTERNAL;
    const expected = [
      ["new", "websession.load", internal, {
        "websession.operation.name": "load",
        "websession.session.found": false,
      }, ok],
      ["new", "save sessions", client, store_("save"), ok],
      ["new", "websession.save", internal, {
        "websession.operation.name": "save",
        "websession.session.created": true,
        "websession.session.version": 1,
        "websession.save.attempts": 1,
      }, ok],
      ["read", "load sessions", client, store_("load"), ok],
      ["read", "websession.load", internal, {
        "websession.operation.name": "load",
        "websession.session.found": true,
      }, ok],
      ["race a", "load sessions", client, store_("load"), ok],
      ["race a", "websession.load", internal, {
        "websession.operation.name": "load",
        "websession.session.found": true,
      }, ok],
      ["race b", "load sessions", client, store_("load"), ok],
      ["race b", "websession.load", internal, {
        "websession.operation.name": "load",
        "websession.session.found": true,
      }, ok],
      ["race a", "save sessions", client, store_("save"), ok],
      ["race a", "websession.save", internal, {
        "websession.operation.name": "save",
        "websession.session.created": false,
        "websession.session.version": 2,
        "websession.save.attempts": 1,
      }, ok],
      // The losing compare-and-set is a store call that succeeded: its answer was "refused".
      ["race b", "save sessions", client, store_("save"), ok],
      ["login", "load sessions", client, store_("load"), ok],
      ["login", "websession.load", internal, {
        "websession.operation.name": "load",
        "websession.session.found": true,
      }, ok],
      ["login", "save sessions", client, store_("save"), ok],
      ["login", "websession.regenerate", internal, { "websession.operation.name": "regenerate" }, ok],
      ["login", "save sessions", client, store_("save"), ok],
      ["login", "websession.save", internal, {
        "websession.operation.name": "save",
        "websession.session.created": true,
        "websession.session.version": 1,
        "websession.save.attempts": 1,
      }, ok],
      ["ended cookie", "load sessions", client, store_("load"), ok],
      ["ended cookie", "websession.load", internal, {
        "websession.operation.name": "load",
        "websession.session.found": false,
      }, ok],
      ["forged cookie", "websession.load", internal, {
        "websession.operation.name": "load",
        "websession.session.found": false,
      }, ok],
      ["logout", "load sessions", client, store_("load"), ok],
      ["logout", "websession.load", internal, {
        "websession.operation.name": "load",
        "websession.session.found": true,
      }, ok],
      ["logout", "save sessions", client, store_("save"), ok],
      ["logout", "websession.destroy", internal, { "websession.operation.name": "destroy" }, ok],
      [
        "outage read",
        "load sessions",
        client,
        store_("load", { [ATTR_ERROR_TYPE]: "ConnectionClosedError" }),
        {
          code: SpanStatusCode.ERROR,
          message: "Connection is closed",
        },
      ],
      ["outage write", "websession.load", internal, {
        "websession.operation.name": "load",
        "websession.session.found": false,
      }, ok],
      ["outage write", "save sessions", client, store_("save", { [ATTR_ERROR_TYPE]: "ECONNREFUSED" }), {
        code: SpanStatusCode.ERROR,
        message: "connect ECONNREFUSED 127.0.0.1:6379",
      }],
    ];
    const finished = exporter.getFinishedSpans();
    const ours = finished.filter((span) => span.instrumentationScope.name === "websession");
    assert.deepEqual(
      ours.map((span) => [
        requestSpans.get(span.parentSpanContext?.spanId ?? "") ?? "(no parent)",
        span.name,
        span.kind,
        span.attributes,
        span.status,
      ]),
      expected,
    );
    // Explicit times: each span lasts exactly its event's duration (to the microsecond that
    // floating-point milliseconds keep). Each span is anchored to the wall clock when it is made,
    // so times are not compared across spans.
    assert.equal(durations.length, ours.length);
    ours.forEach((span, i) => {
      const parent = finished.find((s) => s.spanContext().spanId === span.parentSpanContext!.spanId)!;
      assert.equal(span.parentSpanContext!.traceId, parent.spanContext().traceId);
      const lasted = Number(nanos(span.endTime) - nanos(span.startTime));
      assert.ok(
        Math.abs(lasted - durations[i]! * 1e6) <= 2_000,
        `${span.name}: ${lasted} ns, ${durations[i]} ms`,
      );
    });

    // Conflicts and invalid cookies are events on the request's span.
    const eventsOf = (label: string) => {
      const span = finished.find((s) => s.name === label && s.instrumentationScope.name === "test")!;
      return span.events.map((event) => [event.name, event.attributes]);
    };
    assert.deepEqual(eventsOf("race b"), [["websession.conflict", {
      "websession.conflict.policy": "merge",
      "websession.conflict.outcome": "refused",
      "websession.conflict.attempt": 2,
    }]]);
    assert.deepEqual(eventsOf("race a"), []);
    assert.deepEqual(eventsOf("ended cookie"), [["websession.cookie.invalid", {
      "websession.cookie.invalid_reason": "ended",
    }]]);
    assert.deepEqual(eventsOf("forged cookie"), [["websession.cookie.invalid", {
      "websession.cookie.invalid_reason": "signature",
    }]]);

    // Metrics: every data point, counted exactly.
    const collected = await reader.collect();
    assert.deepEqual(collected.errors, []);
    const points = dataPoints(collected.resourceMetrics);
    assert.deepEqual(points.get(METRIC_DB_CLIENT_OPERATION_DURATION), {
      unit: "s",
      points: sorted([
        [store_("load"), 6],
        [store_("save"), 6],
        [store_("load", { [ATTR_ERROR_TYPE]: "ConnectionClosedError" }), 1],
        [store_("save", { [ATTR_ERROR_TYPE]: "ECONNREFUSED" }), 1],
      ]),
    });
    assert.deepEqual(points.get("websession.operation.duration"), {
      unit: "s",
      points: sorted([
        [{ "websession.operation.name": "load", "websession.session.found": false }, 4],
        [{ "websession.operation.name": "load", "websession.session.found": true }, 5],
        [{ "websession.operation.name": "save", "websession.session.created": true }, 2],
        [{ "websession.operation.name": "save", "websession.session.created": false }, 1],
        [{ "websession.operation.name": "regenerate" }, 1],
        [{ "websession.operation.name": "destroy" }, 1],
      ]),
    });
    assert.deepEqual(points.get("websession.session.conflicts"), {
      unit: "{conflict}",
      points: [[{ "websession.conflict.policy": "merge", "websession.conflict.outcome": "refused" }, 1]],
    });
    assert.deepEqual(points.get("websession.cookie.invalid"), {
      unit: "{cookie}",
      points: sorted([
        [{ "websession.cookie.invalid_reason": "ended" }, 1],
        [{ "websession.cookie.invalid_reason": "signature" }, 1],
      ]),
    });
    assert.deepEqual([...points.keys()].sort(), [
      METRIC_DB_CLIENT_OPERATION_DURATION,
      "websession.cookie.invalid",
      "websession.operation.duration",
      "websession.session.conflicts",
    ]);
    // The histograms use the database conventions' advised buckets, in seconds.
    assert.deepEqual(boundaries(collected.resourceMetrics, METRIC_DB_CLIENT_OPERATION_DURATION), [
      0.001,
      0.005,
      0.01,
      0.05,
      0.1,
      0.5,
      1,
      5,
      10,
    ]);

    await tracerProvider.shutdown();
    await meterProvider.shutdown();
  });

  it("looks up the global tracer and meter at the first event, and names store spans by operation", async () => {
    const exporter = new InMemorySpanExporter();
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const reader = new CollectingReader();
    const meterProvider = new MeterProvider({ readers: [reader] });
    // Made before any SDK is registered, as a module-level `withSession(...)` would be.
    const onEvent = otelEvents();
    const handler = withSession(async (req: Request) => {
      (await getSession<{ n?: number }>(req)).update("n", (n = 0) => n + 1);
      return new Response("ok");
    }, { store: new MemoryStore(), secrets: [SECRET], onEvent });
    assert.ok(trace.setGlobalTracerProvider(tracerProvider));
    assert.ok(metrics.setGlobalMeterProvider(meterProvider));
    try {
      const response = await handler(new Request("https://example.com/"));
      await handler(new Request("https://example.com/", { headers: { cookie: cookieOf(response) } }));
    } finally {
      trace.disable();
      metrics.disable();
    }
    const spans = exporter.getFinishedSpans();
    assert.deepEqual(
      spans.map((span) => [span.name, span.instrumentationScope.name, span.parentSpanContext]),
      [
        ["websession.load", "websession", undefined],
        ["save", "websession", undefined],
        ["websession.save", "websession", undefined],
        ["load", "websession", undefined],
        ["websession.load", "websession", undefined],
        ["save", "websession", undefined],
        ["websession.save", "websession", undefined],
      ],
    );
    // Without dbSystem or collection the store span says only what it did.
    assert.deepEqual(spans[3]!.attributes, { [ATTR_DB_OPERATION_NAME]: "load" });
    const points = dataPoints((await reader.collect()).resourceMetrics);
    assert.deepEqual(
      points.get(METRIC_DB_CLIENT_OPERATION_DURATION)?.points,
      sorted([
        [{ [ATTR_DB_OPERATION_NAME]: "load" }, 1],
        [{ [ATTR_DB_OPERATION_NAME]: "save" }, 2],
      ]),
    );
    await tracerProvider.shutdown();
    await meterProvider.shutdown();
  });

  it("records CookieStore's seal and open as store calls, and a seal refused as too large as an error", async () => {
    const exporter = new InMemorySpanExporter();
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const handler = withSession(async (req: Request) => {
      const session = await getSession<{ note?: string }>(req);
      const size = Number(new URL(req.url).searchParams.get("size"));
      if (size > 0) session.set("note", randomText(size));
      return new Response("ok");
    }, {
      store: new CookieStore({ secrets: [SECRET] }),
      logger: silent,
      onEvent: otelEvents({ tracer: tracerProvider.getTracer("websession"), dbSystem: "cookie" }),
    });
    const sealed = await handler(new Request("https://example.com/?size=10"));
    assert.equal(sealed.status, 200);
    const read = await handler(
      new Request("https://example.com/", { headers: { cookie: cookieOf(sealed) } }),
    );
    assert.equal(read.status, 200);
    // Far past the 6 KiB of cookies CookieStore allows by default, and incompressible.
    assert.notEqual((await handler(new Request("https://example.com/?size=20000"))).status, 200);
    assert.deepEqual(
      exporter.getFinishedSpans().map((span) => [span.name, span.kind, span.attributes, span.status.code]),
      [
        ["websession.load", SpanKind.INTERNAL, {
          "websession.operation.name": "load",
          "websession.session.found": false,
        }, SpanStatusCode.UNSET],
        [
          "seal",
          SpanKind.CLIENT,
          { [ATTR_DB_SYSTEM_NAME]: "cookie", [ATTR_DB_OPERATION_NAME]: "seal" },
          SpanStatusCode.UNSET,
        ],
        ["websession.save", SpanKind.INTERNAL, {
          "websession.operation.name": "save",
          "websession.session.created": true,
          "websession.session.version": 1,
          "websession.save.attempts": 1,
        }, SpanStatusCode.UNSET],
        [
          "open",
          SpanKind.CLIENT,
          { [ATTR_DB_SYSTEM_NAME]: "cookie", [ATTR_DB_OPERATION_NAME]: "open" },
          SpanStatusCode.UNSET,
        ],
        ["websession.load", SpanKind.INTERNAL, {
          "websession.operation.name": "load",
          "websession.session.found": true,
        }, SpanStatusCode.UNSET],
        ["websession.load", SpanKind.INTERNAL, {
          "websession.operation.name": "load",
          "websession.session.found": false,
        }, SpanStatusCode.UNSET],
        ["seal", SpanKind.CLIENT, {
          [ATTR_DB_SYSTEM_NAME]: "cookie",
          [ATTR_DB_OPERATION_NAME]: "seal",
          [ATTR_ERROR_TYPE]: "SessionTooLargeError",
        }, SpanStatusCode.ERROR],
      ],
    );
    await tracerProvider.shutdown();
  });

  it("refuses options of the wrong type when the hook is made", () => {
    assert.throws(() => otelEvents({ dbSystem: "" }), {
      name: "TypeError",
      message: 'otelEvents option "dbSystem" must be a non-empty string: got ""',
    });
    assert.throws(() => otelEvents({ collection: 42 as unknown as string }), {
      name: "TypeError",
      message: 'otelEvents option "collection" must be a non-empty string: got 42',
    });
    assert.throws(() => otelEvents({ attributes: null as unknown as Attributes }), {
      name: "TypeError",
      message: 'otelEvents option "attributes" must be an object: got null',
    });
  });
});

/** `length` characters of base64url that deflate cannot shorten. */
describe("websession/otel: store calls outside a request's own load and save", () => {
  it("makes a client span and a duration point for the index read, loads and tombstones of sessions per user", async () => {
    const exporter = new InMemorySpanExporter();
    const tracer = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }).getTracer(
      "t",
    );
    const reader = new CollectingReader();
    const meter = new MeterProvider({ readers: [reader] }).getMeter("websession");
    const options = {
      store: new MemoryStore(),
      secrets: [SECRET],
      users: userSessions({ userKey: "user" }),
      onEvent: otelEvents({ tracer, meter, dbSystem: "memory", collection: "sessions" }),
    };
    const login = withSession(async (req: Request) => {
      (await getSession<{ user?: string }>(req)).set("user", "ada");
      return new Response("ok");
    }, options);
    await login(new Request("https://example.com/"));
    await login(new Request("https://example.com/"));
    exporter.reset();
    const before = await reader.collect();
    assert.equal(before.errors.length, 0);
    assert.equal((await listUserSessions(options, "ada")).length, 2);
    assert.equal(await endUserSessions(options, { user: "ada" }), 2);
    const spans = exporter.getFinishedSpans();
    assert.deepEqual(spans.map((span) => span.name).sort(), [
      "keysOfUser sessions",
      "keysOfUser sessions",
      "load sessions",
      "load sessions",
      "load sessions",
      "load sessions",
      "lock sessions",
      "save sessions",
      "save sessions",
      "unlock sessions",
    ]);
    for (const span of spans) {
      assert.equal(span.kind, SpanKind.CLIENT);
      assert.equal(span.attributes[ATTR_DB_OPERATION_NAME], span.name.split(" ")[0]);
      assert.equal(span.attributes[ATTR_DB_SYSTEM_NAME], "memory");
      assert.equal(span.attributes[ATTR_DB_COLLECTION_NAME], "sessions");
    }
    const { resourceMetrics } = await reader.collect();
    const keysOfUser = dataPoints(resourceMetrics).get(METRIC_DB_CLIENT_OPERATION_DURATION)!.points.find(
      ([attributes]) => attributes[ATTR_DB_OPERATION_NAME] === "keysOfUser",
    );
    assert.deepEqual(keysOfUser, [{
      [ATTR_DB_SYSTEM_NAME]: "memory",
      [ATTR_DB_COLLECTION_NAME]: "sessions",
      [ATTR_DB_OPERATION_NAME]: "keysOfUser",
    }, 2]);
  });
});

function randomText(length: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  return Array.from(bytes, (byte) => alphabet[byte & 63]).join("");
}

function nanos([seconds, nanoseconds]: [number, number]): bigint {
  return BigInt(seconds) * 1_000_000_000n + BigInt(nanoseconds);
}

type Point = [Attributes, number];

function sorted(points: Point[]): Point[] {
  return points.sort((a, b) => JSON.stringify(a[0]).localeCompare(JSON.stringify(b[0])));
}

/** Each metric's unit and data points as [attributes, count] (histograms) or [attributes, value]. */
function dataPoints(resourceMetrics: ResourceMetrics): Map<string, { unit: string; points: Point[] }> {
  const result = new Map<string, { unit: string; points: Point[] }>();
  for (const scope of resourceMetrics.scopeMetrics) {
    assert.equal(scope.scope.name, "websession");
    for (const metric of scope.metrics) {
      const points: Point[] = [];
      for (const point of metric.dataPoints) {
        const value = metric.dataPointType === DataPointType.HISTOGRAM
          ? (point.value as { count: number }).count
          : point.value as number;
        points.push([point.attributes, value]);
      }
      result.set(metric.descriptor.name, { unit: metric.descriptor.unit, points: sorted(points) });
    }
  }
  return result;
}

function boundaries(resourceMetrics: ResourceMetrics, name: string): number[] | undefined {
  for (const scope of resourceMetrics.scopeMetrics) {
    for (const metric of scope.metrics) {
      if (metric.descriptor.name === name && metric.dataPointType === DataPointType.HISTOGRAM) {
        return metric.dataPoints[0]!.value.buckets.boundaries;
      }
    }
  }
  return undefined;
}
