// The demo on Node: `npm start`, then open http://localhost:8000.
// Node's own server speaks node:http, not fetch: @hono/node-server serves the fetch handler on it
// (streamed bodies with backpressure, an abort signal per request, the URL's scheme from the
// server). Any framework-free fetch handler runs this way; srvx's `serve({ fetch, port })` works
// the same.
import { serve } from "@hono/node-server";
import { createApp } from "../app.ts";
import { FileStore } from "../../src/stores/file.ts";

const port = Number(process.env.PORT ?? 8000);

// FileStore under ./.sessions: sessions survive a restart of the demo, and any number of
// Node processes on this machine can share them (compare-and-set under a lock file).
const app = createApp({
  store: new FileStore({ dir: process.env.SESSION_DIR ?? ".sessions" }),
  secrets: process.env.SESSION_SECRET ?? "demo secret: replace me with 32+ random characters",
  // Browsers keep Secure cookies on http://localhost, but not on other plain-http hosts.
  cookie: { secure: process.env.SECURE_COOKIES === "1" },
});

const server = serve({ fetch: app, port }, (info) => {
  console.log(`websession demo on http://localhost:${info.port}`);
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => server.close(() => process.exit(0)));
}
