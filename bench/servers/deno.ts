// Deno.serve with the shared app.
import { handlerFor } from "./app.ts";

declare const Deno: {
  env: { get(name: string): string | undefined };
  serve(
    options: { port: number; hostname: string; onListen(): void },
    handler: (r: Request) => Response | Promise<Response>,
  ): unknown;
};

const handler = handlerFor(Deno.env.get("MODE") ?? "bare");
const port = Number(Deno.env.get("PORT") ?? 8000);
Deno.serve({ port, hostname: "127.0.0.1", onListen: () => console.log(`ready ${port}`) }, handler);
