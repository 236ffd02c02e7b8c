import type { APIRoute } from "astro";

export const GET: APIRoute = async ({ locals }) => {
  const session = await locals.session();
  const visits = session.update("visits", (n = 0) => n + 1);
  return Response.json({ visits, user: session.get("user") ?? null, notice: session.get("notice") ?? null });
};
