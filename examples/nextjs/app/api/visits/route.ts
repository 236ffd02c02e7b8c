import { getSession, withSession } from "../../../../../mod.ts";
import { type Data, options } from "../../../lib/session.ts";

export const GET = withSession(async (request: Request) => {
  const session = await getSession<Data>(request);
  return Response.json({ visits: session.get("visits") ?? 0, user: session.get("user") ?? null });
}, options);
