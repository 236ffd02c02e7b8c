// Bun.serve with the shared app.
import { handlerFor } from "./app.ts";

declare const Bun: {
  serve(
    options: { port: number; hostname: string; fetch: (r: Request) => Response | Promise<Response> },
  ): unknown;
};

const handler = handlerFor(process.env.MODE ?? "bare");
const port = Number(process.env.PORT ?? 8000);
Bun.serve({ port, hostname: "127.0.0.1", fetch: handler });
console.log(`ready ${port}`);
