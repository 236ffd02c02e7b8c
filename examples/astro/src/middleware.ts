// websession in Astro: withSession wraps the middleware's next(). The session opens on the
// first `await context.locals.session()`, is saved when the response is ready (its Set-Cookie
// added), and a request whose changes conflict with a concurrent one runs again on the fresh
// session.
import type { APIContext, MiddlewareHandler, MiddlewareNext } from "astro";
import { getSession, MemoryStore, type SessionOptions, withSession } from "../../../mod.ts";

export type Data = { visits?: number; user?: string; notice?: string };

const options: SessionOptions<Data> = {
  store: new MemoryStore(),
  secrets: process.env.SESSION_SECRET ?? "demo secret: replace me with 32+ random characters",
};

const sessions = withSession((request: Request, context: APIContext, next: MiddlewareNext) => {
  context.locals.session = () => getSession<Data>(request);
  return next();
}, options);

export const onRequest: MiddlewareHandler = (context, next) => sessions(context.request, context, next);
