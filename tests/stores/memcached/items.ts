// What MemcachedStore's test files share: the real Memcached on loopback (started by .ci/run),
// raw text-protocol access to its items behind the store, connections through memcache-client,
// and clients that record the commands the store sends.
import { after, before } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { MemcacheClient } from "memcache-client";
import { type MemcacheClientLike, MemcachedStore } from "../../../src/stores/memcached.ts";
import { tagOf } from "../../conformance/lock_user_cases.ts";

const [HOST, PORT] = (process.env.MEMCACHED_SERVER ?? "127.0.0.1:11211").split(":") as [string, string];
const SERVER = `${HOST}:${PORT}`;
/** Part of every prefix a test file uses, so that runs never meet. */
export const RUN = crypto.randomUUID().slice(0, 8);
/** The prefix of every item a test file writes. */
export const prefix = `websession-test:${RUN}:`;

/**
 * Sends raw text-protocol lines on a connection of its own, and resolves with everything the
 * server answered once the answer ends with `until` (a line such as `END` or `HD`).
 */
export function raw(command: string): Promise<string> {
  const until =
    /(?:^|\r\n)(?:END|HD[^\r]*|EN|STORED|NOT_STORED|EXISTS|DELETED|NOT_FOUND|[A-Z_]*ERROR[^\r]*)\r\n$/;
  return new Promise<string>((resolve, reject) => {
    const socket = connect(Number(PORT), HOST);
    let answer = "";
    socket.setEncoding("utf8");
    socket.setTimeout(5_000, () => {
      socket.destroy();
      reject(new Error(`No complete answer to "${command.split("\r\n")[0]}": "${answer}"`));
    });
    socket.on("error", reject);
    socket.on("data", (chunk: string) => {
      answer += chunk;
      if (until.test(answer)) {
        socket.destroy();
        resolve(answer);
      }
    });
    socket.write(command);
  });
}

/** The raw value of an item, or `undefined` on a miss. */
export async function rawGet(item: string): Promise<string | undefined> {
  const answer = await raw(`get ${item}\r\n`);
  const match = /^VALUE \S+ \d+ (\d+)\r\n/.exec(answer);
  if (!match) return undefined;
  const bytes = Buffer.from(answer, "utf8").subarray(match[0].length, match[0].length + Number(match[1]));
  return bytes.toString("utf8");
}

/** The record in an item, parsed, or `undefined` on a miss. */
export async function rawRecord(item: string): Promise<Record<string, unknown> | undefined> {
  const text = await rawGet(item);
  return text === undefined ? undefined : JSON.parse(text);
}

/** The item's remaining time to live in seconds (`-1`: never expires), or `undefined` on a miss. */
export async function rawTtl(item: string): Promise<number | undefined> {
  const answer = await raw(`mg ${item} t\r\n`);
  const match = /^HD t(-?\d+)/.exec(answer);
  return match ? Number(match[1]) : undefined;
}

export async function rawSet(item: string, value: string, exptime = 60): Promise<void> {
  const answer = await raw(`set ${item} 0 ${exptime} ${Buffer.byteLength(value)}\r\n${value}\r\n`);
  assert.equal(answer, "STORED\r\n");
}

/** The name of `user`'s index item under `itemPrefix`. */
export const indexItem = async (itemPrefix: string, user: string) => `${itemPrefix}user:${await tagOf(user)}`;

export interface Connection {
  client: MemcacheClientLike;
  close(): void | Promise<void>;
}

/** A connection of its own to the server, through memcache-client. */
export function open(server = SERVER, cmdTimeout = 5_000): Connection {
  const client = new MemcacheClient({ server, cmdTimeout });
  return { client, close: () => client.shutdown() };
}

const COMMANDS = ["get", "gets", "add", "cas", "delete"];

/**
 * Wraps a client so that every command the store sends through it is recorded by name, and
 * `between(key)` runs after a `gets` has answered and before the store goes on.
 */
export function recording(
  client: MemcacheClientLike,
  between?: (key: string) => Promise<void>,
): { client: MemcacheClientLike; sent: string[] } {
  const sent: string[] = [];
  const proxy = new Proxy(client as object, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      const name = typeof property === "string" && COMMANDS.includes(property) ? property : undefined;
      if (name === undefined || typeof value !== "function") return value;
      return (...args: unknown[]) => {
        sent.push(name);
        if (name !== "gets" || between === undefined) return Reflect.apply(value, target, args);
        return (Reflect.apply(value, target, args) as Promise<unknown>).then(async (result) => {
          await between(args[0] as string);
          return result;
        });
      };
    },
  });
  return { client: proxy as MemcacheClientLike, sent };
}

/** Records each command the store sends with the kind of item it is for: a record, an index, a lock. */
export function named(client: MemcacheClientLike): { client: MemcacheClientLike; sent: string[] } {
  const sent: string[] = [];
  const kind = (item: string) =>
    /:user:[\w-]{43}$/.test(item) ? "index" : item.endsWith(":lease") ? "lock" : "record";
  const proxy = new Proxy(client as object, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (!COMMANDS.includes(String(property)) || typeof value !== "function") return value;
      return (...args: unknown[]) => {
        sent.push(`${String(property)} ${kind(String(args[0]))}`);
        return Reflect.apply(value, target, args);
      };
    },
  });
  return { client: proxy as MemcacheClientLike, sent };
}

/** What {@link ownStore} opens for a suite; filled in before its tests. */
export interface OwnStore {
  /** The prefix of the suite's items. */
  own: string;
  connection: Connection;
  /** A store on `connection` under `own`, reporting what it finds corrupt to `corrupt`. */
  store: MemcachedStore;
  corrupt: [string, Error][];
}

/** Opens, in the suite that calls it, a connection and a store of its own; closes them after. */
export function ownStore(): OwnStore {
  const opened = { own: `${prefix}own:`, corrupt: [] } as unknown as OwnStore;
  before(() => {
    opened.connection = open();
    opened.store = new MemcachedStore({
      client: opened.connection.client,
      prefix: opened.own,
      onCorrupt: (key, error) => opened.corrupt.push([key, error]),
    });
  });
  after(() => opened.connection.close());
  return opened;
}
