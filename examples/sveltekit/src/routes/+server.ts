import { json, type RequestHandler } from "@sveltejs/kit";

export const GET: RequestHandler = async ({ locals }) => {
  const session = await locals.session();
  const visits = session.update("visits", (n = 0) => n + 1);
  return json({ visits, user: session.get("user") ?? null, notice: session.get("notice") ?? null });
};
