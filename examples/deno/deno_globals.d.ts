// The little of Deno's global API the Deno example uses, for type-checking it with tsc. Deno
// itself checks the example against its own declarations (this file is not in its graph).
import type { DenoKvLike } from "../../src/stores/deno_kv.ts";

declare global {
  const Deno: {
    env: { get(name: string): string | undefined };
    openKv(path?: string): Promise<DenoKvLike & { close(): void }>;
    serve(
      options: { port?: number; hostname?: string; onListen?: (address: { port: number }) => void },
      handler: (request: Request) => Response | Promise<Response>,
    ): { shutdown(): Promise<void>; finished: Promise<void> };
    addSignalListener(signal: "SIGINT" | "SIGTERM", handler: () => void): void;
    exit(code?: number): never;
  };
}
