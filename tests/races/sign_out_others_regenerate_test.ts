// Rule: "sign out other devices" keeps the device that asked. docs/guides/users.md:
// `endUserSessions` ends "all but the current one (`exceptCurrent`: "sign out other devices")";
// README: concurrent requests "end as if they had run one after another", and never "a user's
// cookie cleared by another request's accident".
//
// Symptom: the user clicks "sign out other devices" in one tab while another tab of the same
// browser rotates the session's id (`regenerate()`: a privilege change, a re-login), the two
// requests served by two processes sharing Redis (within one process the requests of a session
// take turns, and the second waits). When the rotation lands first, "sign out other devices"
// still takes the session it loaded (now a tombstone) for "the current one", and ends every live
// session of the user, the browser's own new one included: the user is signed out of the very
// browser that asked to stay signed in. Neither serial order gives that: the rotation after the
// sign-out keeps the new session; the rotation first ends the session the sign-out request
// carries, and that request changes nothing.
//
// Suspected cause: src/users.ts `endUserSessions` skips `scope.currentKey` (the key the request
// loaded) and never checks, once it holds the user's lock, that this session is still live: the
// regenerate that ended it (under the same lock) created its successor, which is not "current".
import { after, it } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import {
  endUserSessions,
  getSession,
  listUserSessions,
  type SessionOptions,
  userSessions,
  withSession,
} from "../../mod.ts";
import { RedisStore } from "../../src/stores/redis.ts";

const SECRET = "a secret of at least thirty-two characters";

const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
after(() => redis.disconnect());

type Data = { user?: string };

it("sign out other devices racing a regenerate() of the asking session in another process keeps the browser signed in", async () => {
  const prefix = `races-others-${crypto.randomUUID().slice(0, 8)}:`;
  // Two processes: each has its own store object (its own turns), on one Redis.
  const options = [0, 1].map((): SessionOptions<Data> => ({
    store: new RedisStore({ client: redis, prefix }),
    secrets: SECRET,
    users: userSessions({ userKey: "user" }),
  }));
  const state: { hold: Promise<void> | undefined } = { hold: undefined };
  const [one, two] = options.map((o) =>
    withSession(async (req: Request) => {
      const session = await getSession<Data>(req);
      switch (new URL(req.url).pathname) {
        case "/login":
          session.regenerate();
          session.set("user", "ada");
          return new Response("signed in");
        case "/elevate":
          session.regenerate();
          return new Response("rotated");
        case "/others": {
          session.get("user");
          await state.hold;
          return new Response(String(await endUserSessions(session, { exceptCurrent: true })));
        }
        default:
          return new Response(session.get("user") ?? "anonymous");
      }
    }, o)
  );
  try {
    await one!(new Request("https://example.com/login", { method: "POST" })); // the phone
    const login = await one!(new Request("https://example.com/login", { method: "POST" })); // this browser
    const cookie = login.headers.get("set-cookie")!.split(";")[0]!;

    let release!: () => void;
    state.hold = new Promise((resolve) => (release = resolve));
    const signingOut = one!(
      new Request("https://example.com/others", { method: "POST", headers: { cookie } }),
    );
    await new Promise((resolve) => setTimeout(resolve, 30));
    const elevate = await two!(
      new Request("https://example.com/elevate", { method: "POST", headers: { cookie } }),
    );
    assert.equal(elevate.status, 200);
    const rotated = elevate.headers.get("set-cookie")!.split(";")[0]!;
    release();
    const others = await signingOut;

    const browser = await (await one!(new Request("https://example.com/", { headers: { cookie: rotated } })))
      .text();
    const live = await listUserSessions(options[0]!, "ada");
    assert.equal(
      browser,
      "ada",
      `"sign out other devices" answered ${others.status} (${await others
        .text()} ended) and signed out the browser that asked: ${live.length} sessions of the user live`,
    );
  } finally {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
  }
});
