/**
 * The client the Memcached store accepts (`memcache-client`'s shape) and the few commands it
 * sends over it, with Memcached's refusals (`NOT_STORED`, `EXISTS`, `NOT_FOUND`) turned back into
 * replies. Docs: docs/stores/memcached.md.
 *
 * @module
 */
import { SessionTooLargeError } from "../../errors.ts";

/**
 * The shape of a `memcache-client` client (`new MemcacheClient({ server: "host:port" })`).
 * A store command that Memcached refuses (`NOT_STORED`, `EXISTS`, `NOT_FOUND`) rejects with an
 * error whose `cmdTokens[0]` (and message) is that reply.
 *
 * @example
 * ```ts
 * import { type MemcacheClientLike, MemcachedStore } from "websession/memcached";
 * import assert from "node:assert/strict";
 *
 * const methods: (keyof MemcacheClientLike)[] = ["get", "gets", "add", "cas", "delete"];
 * assert.equal(methods.length, 5);
 * // Anything else is refused when the store is built.
 * assert.throws(() => new MemcachedStore({ client: {} as MemcacheClientLike }), TypeError);
 * ```
 */
export interface MemcacheClientLike {
  /** `get key`; resolves `undefined` on a miss. */
  get(key: string): Promise<{ value: unknown } | undefined>;
  /** `gets key`; resolves `undefined` on a miss, else the value with its CAS token. */
  gets(key: string): Promise<{ value: unknown; casUniq?: string | number } | undefined>;
  /** `add key flags exptime bytes`; rejects on `NOT_STORED`. `lifetime` is the exptime. */
  add(key: string, value: string, options: { lifetime: number }): Promise<unknown>;
  /** `cas key flags exptime bytes token`; rejects on `EXISTS` and `NOT_FOUND`. */
  cas(key: string, value: string, options: { casUniq: string | number; lifetime: number }): Promise<unknown>;
  /** `delete key`; rejects on `NOT_FOUND`. */
  delete(key: string): Promise<unknown>;
  /**
   * Sends a command line as it is (`memcache-client`'s `cmd`); the store sends only `stats`, for
   * the server's clock (`SessionStore.time`), and resolves the reply's `STAT` lines as
   * `{ STAT: [name, value][] }`. Optional: without it the store has no `time`.
   */
  cmd?(data: string): Promise<unknown>;
}

/** What a Memcached store command answered. */
export type StoreReply = "STORED" | "NOT_STORED" | "EXISTS" | "NOT_FOUND";

/** A `gets` hit: the raw value and its CAS token. */
export interface Versioned {
  value: unknown;
  cas: string;
}

/** The few commands the store sends, over whichever client it was given. */
export interface Commands {
  get(key: string): Promise<unknown>;
  gets(key: string): Promise<Versioned | undefined>;
  /** `NOT_STORED` when the key exists. */
  add(key: string, value: string, exptime: number): Promise<StoreReply>;
  /** `EXISTS` when the token no longer matches, `NOT_FOUND` when the item is gone. */
  cas(key: string, value: string, cas: string, exptime: number): Promise<StoreReply>;
  delete(key: string): Promise<void>;
  /** `stats`, where the client can send it. */
  stats?: () => Promise<unknown>;
}

const INVALID_CLIENT = "Invalid Memcached client: expected a memcache-client client";

function replyOf(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const tokens = (error as { cmdTokens?: unknown }).cmdTokens;
  if (Array.isArray(tokens) && typeof tokens[0] === "string") return tokens[0];
  const message = (error as { message?: unknown }).message;
  return typeof message === "string" ? message : undefined;
}

/** Turns a refused store command back into its reply; any other failure is rethrown. */
function refusal(error: unknown, expected: StoreReply[]): StoreReply {
  const reply = replyOf(error);
  if (expected.includes(reply as StoreReply)) return reply as StoreReply;
  throw error;
}

function tokenOf(cas: unknown): string {
  if (
    (typeof cas === "string" && /^\d+$/.test(cas)) || (typeof cas === "number" && Number.isSafeInteger(cas))
  ) {
    return String(cas);
  }
  throw new TypeError(`Unexpected gets reply from the Memcached client: CAS token "${String(cas)}"`);
}

export function commandsOf(client: MemcacheClientLike): Commands {
  const any = client as unknown as Record<string, unknown> | null;
  const methods = ["get", "gets", "add", "cas", "delete"];
  if (typeof any !== "object" || any === null || !methods.every((name) => typeof any[name] === "function")) {
    throw new TypeError(INVALID_CLIENT);
  }
  const mc = client;
  return {
    get: async (key) => (await mc.get(key))?.value,
    async gets(key) {
      const hit = await mc.gets(key);
      return hit === undefined ? undefined : { value: hit.value, cas: tokenOf(hit.casUniq) };
    },
    add: (key, value, exptime) =>
      mc.add(key, value, { lifetime: exptime }).then(
        () => "STORED" as const,
        (error) => refusal(error, ["NOT_STORED"]),
      ),
    cas: (key, value, cas, exptime) =>
      mc.cas(key, value, { casUniq: cas, lifetime: exptime }).then(
        () => "STORED" as const,
        (error) => refusal(error, ["EXISTS", "NOT_FOUND"]),
      ),
    delete: (key) =>
      mc.delete(key).then(
        () => {},
        (error) => void refusal(error, ["NOT_FOUND"]),
      ),
    ...(typeof mc.cmd === "function" ? { stats: () => mc.cmd!("stats") } : {}),
  };
}

/**
 * Milliseconds since the epoch from a `stats` reply's `STAT time` line (whole seconds by the
 * server's clock), as `memcache-client` hands it over (`{ STAT: [name, value][] }`).
 */
export function statsTime(reply: unknown): number {
  const lines = (reply as { STAT?: unknown } | null)?.STAT;
  const line = Array.isArray(lines)
    ? lines.find((entry) => Array.isArray(entry) && entry[0] === "time")
    : undefined;
  const seconds = Number(line?.[1]);
  if (!Number.isSafeInteger(seconds) || seconds <= 0) {
    throw new TypeError("Unexpected stats reply from the Memcached client: no time");
  }
  return seconds * 1000;
}

/** A server whose `-I` is smaller than `maxItemSize` answers this instead of storing. */
function tooLarge(error: unknown): unknown {
  const message = error instanceof Error ? error.message : "";
  if (!/object too large for cache/i.test(message)) return error;
  return new SessionTooLargeError(
    `Session too large for Memcached: the server refused the item: "${message}"`,
    { cause: error },
  );
}

/** `add`, with a server's "object too large" turned into a `SessionTooLargeError`. */
export async function addItem(
  commands: Commands,
  item: string,
  value: string,
  exptime: number,
): Promise<StoreReply> {
  try {
    return await commands.add(item, value, exptime);
  } catch (error) {
    throw tooLarge(error);
  }
}

/** `cas`, with a server's "object too large" turned into a `SessionTooLargeError`. */
export async function casItem(
  commands: Commands,
  item: string,
  value: string,
  cas: string,
  exptime: number,
): Promise<StoreReply> {
  try {
    return await commands.cas(item, value, cas, exptime);
  } catch (error) {
    throw tooLarge(error);
  }
}
