// "Log out everywhere" under fire: while requests keep writing every session of a user,
// endUserSessions ends them all, on MemoryStore and on a real Redis (RedisStore over ioredis).
// Afterwards no session of the user is live, and every write that started after it returned
// was refused with 409. When other writes win every attempt for its whole deadline, it says so
// with SessionConflictError instead of returning as if done.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Redis as IoRedis } from "ioredis";
import {
  endUserSessions,
  getSession,
  listUserSessions,
  MemoryStore,
  SessionConflictError,
  type SessionStore,
  type StoredSession,
  withSession,
} from "../../mod.ts";
import { RedisStore } from "../../src/stores/redis.ts";
import { isEnded } from "../../src/store.ts";
import { storageKeyOf } from "../../src/id.ts";
import { Client } from "../conformance/client.ts";
import { userSessions } from "../../src/users/options.ts";

const SECRET = "log out everywhere test secret, 32 characters";
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const RUN = crypto.randomUUID().slice(0, 8);
const DEVICES = 5;
const WRITERS = 4; // per device, each writing as fast as it is answered
const AFTER = 3; // requests each writer makes once endUserSessions has returned

/** The storage key of the session a client's cookie names. */
async function keyOf(client: Client): Promise<string> {
  const value = client.jar.get("session")!;
  return await storageKeyOf(value.slice(0, value.indexOf(".")));
}

async function logOutEverywhereUnderWrites(store: SessionStore): Promise<void> {
  const user = `ada-${RUN}-${crypto.randomUUID().slice(0, 8)}`;
  // maxAttempts 2: the commits' own compare-and-set gives up early; ending a session must not.
  const options = { store, secrets: SECRET, users: userSessions({ userKey: "user" }), maxAttempts: 2 };
  const handler = withSession(async (req: Request) => {
    const session = await getSession<{ user?: string; n?: number }>(req);
    if (new URL(req.url).pathname === "/login") session.set("user", user);
    else session.update("n", (n = 0) => n + 1);
    return new Response("ok");
  }, options);
  const devices = Array.from({ length: DEVICES }, () => new Client(handler));
  for (const device of devices) assert.equal(await device.text("/login"), "ok");
  const keys = await Promise.all(devices.map(keyOf));

  let ended = false;
  let landed = 0;
  const late: string[] = [];
  const writer = async (device: Client) => {
    for (let after = 0; after < AFTER;) {
      // A request from the network arrives in a task of its own: timers get their turn too.
      await new Promise((resolve) => setImmediate(resolve));
      const started = ended;
      // A copy of the jar: a refused write must not drop the cookie the others send.
      const sent = device.jar.get("session");
      const response = await device.clone().fetch("/inc", { method: "POST" });
      await response.text();
      if (started) {
        // Refused (in flight when the session ended), or a new session of its own: the old
        // session was ended from elsewhere, so the browser may start again at once.
        const fresh = response.headers.getSetCookie().some((c) =>
          c.startsWith("session=") && !c.startsWith(`session=${sent};`)
        );
        late.push(response.status === 200 && fresh ? "new session" : String(response.status));
        after++;
      } else if (response.status === 200) {
        landed++;
      }
    }
  };
  const writers = devices.flatMap((device) => Array.from({ length: WRITERS }, () => writer(device)));
  // Let the writers get going, then log out everywhere in the middle of their traffic.
  while (landed < DEVICES * WRITERS * 2) await new Promise((resolve) => setTimeout(resolve, 1));
  const count = await endUserSessions(options, { user });
  ended = true;
  await Promise.all(writers);

  assert.equal(count, DEVICES, "every session was ended by this call");
  assert.deepEqual(await listUserSessions(options, user), []);
  for (const key of keys) {
    const record = await store.load(key);
    assert.ok(record === null || isEnded(record), `session ${key} is not live: ${JSON.stringify(record)}`);
  }
  assert.equal(late.length, DEVICES * WRITERS * AFTER);
  assert.deepEqual(
    [...new Set(late)].filter((answer) => answer !== "409" && answer !== "new session"),
    [],
    "every write after the end was refused or started a new session, never landed in the old one",
  );
}

describe("endUserSessions while every session is being written", () => {
  it("ends them all on MemoryStore", async () => {
    await logOutEverywhereUnderWrites(new MemoryStore());
  });

  const redis = new IoRedis(REDIS_URL, { maxRetriesPerRequest: 1 });
  after(async () => {
    const keys = await redis.keys(`websession-test:${RUN}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });

  it("ends them all on Redis (RedisStore over ioredis)", async () => {
    await logOutEverywhereUnderWrites(new RedisStore({ client: redis, prefix: `websession-test:${RUN}:` }));
  });
});

describe("endUserSessions that cannot win", () => {
  it("throws SessionConflictError naming what is still live, never returns as if done", async () => {
    const memory = new MemoryStore();
    let clock = Date.now();
    let stubbornKey = "";
    // A store where another writer saves the stubborn session just before every tombstone.
    const store: SessionStore = {
      capabilities: memory.capabilities,
      load: (key) => memory.load(key),
      destroy: (key) => memory.destroy(key),
      keysOfUser: (user) => memory.keysOfUser(user),
      async save(key, record, expected, index) {
        clock += 1_000;
        if (key === stubbornKey && isEnded(record)) {
          const current = (await memory.load(key))!;
          const next: StoredSession = {
            ...current,
            data: { ...current.data, n: 1 },
            version: current.version + 1,
          };
          assert.equal(await memory.save(key, next, current.version, { user: "ada" }), true);
        }
        return await memory.save(key, record, expected, index);
      },
    };
    const options = { store, secrets: SECRET, users: userSessions({ userKey: "user" }), now: () => clock };
    const login = withSession(async (req: Request) => {
      const session = await getSession<{ user?: string; device?: string }>(req);
      session.set("user", "ada");
      session.set("device", new URL(req.url).pathname.slice(1));
      return new Response("ok");
    }, options);
    const phone = new Client(login);
    await phone.text("/phone");
    await new Client(login).text("/laptop");
    stubbornKey = await keyOf(phone);

    const refusal = await endUserSessions(options, { user: "ada" }).then(() => undefined, (error) => error);
    assert.ok(refusal instanceof SessionConflictError, String(refusal));
    assert.match(
      refusal.message,
      /^Could not end 1 of the user's sessions: .*still live \(1 other sessions were ended\)$/,
    );
    const live = await listUserSessions(options, "ada");
    assert.deepEqual(live.map((s) => s.data.device), ["phone"], "what the error says is true");
  });
});
