// Serializability as a property: random interleavings of a few handlers on one session must end
// as some serial order of the requests that were not refused. For every generated case the
// requests run concurrently (random pauses between loading, reading and writing), then every
// order of the answered requests is replayed on a model; one must give every 2xx body and the
// final record. Refused requests (409) must have changed nothing.
//
// SERIAL_RUNS sets the number of cases (300 by default; `npm run fuzz` runs more).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { getSession, withSession } from "../src/with_session.ts";
import { storageKeyOf } from "../src/id.ts";
import { FLASH_KEY } from "../src/session_state.ts";
import { isEnded } from "../src/store.ts";
import { MemoryStore } from "../src/stores/memory.ts";
import type { ConflictPolicy } from "../src/options.ts";
import { sleep } from "./conformance/util.ts";

const SECRET = "serializability property secret, 32+ characters";
const RUNS = Number(
  (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env
    .SERIAL_RUNS ?? 300,
);

const KINDS = [
  "getset",
  "update",
  "delete",
  "clear",
  "flash",
  "consume",
  "regenerate",
  "destroy",
  "read",
] as const;
type Kind = typeof KINDS[number];

interface Step {
  kind: Kind;
  method: "GET" | "POST";
  /** Pauses in ms: before loading, after loading, between read and write. */
  pauses: [number, number, number];
}

type Data = Record<string, unknown>;

/** JSON with sorted keys, so bodies and records compare whatever the insertion order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (typeof value === "object" && value !== null) {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical((value as Data)[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

function app(store: MemoryStore, steps: Step[], conflict: ConflictPolicy) {
  return withSession(async (req: Request) => {
    const index = Number(new URL(req.url).searchParams.get("i"));
    const step = steps[index]!;
    const [, afterLoad, beforeWrite] = step.pauses;
    const session = await getSession<Data>(req);
    await sleep(afterLoad);
    switch (step.kind) {
      case "getset": {
        const n = ((session.get("n") as number | undefined) ?? 0) + 1;
        await sleep(beforeWrite);
        session.set("n", n);
        return new Response(String(n));
      }
      case "update":
        await sleep(beforeWrite);
        session.update("n", (n) => ((n as number | undefined) ?? 0) + 1);
        return new Response("ok");
      case "delete":
        await sleep(beforeWrite);
        session.delete("n");
        return new Response("ok");
      case "clear":
        await sleep(beforeWrite);
        session.clear();
        return new Response("ok");
      case "flash":
        await sleep(beforeWrite);
        session.flash("f", `from ${index}`);
        return new Response("ok");
      case "consume":
        return new Response(String(session.get("f") ?? "none"));
      case "regenerate":
        await sleep(beforeWrite);
        session.regenerate();
        session.set("u", index);
        return new Response("ok");
      case "destroy":
        await sleep(beforeWrite);
        session.destroy();
        return new Response("ok");
      case "read":
        return new Response(canonical(session.toJSON()));
    }
  }, { store, secrets: SECRET, conflict, onError: (error) => new Response(String(error), { status: 409 }) });
}

interface Model {
  alive: boolean;
  data: Data;
  flash: Data;
  /** Ended by a destroy (a log out), not by a regenerate. */
  destroyed: boolean;
  /** The data of the session each answered regenerate (by step index) moved to. */
  moved: Map<number, Data>;
}

/** Runs one step on the model; `undefined` when it would have been refused. */
function apply(model: Model, step: Step, index: number): string | undefined {
  if (!model.alive) {
    // The cookie names an ended session: a fresh, empty session whose changes are refused, but
    // for a log in (regenerate) after a log out: nothing of the old session lives on to hide.
    switch (step.kind) {
      case "regenerate":
        if (!model.destroyed) return undefined;
        model.moved.set(index, { u: index });
        return "ok";
      case "getset":
      case "update":
      case "flash":
        return undefined;
      case "consume":
        return "none";
      case "read":
        return "{}";
      default:
        return "ok";
    }
  }
  const { data, flash } = model;
  switch (step.kind) {
    case "getset": {
      const n = ((data.n as number | undefined) ?? 0) + 1;
      data.n = n;
      return String(n);
    }
    case "update":
      data.n = ((data.n as number | undefined) ?? 0) + 1;
      return "ok";
    case "delete":
      delete data.n;
      return "ok";
    case "clear":
      model.data = {};
      model.flash = {};
      return "ok";
    case "flash":
      flash.f = `from ${index}`;
      return "ok";
    case "consume": {
      const value = flash.f;
      delete flash.f;
      return String(value ?? "none");
    }
    case "regenerate": {
      data.u = index;
      model.moved.set(index, {
        ...data,
        ...(Object.keys(flash).length > 0 ? { [FLASH_KEY]: { ...flash } } : {}),
      });
      model.alive = false;
      return "ok";
    }
    case "destroy":
      model.alive = false;
      model.destroyed = true;
      return "ok";
    case "read":
      return canonical(data);
  }
}

function* permutations<T>(items: T[]): Generator<T[]> {
  if (items.length <= 1) {
    yield items;
    return;
  }
  for (let i = 0; i < items.length; i++) {
    const rest = [...items.slice(0, i), ...items.slice(i + 1)];
    for (const tail of permutations(rest)) yield [items[i]!, ...tail];
  }
}

const stepArbitrary = fc.record({
  kind: fc.constantFrom(...KINDS),
  method: fc.constantFrom("GET" as const, "POST" as const),
  pauses: fc.tuple(
    fc.integer({ min: 0, max: 3 }),
    fc.integer({ min: 0, max: 2 }),
    fc.integer({ min: 0, max: 2 }),
  ),
});

async function check(steps: Step[], conflict: ConflictPolicy): Promise<void> {
  const store = new MemoryStore();
  const handler = app(store, [{ kind: "getset", method: "POST", pauses: [0, 0, 0] }, ...steps], conflict);
  // Start: a session with n = 1 and a flash value waiting.
  const first = await handler(new Request("https://app.example/?i=0", { method: "POST" }));
  const cookie = first.headers.getSetCookie()[0]!.split(";")[0]!;
  const seed = withSession(async (req: Request) => {
    (await getSession(req)).flash("f", "initial");
    return new Response("ok");
  }, { store, secrets: SECRET });
  await seed(new Request("https://app.example/", { headers: { cookie } }));
  const key = await storageKeyOf(cookie.slice("session=".length).split(".")[0]!);

  const responses = await Promise.all(steps.map(async (step, i) => {
    await sleep(step.pauses[0]);
    const response = await handler(
      new Request(`https://app.example/?i=${i + 1}`, { method: step.method, headers: { cookie } }),
    );
    return { status: response.status, body: await response.text(), cookies: response.headers.getSetCookie() };
  }));
  const answered: number[] = [];
  responses.forEach((response, i) => {
    assert.ok(response.status === 200 || response.status === 409, `step ${i}: status ${response.status}`);
    if (response.status === 200) answered.push(i);
    else assert.deepEqual(response.cookies, [], "a refused request sends no cookie");
  });
  const record = await store.load(key);
  // The session each answered regenerate moved to, by its step's index (as the handler saw it).
  const movedRecords = new Map<number, Data | undefined>();
  for (const i of answered) {
    if (steps[i]!.kind !== "regenerate") continue;
    const issued = responses[i]!.cookies.find((c) => /^session=[^;]/.test(c));
    if (issued === undefined) continue;
    const moved = await store.load(await storageKeyOf(issued.slice("session=".length).split(".")[0]!));
    movedRecords.set(i + 1, moved?.data);
  }

  const tried: string[] = [];
  for (const order of permutations(answered)) {
    const model: Model = {
      alive: true,
      destroyed: false,
      data: { n: 1 },
      flash: { f: "initial" },
      moved: new Map(),
    };
    let fits = true;
    for (const i of order) {
      const body = apply(model, steps[i]!, i + 1);
      if (body === undefined || body !== responses[i]!.body) {
        fits = false;
        break;
      }
    }
    if (!fits) continue;
    if (model.alive) {
      if (record === null || isEnded(record)) continue;
      const expected = {
        ...model.data,
        ...(Object.keys(model.flash).length > 0 ? { [FLASH_KEY]: model.flash } : {}),
      };
      if (canonical(record.data) !== canonical(expected)) {
        tried.push(`${order.join(">")}: record ${canonical(record.data)} != ${canonical(expected)}`);
        continue;
      }
    } else if (!isEnded(record)) {
      continue;
    }
    if (
      movedRecords.size !== model.moved.size ||
      [...model.moved].some(([i, data]) => canonical(movedRecords.get(i)) !== canonical(data))
    ) continue;
    return;
  }
  assert.fail(
    `no serial order explains the outcome (${conflict}):\n` +
      steps.map((s, i) => `  ${i}: ${s.method} ${s.kind} → ${responses[i]!.status} ${responses[i]!.body}`)
        .join("\n") +
      `\n  record: ${canonical(record)}\n  ${tried.slice(0, 5).join("\n  ")}`,
  );
}

describe("serializability (property)", () => {
  for (const conflict of ["merge", "retry", "reject"] as const) {
    it(`${conflict}: every outcome is some serial order of the answered requests`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(stepArbitrary, { minLength: 2, maxLength: 5 }),
          (steps) => check(steps, conflict),
        ),
        { numRuns: Math.max(1, Math.round(RUNS / 3)) },
      );
    });
  }
});
