// Bun.serve with the shared app on PORT, and the CPU report on CONTROL_PORT (a server of its own,
// so that the measured one does no routing).
import { cpuReport, handlerFor } from "./app.ts";

declare const Bun: {
  serve(
    options: { port: number; hostname: string; fetch: (r: Request) => Response | Promise<Response> },
  ): unknown;
};

const handler = handlerFor(process.env.MODE ?? "bare");
const port = Number(process.env.PORT ?? 8000);
const control = Number(process.env.CONTROL_PORT ?? 0);
if (control > 0) Bun.serve({ port: control, hostname: "127.0.0.1", fetch: cpuReport });
Bun.serve({ port, hostname: "127.0.0.1", fetch: handler });
console.log(`ready ${port}`);
