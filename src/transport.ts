/**
 * The session in a header, for native and mobile clients: the same signed value the cookie
 * carries, read from `Authorization: Bearer <token>` (RFC 6750 §2.1) or from a header the
 * application names, and returned in a response header (`Session-Token` by default) instead of
 * `Set-Cookie`. Everything else (rotation, expiry, revocation, compare-and-set) is the cookie's.
 *
 * A request is answered on the transport it came in on: a request on the header transport never
 * reads, sets or clears the cookie, and a cookie request never gets the response header.
 * Guide: docs/guides/native-clients.md.
 *
 * @module
 */
import { type CookieSource, type Handle, kTransport, type TransportFlow } from "./backend.ts";
import { addVary, makePrivate, withSessionHeaders } from "./headers.ts";
import type { Session } from "./session.ts";
import { kState } from "./session_state.ts";

/**
 * Options of {@linkcode headerTransport}: the session travels in a request header and a response
 * header.
 *
 * @example
 * ```ts
 * import { headerTransport, type TransportOptions } from "websession/transport";
 * import assert from "node:assert/strict";
 *
 * // A web app (cookies) and a native app (X-Session) on one API.
 * const options: TransportOptions = { header: "X-Session", responseHeader: "X-Session", cookie: true };
 * const transport = headerTransport(options);
 * assert.equal(transport.tokenOf(new Headers({ cookie: "session=abc" })), undefined); // the cookie
 * assert.equal(transport.tokenOf(new Headers({ "x-session": "" })), ""); // the header, no session yet
 * assert.throws(() => headerTransport({ header: "Cookie" }), TypeError);
 * ```
 */
export interface TransportOptions {
  /**
   * The request header that carries the session token. `"Authorization"`: the token comes as
   * `Authorization: Bearer <token>` (RFC 6750 §2.1; the scheme is case-insensitive, RFC 9110
   * §11.1), and credentials of any other scheme are not a session token. Any other header name:
   * its whole value is the token. An empty token (`Authorization: Bearer`, or the header with an
   * empty value) says "this client uses the header" without naming a session yet.
   * @default "Authorization"
   */
  header?: string;
  /**
   * The response header that hands the client a new token (on sign-in, `regenerate()`, and after
   * a secret rotation), or an empty value when the session ended (log out, `destroy()`): the
   * client then drops its token. Absent when the client's token stays as it is. Browsers show it
   * to cross-origin scripts only when CORS exposes it (`Access-Control-Expose-Headers`).
   * @default "Session-Token"
   */
  responseHeader?: string;
  /**
   * Also serve requests that do not carry the request header on the session cookie, as without
   * this option (a web app and a native app on one API). A request that carries the header is
   * answered on the header whether or not it also carries the cookie: the cookie is then neither
   * read nor changed. `false`: every request is on the header transport, and cookies are never
   * read or sent.
   * @default false
   */
  cookie?: boolean;
}

/**
 * A transport made by {@linkcode headerTransport}: the value of the `transport` option. Its
 * methods are how the request flow uses it; applications only pass it on.
 *
 * @example
 * ```ts
 * import { headerTransport, type SessionTransport } from "websession/transport";
 * import assert from "node:assert/strict";
 *
 * const transport: SessionTransport = headerTransport({ header: "X-Session", cookie: true });
 * assert.equal(transport.header, "X-Session");
 * assert.equal(transport.responseHeader, "Session-Token");
 * assert.equal(transport.tokenOf(new Headers({ "x-session": "abc.def" })), "abc.def");
 * assert.equal(transport.tokenOf(new Headers()), undefined); // no header: the cookie
 * ```
 */
export interface SessionTransport {
  /** The request header, as the application spelt it. */
  readonly header: string;
  /** The response header, as the application spelt it. */
  readonly responseHeader: string;
  /** Requests without the header use the cookie. */
  readonly cookie: boolean;
  /**
   * Where a request's session travels: `undefined` for the cookie, else the token its header
   * carries (`""`: none yet). A malformed token is returned as it is: verifying it fails, as a
   * malformed cookie's does.
   */
  tokenOf(headers: Headers): string | undefined;
  /**
   * Adds a committed session's headers to a response for the transport the request came in on.
   *
   * @param response The handler's response (never given a credential itself: a copy is).
   * @param onHeader The request came in on the header.
   * @param token Header transport: the token to send, `""` when the session ended.
   * @param cookies Cookie transport: the `Set-Cookie` values.
   */
  respond(
    response: Response,
    onHeader: boolean,
    token: string | undefined,
    cookies: readonly string[],
  ): Response;
}

/** A header name (RFC 9110 §5.1: a token). */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Headers that are never a session token's place. */
const RESERVED = new Set(["cookie", "set-cookie", "vary", "cache-control", "content-type", "content-length"]);

function headerName(option: string, value: unknown, fallback: string): string {
  if (value === undefined) return fallback;
  if (typeof value !== "string" || !HEADER_NAME.test(value) || RESERVED.has(value.toLowerCase())) {
    throw new TypeError(
      `Invalid transport.${option}: "${String(value)}" is not a header name a session token can use`,
    );
  }
  return value;
}

/** `Bearer` and what follows it (RFC 9110 §11.4 credentials; RFC 6750 §2.1). */
const BEARER = /^bearer(?:[ \t]+(.*))?$/is;

/**
 * Makes the `transport` option that carries the session in a header, for native and mobile
 * clients. The module lies outside the core: an application that does not import it bundles none
 * of it.
 *
 * @param options The request and response headers, and whether cookies stay on.
 * @returns The transport, for `withSession(handler, { transport, ... })` and the adapters.
 * @throws {TypeError} On options that are not an object, an invalid header name (or `Cookie`,
 *   `Set-Cookie`, ...), a response header that is `Authorization`, or a `cookie` that is not a
 *   boolean. `withSession` throws a `TypeError` when the store is a `CookieStore` (the whole
 *   session lives in cookies there).
 * @example
 * ```ts
 * import { getSession, MemoryStore, withSession } from "websession";
 * import { headerTransport } from "websession/transport";
 * import assert from "node:assert/strict";
 *
 * const api = withSession(async (req: Request) => {
 *   const session = await getSession<{ user?: string }>(req);
 *   if (new URL(req.url).pathname === "/login") session.set("user", "ada");
 *   if (new URL(req.url).pathname === "/logout") session.destroy();
 *   return new Response(session.get("user") ?? "anonymous");
 * }, {
 *   store: new MemoryStore(),
 *   secrets: ["a secret of at least thirty-two characters"],
 *   transport: headerTransport({ header: "Authorization" }), // Bearer tokens, no cookies
 * });
 * const call = (path: string, token?: string) =>
 *   api(new Request(`https://api.example.com${path}`, {
 *     method: "POST",
 *     headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
 *   }));
 *
 * const login = await call("/login");
 * const token = login.headers.get("session-token")!;
 * assert.equal(login.headers.get("set-cookie"), null);
 * const me = await call("/me", token);
 * assert.equal(await me.text(), "ada");
 * assert.equal(me.headers.get("session-token"), null); // the client's token stays as it is
 * assert.equal(me.headers.get("vary"), "Authorization");
 * const logout = await call("/logout", token);
 * assert.equal(logout.headers.get("session-token"), ""); // ended: drop the token
 * assert.equal(await (await call("/me", token)).text(), "anonymous");
 * ```
 */
export function headerTransport(options: TransportOptions = {}): SessionTransport {
  if (typeof options !== "object" || options === null) {
    throw new TypeError('Invalid transport: expected options such as { header: "Authorization" }');
  }
  const header = headerName("header", options.header, "Authorization");
  const responseHeader = headerName("responseHeader", options.responseHeader, "Session-Token");
  if (responseHeader.toLowerCase() === "authorization") {
    throw new TypeError('Invalid transport.responseHeader: "Authorization" is a request header');
  }
  if (options.cookie !== undefined && typeof options.cookie !== "boolean") {
    throw new TypeError(`Invalid transport.cookie: "${String(options.cookie)}" is not true or false`);
  }
  const cookie = options.cookie === true;
  const bearer = header.toLowerCase() === "authorization";
  const tokenOf = (headers: Headers): string | undefined => {
    const value = headers.get(header);
    if (bearer && value !== null) {
      const match = BEARER.exec(value);
      if (match !== null) return (match[1] ?? "").trim();
    } else if (value !== null) {
      return value;
    }
    // No header, or credentials of another scheme: the cookie, where it is on.
    return cookie ? undefined : "";
  };
  const respond = (
    response: Response,
    onHeader: boolean,
    token: string | undefined,
    cookies: readonly string[],
  ) => {
    if (!onHeader) return varyOn(withSessionHeaders(response, cookies), cookie ? header : undefined);
    return withToken(response, cookie ? [header, "Cookie"] : [header], responseHeader, token);
  };
  const flow: TransportFlow = {
    header,
    check,
    tokenOf,
    source: (h, input, cookieSource) => sourceFor(h, input, cookieSource, tokenOf, cookie),
    decorate(h, response, cookies) {
      const token = h.tokenOut;
      h.tokenOut = undefined;
      return respond(response, h.onHeader, token, cookies);
    },
  };
  return Object.freeze({ header, responseHeader, cookie, tokenOf, respond, [kTransport]: flow });
}

function check(sealed: boolean): void {
  if (sealed) {
    throw new TypeError(
      "Invalid transport: a CookieStore keeps the whole session in cookies; the header transport needs a server store",
    );
  }
}

/**
 * Where a request's session comes from: its header (which marks `h` as answered on the header),
 * or the cookie when it has none and the cookie is on.
 */
function sourceFor(
  h: Handle,
  input: unknown,
  cookieSource: (input: unknown) => CookieSource,
  tokenOf: (headers: Headers) => string | undefined,
  cookie: boolean,
): CookieSource {
  const headers = input instanceof Request ? input.headers : input instanceof Headers ? input : undefined;
  if (headers === undefined) {
    if (cookie || input === null || input === undefined) {
      h.onHeader = !cookie;
      return cookieSource(input);
    }
    throw new TypeError(
      "Invalid cookie input: the header transport reads the session from a Request or Headers",
    );
  }
  const token = tokenOf(headers);
  if (token === undefined) return cookieSource(input);
  h.onHeader = true;
  if (token === "") return null;
  h.tokenIn = token;
  const name = h.o.cookie.name;
  return { get: (cookieName: string) => cookieName === name ? token : undefined };
}

/**
 * Takes the token a committed session has for its client, for code that uses `openSession` and
 * `commitSession` on the header transport (`commitSession` returns no `Set-Cookie` values there):
 * send it in the transport's `responseHeader`. Taken once: a second call returns `undefined`
 * until a later commit has another token to send.
 *
 * @param session A session from `openSession`, after `commitSession`.
 * @returns A new token; `""` when the session ended (the client drops its token); `undefined`
 *   when the client's token stays as it is, or the request was on the cookie.
 * @throws {TypeError} When `session` is not a `Session`.
 * @example
 * ```ts
 * import { commitSession, MemoryStore, openSession } from "websession";
 * import { headerTransport, takeSessionToken } from "websession/transport";
 * import assert from "node:assert/strict";
 *
 * const options = {
 *   store: new MemoryStore(),
 *   secrets: ["a secret of at least thirty-two characters"],
 *   transport: headerTransport(),
 * };
 * const session = await openSession<{ user?: string }>(new Headers(), options);
 * session.set("user", "ada");
 * assert.deepEqual(await commitSession(session), []); // no cookie on the header transport
 * const token = takeSessionToken(session)!;
 * const again = await openSession<{ user?: string }>(new Headers({ authorization: `Bearer ${token}` }), options);
 * assert.equal(again.get("user"), "ada");
 * ```
 */
export function takeSessionToken<T extends object>(session: Session<T>): string | undefined {
  const h = (session as unknown as { [kState]?: Handle } | null)?.[kState];
  if (h === undefined) throw new TypeError("takeSessionToken() needs a session from openSession()");
  const token = h.tokenOut;
  h.tokenOut = undefined;
  return token;
}

/**
 * The header transport's response: `Vary` naming the request header(s) always; with a token,
 * the response header and a private `Cache-Control` (RFC 9111 §5.2.2.7), on a copy, since one
 * `Response` object may answer many requests.
 */
function withToken(response: Response, vary: string[], name: string, token: string | undefined): Response {
  if (token === undefined) {
    try {
      for (const field of vary) addVary(response.headers, field);
      return response;
    } catch {
      // immutable headers: a copy below
    }
  }
  const copy = response.status === 101 ? response : new Response(response.body, response);
  for (const field of vary) addVary(copy.headers, field);
  if (token !== undefined) {
    copy.headers.set(name, token);
    makePrivate(copy.headers);
  }
  return copy;
}

function varyOn(response: Response, name: string | undefined): Response {
  if (name === undefined) return response;
  try {
    addVary(response.headers, name);
    return response;
  } catch {
    const copy = new Response(response.body, response);
    addVary(copy.headers, name);
    return copy;
  }
}
