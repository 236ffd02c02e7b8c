import node from "@astrojs/node";
import { defineConfig } from "astro/config";

export default defineConfig({
  output: "server",
  adapter: node({ mode: "standalone" }),
  // The hosts the app is reached at: Astro trusts the Host header (and so passes its check that
  // a form was posted from the same origin) only for these. Put your own domain here.
  security: { allowedDomains: [{ hostname: "localhost" }, { hostname: "127.0.0.1" }] },
});
