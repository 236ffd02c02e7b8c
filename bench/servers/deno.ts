// Deno.serve with the shared app on PORT, and the CPU report on CONTROL_PORT (a server of its
// own, so that the measured one does no routing).
import { cpuReport, handlerFor } from "./app.ts";

declare const Deno: {
  env: { get(name: string): string | undefined };
  serve(
    options: { port: number; hostname: string; onListen(): void },
    handler: (r: Request) => Response | Promise<Response>,
  ): unknown;
};

const handler = handlerFor(Deno.env.get("MODE") ?? "bare");
const port = Number(Deno.env.get("PORT") ?? 8000);
const control = Number(Deno.env.get("CONTROL_PORT") ?? 0);
if (control > 0) Deno.serve({ port: control, hostname: "127.0.0.1", onListen: () => {} }, cpuReport);
Deno.serve({ port, hostname: "127.0.0.1", onListen: () => console.log(`ready ${port}`) }, handler);
