// What the cookie store's tests share: two secrets, records, the jar a browser would send back,
// opening that must succeed or be refused (and why), tampering, the key another JOSE
// implementation derives, and the app the cases drive through withSession.
import assert from "node:assert/strict";
import { base64url } from "jose";
import type { CookieStore } from "../../../src/stores/cookie.ts";
import type { InvalidSeal, OpenedSession, SealedCookie, StoredSession } from "../../../src/store.ts";
import { randomKey } from "../../conformance/util.ts";
import { getSession, withSession } from "../../../mod.ts";
import type { InvalidCookieEvent } from "../../../src/options.ts";

export const SECRET_A = "secret A: at least thirty-two characters long";
export const SECRET_B = "secret B: at least thirty-two characters long";
export const ID = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
export const INVALID = /^Invalid session cookie: /;

export function record(
  data: Record<string, unknown>,
  now = Date.now(),
  ttl = 60_000,
  version = 1,
): StoredSession {
  return { data, version, createdAt: now, expiresAt: now + ttl };
}

/** A cookie getter over the cookies a seal returned (what the browser would send back). */
export function jar(cookies: SealedCookie[]): Map<string, string> {
  return new Map(cookies.map((cookie) => [cookie.name, cookie.value]));
}

export function getter(cookies: Map<string, string>): (name: string) => string | undefined {
  return (name) => cookies.get(name);
}

/** Opens and requires a session: fails the test on `null` or an invalid seal. */
export async function opens(
  store: CookieStore,
  cookies: Map<string, string>,
  name = "session",
): Promise<OpenedSession> {
  const result = await store.open(getter(cookies), name);
  assert.ok(result !== null && !("invalid" in result), `did not open: ${JSON.stringify(result)}`);
  return result;
}

/** Opens and requires an invalid seal of the given kind, whose detail message matches `why`. */
export async function refused(
  store: CookieStore,
  cookies: Map<string, string>,
  kind: InvalidSeal["invalid"],
  why?: RegExp,
  name = "session",
): Promise<void> {
  const result = await store.open(getter(cookies), name);
  assert.ok(result !== null && "invalid" in result, `opened: ${JSON.stringify(result)}`);
  assert.equal(result.invalid, kind);
  if (why !== undefined) {
    assert.ok(result.detail instanceof Error);
    assert.match(result.detail.message, INVALID);
    assert.match(result.detail.message, why);
  }
}

/** Random base64url text: deflate gains little on it, so it stays large when sealed. */
export function randomText(length: number): string {
  let text = "";
  while (text.length < length) text += randomKey();
  return text.slice(0, length);
}

export function decodeHeader(token: string): Record<string, unknown> {
  return JSON.parse(new TextDecoder().decode(base64url.decode(token.split(".")[0]!)));
}

/** Changes the first character of segment `index` of a compact JWE (never a padding-only bit). */
export function tamper(token: string, index: number): string {
  const parts = token.split(".");
  const segment = parts[index]!;
  parts[index] = (segment[0] === "A" ? "B" : "A") + segment.slice(1);
  return parts.join(".");
}

/**
 * The key a secret seals with, derived here independently of the store (HKDF-SHA-256, the
 * store's documented salt and info), with the `kid` it is named by: what another JOSE
 * implementation needs to open the store's seals, or to seal for it.
 */
export async function deriveForInterop(secret: string): Promise<{ key: CryptoKey; kid: string }> {
  const encode = (text: string) => new TextEncoder().encode(text);
  const base = await crypto.subtle.importKey("raw", encode(secret), "HKDF", false, ["deriveBits"]);
  const params = (info: string) => ({
    name: "HKDF",
    hash: "SHA-256",
    salt: encode("websession cookie store"),
    info: encode(info),
  });
  const keyBits = await crypto.subtle.deriveBits(params("websession/cookie-store/A256GCM/v1"), base, 256);
  const kidBits = await crypto.subtle.deriveBits(params("websession/cookie-store/kid/v1"), base, 48);
  const key = await crypto.subtle.importKey("raw", keyBits, "AES-GCM", false, ["encrypt", "decrypt"]);
  return { key, kid: base64url.encode(new Uint8Array(kidBits)) };
}

const SIGNING = "signing secret: at least 32 characters long";

/**
 * An app: `/` counts visits, `/read` only reads, `/big` stores a large blob, `/small` drops it,
 * `/logout` destroys, `/slow` waits for `hold` and then writes.
 */
export function app(
  store: CookieStore,
  events: InvalidCookieEvent[] = [],
  extra: { hold?: Promise<void>; now?: () => number } = {},
): (request: Request) => Promise<Response> {
  return withSession(async (request: Request) => {
    const session = await getSession<{ visits?: number; blob?: string; late?: boolean }>(request);
    const path = new URL(request.url).pathname;
    if (path === "/big") session.set("blob", randomText(4000)); // two chunk cookies
    if (path === "/small") session.delete("blob");
    if (path === "/logout") session.destroy();
    if (path === "/") session.update("visits", (n = 0) => n + 1);
    if (path === "/slow") {
      await extra.hold;
      session.set("late", true);
    }
    return new Response(String(session.get("visits") ?? 0));
  }, {
    store,
    secrets: SIGNING,
    onInvalidCookie: (event) => events.push(event),
    ...(extra.now ? { now: extra.now } : {}),
  });
}
