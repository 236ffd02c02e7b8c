/**
 * Error logging that stays readable during an outage: when a store is down every request fails
 * the same way, and a full stack trace per request buries everything else. The first error of a
 * kind is logged in full; the same kind again within a minute is only counted, and the first one
 * after that minute is logged as one line with the count: `websession: StoreUnavailableError
 * ERR_SESSION_STORE_UNAVAILABLE: Redis failed to load (41 more in the last minute)`. After a quiet
 * minute, the next error of the kind is logged in full again (a new outage).
 *
 * No timer is involved (Workers forbid work that outlives a request): counts are reported by the
 * next error of the same kind, so a count is never lost while errors go on, and what a burst
 * leaves uncounted is said before the next one is logged.
 *
 * The state is kept per logger (its `error` method), so a test that injects a logger starts
 * afresh, and per kind: the error's `code` (every `SessionError` has a stable one), else its
 * `name`.
 *
 * @module
 */
import type { SessionLogger } from "./options.ts";

/** Options of {@linkcode logError}. */
export interface LogErrorOptions {
  /**
   * The kind the error is counted under.
   * @default the error's `code`, else its `name`, else `"error"`
   */
  key?: string;
  /**
   * How long repeats of a kind are only counted, in milliseconds.
   * @default 60000
   */
  windowMs?: number;
  /**
   * The clock, in milliseconds since the epoch (injectable for tests).
   * @default Date.now
   */
  now?: () => number;
}

interface Burst {
  /** When the last line of this kind was logged. */
  start: number;
  /** When the last error of this kind came (logged or counted). */
  last: number;
  /** Errors counted and not logged since `start`. */
  more: number;
}

const WINDOW_MS = 60_000;
/** Kinds remembered per logger; past it they are forgotten (and logged in full again). */
const MAX_KINDS = 64;
const states = new WeakMap<object, { error: unknown; bursts: Map<string, Burst> }>();

/**
 * Logs `error` to `logger.error`: in full the first time its kind is seen (or after a quiet
 * window), then at most one line per window with how many more came. Never throws.
 *
 * @param logger Where to log: the `logger` option (`console` by default).
 * @param error The error.
 * @param options The kind, the window and the clock.
 * @example
 * ```ts
 * import { logError } from "./log.ts";
 * import { StoreUnavailableError } from "websession";
 * import assert from "node:assert/strict";
 *
 * const lines: unknown[] = [];
 * const logger = { warn() {}, error: (line: unknown) => void lines.push(line) };
 * let now = 0;
 * for (let i = 0; i < 50; i++) {
 *   now = i * 1000; // one failed request a second
 *   logError(logger, new StoreUnavailableError("Redis failed to load"), { now: () => now });
 * }
 * now = 60_000;
 * logError(logger, new StoreUnavailableError("Redis failed to load"), { now: () => now });
 * assert.equal(lines.length, 2);
 * assert.ok(lines[0] instanceof StoreUnavailableError); // the first one in full, with its stack
 * assert.match(String(lines[1]), /Redis failed to load \(49 more in the last minute\)$/);
 * ```
 */
export function logError(logger: SessionLogger, error: unknown, options: LogErrorOptions = {}): void {
  try {
    const now = (options.now ?? Date.now)();
    const windowMs = options.windowMs ?? WINDOW_MS;
    const key = options.key ?? kindOf(error);
    let state = states.get(logger);
    if (state === undefined || state.error !== logger.error) {
      state = { error: logger.error, bursts: new Map() };
      states.set(logger, state);
    }
    const bursts = state.bursts;
    const burst = bursts.get(key);
    if (burst === undefined || now - burst.last >= windowMs) {
      if (burst !== undefined && burst.more > 0) {
        logger.error(
          `websession: ${key}: ${burst.more} more until ${
            new Date(burst.last).toISOString()
          } were not logged`,
        );
      }
      if (burst === undefined && bursts.size >= MAX_KINDS) bursts.clear();
      bursts.set(key, { start: now, last: now, more: 0 });
      logger.error(error);
    } else if (now - burst.start >= windowMs) {
      logger.error(`websession: ${describe(error)} (${burst.more} more in the last ${span(windowMs)})`);
      burst.start = now;
      burst.last = now;
      burst.more = 0;
    } else {
      burst.more++;
      burst.last = now;
    }
  } catch {
    // Logging never turns an answer into a crash.
  }
}

function kindOf(error: unknown): string {
  const { code, name } = (typeof error === "object" && error !== null ? error : {}) as {
    code?: unknown;
    name?: unknown;
  };
  if (typeof code === "string" && code !== "") return code;
  if (typeof name === "string" && name !== "") return name;
  return "error";
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as { code?: unknown }).code;
  return `${error.name}${typeof code === "string" ? ` ${code}` : ""}: ${error.message}`;
}

function span(ms: number): string {
  return ms === WINDOW_MS ? "minute" : `${ms / 1000} s`;
}
