// One timed request of the contention benchmark (bench/contention.ts in process, and its child
// processes): a GET, or a POST with a one-byte body, carrying `cookie`; ms from building the
// Request to reading the body.
export async function timed(handler, method, cookie) {
  const t0 = performance.now();
  const response = await handler(
    new Request("https://bench.example/count", {
      method,
      headers: { cookie },
      ...(method === "POST" ? { body: "x" } : {}),
    }),
  );
  await response.arrayBuffer();
  return { ms: performance.now() - t0, status: response.status };
}
