/**
 * Options of `withSession`, their defaults, and their validation. A plain options object is
 * resolved once, when `withSession` is called, so misconfiguration throws at start-up.
 *
 * @module
 */
import { kBackend, kTransport, kUsers, type TransportFlow, type UsersFlow } from "./backend.ts";
import { kCodec } from "./session_state.ts";
import { resolveCookieOptions, type ResolvedCookieOptions } from "./cookie.ts";
import { RecentAuthRequiredError, SessionConfigError } from "./errors.ts";
import type { EventHook } from "./events.ts";
import { createSessionId } from "./id.ts";
import { logError } from "./log.ts";
import { refuseDuplicateSecrets, Signer } from "./signing.ts";
import { isSealedStore, type SealedSessionStore, type SessionData, type SessionStore } from "./store.ts";
import { MemoryStore } from "./stores/memory.ts";
import type { SessionSerializer } from "./serializer.ts";
import type {
  ConflictPolicy,
  InvalidCookieEvent,
  InvalidCookieReason,
  RememberOptions,
  SessionLogger,
  SessionOptions,
  StandardSchemaResult,
  StandardSchemaV1,
} from "./session_options.ts";

export type {
  ConflictPolicy,
  InvalidCookieEvent,
  InvalidCookieReason,
  RememberOptions,
  SessionLogger,
  SessionOptions,
  StandardSchemaResult,
  StandardSchemaV1,
};
/** Timeouts after validation, in milliseconds. Internal. */
export interface Timeouts {
  idleMs: number;
  absoluteMs: number;
  touchAfterMs: number;
}

function resolveTimeouts(
  prefix: string,
  value: { idleTimeout?: number; absoluteTimeout?: number; touchAfter?: number },
  idleDefault: number,
  absoluteDefault: number,
): Timeouts {
  const idle = seconds(`${prefix}idleTimeout`, value.idleTimeout, idleDefault, 1);
  const absolute = seconds(`${prefix}absoluteTimeout`, value.absoluteTimeout, absoluteDefault, 1, Infinity);
  const touchAfter = seconds(`${prefix}touchAfter`, value.touchAfter, idle / 2, 0);
  if (touchAfter > idle) {
    throw new RangeError(
      `Invalid ${prefix}touchAfter: "${touchAfter}" must not exceed ${prefix}idleTimeout ("${idle}")`,
    );
  }
  return { idleMs: idle * 1000, absoluteMs: absolute * 1000, touchAfterMs: touchAfter * 1000 };
}

function resolveRemember(value: unknown): Timeouts {
  if (value !== undefined && (typeof value !== "object" || value === null)) {
    throw new TypeError("Invalid remember: expected an object with idleTimeout, absoluteTimeout, touchAfter");
  }
  return resolveTimeouts("remember.", value ?? {}, 30 * 86_400, 90 * 86_400);
}

/** Options after defaults and validation. Internal. */
export interface ResolvedOptions {
  store: SessionStore | SealedSessionStore;
  sealed: boolean;
  signer: Signer;
  cookie: ResolvedCookieOptions;
  /** The header transport, when on. */
  /** The `transport` option's part of the flow (`undefined`: the cookie alone). */
  transport: TransportFlow | undefined;
  idleMs: number;
  absoluteMs: number;
  touchAfterMs: number;
  /** The timeouts of remembered sessions. */
  remember: Timeouts;
  conflict: ConflictPolicy;
  /** Requests of one session take turns (`locking: "implicit"` under `merge`). */
  turns: boolean;
  maxAttempts: number;
  maxReplayBytes: number;
  onError: (error: unknown, request: Request) => Response | void | Promise<Response | void>;
  onInvalidCookie?: (event: InvalidCookieEvent) => void;
  schema?: StandardSchemaV1<unknown, SessionData>;
  /** The `serializer` option, checked. */
  serializer: SessionSerializer | undefined;
  /** The `users` option's part of the flow (`undefined`: no sessions per user). */
  users: UsersFlow | undefined;
  /** `users.userKey`: the session key that holds the user's id. */
  userKey: string | undefined;
  /** The secrets that sign (the first names session handles); empty with a sealed store. */
  secrets: readonly string[];
  now: () => number;
  logger: SessionLogger;
  onEvent: EventHook | undefined;
  /** The insecure-cookie warning was given (once per options). */
  warned: boolean;
}

/**
 * Checks the `serializer` option.
 *
 * @param value The option value.
 * @returns The serializer, or `undefined` when unset.
 * @throws {TypeError} When it was not made by `defineSerializer()` (which checks its parts).
 */
function resolveSerializer(value: unknown): SessionSerializer | undefined {
  if (value === undefined) return undefined;
  if ((value as { [kCodec]?: unknown } | null)?.[kCodec] === undefined) {
    throw new TypeError(
      "Invalid serializer: expected richValues or one made by defineSerializer() from websession/serializer",
    );
  }
  return value as SessionSerializer;
}

let defaultStore: MemoryStore | undefined;
/** The bound of the default store: a process that never configured one cannot grow without end. */
const DEFAULT_STORE_SESSIONS = 10_000;
const signers = new Map<string, Signer>();
let unusedSigner: Signer | undefined;

function signerFor(secrets: readonly string[]): Signer {
  const id = JSON.stringify(secrets);
  let signer = signers.get(id);
  if (signer === undefined) {
    if (signers.size >= 64) signers.clear();
    signer = new Signer(secrets);
    signers.set(id, signer);
  }
  return signer;
}

/** Browsers keep a cookie at most 400 days (RFC 6265bis); a longer idle window cannot work. */
const MAX_COOKIE_SECONDS = 400 * 24 * 3600;

function seconds(
  name: string,
  value: unknown,
  fallback: number,
  min: number,
  max = MAX_COOKIE_SECONDS,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || Number.isNaN(value) || value < min || value > max) {
    throw new RangeError(
      `Invalid ${name}: "${String(value)}" must be a number of seconds from ${min} to ${max}`,
    );
  }
  return value;
}

/**
 * Checks a secrets option: a string or a non-empty list of strings, each at least 32
 * characters.
 *
 * @param secrets The option value.
 * @returns The secrets as a list.
 * @throws {TypeError} When a secret is missing, not a string, shorter than 32 characters, or
 *   the same as an earlier one.
 */
export function resolveSecrets(secrets: unknown): readonly string[] {
  const list = typeof secrets === "string" ? [secrets] : secrets;
  if (!Array.isArray(list) || list.length === 0) {
    throw new TypeError("Invalid secrets: give a string or a non-empty list of strings");
  }
  list.forEach((secret, i) => {
    if (typeof secret !== "string" || secret.length < 32) {
      throw new TypeError(`Invalid secrets: secret ${i} must be a string of at least 32 characters`);
    }
  });
  refuseDuplicateSecrets(list as readonly string[]);
  return Object.freeze([...list]);
}

function defaultOnError(logger: SessionLogger, error: unknown): Response {
  const status = typeof (error as { status?: unknown }).status === "number"
    ? (error as { status: number }).status
    : 500;
  if (status >= 500) logError(logger, error); // in full once, then counted: an outage is not a stack per request
  if (error instanceof RecentAuthRequiredError) {
    // RFC 9110 §15.5.2: a 401 carries a challenge; this one says how recent (RFC 9470 §3).
    const headers = { "content-type": "text/plain; charset=utf-8", "www-authenticate": error.challenge };
    return new Response("Unauthorized: sign in again to continue", { status, headers });
  }
  const text = status === 409 ? "Conflict" : status === 503 ? "Service Unavailable" : "Internal Server Error";
  return new Response(text, { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}

/**
 * Applies defaults and validates `withSession` options.
 *
 * @param options The options.
 * @returns The resolved options.
 * @throws {TypeError} On missing or short secrets, or invalid cookie attributes.
 * @throws {RangeError} On invalid timeouts or attempts.
 */
export function resolveOptions(options: SessionOptions<SessionData>): ResolvedOptions {
  if (typeof options !== "object" || options === null) {
    throw new TypeError("Invalid options: withSession() needs an options object with secrets");
  }
  const timeouts = resolveTimeouts("", options, 3600, 604_800);
  const conflict = options.conflict ?? "merge";
  if (!["merge", "retry", "reject", "overwrite"].includes(conflict)) {
    throw new TypeError(`Invalid conflict: "${conflict}" is not "merge", "retry", "reject" or "overwrite"`);
  }
  const maxReplayBytes = count(
    "maxReplayBytes",
    options.maxReplayBytes ?? 1_048_576,
    0,
    "a whole number of bytes",
  );
  const locking = options.locking ?? "implicit";
  if (locking !== "implicit" && locking !== "explicit") {
    throw new TypeError(`Invalid locking: "${String(locking)}" is not "implicit" or "explicit"`);
  }
  const maxAttempts = count("maxAttempts", options.maxAttempts ?? 30, 1, "a positive integer");
  const { store, sealed, secrets, signer } = resolveStore(options);
  const schema = options.schema;
  if (schema !== undefined && typeof schema?.["~standard"]?.validate !== "function") {
    throw new TypeError("Invalid schema: expected a Standard Schema (zod, valibot, arktype, ...)");
  }
  const users = resolveUsers(options, store);
  const logger = resolveLogger(options);
  return {
    store,
    sealed,
    signer,
    cookie: resolveCookieOptions(options.cookie),
    transport: transportOf(options.transport, sealed),
    ...timeouts,
    remember: resolveRemember(options.remember),
    conflict,
    turns: conflict === "merge" && locking === "implicit",
    maxAttempts,
    maxReplayBytes,
    onError: options.onError ?? defaultOnError.bind(undefined, logger),
    onInvalidCookie: options.onInvalidCookie,
    schema: schema as StandardSchemaV1<unknown, SessionData> | undefined,
    serializer: resolveSerializer(options.serializer),
    now: options.now ?? Date.now,
    logger,
    onEvent: options.onEvent,
    users,
    userKey: users?.userKey,
    secrets,
    warned: false,
  };
}

/** A whole number of at least `min`; a `RangeError` naming the option otherwise. */
function count(name: string, value: number, min: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`Invalid ${name}: "${value}" must be ${what}`);
  }
  return value;
}

/** The store (the embedded default when none is given), and the secrets that sign its cookie. */
function resolveStore(options: SessionOptions<SessionData>) {
  const store = options.store ?? (defaultStore ??= new MemoryStore({ maxSessions: DEFAULT_STORE_SESSIONS }));
  if (typeof store !== "object" || store === null) {
    throw new TypeError("Invalid store: expected a store object");
  }
  const sealed = isSealedStore(store);
  if (!sealed && (typeof store.load !== "function" || typeof store.save !== "function")) {
    throw new TypeError("Invalid store: it has no load() and save() methods");
  }
  if (
    typeof (store as SessionStore).capabilities !== "object" || (store as SessionStore).capabilities === null
  ) {
    throw new TypeError(
      "Invalid store: it has no capabilities object (see SessionStore in websession/store-kit)",
    );
  }
  if (sealed && (store as { [kBackend]?: unknown })[kBackend] === undefined) {
    throw new TypeError(
      "Invalid store: a sealed store of your own is passed through sealedStore() from websession/store-kit",
    );
  }
  // A sealed store signs nothing here: its own secrets seal the cookie.
  const secrets = sealed && options.secrets === undefined ? [] : resolveSecrets(options.secrets);
  const signer = sealed && options.secrets === undefined
    ? (unusedSigner ??= new Signer([createSessionId() + createSessionId()]))
    : signerFor(secrets);
  return { store, sealed, secrets, signer };
}

/**
 * The `users` option, checked against the store. The options it took over (`userKey`,
 * `deviceInfo`, `maxSessionsPerUser` before 0.2) are refused by name: ignored, "log out
 * everywhere" would silently end nothing.
 */
function resolveUsers(
  options: SessionOptions<SessionData>,
  store: SessionStore | SealedSessionStore,
): UsersFlow | undefined {
  for (const moved of ["userKey", "deviceInfo", "maxSessionsPerUser"]) {
    if (Object.hasOwn(options, moved)) {
      throw new TypeError(
        `Invalid ${moved}: it moved into the users option: users: userSessions({ ${moved} })`,
      );
    }
  }
  if (options.users === undefined) return undefined;
  const flow = (options.users as { [kUsers]?: UsersFlow } | null)?.[kUsers];
  if (flow === undefined) throw new TypeError("Invalid users: expected userSessions() from websession");
  if (flow.maxSessionsPerUser !== undefined && !(store as SessionStore).capabilities?.users) {
    throw new TypeError("Invalid maxSessionsPerUser: it needs a store that indexes sessions per user");
  }
  return flow;
}

/** The names `SessionOptions` has: any other is a typo or an option of another library. */
const KNOWN =
  "store secrets cookie transport idleTimeout absoluteTimeout remember touchAfter conflict locking maxAttempts maxReplayBytes onError onInvalidCookie schema serializer users now onEvent logger"
    .split(" ");

/** A name with case, `-`, `_` and a final `s` ignored: `secret`, `idle_timeout`, `idleTimeOut`. */
const loose = (name: string) => name.toLowerCase().replace(/[-_]|s$/g, "");

/**
 * The logger, a check that every hook given is a function, and a warning naming each option
 * websession does not know (it is ignored; a misspelt `idleTimeOut` would otherwise leave the
 * default in force without a word).
 */
function resolveLogger(options: SessionOptions<SessionData>): SessionLogger {
  const logger = options.logger ?? console;
  if (typeof logger?.warn !== "function" || typeof logger?.error !== "function") {
    throw new TypeError("Invalid logger: expected an object with warn() and error(), such as console");
  }
  for (const name of Object.keys(options)) {
    if (KNOWN.includes(name)) continue;
    const near = KNOWN.find((known) => loose(known) === loose(name));
    logger.warn(`websession: unknown option "${name}" is ignored${near ? ` (did you mean "${near}"?)` : ""}`);
  }
  for (const hook of ["onError", "onInvalidCookie", "now", "onEvent"] as const) {
    if (options[hook] !== undefined && typeof options[hook] !== "function") {
      throw new TypeError(`Invalid ${hook}: expected a function`);
    }
  }
  return logger;
}

function transportOf(transport: unknown, sealed: boolean): TransportFlow | undefined {
  if (transport === undefined) return undefined;
  const flow = (transport as { [kTransport]?: TransportFlow } | null)?.[kTransport];
  if (flow === undefined) {
    throw new TypeError("Invalid transport: expected headerTransport() from websession/transport");
  }
  flow.check(sealed);
  return flow;
}

/** Wraps a configuration error raised while resolving per-request options. */
export function configError(error: unknown): SessionConfigError {
  return new SessionConfigError(`Invalid session options: ${(error as Error)?.message ?? String(error)}`, {
    cause: error,
  });
}

const resolvedOptions = new WeakMap<object, ResolvedOptions>();

/** Resolves an options object once, however often it is passed. */
export function optionsOf(options: SessionOptions<SessionData>): ResolvedOptions {
  let o = resolvedOptions.get(options);
  if (o === undefined) {
    o = resolveOptions(options);
    resolvedOptions.set(options, o);
  }
  return o;
}
