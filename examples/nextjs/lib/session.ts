// websession in Next.js. Route handlers: wrap each exported method with withSession and call
// getSession(request) inside. Server Actions and Server Components never see the Request: open
// the session from `cookies()` and, in a Server Action, save it with saveSession(), which hands
// the Set-Cookie values to Next's cookie store.
import { cookies } from "next/headers";
import { commitSession, MemoryStore, openSession, type Session, type SessionOptions } from "../../../mod.ts";

export type Data = { visits?: number; user?: string; notice?: string };

// `next dev` evaluates this module again after each edit: keep one MemoryStore per process so
// that sessions survive it. Use a shared store (Redis, PostgreSQL) when more than one process
// serves the app.
const store = ((globalThis as { sessionStore?: MemoryStore }).sessionStore ??= new MemoryStore());

export const options: SessionOptions<Data> = {
  store,
  secrets: process.env.SESSION_SECRET ?? "demo secret: replace me with 32+ random characters",
};

/** The session, in a Server Action or a Server Component. */
export async function currentSession(): Promise<Session<Data>> {
  return await openSession<Data>(await cookies(), options);
}

/**
 * Saves the session and sets its cookies through `cookies()`: in a Server Action (or a route
 * handler without withSession). A Server Component cannot set cookies: call
 * `commitSession(session)` there, which saves changes that keep the cookie (a flash read).
 *
 * @throws {SessionConflictError} When a concurrent request's changes cannot be merged.
 */
export async function saveSession(session: Session<Data>): Promise<void> {
  const jar = await cookies();
  for (const header of await commitSession(session)) {
    const [pair = "", ...attributes] = header.split(";");
    const eq = pair.indexOf("=");
    const cookie: Parameters<typeof jar.set>[0] = { name: pair.slice(0, eq), value: pair.slice(eq + 1) };
    for (const attribute of attributes) {
      const [key = "", value = ""] = attribute.trim().split("=", 2);
      switch (key.toLowerCase()) {
        case "path":
          cookie.path = value;
          break;
        case "domain":
          cookie.domain = value;
          break;
        case "max-age":
          cookie.maxAge = Number(value);
          break;
        case "expires":
          cookie.expires = new Date(value);
          break;
        case "httponly":
          cookie.httpOnly = true;
          break;
        case "secure":
          cookie.secure = true;
          break;
        case "samesite":
          cookie.sameSite = value.toLowerCase() as "lax" | "strict" | "none";
          break;
        case "partitioned":
          cookie.partitioned = true;
          break;
      }
    }
    jar.set(cookie);
  }
}
