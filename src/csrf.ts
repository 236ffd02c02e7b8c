/**
 * CSRF protection tied to the session: `withSession(csrf(handler), options)`, or
 * `app.use(csrfMiddleware())` after `sessionMiddleware` in Hono.
 *
 * Requests with a safe method (GET, HEAD, OPTIONS, TRACE: RFC 9110 §9.2.1) always pass and cost
 * nothing. An unsafe request (POST, PUT, PATCH, DELETE, ...) passes when the browser says where
 * it comes from and that is this site:
 *
 * 1. `Sec-Fetch-Site` (every current browser sends it to HTTPS and localhost): `same-origin`
 *    and `none` (the user typed or bookmarked it) pass; `same-site` (a sibling subdomain) passes
 *    with `allowSameSite`; `cross-site` is refused, unless its `Origin` is in `trustedOrigins`.
 * 2. Else `Origin` (older browsers, plain-http sites): it must be the request's own origin or one
 *    of `trustedOrigins`.
 * 3. Else (neither header: a browser too old to send them, or a client that is not a browser but
 *    holds the cookie), the request must carry the session's synchronizer token, from
 *    {@linkcode csrfToken}, in the `_csrf` form field or the `X-CSRF-Token` header. Only then is
 *    the session loaded.
 *
 * A request whose session travels in a header (the `transport` option: a native client's
 * `Authorization: Bearer`) passes: a browser never adds that header by itself, so a forged request
 * carries no victim's session. `exemptHeaderTransport: false` checks it too, for a handler that
 * trusts a credential browsers do send by themselves (HTTP Basic, a client certificate).
 *
 * A refusal is `403 Forbidden` with a plain-text reason saying what to do. Tokens are bound to
 * the session id, so `session.regenerate()` on log in retires every token issued before it; each
 * call to `csrfToken` returns a differently masked token (BREACH), all valid for the session.
 *
 * The session keeps one random secret under the key `"_csrf"` (a `schema` must allow it).
 * Guide: docs/guides/csrf.md.
 *
 * @example
 * ```ts
 * import { getSession, MemoryStore, withSession } from "websession";
 * import { csrf, csrfToken } from "websession/csrf";
 * import assert from "node:assert/strict";
 *
 * const app = withSession(csrf(async (req: Request) => {
 *   const session = await getSession(req);
 *   if (req.method === "GET") {
 *     const token = await csrfToken(session);
 *     return new Response(`<form method="post"><input type="hidden" name="_csrf" value="${token}">`);
 *   }
 *   return new Response("saved");
 * }), { store: new MemoryStore(), secrets: ["a secret of at least thirty-two characters"] });
 *
 * const url = "https://example.com/settings";
 * const post = (headers: Record<string, string>) => app(new Request(url, { method: "POST", headers }));
 * assert.equal((await post({ "sec-fetch-site": "same-origin" })).status, 200);
 * assert.equal((await post({ "sec-fetch-site": "cross-site" })).status, 403);
 * assert.equal((await post({ origin: "https://evil.example" })).status, 403);
 *
 * // No Sec-Fetch-Site, no Origin: the form's token is needed.
 * const page = await app(new Request(url));
 * const cookie = page.headers.get("set-cookie")!.split(";")[0]!;
 * const token = /value="([^"]+)"/.exec(await page.text())![1]!;
 * assert.equal((await post({ cookie })).status, 403);
 * assert.equal((await post({ cookie, "x-csrf-token": token })).status, 200);
 * ```
 *
 * @module
 */
import { getSession as getHonoSession } from "./adapters/hono.ts";
import type { Session } from "./session.ts";
import { kState } from "./session_state.ts";
import type { SessionData } from "./store.ts";
import { getSession, onHeaderTransport } from "./with_session.ts";
import { presentedToken } from "./csrf/form.ts";
import { csrfToken, verifyCsrfToken } from "./csrf/token.ts";

export { csrfToken, verifyCsrfToken };

/** Methods that must not change state (RFC 9110 §9.2.1): never checked. */
const SAFE = new Set(["GET", "HEAD", "OPTIONS", "TRACE"]);

/**
 * Why a request was refused.
 *
 * @example
 * ```ts
 * import type { CsrfReason } from "websession/csrf";
 * import assert from "node:assert/strict";
 *
 * const reason: CsrfReason = "missing-token"; // no Sec-Fetch-Site, no Origin, no token
 * assert.equal(reason, "missing-token");
 * ```
 */
export type CsrfReason =
  /** `Sec-Fetch-Site: cross-site` from an origin not in `trustedOrigins`. */
  | "cross-site"
  /** `Sec-Fetch-Site: same-site` without `allowSameSite`. */
  | "same-site"
  /** No `Sec-Fetch-Site`, and an `Origin` that is neither the request's own nor trusted. */
  | "origin"
  /** Neither header, and no token in the header or the form field. */
  | "missing-token"
  /** A token that is not the session's (expired session, a log in since, or forged). */
  | "invalid-token";

/**
 * A refusal: its reason and the message sent as the `403` body.
 *
 * @example
 * ```ts
 * import { MemoryStore, withSession } from "websession";
 * import { csrf, type CsrfRefusal } from "websession/csrf";
 * import assert from "node:assert/strict";
 *
 * const refused: CsrfRefusal[] = [];
 * const app = withSession(csrf(() => new Response("ok"), {
 *   onRefuse: (refusal) => {
 *     refused.push(refusal);
 *     return Response.json({ error: refusal.reason }, { status: 403 });
 *   },
 * }), { store: new MemoryStore(), secrets: ["a secret of at least thirty-two characters"] });
 * const response = await app(new Request("https://example.com/", { method: "POST", headers: { "sec-fetch-site": "cross-site" } }));
 * assert.deepEqual(await response.json(), { error: "cross-site" });
 * assert.match(refused[0]!.message, /cross-site/);
 * ```
 */
export interface CsrfRefusal {
  /** Why. */
  reason: CsrfReason;
  /** What the client is told, and what it can do about it. */
  message: string;
}

/**
 * Options of {@linkcode csrf} and {@linkcode csrfMiddleware}.
 *
 * @example
 * ```ts
 * import { MemoryStore, withSession } from "websession";
 * import { csrf, type CsrfOptions } from "websession/csrf";
 * import assert from "node:assert/strict";
 *
 * const options: CsrfOptions = { trustedOrigins: ["https://admin.example.com"], allowSameSite: false };
 * const app = withSession(csrf(() => new Response("ok"), options), {
 *   store: new MemoryStore(),
 *   secrets: ["a secret of at least thirty-two characters"],
 * });
 * const post = (origin: string) =>
 *   app(new Request("https://example.com/", { method: "POST", headers: { origin, "sec-fetch-site": "same-site" } }));
 * assert.equal((await post("https://admin.example.com")).status, 200);
 * assert.equal((await post("https://blog.example.com")).status, 403);
 * ```
 */
export interface CsrfOptions {
  /**
   * Accept `Sec-Fetch-Site: same-site`: requests from other subdomains of the same registrable
   * domain (`blog.example.com` to `app.example.com`). Any of them can then post here.
   * @default false
   */
  allowSameSite?: boolean;
  /**
   * Origins accepted besides the request's own, each exactly as a browser sends `Origin`
   * (`"https://admin.example.com"`, no path). Also the way to accept the public origin when a
   * proxy hands the app another one in `request.url`.
   * @default []
   */
  trustedOrigins?: readonly string[];
  /**
   * The form field that carries the token (`application/x-www-form-urlencoded` and
   * `multipart/form-data` bodies).
   * @default "_csrf"
   */
  field?: string;
  /**
   * The request header that carries the token (for `fetch`).
   * @default "X-CSRF-Token"
   */
  header?: string;
  /**
   * How many bytes of a form body are read looking for the field; put the field first in large
   * forms (uploads), or send the header.
   * @default 65536
   */
  maxBodyBytes?: number;
  /**
   * Answers a refused request.
   * @default a `403` with the refusal's message as plain text
   */
  onRefuse?: (refusal: CsrfRefusal, request: Request) => Response | Promise<Response>;
  /**
   * Let a request whose session travels in a header (the `transport` option) pass unchecked: a
   * browser never adds that header by itself, so such a request carries no victim's session.
   * Set `false` when the handler trusts a credential a browser does send by itself besides the
   * session cookie (HTTP Basic or Digest credentials, a TLS client certificate, an address
   * allowlist): a request without a session header (with `headerTransport({ cookie: false })`,
   * every one) then counts as on the header while such a credential comes along. The admin
   * handler (`websession/admin`) always checks.
   * @default true
   */
  exemptHeaderTransport?: boolean;
}

interface ResolvedCsrfOptions {
  allowSameSite: boolean;
  trusted: ReadonlySet<string>;
  field: string;
  header: string;
  maxBodyBytes: number;
  onRefuse: (refusal: CsrfRefusal, request: Request) => Response | Promise<Response>;
  exemptHeaderTransport: boolean;
}

const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function resolveCsrfOptions(options: CsrfOptions): ResolvedCsrfOptions {
  if (typeof options !== "object" || options === null) {
    throw new TypeError("Invalid CSRF options: expected an object");
  }
  const trusted = new Set<string>();
  for (const origin of options.trustedOrigins ?? []) {
    let parsed: string | undefined;
    try {
      parsed = new URL(origin).origin;
    } catch {
      // reported below
    }
    if (parsed !== origin || parsed === "null") {
      throw new TypeError(
        `Invalid trustedOrigins: "${String(origin)}" is not an origin such as "https://app.example.com"`,
      );
    }
    trusted.add(origin);
  }
  const field = options.field ?? "_csrf";
  if (typeof field !== "string" || field.length === 0) {
    throw new TypeError(`Invalid field: "${String(field)}" must be a non-empty string`);
  }
  const header = options.header ?? "X-CSRF-Token";
  if (typeof header !== "string" || !HEADER_NAME.test(header)) {
    throw new TypeError(`Invalid header: "${String(header)}" is not a header name`);
  }
  const maxBodyBytes = options.maxBodyBytes ?? 65_536;
  if (!Number.isSafeInteger(maxBodyBytes) || maxBodyBytes < 1) {
    throw new RangeError(`Invalid maxBodyBytes: "${String(maxBodyBytes)}" must be a positive integer`);
  }
  if (options.onRefuse !== undefined && typeof options.onRefuse !== "function") {
    throw new TypeError("Invalid onRefuse: expected a function");
  }
  const exempt = options.exemptHeaderTransport ?? true;
  if (typeof exempt !== "boolean") {
    throw new TypeError(`Invalid exemptHeaderTransport: "${String(exempt)}" is not true or false`);
  }
  return {
    allowSameSite: options.allowSameSite === true,
    trusted,
    field,
    header,
    maxBodyBytes,
    onRefuse: options.onRefuse ?? defaultRefuse,
    exemptHeaderTransport: exempt,
  };
}

function defaultRefuse(refusal: CsrfRefusal): Response {
  return new Response(`${refusal.message}\n`, {
    status: 403,
    headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
  });
}

function refusal(reason: CsrfReason, message: string): CsrfRefusal {
  return { reason, message };
}

/** What the headers say: pass, refuse, or ask for the token. */
function judge(request: Request, o: ResolvedCsrfOptions): "pass" | "token" | CsrfRefusal {
  const method = request.method;
  if (SAFE.has(method)) return "pass";
  const origin = request.headers.get("origin");
  const trusted = origin !== null && o.trusted.has(origin);
  const site = request.headers.get("sec-fetch-site");
  if (site !== null) {
    if (site === "same-origin" || site === "none" || trusted) return "pass";
    if (site === "same-site") {
      if (o.allowSameSite) return "pass";
      return refusal(
        "same-site",
        `Cross-origin request refused: a page of another subdomain (Sec-Fetch-Site: same-site, Origin: "${
          origin ?? "none"
        }") may not send ${method} here: send it from a page of this origin, or add that origin to trustedOrigins`,
      );
    }
    return refusal(
      "cross-site",
      `Cross-site request refused: a page of another site (Sec-Fetch-Site: "${site}", Origin: "${
        origin ?? "none"
      }") may not send ${method} here: send it from a page of this site`,
    );
  }
  if (origin !== null) {
    if (trusted) return "pass";
    const own = new URL(request.url).origin;
    if (origin === own) return "pass";
    return refusal(
      "origin",
      `Cross-origin request refused: Origin "${origin}" is not "${own}": send ${method} from a page of this site, or add that origin to trustedOrigins`,
    );
  }
  return "token";
}

/** Whether a session (Hono's `c.var.session`) came in on the header transport. */
function sessionOnHeader(session: unknown): boolean {
  return (session as { [kState]?: { onHeader?: boolean } } | undefined)?.[kState]?.onHeader === true;
}

/** Checks a request; loads the session (through `sessionOf`) only when a token must be checked. */
async function check(
  request: Request,
  o: ResolvedCsrfOptions,
  sessionOf: () => Promise<Session<SessionData>>,
  onHeader: () => boolean,
): Promise<CsrfRefusal | undefined> {
  const verdict = judge(request, o);
  if (verdict === "pass") return undefined;
  // A session carried in a header (the `transport` option) is never sent by the browser on its
  // own: a forged request carries no one's session but the forger's. Nothing to check, unless
  // the handler trusts a credential the browser does send by itself (exemptHeaderTransport).
  if (o.exemptHeaderTransport && onHeader()) return undefined;
  if (verdict !== "token") return verdict;
  const token = await presentedToken(request, o);
  if (token === undefined || token === "") {
    return refusal(
      "missing-token",
      `CSRF token missing: the request has neither Sec-Fetch-Site nor Origin, so it must carry the session's CSRF token in the "${o.field}" form field (within its first ${o.maxBodyBytes} bytes) or the ${o.header} header: load the form again and resubmit`,
    );
  }
  if (!(await verifyCsrfToken(await sessionOf(), token))) {
    return refusal(
      "invalid-token",
      "CSRF token invalid: it is not this session's (the session ended, or you logged in or out since the page was loaded): load the page again and resubmit",
    );
  }
  return undefined;
}

/**
 * Wraps a `withSession` handler with CSRF protection: `withSession(csrf(handler), options)`.
 * Safe methods go straight to the handler; unsafe ones are checked as the module describes and
 * refused with `403`. The session is loaded only for a request that must show a token.
 *
 * @typeParam A The handler's arguments after the request (Workers' `env`, `ctx`).
 * @param handler The fetch handler, inside `withSession`.
 * @param options What to accept, and where the token is.
 * @returns The wrapped handler, with the handler's signature.
 * @throws {TypeError} On invalid options (an origin with a path, an empty field name, ...).
 * @throws {RangeError} On an invalid `maxBodyBytes`.
 * @example
 * ```ts
 * import { getSession, MemoryStore, withSession } from "websession";
 * import { csrf } from "websession/csrf";
 * import assert from "node:assert/strict";
 *
 * let loads = 0;
 * const store = new MemoryStore();
 * const counting = Object.assign(Object.create(store), { load: (key: string) => (loads++, store.load(key)) });
 * const app = withSession(csrf(async (req: Request) => {
 *   if (new URL(req.url).pathname === "/account") await getSession(req);
 *   return new Response("ok");
 * }), { store: counting, secrets: ["a secret of at least thirty-two characters"] });
 *
 * const cookie = "session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
 * assert.equal((await app(new Request("https://example.com/", { headers: { cookie } }))).status, 200);
 * assert.equal(loads, 0); // a safe request that never asks for the session costs no load
 * ```
 */
export function csrf<A extends unknown[]>(
  handler: (request: Request, ...rest: A) => Response | Promise<Response>,
  options: CsrfOptions = {},
): (request: Request, ...rest: A) => Promise<Response> {
  if (typeof handler !== "function") throw new TypeError("csrf() needs a handler function");
  const o = resolveCsrfOptions(options);
  return async function csrfHandler(request: Request, ...rest: A): Promise<Response> {
    const refused = await check(request, o, () => getSession(request), () => onHeaderTransport(request));
    if (refused !== undefined) return await o.onRefuse(refused, request);
    return await handler(request, ...rest);
  };
}

/**
 * The part of a Hono context that {@linkcode csrfMiddleware} uses (any Hono `Context` is one).
 *
 * @example
 * ```ts
 * import type { CsrfContext } from "websession/csrf";
 * import assert from "node:assert/strict";
 *
 * const c: CsrfContext = { req: { raw: new Request("https://example.com/") }, get: () => undefined };
 * assert.equal(c.req.raw.method, "GET");
 * ```
 */
export interface CsrfContext {
  /** Hono's request wrapper, with the Web `Request` in `raw`. */
  req: { raw: Request };
  /** Hono's `c.get`: the session is `c.get("session")`, set by `sessionMiddleware`. */
  // deno-lint-ignore no-explicit-any
  get(key: any): any;
}

/**
 * Hono middleware for CSRF protection: `app.use(sessionMiddleware(options), csrfMiddleware())`.
 * Mount it after `sessionMiddleware` (with or without options): it takes the session through
 * `websession/hono`'s `getSession(c)`, only when a request must show a token.
 *
 * @param options What to accept, and where the token is.
 * @returns The middleware.
 * @throws {TypeError} On invalid options.
 * @throws {RangeError} On an invalid `maxBodyBytes`.
 * @example
 * ```ts
 * import { Hono } from "hono";
 * import { MemoryStore } from "websession";
 * import { csrfMiddleware, csrfToken } from "websession/csrf";
 * import { sessionMiddleware, type SessionEnv } from "websession/hono";
 * import assert from "node:assert/strict";
 *
 * const app = new Hono<SessionEnv>();
 * app.use(sessionMiddleware({ store: new MemoryStore(), secrets: "a secret of at least thirty-two characters" }));
 * app.use(csrfMiddleware());
 * app.get("/token", async (c) => c.text(await csrfToken(c.var.session)));
 * app.post("/save", (c) => c.text("saved"));
 *
 * const page = await app.request("/token");
 * const cookie = page.headers.get("set-cookie")!.split(";")[0]!;
 * const token = await page.text();
 * assert.equal((await app.request("/save", { method: "POST", headers: { cookie } })).status, 403);
 * assert.equal((await app.request("/save", { method: "POST", headers: { cookie, "x-csrf-token": token } })).status, 200);
 * ```
 */
export function csrfMiddleware(
  options: CsrfOptions = {},
): (c: CsrfContext, next: () => Promise<void>) => Promise<Response | void> {
  const o = resolveCsrfOptions(options);
  return async function csrfHandler(c: CsrfContext, next: () => Promise<void>): Promise<Response | void> {
    const request = c.req.raw;
    // deno-lint-ignore no-explicit-any
    const sessionOf = () => getHonoSession(c as any);
    const refused = await check(request, o, sessionOf, () => sessionOnHeader(c.get("session")));
    if (refused !== undefined) return await o.onRefuse(refused, request);
    await next();
  };
}
