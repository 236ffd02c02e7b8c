/**
 * The `users` option: sessions per user, made by {@linkcode userSessions}. It carries its own
 * code, so an application that does not import it bundles none of it.
 *
 * @module
 */
import { kUsers, type UsersFlow } from "../backend.ts";
import { type DeviceInfoOptions, resolveDeviceInfo } from "../metadata.ts";
import { userLock } from "./lock.ts";
import { noteMeta, signedIn } from "./sign_in.ts";

/**
 * What {@linkcode userSessions} takes.
 *
 * @example
 * ```ts
 * import { trustedProxies, userSessions, type UserSessionsOptions } from "websession";
 * import assert from "node:assert/strict";
 *
 * const options: UserSessionsOptions = {
 *   userKey: "user",
 *   deviceInfo: { userAgent: true, clientAddress: trustedProxies(1) },
 *   maxSessionsPerUser: 5,
 * };
 * assert.equal(userSessions(options).userKey, "user");
 * ```
 */
export interface UserSessionsOptions {
  /**
   * The session key that holds the user's id (a string): stores that can
   * (`capabilities.users`) keep an index of each user's sessions, written with the save that sets
   * the key, so that `listUserSessions` and `endUserSessions` can list and end them ("sign out
   * other devices", "log out everywhere after a password change").
   */
  userKey: string;
  /**
   * What to record about the device of each signed-in session, for an "active sessions" page:
   * its user agent, its client address (read by a rule you give, never blindly from
   * `X-Forwarded-For`), and a hook to redact them. Written only with saves the request makes
   * anyway. See {@linkcode DeviceInfoOptions} and docs/guides/active-sessions.md.
   * @default none: only when each session was last seen
   */
  deviceInfo?: DeviceInfoOptions;
  /**
   * At most this many live sessions per user (needs a store with `capabilities.users`): a sign-in
   * beyond it ends the user's oldest sessions (by creation), as an administrator would, each
   * reported as an `end` event with reason `limit`.
   * @default no limit
   */
  maxSessionsPerUser?: number;
}

/**
 * The `users` option of `withSession`: made by {@linkcode userSessions}, which checks it.
 *
 * @example
 * ```ts
 * import { MemoryStore, type SessionOptions, userSessions, type UserSessions } from "websession";
 * import assert from "node:assert/strict";
 *
 * const users: UserSessions = userSessions({ userKey: "user" });
 * const options: SessionOptions<{ user?: string }> = {
 *   store: new MemoryStore(),
 *   secrets: ["a secret of at least thirty-two characters"],
 *   users,
 * };
 * assert.equal(options.users?.userKey, "user");
 * ```
 */
export interface UserSessions {
  /** The session key that holds the user's id. */
  readonly userKey: string;
  /** @internal What the commit calls. */
  readonly [kUsers]: UsersFlow;
}

/**
 * Sessions per user, for the `users` option of `withSession` (and of `openSession`): an index of
 * each user's sessions on stores that keep one (`capabilities.users`), the metadata of an
 * "active sessions" page, and an optional limit per user. See docs/guides/users.md.
 *
 * @param options `userKey` (required), `deviceInfo`, `maxSessionsPerUser`.
 * @returns The option value.
 * @throws {TypeError} When `userKey` is not a string or starts with `"__"` (reserved), or a
 *   `deviceInfo` field has the wrong type.
 * @throws {RangeError} When `maxSessionsPerUser` is not a positive integer.
 * @example
 * ```ts
 * import { getSession, listUserSessions, MemoryStore, userSessions, withSession } from "websession";
 * import assert from "node:assert/strict";
 *
 * const options = {
 *   store: new MemoryStore(),
 *   secrets: ["a secret of at least thirty-two characters"],
 *   users: userSessions({ userKey: "user", maxSessionsPerUser: 5 }),
 * };
 * const login = withSession(async (req: Request) => {
 *   const session = await getSession<{ user?: string }>(req);
 *   session.regenerate();
 *   session.set("user", "ada");
 *   return new Response("in");
 * }, options);
 * await login(new Request("https://example.com/login", { method: "POST" }));
 * assert.equal((await listUserSessions(options, "ada")).length, 1);
 * ```
 */
export function userSessions(options: UserSessionsOptions): UserSessions {
  if (typeof options !== "object" || options === null) {
    throw new TypeError('Invalid users: expected options such as { userKey: "user" }');
  }
  const { userKey, maxSessionsPerUser } = options;
  if (typeof userKey !== "string" || userKey === "" || userKey.startsWith("__")) {
    throw new TypeError(
      `Invalid userKey: "${String(userKey)}" must be a session key (a string not starting with "__")`,
    );
  }
  if (
    maxSessionsPerUser !== undefined && (!Number.isSafeInteger(maxSessionsPerUser) || maxSessionsPerUser < 1)
  ) {
    throw new RangeError(`Invalid maxSessionsPerUser: "${maxSessionsPerUser}" must be a positive integer`);
  }
  const deviceInfo = resolveDeviceInfo(options.deviceInfo);
  const flow: UsersFlow = {
    userKey,
    maxSessionsPerUser,
    noteMeta: (h, now) => noteMeta(h, now, deviceInfo),
    signedIn,
    lock: userLock,
  };
  return Object.freeze({ userKey, [kUsers]: flow });
}
