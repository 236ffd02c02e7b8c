/**
 * The store conformance suite: the cases every `SessionStore` in this package passes against its
 * real backend (compare-and-set, creation only when absent, expiry, tombstones, `touch`, locks
 * and the per-user index where the store claims them), for a store of your own. Cases that need
 * a capability the store does not claim are skipped by capability. Written on `node:test` and
 * `node:assert`, so one test file runs under `node --test`, `deno test` and `bun test`.
 * Guide: docs/stores/writing-a-store.md.
 *
 * @example
 * ```ts ignore
 * // my_store_test.ts: node --test, deno test -A, or bun test
 * import { storeSuite } from "websession/conformance";
 * import { MyStore } from "./my_store.ts";
 *
 * storeSuite("MyStore", { open: () => new MyStore({ url: "redis://127.0.0.1" }), reportsCurrent: true });
 * ```
 *
 * @module
 */
import { after, before, describe } from "node:test";
import type { SessionStore } from "./store.ts";
import {
  conflictCases,
  countCases,
  dataCases,
  endAndCleanupCases,
  lockAndUserCases,
  raceAndExpiryCases,
  saveCases,
  touchCases,
  touchVersionCases,
} from "./conformance/cases.ts";

/**
 * How a store's test file plugs into {@linkcode storeSuite}.
 *
 * @example
 * ```ts
 * import { MemoryStore } from "websession";
 * import type { StoreSuiteOptions } from "websession/conformance";
 *
 * const options: StoreSuiteOptions = { open: () => new MemoryStore(), reportsCurrent: true };
 * ```
 */
export interface StoreSuiteOptions {
  /** Opens the store under test (connected to its real backend). */
  open: () => SessionStore | Promise<SessionStore>;
  /** Closes what `open` connected. */
  close?: () => void | Promise<void>;
  /**
   * The store reports the current record with every refused save (`SaveConflict`), read in the
   * same atomic step. Stores that cannot may answer plain `false`; the suite then checks only
   * that whatever they report is true.
   */
  reportsCurrent?: boolean;
}

/**
 * Registers the store contract's cases with `node:test` under `describe(name)`; call it at the top
 * level of a test file.
 *
 * @param name The store's name, in the suite's title.
 * @param options How to open (and close) the store under test, and what it reports.
 *
 * @example
 * ```ts ignore
 * // memory_store_test.ts: node --test, deno test -A, or bun test
 * import { MemoryStore } from "websession";
 * import { storeSuite } from "websession/conformance";
 *
 * storeSuite("MemoryStore", { open: () => new MemoryStore(), reportsCurrent: true });
 * ```
 */
export function storeSuite(name: string, options: StoreSuiteOptions): void {
  describe(`${name}: store contract`, () => {
    let current: SessionStore | undefined;
    before(async () => {
      current = await options.open();
    });
    after(async () => {
      await options.close?.();
    });
    // The cases are registered now, the store is opened in \`before\`: they reach it through this.
    const store = new Proxy({} as SessionStore, {
      get(_, name) {
        const value = (current as unknown as Record<string | symbol, unknown>)[name];
        return typeof value === "function" ? value.bind(current) : value;
      },
    });

    saveCases(store);
    conflictCases(store, options);
    raceAndExpiryCases(store);
    dataCases(store);
    touchCases(store);
    touchVersionCases(store);
    endAndCleanupCases(store);
    lockAndUserCases(store);
    countCases(store);
  });
}
