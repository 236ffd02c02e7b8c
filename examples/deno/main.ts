// The demo on Deno, over Deno KV:
//   deno run --allow-net --allow-env --unstable-kv examples/deno/main.ts
// then open http://localhost:8000. On Deno Deploy, `Deno.openKv()` opens the project's KV.
import { createApp } from "../app.ts";
import { DenoKvStore } from "../../src/stores/deno_kv.ts";

const port = Number(Deno.env.get("PORT") ?? 8000);
// Browsers keep Secure cookies on http://localhost, but not on other plain-http hosts.
const secure = Deno.env.get("SECURE_COOKIES") === "1";

// KV_PATH=":memory:" for a throwaway database; by default Deno picks a file for this script.
const kv = await Deno.openKv(Deno.env.get("KV_PATH") || undefined);

const app = createApp({
  store: new DenoKvStore({ kv }),
  secrets: Deno.env.get("SESSION_SECRET") ?? "demo secret: replace me with 32+ random characters",
  cookie: { secure },
});

const server = Deno.serve({
  port,
  onListen: () => console.log(`websession demo on http://localhost:${port}`),
}, (request) => app(request));

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, async () => {
    await server.shutdown();
    kv.close();
    Deno.exit(0);
  });
}
