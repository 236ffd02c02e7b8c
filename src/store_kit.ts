/**
 * The store kit: what a store author needs and an application does not. The contract
 * (`SessionStore`, `SealedSessionStore`, `StoredSession`, `SaveResult`), the tombstone helpers
 * (`ENDED_KEY`, `isEnded`), the rule of a version-checked touch (`touchExtends`), the
 * validators every store runs on what it is handed and what it reads back, the options every
 * store shares (`storeHooks`), the flow of a sealed store of one's own (`sealedStore`), the rule
 * for a user's id in key names (`userTag`), the session id helpers (`createSessionId`,
 * `storageKeyOf`) and the errors a store throws.
 *
 * Each export is documented where it is declared; `deno doc` and JSR show those docs here.
 *
 * @example
 * ```ts
 * import { assertStorageKey, parseStoredSession } from "websession/store-kit";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => assertStorageKey("../../etc/passwd"), TypeError);
 * assert.equal(parseStoredSession("not json"), null);
 * ```
 *
 * @module
 */
export {
  assertLockArguments,
  assertRecordShape,
  assertServerStore,
  assertStorageKey,
  assertTouchArguments,
  ENDED_AT_KEY,
  ENDED_BY_KEY,
  ENDED_KEY,
  endedAt,
  endedRemotely,
  isEnded,
  isSealedStore,
  parseStoredSession,
  storeHooks,
  stringifyData,
  toStoredSession,
  touchExtends,
} from "./store.ts";
export type {
  InvalidSeal,
  OpenedSession,
  SaveConflict,
  SaveIndex,
  SaveResult,
  SealedCookie,
  SealedSessionStore,
  SessionData,
  SessionStore,
  StoreCapabilities,
  StoredSession,
  StoreHookOptions,
} from "./store.ts";
export { SessionDataError, SessionTooLargeError, StoreUnavailableError } from "./errors.ts";
export { createSessionId, isSessionId, storageKeyOf } from "./id.ts";
export { userTag } from "./user_tag.ts";
export { sealedStore } from "./backends/sealed.ts";
