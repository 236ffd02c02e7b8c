import { redirect, type RequestHandler } from "@sveltejs/kit";

export const POST: RequestHandler = async ({ locals }) => {
  const session = await locals.session();
  const user = session.get("user");
  session.destroy();
  session.flash("notice", `Goodbye, ${user}.`);
  redirect(303, "/");
};
