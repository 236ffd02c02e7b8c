import type { APIRoute } from "astro";

export const GET: APIRoute = async ({ locals }) => {
  const session = await locals.session();
  return Response.json({ visits: session.get("visits") ?? 0, user: session.get("user") ?? null });
};
