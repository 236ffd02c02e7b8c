// Types of bench/timed.mjs for the TypeScript files of the benchmark.
export function timed(
  handler: (request: Request) => Promise<Response>,
  method: "GET" | "POST",
  cookie: string,
): Promise<{ ms: number; status: number }>;
