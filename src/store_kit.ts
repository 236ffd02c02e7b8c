/**
 * The store kit: what a store author needs and an application does not. The contract
 * (`SessionStore`, `SealedSessionStore`, `StoredSession`, `SaveResult`), and the validators every
 * store runs on what it is handed and what it reads back.
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
  assertStorageKey,
  ENDED_AT_KEY,
  ENDED_KEY,
  endedAt,
  isEnded,
  isSealedStore,
  parseStoredSession,
  toStoredSession,
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
} from "./store.ts";
export { SessionDataError, SessionTooLargeError, StoreUnavailableError } from "./errors.ts";
