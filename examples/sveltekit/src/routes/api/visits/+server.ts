import { json, type RequestHandler } from "@sveltejs/kit";

export const GET: RequestHandler = async ({ locals }) => {
  const session = await locals.session();
  return json({ visits: session.get("visits") ?? 0, user: session.get("user") ?? null });
};
