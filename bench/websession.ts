// The websession sources every benchmark file runs: the working tree by default, or the copy of
// a revision that `bench/run.ts` extracted when BENCH_SOURCE names one (it passes the directory
// on as BENCH_SOURCE_DIR, so that child processes on Node, Deno and Bun load the same code).
// Every bench file imports websession from here, never from ../mod.ts, so one run never mixes
// two copies.
import process from "node:process";
import { pathToFileURL } from "node:url";

const dir = process.env.BENCH_SOURCE_DIR;
/** The directory whose `mod.ts` and `src/` are measured, as a URL ending in `/`. */
export const SOURCE_URL: URL = dir
  ? pathToFileURL(dir.endsWith("/") ? dir : `${dir}/`)
  : new URL("../", import.meta.url);

async function load<T>(path: string): Promise<T> {
  return (await import(new URL(path, SOURCE_URL).href)) as T;
}

const core = await load<typeof import("../mod.ts")>("mod.ts");
const file = await load<typeof import("../src/stores/file.ts")>("src/stores/file.ts");
const cookie = await load<typeof import("../src/stores/cookie.ts")>("src/stores/cookie.ts");
const redis = await load<typeof import("../src/stores/redis.ts")>("src/stores/redis.ts");
const postgres = await load<typeof import("../src/stores/postgres.ts")>("src/stores/postgres.ts");

// The id helpers are in websession/store-kit; revisions before that exported them from the core.
const kit: Partial<typeof import("../src/store_kit.ts")> = await load<
  Partial<typeof import("../src/store_kit.ts")>
>(
  "src/store_kit.ts",
).catch(() => ({}));
const ids = (kit.createSessionId ? kit : core) as typeof import("../src/store_kit.ts");
export const { withSession, getSession, MemoryStore } = core;
export const { createSessionId, storageKeyOf } = ids;
export type MemoryStore = import("../mod.ts").MemoryStore;
export type { SessionOptions, SessionStore } from "../mod.ts";
export const { FileStore } = file;
export type FileStore = import("../src/stores/file.ts").FileStore;
export const { CookieStore } = cookie;
export type CookieStore = import("../src/stores/cookie.ts").CookieStore;
export const { RedisStore } = redis;
export type { RedisLike } from "../src/stores/redis.ts";
export const { PostgresStore } = postgres;
export type { SqlLike } from "../src/stores/postgres.ts";

const id = await load<Partial<typeof import("../src/id.ts")>>("src/id.ts").catch(() =>
  ({}) as Partial<typeof import("../src/id.ts")>
);

/**
 * base64url without padding, by the core's own encoder where `src/id.ts` still exports one (the
 * string it builds is what a store keeps as a key), else by Buffer's.
 */
export const encodeBase64Url: (bytes: Uint8Array) => string = id.encodeBase64Url ??
  ((bytes: Uint8Array) => Buffer.from(bytes).toString("base64url"));
