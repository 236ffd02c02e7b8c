/**
 * A kit for testing an application that uses websession, under `node:test`, `Deno.test`, Bun or
 * Vitest: a {@linkcode MemoryStore} to give the app, a {@linkcode TestClock} to pass as its `now`
 * option and move forward, and {@linkcode signIn}, which creates a signed-in session directly
 * (no login page, no password) and returns its `Cookie` header, its `Set-Cookie` values and the
 * cookies in the shape Playwright's `context.addCookies()` takes.
 *
 * `signIn` creates the session exactly as `withSession` does for a request that stores data in
 * a fresh session: through `openSession` and `commitSession` with the options object it is
 * given. Give it the same options object as the app (the same store instance and secrets), and
 * the cookie verifies in the app.
 *
 * Nothing here is imported by `websession` itself: an application that does not import
 * `websession/testing` ships none of it.
 *
 * @example
 * ```ts
 * import { getSession, withSession } from "websession";
 * import { MemoryStore, signIn, TestClock } from "websession/testing";
 * import assert from "node:assert/strict";
 *
 * const clock = new TestClock();
 * const options = {
 *   store: new MemoryStore({ now: clock.now }),
 *   secrets: ["a secret of at least thirty-two characters"],
 *   idleTimeout: 600,
 *   now: clock.now,
 * };
 * const app = withSession(async (req: Request) => {
 *   const user = (await getSession<{ user?: string }>(req)).get("user");
 *   return new Response(user ?? "anonymous", { status: user ? 200 : 401 });
 * }, options);
 *
 * const { cookie } = await signIn(options, { user: "ada" });
 * const get = () => app(new Request("https://example.com/account", { headers: { cookie } }));
 * assert.equal(await (await get()).text(), "ada");
 * clock.advance(3600); // an hour idle: far past idleTimeout
 * assert.equal((await get()).status, 401);
 * ```
 *
 * @module
 */
import { commitSession, openSession } from "./open_session.ts";
import type { SessionOptions } from "./options.ts";
import type { SessionData } from "./store.ts";
import { takeSessionToken } from "./transport.ts";

export {
  /**
   * The store for tests: `MemoryStore` from `websession`, here so that a test needs one import.
   *
   * @example
   * ```ts
   * import { MemoryStore, TestClock } from "websession/testing";
   * import assert from "node:assert/strict";
   *
   * const clock = new TestClock();
   * const store = new MemoryStore({ now: clock.now });
   * assert.equal(store.capabilities.compareAndSet, true);
   * ```
   */
  MemoryStore,
  /**
   * Options of {@linkcode MemoryStore}.
   *
   * @example
   * ```ts
   * import { MemoryStore, type MemoryStoreOptions } from "websession/testing";
   * import assert from "node:assert/strict";
   *
   * const options: MemoryStoreOptions = { now: () => 0 };
   * assert.ok(new MemoryStore(options));
   * ```
   */
  type MemoryStoreOptions,
} from "./stores/memory.ts";

/**
 * A clock for tests: it stands still until moved. Pass `clock.now` as the `now` option of the
 * session options (and of `MemoryStore`), then `advance()` it to pass idle and absolute
 * timeouts without waiting.
 *
 * @example
 * ```ts
 * import { TestClock } from "websession/testing";
 * import assert from "node:assert/strict";
 *
 * const clock = new TestClock(Date.UTC(2030, 0, 1));
 * const now = clock.now; // bound: pass it on as it is
 * assert.equal(now(), Date.UTC(2030, 0, 1));
 * assert.equal(clock.advance(90), Date.UTC(2030, 0, 1, 0, 1, 30));
 * assert.equal(now(), Date.UTC(2030, 0, 1, 0, 1, 30));
 * ```
 */
export class TestClock {
  #ms: number;

  /**
   * @param start The starting time, in milliseconds since the epoch or as a `Date`.
   * @default Date.now() when the clock is made
   * @throws {RangeError} When `start` is not a finite time.
   */
  constructor(start: number | Date = Date.now()) {
    const ms = start instanceof Date ? start.getTime() : start;
    if (typeof ms !== "number" || !Number.isFinite(ms)) {
      throw new RangeError(`Invalid start: "${String(start)}" is not a time in milliseconds`);
    }
    this.#ms = ms;
  }

  /**
   * The current time in milliseconds since the epoch: the `now` option's contract. Bound to
   * this clock, so `{ now: clock.now }` works.
   *
   * @returns The clock's time.
   */
  readonly now = (): number => this.#ms;

  /**
   * Moves the clock forward.
   *
   * @param seconds How far, in seconds (fractions allowed).
   * @returns The new time, in milliseconds since the epoch.
   * @throws {RangeError} When `seconds` is negative or not a finite number: session expiry is
   * measured on a clock that never goes back.
   */
  advance(seconds: number): number {
    if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) {
      throw new RangeError(
        `Invalid seconds: "${String(seconds)}" must be a finite number of seconds, 0 or more`,
      );
    }
    this.#ms += seconds * 1000;
    return this.#ms;
  }
}

/**
 * A cookie in the shape Playwright's `browserContext.addCookies()` accepts (and its
 * `context.cookies()` returns).
 *
 * @example
 * ```ts
 * import { type BrowserCookie, MemoryStore, signIn } from "websession/testing";
 * import assert from "node:assert/strict";
 *
 * const options = { store: new MemoryStore(), secrets: ["a secret of at least thirty-two characters"] };
 * const [cookie]: BrowserCookie[] = (await signIn(options, { user: "ada" })).cookies;
 * assert.equal(cookie!.domain, "localhost"); // host-only: the host of signIn's url
 * assert.ok(cookie!.expires > Date.now() / 1000); // persistent: Max-Age from now
 * ```
 */
export interface BrowserCookie {
  /** The cookie name, as the options name it (`session`, `__Host-sid`, ...). */
  name: string;
  /** The signed (or sealed) value. */
  value: string;
  /**
   * The host the cookie belongs to: the cookie's `Domain` with a leading dot (the cookie goes to
   * subdomains too), or, for a host-only cookie, the host of {@linkcode SignInOptions.url}.
   */
  domain: string;
  /** The `Path` attribute. */
  path: string;
  /**
   * When the cookie expires, in seconds since the epoch: now (the real time, as a browser reads
   * `Max-Age` when the cookie arrives) plus the cookie's `Max-Age`; `-1` for a cookie that is
   * not persistent (dropped when the browser closes).
   */
  expires: number;
  /** The `HttpOnly` attribute. */
  httpOnly: boolean;
  /** The `Secure` attribute. */
  secure: boolean;
  /** The `SameSite` attribute. */
  sameSite: "Strict" | "Lax" | "None";
}

/**
 * Options of {@linkcode signIn}.
 *
 * @example
 * ```ts
 * import { MemoryStore, signIn, type SignInOptions } from "websession/testing";
 * import assert from "node:assert/strict";
 *
 * const options = { store: new MemoryStore(), secrets: ["a secret of at least thirty-two characters"] };
 * const at: SignInOptions = { url: "http://127.0.0.1:3000" }; // Playwright's baseURL
 * assert.equal((await signIn(options, { user: "ada" }, at)).cookies[0]!.domain, "127.0.0.1");
 * ```
 */
export interface SignInOptions {
  /**
   * The address the browser will visit, for the `domain` of host-only cookies in
   * {@linkcode SignedIn.cookies} (the port does not matter to cookies).
   * @default "http://localhost"
   */
  url?: string | URL;
}

/**
 * What {@linkcode signIn} returns.
 *
 * @example
 * ```ts
 * import { MemoryStore, signIn, type SignedIn } from "websession/testing";
 * import assert from "node:assert/strict";
 *
 * const options = { store: new MemoryStore(), secrets: ["a secret of at least thirty-two characters"] };
 * const signed: SignedIn = await signIn(options, { user: "ada" });
 * assert.equal(signed.cookie, signed.setCookie[0]!.split(";")[0]); // fetch(url, { headers: { cookie } })
 * assert.equal(signed.cookies[0]!.name, "session"); // await context.addCookies(signed.cookies)
 * ```
 */
export interface SignedIn {
  /** The `Cookie` request header that carries the session, `name=value` (several for a chunked sealed cookie). */
  cookie: string;
  /** The `Set-Cookie` values the app would have sent with its login response. */
  setCookie: string[];
  /** The same cookies for Playwright: `await context.addCookies(cookies)`. */
  cookies: BrowserCookie[];
  /**
   * With the `transport` option (`headerTransport` from `websession/transport`), the session's
   * token for a native client: send it as `Authorization: Bearer <token>` (or as the value of
   * the transport's own header). It is the signed value the cookie carries. On a header-only
   * transport (no `cookie: true`) there is no cookie: `cookie` is `""`, `setCookie` and
   * `cookies` are empty, and this is how the client reaches the session. Absent without the
   * option.
   */
  token?: string;
}

/** Whether a `Set-Cookie` value removes its cookie (a sealed store clears chunks it no longer uses). */
function removes(setCookie: string): boolean {
  const pair = setCookie.split(";", 1)[0]!;
  return pair.slice(pair.indexOf("=") + 1) === "" || /;\s*Max-Age=0\s*(;|$)/i.test(setCookie);
}

function browserCookie(setCookie: string, host: string, receivedAt: number): BrowserCookie {
  const [pair, ...attributes] = setCookie.split(";");
  const eq = pair!.indexOf("=");
  const cookie: BrowserCookie = {
    name: pair!.slice(0, eq).trim(),
    value: pair!.slice(eq + 1).trim(),
    domain: host,
    path: "/",
    expires: -1,
    httpOnly: false,
    secure: false,
    sameSite: "Lax",
  };
  for (const attribute of attributes) {
    const at = attribute.indexOf("=");
    const key = (at < 0 ? attribute : attribute.slice(0, at)).trim().toLowerCase();
    const value = at < 0 ? "" : attribute.slice(at + 1).trim();
    if (key === "domain") cookie.domain = `.${value.replace(/^\./, "")}`;
    else if (key === "path") cookie.path = value;
    else if (key === "httponly") cookie.httpOnly = true;
    else if (key === "secure") cookie.secure = true;
    else if (key === "samesite") cookie.sameSite = value as BrowserCookie["sameSite"];
    else if (key === "max-age") cookie.expires = Math.floor(receivedAt / 1000) + Number(value);
  }
  return cookie;
}

/**
 * Signs a user in without going through a login page: creates a session holding `data`, saved
 * in the options' store and signed with their secrets exactly as `withSession` saves a fresh
 * session, and returns what a browser would hold after logging in. Cookie name, `__Host-`
 * prefix, path, domain, `persistent` and the timeouts all come from `options`.
 *
 * Pass the app's own options object (the same store instance): a session in another store, or a
 * cookie signed with other secrets, is unknown to the app. With the default store (no `store`
 * option) the app must run in the same process as the test. An app served elsewhere (another
 * process, a Worker in Miniflare) shares its sessions through its store's backend: give
 * `signIn` options with a store over that same backend and the app's secrets.
 *
 * With the `transport` option, the result also holds the `token` a native client sends in its
 * header.
 *
 * @typeParam T The shape of the session data.
 * @param options The app's session options (`withSession`'s, `sessionMiddleware`'s).
 * @param data What the session holds once signed in, such as `{ user: "ada" }`; with the
 * `users` option, include its `userKey` to index the session under its user.
 * @param signInOptions Where the browser will visit, for {@linkcode SignedIn.cookies}.
 * @returns The `Cookie` header, the `Set-Cookie` values, the cookies for Playwright, and with
 * the `transport` option the token.
 * @throws {TypeError} When `data` is not an object with at least one value, holds a value that
 * the options' `serializer` cannot store (without one, a value that is not plain JSON), or the
 * options are invalid.
 * @throws {StoreUnavailableError} When the store cannot be written.
 * @example
 * ```ts
 * import { getSession, withSession } from "websession";
 * import { MemoryStore, signIn } from "websession/testing";
 * import assert from "node:assert/strict";
 *
 * const options = {
 *   store: new MemoryStore(),
 *   secrets: ["a secret of at least thirty-two characters"],
 *   cookie: { name: "__Host-sid", persistent: false },
 * };
 * const app = withSession(async (req: Request) => {
 *   return new Response((await getSession<{ user?: string }>(req)).get("user") ?? "anonymous");
 * }, options);
 *
 * const { cookie, cookies } = await signIn(options, { user: "ada" }, { url: "https://app.example.com" });
 * assert.match(cookie, /^__Host-sid=[^;]+$/);
 * const response = await app(new Request("https://app.example.com/", { headers: { cookie } }));
 * assert.equal(await response.text(), "ada");
 * assert.deepEqual({ ...cookies[0], value: "" }, {
 *   name: "__Host-sid",
 *   value: "",
 *   domain: "app.example.com",
 *   path: "/",
 *   expires: -1, // not persistent
 *   httpOnly: true,
 *   secure: true,
 *   sameSite: "Lax",
 * });
 * // Playwright: await context.addCookies(cookies);
 * ```
 */
export async function signIn<T extends object = SessionData>(
  options: SessionOptions<T>,
  data: Partial<T>,
  signInOptions: SignInOptions = {},
): Promise<SignedIn> {
  if (typeof data !== "object" || data === null || Array.isArray(data) || Object.keys(data).length === 0) {
    throw new TypeError("Invalid data: signIn() needs an object with at least one value to store");
  }
  const host = new URL(signInOptions.url ?? "http://localhost").hostname;
  const session = await openSession<SessionData>(null, options as SessionOptions<SessionData>);
  for (const [key, value] of Object.entries(data)) session.set(key, value);
  const setCookie = await commitSession(session);
  const receivedAt = Date.now();
  const kept = setCookie.filter((value) => !removes(value));
  const signed: SignedIn = {
    cookie: kept.map((value) => value.split(";", 1)[0]!).join("; "),
    setCookie,
    cookies: kept.map((value) => browserCookie(value, host, receivedAt)),
  };
  const transport = options.transport;
  if (transport !== undefined) {
    // Cookies on too: the session was committed on the cookie, whose value is the token. Else it
    // was committed on the header, and the token is what a response would carry.
    const token = transport.cookie ? signed.cookies[0]?.value : takeSessionToken(session);
    if (token !== undefined) signed.token = token;
  }
  return signed;
}
