// The demo on Bun: `bun examples/bun/main.ts`, then open http://localhost:8000.
// Bun.serve takes a fetch handler as it is; FileStore keeps sessions on disk (node:fs works
// the same on Bun), so they survive a restart.
import { createApp } from "../app.ts";
import { FileStore } from "../../src/stores/file.ts";

const port = Number(process.env.PORT ?? 8000);
// Browsers keep Secure cookies on http://localhost, but not on other plain-http hosts.
const secure = process.env.SECURE_COOKIES === "1";

const app = createApp({
  store: new FileStore({ dir: process.env.SESSION_DIR ?? ".sessions" }),
  secrets: process.env.SESSION_SECRET ?? "demo secret: replace me with 32+ random characters",
  cookie: { secure },
});

const server = Bun.serve({ port, fetch: (request: Request) => app(request) });
console.log(`websession demo on http://localhost:${server.port}`);

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    server.stop();
    process.exit(0);
  });
}
