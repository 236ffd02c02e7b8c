// The little of Bun's global API the Bun example uses, for type-checking it with tsc (the
// project does not depend on Bun's own type package).
export {};

declare global {
  const Bun: {
    serve(options: {
      port?: number;
      hostname?: string;
      fetch: (request: Request) => Response | Promise<Response>;
    }): { port: number; stop(closeActiveConnections?: boolean): void };
  };
}
