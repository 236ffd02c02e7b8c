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
import { endUserSessions, listUserSessions, type SessionOptions, userSessions } from "../../mod.ts";
import { RedisStore } from "../../src/stores/redis.ts";
import { cookieOf, during, raceApp, request, SECRET, whoIs } from "./race_app.ts";

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
  const [one, two] = options.map((o) =>
    raceApp<Data>(o, {
      "/others": async (session, _request, app) => {
        session.get("user");
        await app.hold.passed();
        return new Response(String(await endUserSessions(session, { exceptCurrent: true })));
      },
    })
  );
  try {
    await one!.handler(request("/login")); // the phone
    const cookie = cookieOf(await one!.handler(request("/login"))); // this browser
    const { first: others, meanwhile: rotated } = await during(
      one!,
      () => one!.handler(request("/others", cookie)),
      async () => {
        const elevate = await two!.handler(request("/elevate", cookie));
        assert.equal(elevate.status, 200);
        return cookieOf(elevate);
      },
    );
    const browser = await whoIs(one!, rotated);
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
