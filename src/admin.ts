/**
 * An admin handler for sessions per user: a fetch handler that lists a user's live sessions
 * (redacted: when, the device, a handle; never the data, cookie or storage key), shows one, and
 * ends one or all of them. It answers a plain HTML page to people and JSON to tools (by the
 * request's `Accept`), and is guarded twice: the application's `authorize(request)` decides who
 * may use it, and CSRF protection (`websession/csrf`) refuses cross-site posts of its actions.
 *
 * Routes, under `basePath`:
 *
 * | method | path | query | does |
 * | --- | --- | --- | --- |
 * | `GET` | `basePath` | `user` | lists the user's sessions (without `user`: a form asking for one) |
 * | `GET` | `basePath` | `user`, `handle` | shows one session (`404` when it is not the user's live session) |
 * | `POST` | `basePath/end` | `user`, `handle` | ends that session |
 * | `POST` | `basePath/end-all` | `user` | ends every session of the user |
 *
 * Guide: docs/guides/admin.md.
 *
 * @module
 */
import { csrf, type CsrfOptions, csrfToken } from "./csrf.ts";
import type { SessionOptions } from "./options.ts";
import type { Session } from "./session.ts";
import type { SessionData } from "./store.ts";
import { endUserSessions, listUserSessions, type UserSession } from "./users.ts";
import { getSession, withSession } from "./with_session.ts";

/**
 * Options of {@linkcode createSessionAdmin}: the options your app's `withSession` uses (the same
 * store, secrets and `users`), plus who may use it.
 *
 * @example
 * ```ts
 * import { MemoryStore, userSessions } from "websession";
 * import type { SessionAdminOptions } from "websession/admin";
 * import assert from "node:assert/strict";
 *
 * const options: SessionAdminOptions = {
 *   store: new MemoryStore(),
 *   secrets: ["a secret of at least thirty-two characters"],
 *   users: userSessions({ userKey: "user" }),
 *   basePath: "/admin/sessions",
 *   authorize: (req) => req.headers.get("authorization") === "Bearer admin-token",
 * };
 * assert.equal(options.basePath, "/admin/sessions");
 * ```
 */
export interface SessionAdminOptions<T extends object = SessionData> extends SessionOptions<T> {
  /**
   * Decides whether the request may use the handler; runs first, inside `withSession` (so it may
   * `await getSession(request)` and check the administrator's own session). `false` answers
   * `403 Forbidden`; a `Response` is answered as it is (a `401` with `WWW-Authenticate`, a
   * redirect to a log in page).
   */
  authorize: (request: Request) => boolean | Response | Promise<boolean | Response>;
  /**
   * The path the handler is mounted at (its routes are under it).
   * @default "/"
   */
  basePath?: string;
  /** Options of the CSRF check on its actions (`trustedOrigins`, ...). */
  csrf?: CsrfOptions;
}

/** What the admin handler shows of one session: no data, no cookie, no storage key. */
interface Redacted {
  handle: string;
  current: boolean;
  createdAt: number;
  lastSeenAt: number;
  expiresAt: number;
  userAgent?: string;
  clientAddress?: string;
}

function redact(s: UserSession): Redacted {
  const out: Redacted = {
    handle: s.handle,
    current: s.current,
    createdAt: s.createdAt,
    lastSeenAt: s.lastSeenAt,
    expiresAt: s.expiresAt,
  };
  if (s.userAgent !== undefined) out.userAgent = s.userAgent;
  if (s.clientAddress !== undefined) out.clientAddress = s.clientAddress;
  return out;
}

/**
 * Escapes text for HTML element content and quoted attribute values (`&`, `<`, `>`, `"`, `'` as
 * numeric character references): what the admin page does to every value it shows.
 *
 * @param text Any text.
 * @returns The text, safe between tags and inside quoted attributes.
 * @example
 * ```ts
 * import { escapeHtml } from "websession/admin";
 * import assert from "node:assert/strict";
 *
 * assert.equal(escapeHtml(`<img src=x onerror="alert('1')">`), "&#60;img src=x onerror=&#34;alert(&#39;1&#39;)&#34;&#62;");
 * ```
 */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Whether the client asked for HTML (a browser); tools get JSON. */
function wantsHtml(request: Request): boolean {
  return /\btext\/html\b/i.test(request.headers.get("accept") ?? "");
}

const PAGE_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "no-store",
  "content-security-policy":
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
  "referrer-policy": "no-referrer",
  "x-content-type-options": "nosniff",
};

function json(body: unknown, status = 200): Response {
  return Response.json(body, { status, headers: { "cache-control": "no-store" } });
}

function problem(request: Request, status: number, message: string): Response {
  if (!wantsHtml(request)) return json({ error: message }, status);
  return new Response(page("Sessions", `<p role="alert">${escapeHtml(message)}</p>`), {
    status,
    headers: PAGE_HEADERS,
  });
}

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>` +
    `<style>body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse}` +
    `td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}</style></head>` +
    `<body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;
}

function time(ms: number): string {
  return escapeHtml(new Date(ms).toISOString());
}

function endForm(action: string, token: string, label: string): string {
  return `<form method="post" action="${escapeHtml(action)}">` +
    `<input type="hidden" name="_csrf" value="${escapeHtml(token)}">` +
    `<button type="submit">${escapeHtml(label)}</button></form>`;
}

interface Routes {
  base: string;
  end: string;
  endAll: string;
}

function link(path: string, query: Record<string, string>): string {
  return `${path}?${new URLSearchParams(query)}`;
}

function listPage(routes: Routes, user: string, sessions: Redacted[], token: string): string {
  const rows = sessions.map((s) =>
    `<tr data-handle="${escapeHtml(s.handle)}"><td><a href="${
      escapeHtml(link(routes.base, { user, handle: s.handle }))
    }"><code>${escapeHtml(s.handle)}</code></a>${s.current ? " (this device)" : ""}</td>` +
    `<td>${time(s.createdAt)}</td><td>${time(s.lastSeenAt)}</td><td>${time(s.expiresAt)}</td>` +
    `<td>${escapeHtml(s.userAgent ?? "")}</td><td>${escapeHtml(s.clientAddress ?? "")}</td>` +
    `<td>${endForm(link(routes.end, { user, handle: s.handle }), token, "End")}</td></tr>`
  ).join("");
  const table = sessions.length === 0
    ? "<p>No live sessions.</p>"
    : `<table><thead><tr><th>Session</th><th>Created</th><th>Last seen</th><th>Expires</th>` +
      `<th>User agent</th><th>Client address</th><th></th></tr></thead><tbody>${rows}</tbody></table>` +
      endForm(link(routes.endAll, { user }), token, "End all sessions");
  return page(`Sessions of ${user}`, userForm(routes, user) + table);
}

function userForm(routes: Routes, user = ""): string {
  return `<form method="get" action="${escapeHtml(routes.base)}"><label>User <input name="user" value="${
    escapeHtml(user)
  }" required></label> <button type="submit">List sessions</button></form>`;
}

/** Answers a `GET`: the form, a user's list, or one session. */
async function show(request: Request, routes: Routes, session: Session<object>): Promise<Response> {
  const url = new URL(request.url);
  const user = url.searchParams.get("user");
  const handle = url.searchParams.get("handle");
  const html = wantsHtml(request);
  if (user === null || user === "") {
    if (!html) return json({ error: "Missing user: give ?user=<the user's id>" }, 400);
    return new Response(page("Sessions", userForm(routes)), { headers: PAGE_HEADERS });
  }
  const sessions = (await listUserSessions(session, user)).map(redact);
  if (handle !== null) {
    const one = sessions.find((s) => s.handle === handle);
    if (one === undefined) {
      return problem(request, 404, "No such session: it ended, expired, or is not this user's");
    }
    if (!html) return json(one);
    return new Response(listPage(routes, user, [one], await csrfToken(session)), { headers: PAGE_HEADERS });
  }
  if (!html) return json({ user, sessions });
  return new Response(listPage(routes, user, sessions, await csrfToken(session)), { headers: PAGE_HEADERS });
}

/** Answers a `POST` to `end` or `end-all`; people are sent back to the list (`303`). */
async function act(
  request: Request,
  routes: Routes,
  session: Session<object>,
  all: boolean,
): Promise<Response> {
  const url = new URL(request.url);
  const user = url.searchParams.get("user");
  const handle = url.searchParams.get("handle");
  if (user === null || user === "") return problem(request, 400, "Missing user: give ?user=<the user's id>");
  if (!all && (handle === null || handle === "")) {
    return problem(request, 400, "Missing handle: give &handle=<one session's handle>");
  }
  const ended = await endUserSessions(session, {
    user,
    reason: "admin",
    ...(all ? {} : { handles: [handle!] }),
  });
  if (!all && ended === 0) {
    return problem(request, 404, "No such session: it ended, expired, or is not this user's");
  }
  if (!wantsHtml(request)) return json({ ended });
  return new Response(null, { status: 303, headers: { location: link(routes.base, { user }) } });
}

/**
 * The CSRF options of the admin actions: `authorize` may trust what a browser sends by itself
 * (HTTP Basic credentials, a client certificate, its address), so a request on the header
 * transport is checked like any other.
 */
function adminCsrf(options: CsrfOptions | undefined): CsrfOptions {
  return { ...options, exemptHeaderTransport: false };
}

function routesOf(basePath: unknown): Routes {
  // "//host" would be another host to a form's action and to the redirect's Location (RFC 3986
  // §4.2: a network-path reference); "?", "#" and "\\" are no part of a path.
  if (typeof basePath !== "string" || !/^\/(?!\/)[^?#\\\s]*$/.test(basePath)) {
    throw new TypeError(
      `Invalid basePath: "${
        String(basePath)
      }" must be a path starting with one "/" (no "?", "#", "\\" or spaces)`,
    );
  }
  const base = basePath.length > 1 ? basePath.replace(/\/+$/, "") : "/";
  const under = base === "/" ? "" : base;
  return { base, end: `${under}/end`, endAll: `${under}/end-all` };
}

/**
 * Creates the admin handler: a fetch handler `(request) => Promise<Response>` to mount at
 * `basePath` (its routes are in the module documentation). It runs inside `withSession` with the
 * given options, so the administrator's own session is at hand for `authorize` and for the CSRF
 * token of its forms; use the same store, secrets and `users` as the app.
 *
 * @param options The app's session options, `authorize`, `basePath`, `csrf`.
 * @returns The handler.
 * @throws {TypeError} Without an `authorize` function, on a bad `basePath`, or on invalid
 * session or CSRF options.
 * @example
 * ```ts
 * import { getSession, MemoryStore, userSessions, withSession } from "websession";
 * import { createSessionAdmin } from "websession/admin";
 * import assert from "node:assert/strict";
 *
 * const options = {
 *   store: new MemoryStore(),
 *   secrets: ["a secret of at least thirty-two characters"],
 *   users: userSessions({ userKey: "user" }),
 * };
 * const app = withSession(async (req: Request) => {
 *   (await getSession(req)).set("user", "ada");
 *   return new Response("signed in");
 * }, options);
 * await app(new Request("https://example.com/login"));
 *
 * const admin = createSessionAdmin({
 *   ...options,
 *   basePath: "/admin/sessions",
 *   authorize: (req) => req.headers.get("authorization") === "Bearer admin-token",
 * });
 * const asAdmin = { authorization: "Bearer admin-token", "sec-fetch-site": "same-origin" };
 * const listed = await admin(new Request("https://example.com/admin/sessions?user=ada", { headers: asAdmin }));
 * const { sessions } = await listed.json();
 * assert.equal(sessions.length, 1);
 * assert.equal((await admin(new Request("https://example.com/admin/sessions?user=ada"))).status, 403);
 *
 * const end = `https://example.com/admin/sessions/end?user=ada&handle=${sessions[0].handle}`;
 * const crossSite = { ...asAdmin, "sec-fetch-site": "cross-site" };
 * assert.equal((await admin(new Request(end, { method: "POST", headers: crossSite }))).status, 403);
 * assert.deepEqual(await (await admin(new Request(end, { method: "POST", headers: asAdmin }))).json(), { ended: 1 });
 * ```
 */
export function createSessionAdmin<T extends object = SessionData>(
  options: SessionAdminOptions<T>,
): (request: Request) => Promise<Response> {
  if (typeof options !== "object" || options === null || typeof options.authorize !== "function") {
    throw new TypeError("createSessionAdmin() needs options with an authorize(request) function");
  }
  const { authorize, basePath = "/", csrf: csrfOptions, ...sessionOptions } = options;
  const routes = routesOf(basePath);
  const guarded = csrf(async function adminRoutes(request: Request): Promise<Response> {
    const session = await getSession<object>(request);
    const path = new URL(request.url).pathname;
    const method = request.method;
    if (path === routes.base && (method === "GET" || method === "HEAD")) {
      return await show(request, routes, session);
    }
    if ((path === routes.end || path === routes.endAll) && method === "POST") {
      return await act(request, routes, session, path === routes.endAll);
    }
    if (path === routes.base || path === routes.end || path === routes.endAll) {
      const allow = path === routes.base ? "GET, HEAD" : "POST";
      return new Response("Method Not Allowed", { status: 405, headers: { allow } });
    }
    return problem(request, 404, "Not found");
  }, adminCsrf(csrfOptions));
  return withSession(async function sessionAdmin(request: Request): Promise<Response> {
    const verdict = await authorize(request);
    if (verdict instanceof Response) return verdict;
    if (verdict !== true) return problem(request, 403, "Forbidden: not authorized to manage sessions");
    return await guarded(request);
  }, sessionOptions as SessionOptions<T>) as (request: Request) => Promise<Response>;
}
