// The one way the tests start a process (a server, a worker, a command run to its end): start it,
// wait until it is ready (a line of its output, or a check such as a port answering), keep what
// it printed for the failure message, signal it, stop it (SIGTERM, then SIGKILL after a grace).
// Every child is tracked: one still running when this process exits, or is ended by SIGINT or
// SIGTERM, is killed with it. node:child_process only, so that it runs under Deno and Bun too.
import { type ChildProcess, spawn } from "node:child_process";
import { createServer, Socket } from "node:net";

/** The Node that runs a TypeScript file (`NODE --import tsx file`), whatever runtime runs this one. */
export const NODE: string = "Deno" in globalThis || "Bun" in globalThis ? "node" : process.execPath;

/** How much of a child's output is kept: the end of it. */
const KEPT = 100_000;

/** How to start a process, and when it is ready. */
export interface StartOptions {
  cwd?: string;
  /** Variables set over this process's own; `undefined` removes one. */
  env?: Record<string, string | undefined>;
  /**
   * Ready once its output (stdout and stderr) matches the pattern, or once the check resolves
   * true (polled; a check that throws counts as false). @default ready once it is running
   */
  ready?: RegExp | (() => Promise<boolean>);
  /** How long it may take to be ready before it is killed. @default 30_000 */
  timeoutMs?: number;
  /** Called with each line it writes on stdout. */
  onLine?: (line: string) => void;
  /** Keeps its stdin open for {@linkcode Child.write}. @default false */
  stdin?: boolean;
  /** Writes its stderr to this process's stderr as it comes. @default false */
  echo?: boolean;
  /** Starts it in a process group of its own, which every signal then reaches. @default false */
  group?: boolean;
}

/** A process started by {@linkcode start}. */
export interface Child {
  /** What the `ready` pattern matched. */
  readonly match: RegExpExecArray | null;
  /** Resolves once it exited and its output was read to the end. */
  readonly exited: Promise<void>;
  /** How it ended, once it did. */
  readonly exit: { code: number | null; signal: string | null } | undefined;
  /** What it printed so far, stdout and stderr together (the last 100,000 characters). */
  output(): string;
  /** Sends a signal, unless it exited. */
  signal(signal: NodeJS.Signals): void;
  /** Writes to its stdin (see {@linkcode StartOptions.stdin}). */
  write(text: string): void;
  /** Closes its stdin and resolves once it exited. */
  end(): Promise<void>;
  /**
   * Continues it if stopped, sends `signal`, then SIGKILL if it still runs after `graceMs`;
   * resolves once it exited.
   */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

const children = new Set<Child>();
process.once("exit", () => {
  for (const child of children) child.signal("SIGKILL");
});
let hooked = false;
/** A runner that gives up on this process ends it with a signal, which skips "exit". */
function hookSignals(): void {
  if (hooked) return;
  hooked = true;
  for (const [name, number] of [["SIGINT", 2], ["SIGTERM", 15]] as const) {
    process.once(name, () => process.exit(128 + number));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts `command` with `args` and resolves once it is ready.
 *
 * @throws Error, with the end of its output, when it exits before it is ready or is not ready in time.
 */
export async function start(command: string, args: string[], options: StartOptions = {}): Promise<Child> {
  const { ready, timeoutMs = 30_000 } = options;
  const env = { ...process.env, ...options.env };
  for (const [name, value] of Object.entries(env)) if (value === undefined) delete env[name];
  const spawned: ChildProcess = spawn(command, args, {
    cwd: options.cwd,
    env,
    stdio: [options.stdin ? "pipe" : "ignore", "pipe", "pipe"],
    detached: options.group === true,
  });
  let output = "";
  let partial = "";
  let exit: Child["exit"];
  const keep = (text: string) => {
    output = (output + text).slice(-KEPT);
  };
  spawned.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    keep(chunk);
    if (options.onLine === undefined) return;
    const lines = (partial + chunk).split("\n");
    partial = lines.pop()!;
    for (const line of lines) options.onLine(line);
  });
  spawned.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    keep(chunk);
    if (options.echo) process.stderr.write(chunk);
  });
  let match: RegExpExecArray | null = null;
  const exited = new Promise<void>((resolve) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    spawned.once("error", (error) => {
      keep(`\n${error.message}\n`);
      exit ??= { code: null, signal: null };
      resolve();
    });
    spawned.once("exit", (code, signal) => {
      exit = { code, signal };
      // Its output is read to the end on "close", unless a process it started holds the pipes.
      timer = setTimeout(resolve, 1_000);
    });
    spawned.once("close", () => {
      clearTimeout(timer);
      resolve();
    });
  });
  const child: Child = {
    get match() {
      return match;
    },
    exited,
    get exit() {
      return exit;
    },
    output: () => output,
    signal(signal) {
      if (exit !== undefined || spawned.pid === undefined) return;
      try {
        // process.kill, not spawned.kill(): Deno's sends only the first signal to a child.
        process.kill(options.group ? -spawned.pid : spawned.pid, signal);
      } catch {
        // gone meanwhile
      }
    },
    write: (text) => void spawned.stdin!.write(text),
    end() {
      spawned.stdin!.end();
      return exited;
    },
    async stop(signal = "SIGTERM", graceMs = 5_000) {
      child.signal("SIGCONT");
      child.signal(signal);
      const timer = setTimeout(() => child.signal("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  children.add(child);
  void exited.then(() => children.delete(child));
  hookSignals();

  const name = [command, ...args].join(" ").slice(0, 200);
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (exit !== undefined || spawned.pid === undefined) {
      await exited;
      throw new Error(
        `${name} exited (code ${exit!.code}, signal ${exit!.signal}) before it was ready:\n${output}`,
      );
    }
    if (ready === undefined) return child;
    if (ready instanceof RegExp) {
      match = ready.exec(output);
      if (match !== null) return child;
    } else if (await ready().catch(() => false)) {
      return child;
    }
    if (Date.now() > end) {
      await child.stop("SIGKILL");
      throw new Error(`${name} was not ready within ${timeoutMs} ms:\n${output.slice(-4_000)}`);
    }
    await sleep(25);
  }
}

/** Runs `command` to its end: how it ended and everything it printed (see {@linkcode start}). */
export async function run(
  command: string,
  args: string[],
  options: Omit<StartOptions, "ready" | "stdin"> = {},
): Promise<{ code: number | null; signal: string | null; output: string }> {
  const child = await start(command, args, options).catch((error: Error) => error);
  if (child instanceof Error) return { code: null, signal: null, output: child.message };
  await child.exited;
  return { ...child.exit!, output: child.output() };
}

/** A TCP port free on 127.0.0.1 now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * Whether something accepts connections on 127.0.0.1:`port`; with `probe`, whether it answers
 * it with a reply that starts with `expect` within 500 ms (a stopped server accepts but never
 * answers).
 */
export function answers(port: number, probe?: string, expect = ""): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once("error", () => done(false));
    socket.once("data", (chunk) => done(String(chunk).startsWith(expect)));
    socket.connect(port, "127.0.0.1", () => (probe === undefined ? done(true) : socket.write(probe)));
  });
}

/** Whether `url` answers an HTTP GET within 5 s, with any status. */
export async function answersHttp(url: string): Promise<boolean> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
    await response.body?.cancel();
    return true;
  } catch {
    return false;
  }
}
