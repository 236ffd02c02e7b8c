// A test Worker for Miniflare. It exports the session Durable Object (extended with an inspection
// path and a way to run its alarm handler at once; a second class deletes expired records without
// the alarm's delay) and runs store operations inside workerd: `POST /<store>/<method>`
// with a JSON array of arguments calls that method of a CloudflareKvStore ("kv") or a
// DurableObjectStore ("do") built on this Worker's own bindings, and answers
// `{ value }` or `{ error: { name, code, message } }`. `GET /<store>/capabilities` tells what
// the store claims and which optional methods it has.
import { CloudflareKvStore, type KvNamespaceLike } from "../../src/stores/cloudflare_kv.ts";
import {
  type DurableObjectNamespaceLike,
  type DurableObjectStateLike,
  DurableObjectStore,
  SessionDurableObject,
} from "../../src/stores/durable_object.ts";
import type { SessionStore } from "../../src/store.ts";

/** The bindings the test Miniflare gives this Worker. */
export interface Env {
  SESSIONS_KV: KvNamespaceLike;
  SESSIONS_DO: DurableObjectNamespaceLike;
  SESSIONS_DO_NO_DELAY: DurableObjectNamespaceLike;
}

interface InspectableStorage {
  get(key: string): Promise<unknown>;
  list(options: { prefix: string }): Promise<Map<string, unknown>>;
  getAlarm(): Promise<number | null>;
  put(key: string, value: unknown): Promise<void>;
}

/**
 * The session object as a user would export it, plus `GET /inspect`, which tells what the
 * object's storage holds (its record text, lock, index entries and alarm), so tests can see what the alarm and
 * destroy leave behind without going through the store, and `POST /alarm`, which runs the alarm
 * handler now (as the runtime would at the scheduled time) and then inspects.
 */
export class TestSessionDurableObject extends SessionDurableObject {
  #storage: InspectableStorage;

  constructor(state: DurableObjectStateLike, env?: unknown) {
    super(state, env);
    this.#storage = state.storage as unknown as InspectableStorage;
  }

  override async fetch(request: Request): Promise<Response> {
    const path = new URL(request.url).pathname;
    if (request.method === "POST" && path === "/alarm") await this.alarm();
    if (
      (request.method === "GET" && path === "/inspect") || (request.method === "POST" && path === "/alarm")
    ) {
      const record = (await this.#storage.get("record")) ?? null;
      const lock = (await this.#storage.get("lease")) ?? null;
      const index = Object.fromEntries(await this.#storage.list({ prefix: "index:" }));
      const expired = (await this.#storage.get("test:expired")) ?? [];
      return Response.json({ record, lock, index, alarm: await this.#storage.getAlarm(), expired });
    }
    return await super.fetch(request);
  }

  /** Keeps what the alarm reported as expired, for `/inspect` (a user would count or audit it). */
  override async expired(session: { createdAt: number; expiresAt: number; user?: string }): Promise<void> {
    const seen = ((await this.#storage.get("test:expired")) ?? []) as unknown[];
    await this.#storage.put("test:expired", [...seen, session]);
  }
}

/** The same object with no alarm delay: its alarm deletes a record as soon as it expires. */
export class NoDelaySessionDurableObject extends TestSessionDurableObject {
  static override alarmDelay = 0;
}

const METHODS = new Set([
  "load",
  "save",
  "destroy",
  "touch",
  "cleanup",
  "count",
  "lock",
  "unlock",
  "keysOfUser",
]);
const OPTIONAL = ["touch", "cleanup", "count", "lock", "unlock", "keysOfUser"];

function storeFor(name: string, env: Env): SessionStore | null {
  if (name === "kv") return new CloudflareKvStore({ namespace: env.SESSIONS_KV, staleReadDelay: 0 });
  if (name === "do") return new DurableObjectStore({ namespace: env.SESSIONS_DO });
  return null;
}

async function handle(request: Request, env: Env): Promise<Response> {
  const [, name = "", method = ""] = new URL(request.url).pathname.split("/");
  const store = storeFor(name, env);
  if (store === null) return new Response("no such store", { status: 404 });
  if (request.method === "GET" && method === "capabilities") {
    const optional = OPTIONAL.filter((m) => typeof store[m as keyof SessionStore] === "function");
    return Response.json({ capabilities: store.capabilities, optional });
  }
  if (request.method !== "POST" || !METHODS.has(method)) {
    return new Response("no such method", { status: 404 });
  }
  const operation = store[method as keyof SessionStore];
  if (typeof operation !== "function") return new Response("method not offered", { status: 404 });
  const args = (await request.json()) as unknown[];
  try {
    const value = await (operation as (...args: unknown[]) => Promise<unknown>).apply(store, args);
    return Response.json({ value: value ?? null });
  } catch (error) {
    const { name: errorName, message, code } = error as Error & { code?: string };
    return Response.json({ error: { name: errorName, message, code } });
  }
}

export default { fetch: handle };
