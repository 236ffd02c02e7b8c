/**
 * The options of `withSession` as an application writes them, with their documentation; their
 * defaults and validation are in `options.ts`.
 *
 * @module
 */
import type { CookieOptions } from "./cookie.ts";
import type { EventHook } from "./events.ts";
import type { UserSessions } from "./users/options.ts";
import type { SealedSessionStore, SessionData, SessionStore } from "./store.ts";
import type { SessionTransport } from "./transport.ts";
import type { SessionSerializer } from "./serializer.ts";

/**
 * The Standard Schema interface (zod, valibot, arktype and others implement it).
 *
 * @example
 * ```ts
 * import type { StandardSchemaV1 } from "websession";
 * import assert from "node:assert/strict";
 *
 * // zod, valibot and arktype schemas implement this; here is one written by hand.
 * type Cart = { items: string[] };
 * const cart: StandardSchemaV1<unknown, Cart> = {
 *   "~standard": {
 *     version: 1,
 *     vendor: "example",
 *     validate: (value) =>
 *       Array.isArray((value as Partial<Cart>)?.items)
 *         ? { value: value as Cart }
 *         : { issues: [{ message: "items must be an array" }] },
 *   },
 * };
 * assert.deepEqual(await cart["~standard"].validate({ items: ["book"] }), { value: { items: ["book"] } });
 * assert.deepEqual(await cart["~standard"].validate({ items: 3 }), {
 *   issues: [{ message: "items must be an array" }],
 * });
 * ```
 */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  /** The Standard Schema properties: version, vendor, and the `validate` function. */
  readonly "~standard": {
    readonly version: 1;
    readonly vendor: string;
    readonly validate: (
      value: unknown,
    ) => StandardSchemaResult<Output> | Promise<StandardSchemaResult<Output>>;
    readonly types?: { readonly input: Input; readonly output: Output } | undefined;
  };
}

/**
 * The result of a Standard Schema validation.
 *
 * @example
 * ```ts
 * import type { StandardSchemaResult } from "websession";
 * import assert from "node:assert/strict";
 *
 * function port(value: unknown): StandardSchemaResult<number> {
 *   return Number.isInteger(value)
 *     ? { value: value as number }
 *     : { issues: [{ message: "not an integer" }] };
 * }
 * const ok = port(8080);
 * assert.equal(ok.issues, undefined);
 * assert.equal("value" in ok && ok.value, 8080);
 * assert.equal(port("x").issues?.[0]?.message, "not an integer");
 * ```
 */
export type StandardSchemaResult<Output> =
  | { readonly value: Output; readonly issues?: undefined }
  | { readonly issues: ReadonlyArray<{ readonly message: string }> };

/**
 * How a save that lost its compare-and-set is resolved.
 *
 * @example
 * ```ts
 * import { type ConflictPolicy, getSession, MemoryStore, withSession } from "websession";
 * import assert from "node:assert/strict";
 *
 * // Two POSTs of one session overlap, each incrementing `n`; the slow one saves last.
 * async function race(conflict: ConflictPolicy): Promise<{ status: number; n: number }> {
 *   let release = (): void => {};
 *   const gate = new Promise<void>((resolve) => (release = resolve));
 *   const handler = withSession(async (req: Request) => {
 *     const session = await getSession<{ n?: number }>(req);
 *     if (req.method === "POST") session.update("n", (n = 0) => n + 1);
 *     if (req.headers.has("x-slow")) await gate;
 *     return new Response(String(session.peek("n") ?? 0));
 *   }, { store: new MemoryStore(), secrets: ["a secret of at least thirty-two characters"], conflict });
 *   const url = "https://example.com/";
 *   const first = await handler(new Request(url, { method: "POST" })); // n = 1
 *   const cookie = first.headers.get("set-cookie")!.split(";")[0]!;
 *   const slow = handler(new Request(url, { method: "POST", headers: { cookie, "x-slow": "1" } }));
 *   await handler(new Request(url, { method: "POST", headers: { cookie } })); // n = 2, saved first
 *   release();
 *   const { status } = await slow;
 *   const n = Number(await (await handler(new Request(url, { headers: { cookie } }))).text());
 *   return { status, n };
 * }
 * assert.deepEqual(await race("merge"), { status: 200, n: 3 }); // the slow increment is replayed on top
 * assert.deepEqual(await race("reject"), { status: 409, n: 2 }); // the slow request is refused
 * ```
 */
export type ConflictPolicy = "merge" | "retry" | "reject" | "overwrite";

/**
 * Why a presented session cookie was not used.
 *
 * @example
 * ```ts
 * import { getSession, type InvalidCookieReason, MemoryStore, withSession } from "websession";
 * import assert from "node:assert/strict";
 *
 * const reasons: InvalidCookieReason[] = [];
 * const handler = withSession(async (req: Request) => {
 *   const session = await getSession(req);
 *   return new Response(session.isNew ? "new" : "known");
 * }, {
 *   store: new MemoryStore(),
 *   secrets: ["a secret of at least thirty-two characters"],
 *   onInvalidCookie: (event) => void reasons.push(event.reason),
 * });
 * const get = (cookie: string) => handler(new Request("https://example.com/", { headers: { cookie } }));
 *
 * assert.equal(await (await get("session=not-a-session")).text(), "new"); // a bad cookie is no error
 * await get(`session=${"x".repeat(300)}`);
 * assert.deepEqual(reasons, ["malformed", "oversized"]);
 * ```
 */
export type InvalidCookieReason =
  /** Not of the form `id.signature`, or a sealed cookie that cannot be opened. */
  | "malformed"
  /** The value is longer than any value this library writes. */
  | "oversized"
  /** The signature does not verify with any secret. */
  | "signature"
  /** The signature verified but the store has no such session (expired, destroyed, or never issued). */
  | "unknown"
  /**
   * The stored data failed the `schema`, or is in another `serializer` format than the one set
   * (`detail`: the `SessionDataError`).
   */
  | "data"
  /**
   * The session was ended (destroyed, or regenerated into a new id) by another request. The
   * request is served a fresh, empty session and its response sends no `Set-Cookie`: the
   * browser may already hold the newer cookie. A change to that session is refused (409).
   */
  | "ended"
  /** Sealed stores with a revocation store: an older seal of a session saved since (a replay). */
  | "superseded";

/**
 * What `onInvalidCookie` is told.
 *
 * @example
 * ```ts
 * import { getSession, type InvalidCookieEvent, MemoryStore, withSession } from "websession";
 * import assert from "node:assert/strict";
 *
 * const secrets = ["a secret of at least thirty-two characters"];
 * const handler = (events: InvalidCookieEvent[] = []) =>
 *   withSession(async (req: Request) => {
 *     (await getSession(req)).set("user", "ada");
 *     return new Response("ok");
 *   }, { store: new MemoryStore(), secrets, onInvalidCookie: (event) => void events.push(event) });
 *
 * // A validly signed cookie whose session this store does not hold (each handler has its own store).
 * const issued = await handler()(new Request("https://example.com/"));
 * const cookie = issued.headers.get("set-cookie")!.split(";")[0]!;
 * const events: InvalidCookieEvent[] = [];
 * const request = new Request("https://example.com/", { headers: { cookie } });
 * await handler(events)(request);
 * assert.equal(events.length, 1);
 * assert.equal(events[0]!.reason, "unknown");
 * assert.equal(events[0]!.request, request);
 * ```
 */
export interface InvalidCookieEvent {
  /** Why the cookie was not used. */
  reason: InvalidCookieReason;
  /** The request that carried it; `undefined` under `openSession` with no `Request`. */
  request: Request | undefined;
  /** Details: the schema issues, or the error a sealed store raised. */
  detail?: unknown;
}

/**
 * Options of `withSession`.
 *
 * @typeParam T The session data shape (for `schema`).
 *
 * @example
 * ```ts
 * import { getSession, MemoryStore, type SessionOptions, withSession } from "websession";
 * import assert from "node:assert/strict";
 *
 * type Data = { user?: string };
 * const options: SessionOptions<Data> = {
 *   store: new MemoryStore(),
 *   secrets: ["the current secret, 32 characters or more", "the previous one, still accepted"],
 *   cookie: { name: "sid", sameSite: "Strict" },
 *   idleTimeout: 30 * 60,
 *   absoluteTimeout: 8 * 3600,
 *   conflict: "merge",
 * };
 * const handler = withSession(async (req: Request) => {
 *   (await getSession<Data>(req)).set("user", "ada");
 *   return new Response("ok");
 * }, options);
 *
 * const setCookie = (await handler(new Request("https://example.com/"))).headers.get("set-cookie")!;
 * assert.match(setCookie, /^sid=/);
 * assert.match(setCookie, /Max-Age=2700/); // idleTimeout + touchAfter (half of it by default)
 * ```
 */
export interface SessionOptions<T extends object = SessionData> {
  /**
   * Where sessions live.
   * @default a process-wide `MemoryStore` holding at most 10,000 sessions (the least recently
   * written go first), sweeping expired ones by itself
   */
  store?: SessionStore | SealedSessionStore;
  /**
   * Secrets that sign the session cookie, each at least 32 characters. The first signs; all
   * verify, so a new secret goes first and an old one stays until its cookies are gone.
   * Required, except with a `CookieStore`, which seals with secrets of its own.
   */
  secrets?: string | readonly string[];
  /** Cookie name and attributes. */
  cookie?: CookieOptions;
  /**
   * Carry the session in a request header and a response header instead of the cookie, for
   * native and mobile clients: `headerTransport({ header: "Authorization" })` from
   * `websession/transport` reads `Authorization: Bearer <token>` (RFC 6750 §2.1) and answers new
   * tokens in `Session-Token` (an empty value when the session ended). With `cookie: true` there,
   * requests without the header keep using the cookie. Not with a `CookieStore`. Guide:
   * docs/guides/native-clients.md.
   * @default undefined (the cookie only)
   */
  transport?: SessionTransport;
  /**
   * Seconds of inactivity a session is guaranteed to survive (sliding): a session active within
   * it stays signed in, and one idle for longer than `idleTimeout + touchAfter` is gone (the
   * record's expiry, its store TTL and the cookie's `Max-Age` are `idleTimeout + touchAfter`
   * ahead of the last extension). At most 400 days, the longest a browser keeps a cookie.
   * @default 3600
   */
  idleTimeout?: number;
  /**
   * Seconds after creation (or `regenerate()`) after which a session expires however active;
   * `Infinity` for no cap.
   * @default 604800 (7 days)
   */
  absoluteTimeout?: number;
  /**
   * The timeouts of a session whose log in chose "remember me"
   * (`session.regenerate({ remember: true })`), in seconds, with the same meaning as the
   * top-level ones; such a session also gets a persistent cookie whatever `cookie.persistent`
   * says. Guide: docs/guides/sign-in.md.
   * @default { idleTimeout: 2592000 (30 days), absoluteTimeout: 7776000 (90 days), touchAfter: idleTimeout / 2 }
   */
  remember?: RememberOptions;
  /**
   * Seconds that must pass before an unchanged session's expiry is extended (a version-checked
   * store touch that rewrites no data, and a new `Set-Cookie` for a persistent cookie). Changed
   * sessions extend it too, on the same schedule. It is also how much longer than `idleTimeout`
   * an idle session may live.
   * @default idleTimeout / 2
   */
  touchAfter?: number;
  /**
   * How a save that lost its compare-and-set to a concurrent request is resolved.
   * @default "merge"
   */
  conflict?: ConflictPolicy;
  /**
   * How requests of one session wait for each other (CherryPy's `locking`). `"implicit"`: under
   * `conflict: "merge"`, a request that arrives while another request of the same session is in
   * flight in this process waits its turn before loading (at most 10 s), and once another
   * process was seen writing the session, turns are taken through the store's lock too; so
   * concurrent requests run one after another and none is refused or run twice. `"explicit"`:
   * requests run concurrently and only `session.lock()` serializes (for handlers that wait on
   * another request of the same session, such as long polling). The other conflict policies
   * never wait.
   * @default "implicit"
   */
  locking?: "implicit" | "explicit";
  /**
   * Attempts (saves for `merge`/`overwrite`, handler runs for `retry`) before a conflict becomes
   * a `SessionConflictError`.
   * @default 30
   */
  maxAttempts?: number;
  /**
   * Bytes of a request body kept, as the handler reads it after asking for its session, so that
   * the handler can run again on a conflict (`retry`, or `merge` on an idempotent method). A
   * larger body, or one read before `getSession()`, is never buffered: the request then cannot
   * run again, and a conflict that would need it is refused with 409.
   * @default 1048576 (1 MiB)
   */
  maxReplayBytes?: number;
  /**
   * Turns a session error into a response: `409` for conflicts, `503` for store outages by
   * default. Also told of errors after the response was sent (its return value is then unused).
   */
  onError?: (error: unknown, request: Request) => Response | void | Promise<Response | void>;
  /** Told whenever a presented cookie is not used and a fresh session starts instead. */
  onInvalidCookie?: (event: InvalidCookieEvent) => void;
  /** A Standard Schema that loaded data must pass; data that fails starts a fresh session. */
  schema?: StandardSchemaV1<unknown, T>;
  /**
   * Stores values richer than JSON: `richValues` from `websession/serializer` keeps `Date`,
   * `Map`, `Set`, `URL` and `BigInt` (nested too) as tagged JSON in every store, and never
   * executes code when reading. Sessions stored before it was set still read (plain JSON); a
   * record written with it names its format (data key `"__serializer"`), and one read without it,
   * or with another format, is refused (a fresh session starts, `onInvalidCookie` reason
   * `"data"`) rather than misread. Store size limits count the serialized form. See
   * {@linkcode SessionSerializer} and docs/guides/rich-values.md.
   * @default undefined (plain JSON values only; others are refused with a `TypeError` by `set`)
   */
  serializer?: SessionSerializer;
  /**
   * Sessions per user, made by `userSessions({ userKey, deviceInfo?, maxSessionsPerUser? })`:
   * stores that can (`capabilities.users`) index each user's sessions, so that
   * `listUserSessions` and `endUserSessions` can list and end them ("sign out other devices",
   * "log out everywhere after a password change"). See `UserSessionsOptions` and
   * docs/guides/users.md.
   * @default undefined (no index per user)
   */
  users?: UserSessions;
  /**
   * The clock in milliseconds since the epoch (injectable for tests).
   * @default Date.now
   */
  now?: () => number;
  /**
   * The instrumentation hook: told of every load, save, touch, end, conflict, store call (with
   * its latency and error) and invalid cookie. Costs nothing when unset. `websession/otel`
   * turns these into OpenTelemetry spans and metrics.
   */
  onEvent?: EventHook;
  /**
   * Where websession writes what a person should read: server errors answered with 5xx by the
   * default `onError` (the first of a kind in full, then a count a minute while it repeats, so an
   * outage is not a stack trace per request), and configuration warnings (a `Secure` cookie sent
   * over plain http).
   * @default console
   */
  logger?: SessionLogger;
}

/**
 * The timeouts of remembered sessions ("remember me" at log in), in seconds: the `remember`
 * option of `withSession`.
 *
 * @example
 * ```ts
 * import { getSession, MemoryStore, type RememberOptions, withSession } from "websession";
 * import assert from "node:assert/strict";
 *
 * const remember: RememberOptions = { idleTimeout: 14 * 86400, absoluteTimeout: 60 * 86400, touchAfter: 86400 };
 * const handler = withSession(async (req: Request) => {
 *   const session = await getSession<{ user: string }>(req);
 *   session.regenerate({ remember: true });
 *   session.set("user", "ada");
 *   return new Response("signed in");
 * }, { store: new MemoryStore(), secrets: ["a secret of at least thirty-two characters"], remember });
 *
 * const response = await handler(new Request("https://example.com/login", { method: "POST" }));
 * assert.match(response.headers.get("set-cookie")!, /Max-Age=1296000/); // 14 days + 1 day
 * ```
 */
export interface RememberOptions {
  /**
   * Seconds of inactivity a remembered session is guaranteed to survive (sliding).
   * @default 2592000 (30 days)
   */
  idleTimeout?: number;
  /**
   * Seconds after log in (`regenerate()`) after which a remembered session expires however active.
   * @default 7776000 (90 days)
   */
  absoluteTimeout?: number;
  /**
   * Seconds before an unchanged remembered session's expiry is extended.
   * @default idleTimeout / 2
   */
  touchAfter?: number;
}

/**
 * The logger websession writes to: `console`, or any object with its `warn` and `error`.
 *
 * @example
 * ```ts
 * import { MemoryStore, type SessionLogger, withSession } from "websession";
 * import assert from "node:assert/strict";
 *
 * const lines: string[] = [];
 * const logger: SessionLogger = { warn: (...args) => void lines.push(String(args[0])), error: () => {} };
 * const handler = withSession(async () => new Response("ok"), {
 *   store: new MemoryStore(),
 *   secrets: ["a secret of at least thirty-two characters"],
 *   logger,
 * });
 * assert.equal((await handler(new Request("https://example.com/"))).status, 200);
 * assert.deepEqual(lines, []);
 * ```
 */
export interface SessionLogger {
  /** A warning: something probably misconfigured. */
  warn(...args: unknown[]): void;
  /** An error: a request answered with 5xx. */
  error(...args: unknown[]): void;
}
