// The Durable Objects DurableObjectStore's tests run on (the test Worker's, in a Miniflare started
// once per test process and reached from Node through `nodeNamespace`), and what they read behind
// the store's back: what an object holds (the test Worker's `/inspect`), and the requests a
// store sends, named or counted.
import assert from "node:assert/strict";
import type { Miniflare } from "miniflare";
import { type DurableObjectNamespaceLike, SessionDurableObject } from "../../../src/stores/durable_object.ts";
import { nodeNamespace, startMiniflare } from "../../workers/miniflare.ts";

/** How long after a record's expiry its object's alarm collects it. */
export const DELAY = SessionDurableObject.alarmDelay;

/** What an object's storage holds, as the test Worker's `/inspect` tells it. */
export interface Inspected {
  record: string | null;
  lock: { owner: string; until: number } | null;
  index: Record<string, { at: number; token: string }>;
  alarm: number | null;
}

/** What an object that holds nothing shows. */
export const EMPTY: Inspected = { record: null, lock: null, index: {}, alarm: null };

let running:
  | { mf: Miniflare; namespace: DurableObjectNamespaceLike; noDelay: DurableObjectNamespaceLike }
  | undefined;

/**
 * The test Worker's session objects: `namespace` (`SESSIONS_DO`) and `noDelay`
 * (`SESSIONS_DO_NO_DELAY`, whose alarm collects a record as soon as it expires), in a Miniflare
 * started on first use.
 */
export async function objects(): Promise<
  { namespace: DurableObjectNamespaceLike; noDelay: DurableObjectNamespaceLike }
> {
  if (!running) {
    const mf = await startMiniflare();
    running = {
      mf,
      namespace: await nodeNamespace(mf, "SESSIONS_DO"),
      noDelay: await nodeNamespace(mf, "SESSIONS_DO_NO_DELAY"),
    };
  }
  return running;
}

/** Stops the Miniflare `objects` started, if any. */
export async function dispose(): Promise<void> {
  await running?.mf.dispose();
  running = undefined;
}

/** The answer of the test Worker's `/inspect` (or, with `alarm`, `/alarm`) for the object named `key`. */
async function inspected(within: DurableObjectNamespaceLike, key: string, alarm: boolean) {
  // A plain request, which the structural stub type does not describe: the real stub takes it.
  const stub = within.get(within.idFromName(key)) as unknown as {
    fetch(url: string, init?: { method: string }): Promise<Response>;
  };
  const response = await stub.fetch(alarm ? "https://do/alarm" : "https://do/inspect", {
    method: alarm ? "POST" : "GET",
  });
  return (await response.json()) as Inspected & { expired: unknown[] };
}

/**
 * What the object named `key` holds in storage: its record text, lock, index entries and alarm.
 * With `alarm`, the object first runs its alarm handler, as the runtime would at the scheduled
 * time. `within`: another namespace than `SESSIONS_DO`.
 */
export async function inspect(
  key: string,
  { within, alarm = false }: { within?: DurableObjectNamespaceLike; alarm?: boolean } = {},
): Promise<Inspected> {
  const { expired: _reported, ...held } = await inspected(within ?? (await objects()).namespace, key, alarm);
  return held;
}

/** What the object's `expired()` hook was given by its alarms so far. */
export async function reported(key: string, within: DurableObjectNamespaceLike): Promise<unknown[]> {
  return (await inspected(within, key, false)).expired;
}

/** The storage keys in the index held by the object named `name`. */
export async function indexIn(name: string): Promise<string[]> {
  return Object.keys((await inspect(name)).index).map((entry) => entry.slice("index:".length));
}

/** Sends one operation to the object named `name`, as the store's earlier version did. */
export async function send(name: string, operation: Record<string, unknown>): Promise<void> {
  const { namespace } = await objects();
  const response = await namespace.get(namespace.idFromName(name)).fetch(`https://do/${operation.op}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...operation, now: Date.now() }),
  });
  assert.equal(response.status, 200);
  await response.json();
}

/**
 * `SESSIONS_DO` with each object named: `sent(name, path)` is told of every request, with the
 * object's name and the operation's path; `down(name)` makes an object fail as a lost
 * connection does.
 */
export async function naming(
  sent: (name: string, path: string) => void,
  down: (name: string) => boolean = () => false,
): Promise<DurableObjectNamespaceLike> {
  const { namespace } = await objects();
  return {
    idFromName: (name) => ({ name, id: namespace.idFromName(name) }),
    get(named) {
      const { name, id } = named as { name: string; id: unknown };
      const stub = namespace.get(id);
      return {
        fetch(url, init) {
          if (down(name)) return Promise.reject(new Error("Network connection lost"));
          sent(name, new URL(url).pathname);
          return stub.fetch(url, init);
        },
      };
    },
  };
}
