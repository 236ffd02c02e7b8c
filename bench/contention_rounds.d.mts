// Types of bench/contention_rounds.mjs for the TypeScript files of the benchmark.
// deno-lint-ignore no-explicit-any
type Any = any;
type Handler = (request: Request) => Promise<Response>;

/** Three fetch handlers and the count of their runs so far. */
export interface Subject {
  get: Handler;
  post: Handler;
  read: Handler;
  runs(): number | Promise<number>;
}
/** One subject's measured rounds under one load. */
export interface Tally {
  samples: Array<{ ms: number; status: number }>;
  /** Handler runs per measured request. */
  runs: number;
  lost: number;
}

export const IN_FLIGHT: number;
export const WARM_ROUNDS: number;
export const SECRET: string;
export function websessionSubject(core: Any, store: Any): Subject;
export function lockSubject(store: Any): Subject;
export function newCookie(subject: Subject): Promise<string>;
export function visits(subject: Subject, cookie: string): Promise<number>;
export function round(
  subject: Subject,
  method: "GET" | "POST",
): Promise<{ results: Array<{ ms: number; status: number }>; lost: number }>;
export function measurePair(
  subjects: [Subject, Subject],
  method: "GET" | "POST",
  rounds: number,
  budgetMs: number,
): Promise<[Tally, Tally]>;
