import type { APIRoute } from "astro";

export const POST: APIRoute = async ({ locals, redirect }) => {
  const session = await locals.session();
  const user = session.get("user");
  session.destroy();
  session.flash("notice", `Goodbye, ${user}.`);
  return redirect("/", 303);
};
