// A handler under Deno.serve that is run again on a conflict (a GET that read what another
// request wrote meanwhile): the library must not make Deno warn about the request's abort
// signal, as Request.clone() does. Prints `listening <port>`.
import { getSession, MemoryStore, withSession } from "../../mod.ts";
import { userSessions } from "../../src/users/options.ts";

interface DenoLike {
  serve(
    options: { port: number; hostname: string; onListen: (address: { port: number }) => void },
    handler: (request: Request) => Promise<Response>,
  ): unknown;
}
const deno = (globalThis as unknown as { Deno: DenoLike }).Deno;

const store = new MemoryStore();
let interfere = false;
const app = withSession(async (req: Request) => {
  const session = await getSession<{ n?: number; u?: string }>(req);
  const n = session.get("n") ?? 0;
  if (new URL(req.url).pathname === "/arm" && n < 100) interfere = true;
  if (interfere) {
    interfere = false;
    // Another process writes the session while this request runs: its read is stale.
    const key = [...(await store.keysOfUser("u"))][0]!;
    const record = (await store.load(key))!;
    await store.save(
      key,
      { ...record, data: { ...record.data, n: 100 }, version: record.version + 1 },
      record.version,
    );
  }
  session.set("n", n + 1);
  session.set("u", "u");
  return new Response(String(n + 1));
}, {
  store,
  secrets: "deno re-run test secret, 32 characters or more",
  cookie: { secure: false },
  locking: "explicit",
  users: userSessions({ userKey: "u" }),
});

deno.serve({
  port: 0,
  hostname: "127.0.0.1",
  onListen: ({ port }) => console.log(`listening ${port}`),
}, (request) => app(request));
