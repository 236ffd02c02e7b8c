// Serves the h3 example on Node, Deno or Bun with srvx (what h3's own `serve` uses):
//   node --import tsx examples/h3/main.ts
import { serve } from "srvx";
import { fetch } from "./app.ts";

serve({ fetch, port: Number(process.env.PORT ?? 3000), hostname: process.env.HOST ?? "127.0.0.1" });
