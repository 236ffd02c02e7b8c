// Serves the Elysia example with srvx: Bun.serve under Bun, node:http under Node.
//   bun examples/elysia/main.ts
//   node --import tsx examples/elysia/main.ts
import { serve } from "srvx";
import { fetch } from "./app.ts";

serve({ fetch, port: Number(process.env.PORT ?? 3000), hostname: process.env.HOST ?? "127.0.0.1" });
