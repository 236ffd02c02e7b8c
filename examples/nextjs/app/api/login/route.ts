import { getSession, withSession } from "../../../../../mod.ts";
import { type Data, options } from "../../../lib/session.ts";

export const POST = withSession(async (request: Request) => {
  const session = await getSession<Data>(request);
  const user = String((await request.formData()).get("user") ?? "guest");
  session.regenerate(); // a new id on log in: defeats session fixation
  session.set("user", user);
  session.flash("notice", `Welcome, ${user}!`);
  return new Response(null, { status: 303, headers: { location: "/api/visit" } });
}, options);
