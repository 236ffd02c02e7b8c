// The servers the tests need beyond PostgreSQL and Redis, probed once per test process. On a
// machine without them (a newcomer's, before `apt-get install memcached`), their tests are skipped
// with a reason named in one line; under CI=true they are never skipped (CI installs them, and a
// missing server must fail the run rather than pass it quietly).
import { spawnSync } from "node:child_process";
import { connect, createServer } from "node:net";
import process from "node:process";

/** Where the shared Memcached listens (`MEMCACHED_SERVER`, `host:port`). */
export const MEMCACHED_SERVER = process.env.MEMCACHED_SERVER ?? "127.0.0.1:11211";

/** Resolves `true` when a Memcached answers `version` at `address` within 2 s. */
export function memcachedAnswers(address = MEMCACHED_SERVER): Promise<boolean> {
  const [host, port] = address.split(":") as [string, string];
  return new Promise((resolve) => {
    const socket = connect(Number(port), host);
    let answer = "";
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2_000, () => done(false));
    socket.on("error", () => done(false));
    socket.on("data", (chunk) => {
      answer += chunk.toString("latin1");
      if (answer.includes("\r\n")) done(answer.startsWith("VERSION"));
    });
    socket.write("version\r\n");
  });
}

/** Whether the `memcached` program can be started (tests that run a private one, to pause it). */
export function memcachedInstalled(): boolean {
  return spawnSync("memcached", ["-V"], { stdio: "ignore" }).status === 0;
}

const INSTALL = "apt-get install memcached";

/**
 * Why the shared-Memcached tests are skipped on this machine, or `undefined` when they run (the
 * server answers, or CI=true: there a missing server fails the tests).
 */
export async function skipWithoutMemcached(): Promise<string | undefined> {
  if (process.env.CI || await memcachedAnswers()) return undefined;
  return `no Memcached answering on ${MEMCACHED_SERVER} (${INSTALL}, then start it)`;
}

/**
 * Why the tests that start a private `memcached` are skipped here, or `undefined` when they run
 * (the program is installed, or CI=true).
 */
export function skipWithoutMemcachedProgram(): string | undefined {
  if (process.env.CI || memcachedInstalled()) return undefined;
  return `no memcached program (${INSTALL})`;
}

/** A port on 127.0.0.1 that nothing listens on: connecting to it is a real refused connection. */
export async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
