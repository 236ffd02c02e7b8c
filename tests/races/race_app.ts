// The app the sign-in race tests share: a handler with the usual routes, requests and cookies
// in a line each, and a hold that keeps one request in flight while another runs.
import { getSession, type Session, type SessionData, type SessionOptions, withSession } from "../../mod.ts";

export const SECRET = "a secret of at least thirty-two characters";

/** A route: what the handler does for one path once it has the session. */
export type Route<T extends SessionData> = (
  session: Session<T>,
  request: Request,
  app: RaceApp,
) => Response | Promise<Response>;

/** A gate a route can wait at: closed, it keeps that request in flight until released. */
export class Hold {
  #pending: Promise<void> | undefined;
  /** Resolves at once while open; while closed, when released. */
  passed(): Promise<void> | undefined {
    return this.#pending;
  }
  /** Closes the gate; returns its release. */
  close(): () => void {
    let release!: () => void;
    this.#pending = new Promise((resolve) => (release = resolve));
    return release;
  }
  /** Opens the gate for requests that come later (those waiting stay until released). */
  open(): void {
    this.#pending = undefined;
  }
}

export interface RaceApp {
  handler: (request: Request) => Promise<Response>;
  /** What `onError` received. */
  errors: unknown[];
  hold: Hold;
}

/**
 * The routes every race test starts from: `/login` signs "ada" in (`regenerate()`), `/logout`
 * ends the session, `/elevate` rotates its id; any other path answers who is signed in.
 */
function defaults<T extends { user?: string }>(): Record<string, Route<T>> {
  return {
    "/login": (session) => {
      session.regenerate();
      session.set("user", "ada" as NonNullable<T["user"]>);
      return new Response("signed in");
    },
    "/logout": (session) => {
      session.destroy();
      return new Response("signed out");
    },
    "/elevate": (session) => {
      session.regenerate();
      return new Response("rotated");
    },
    "*": (session) => new Response(session.get("user") ?? "anonymous"),
  };
}

/**
 * A `withSession` handler on `options`, serving `routes` over the defaults (`"*"`: any other
 * path). Failures go to `errors` unless `options` has an `onError` of its own.
 */
export function raceApp<T extends { user?: string }>(
  options: SessionOptions<T>,
  routes: Record<string, Route<T>> = {},
): RaceApp {
  const errors: unknown[] = [];
  const all = { ...defaults<T>(), ...routes };
  const app: RaceApp = {
    errors,
    hold: new Hold(),
    handler: withSession(async (request: Request) => {
      const session = await getSession<T>(request);
      const route = all[new URL(request.url).pathname] ?? all["*"]!;
      return await route(session, request, app);
    }, { onError: (e) => void errors.push(e), ...options }),
  };
  return app;
}

/** A request to `path`: a POST unless `method` says otherwise, with `cookie` when given. */
export function request(path: string, cookie?: string, method = "POST"): Request {
  return new Request(`https://example.com${path}`, {
    method,
    headers: cookie === undefined ? {} : { cookie },
  });
}

/** The first cookie `response` sets, as `name=value`. */
export function cookieOf(response: Response): string {
  return response.headers.getSetCookie()[0]!.split(";")[0]!;
}

/** Who a GET with `cookie` finds signed in (the default route's answer). */
export async function whoIs(app: RaceApp, cookie: string): Promise<string> {
  return await (await app.handler(request("/", cookie, "GET"))).text();
}

/**
 * Starts `first` with the hold closed, lets it reach the hold, opens the gate for later
 * requests and runs `meanwhile`, then releases `first`: both results.
 */
export async function during<M>(
  app: RaceApp,
  first: () => Promise<Response>,
  meanwhile: (release: () => void, inFlight: Promise<Response>) => Promise<M>,
): Promise<{ first: Response; meanwhile: M }> {
  const release = app.hold.close();
  const inFlight = first();
  await new Promise((resolve) => setTimeout(resolve, 20));
  app.hold.open();
  const result = await meanwhile(release, inFlight);
  release();
  return { first: await inFlight, meanwhile: result };
}

/** `errors` for an assertion message. */
export function said(app: RaceApp): string {
  return `onError: ${app.errors.map(String).join("; ")}`;
}
