// websession in SvelteKit: withSession wraps the `handle` hook's resolve. The session opens on
// the first `await locals.session()`, is saved when the response is ready (its Set-Cookie added),
// and a request whose changes conflict with a concurrent one runs again on the fresh session.
import type { Handle, RequestEvent } from "@sveltejs/kit";
import { getSession, MemoryStore, type SessionOptions, withSession } from "../../../mod.ts";

export type Data = { visits?: number; user?: string; notice?: string };

const options: SessionOptions<Data> = {
  store: new MemoryStore(),
  secrets: process.env.SESSION_SECRET ?? "demo secret: replace me with 32+ random characters",
};

const sessions = withSession(
  (request: Request, event: RequestEvent, resolve: (event: RequestEvent) => Response | Promise<Response>) => {
    event.locals.session = () => getSession<Data>(request);
    return resolve(event);
  },
  options,
);

export const handle: Handle = ({ event, resolve }) => sessions(event.request, event, resolve);
