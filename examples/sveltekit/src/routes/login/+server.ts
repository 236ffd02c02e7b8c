import { redirect, type RequestHandler } from "@sveltejs/kit";

export const POST: RequestHandler = async ({ locals, request }) => {
  const session = await locals.session();
  const user = String((await request.formData()).get("user") ?? "guest");
  session.regenerate(); // a new id on log in: defeats session fixation
  session.set("user", user);
  session.flash("notice", `Welcome, ${user}!`);
  redirect(303, "/");
};
