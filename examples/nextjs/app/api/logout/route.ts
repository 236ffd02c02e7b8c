import { getSession, withSession } from "../../../../../mod.ts";
import { type Data, options } from "../../../lib/session.ts";

export const POST = withSession(async (request: Request) => {
  const session = await getSession<Data>(request);
  const user = session.get("user");
  session.destroy();
  session.flash("notice", `Goodbye, ${user}.`);
  return new Response(null, { status: 303, headers: { location: "/api/visit" } });
}, options);
