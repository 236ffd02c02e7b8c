// Compile-time checks of the public types (run by `npm run typecheck`; nothing to execute).
import { getSession, type Session, withSession } from "../mod.ts";

interface Data {
  user?: string;
  visits?: number;
}

export const handler = withSession(async (req: Request, env: { SECRET: string }) => {
  const session: Session<Data> = await getSession<Data>(req);
  const visits: number = session.update("visits", (n = 0) => n + 1);
  const user: string | undefined = session.get("user");
  // @ts-expect-error: not a key of Data
  session.get("nope");
  // @ts-expect-error: wrong value type
  session.set("visits", "many");
  return new Response(`${user} ${visits} ${env.SECRET.length}`);
}, (_req, env) => ({ secrets: env.SECRET }));
