import type { APIRoute } from "astro";

export const POST: APIRoute = async ({ locals, request, redirect }) => {
  const session = await locals.session();
  const user = String((await request.formData()).get("user") ?? "guest");
  session.regenerate(); // a new id on log in: defeats session fixation
  session.set("user", user);
  session.flash("notice", `Welcome, ${user}!`);
  return redirect("/", 303);
};
