// Compile-time checks of the public types (run by `npm run typecheck`; nothing to execute).
import { getSession, type Session, withSession } from "../mod.ts";
import { richValues } from "../src/serializer.ts";

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

// Rich values under the serializer option: Date, Map, Set, URL and bigint keys type-check.
interface Rich {
  since?: Date;
  prefs?: Map<string, string>;
  tags?: Set<string>;
  home?: URL;
  big?: bigint;
}

export const richHandler = withSession(async (req: Request) => {
  const session = await getSession<Rich>(req);
  const since: Date | undefined = session.get("since");
  session.set("prefs", new Map([["theme", "dark"]]));
  const tags: Set<string> = session.update("tags", (tags = new Set()) => tags.add("a"));
  session.set("big", 2n ** 64n);
  // @ts-expect-error: a Map where a Set belongs
  session.set("tags", new Map());
  return new Response(`${since?.toISOString()} ${tags.size}`);
}, { secrets: "a secret of at least thirty-two characters", serializer: richValues });
