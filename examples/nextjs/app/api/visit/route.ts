// A route handler: withSession wraps the exported method; getSession(request) inside.
import { getSession, withSession } from "../../../../../mod.ts";
import { type Data, options } from "../../../lib/session.ts";

export const GET = withSession(async (request: Request) => {
  const session = await getSession<Data>(request);
  const visits = session.update("visits", (n = 0) => n + 1);
  return Response.json({ visits, user: session.get("user") ?? null, notice: session.get("notice") ?? null });
}, options);
