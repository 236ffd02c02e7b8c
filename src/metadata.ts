/**
 * What an "active sessions" page shows about each session besides its data: when it was last
 * seen, and (opt-in) the user agent and client address it was last written from. The core keeps
 * it in the record under a reserved data key ({@linkcode META_KEY}, like `__flash`), so every
 * store carries it, and writes it only with a save the request makes anyway: a read-only request
 * writes nothing more than its expiry touch, and a touch rewrites no data (the last-seen time of
 * a touched session is read from its expiry). The handler never sees the key; the merge never
 * counts it as something the handler looked at, so it never causes a `409` or a re-run.
 *
 * Also here: the public handle of a session, which names it to a browser or an admin tool
 * without its cookie value or storage key.
 *
 * Guide: docs/guides/active-sessions.md.
 *
 * @module
 */
import { encodeBase64Url } from "./id.ts";
import type { SessionData } from "./store.ts";

export { META_KEY } from "./session_state.ts";
import { META_KEY } from "./session_state.ts";

/** Longest user agent kept, in UTF-16 code units (longer ones are cut). */
export const MAX_USER_AGENT = 256;
/** Longest client address kept (an IPv6 address with a zone fits). */
export const MAX_CLIENT_ADDRESS = 64;

/**
 * What a session's metadata says about the device that last wrote it, after `redact`.
 * Names follow OpenTelemetry's semantic conventions (`user_agent.original`, `client.address`).
 *
 * @example
 * ```ts
 * import type { DeviceInfo } from "websession";
 * import assert from "node:assert/strict";
 *
 * const device: DeviceInfo = { userAgent: "Mozilla/5.0 (X11; Linux x86_64)", clientAddress: "203.0.113.7" };
 * assert.equal(device.clientAddress, "203.0.113.7");
 * ```
 */
export interface DeviceInfo {
  /** The `User-Agent` request header (RFC 9110 §10.1.5), at most {@linkcode MAX_USER_AGENT} characters. */
  userAgent?: string | undefined;
  /** The client's address, as the `clientAddress` rule found it. */
  clientAddress?: string | undefined;
}

/**
 * The `deviceInfo` option of `userSessions()`: what to record about the device of each session (opt-in; nothing is
 * recorded without it, besides when the session was last seen).
 *
 * @example
 * ```ts
 * import { type DeviceInfoOptions, MemoryStore, trustedProxies, userSessions, withSession } from "websession";
 * import assert from "node:assert/strict";
 *
 * const deviceInfo: DeviceInfoOptions = {
 *   userAgent: true,
 *   clientAddress: trustedProxies(1), // one load balancer in front, which appends X-Forwarded-For
 *   redact: ({ userAgent, clientAddress }) => ({
 *     userAgent,
 *     clientAddress: clientAddress?.replace(/\.\d+$/, ".0"), // keep a /24 only
 *   }),
 * };
 * const handler = withSession(() => new Response("ok"), {
 *   store: new MemoryStore(),
 *   secrets: ["a secret of at least thirty-two characters"],
 *   users: userSessions({ userKey: "user", deviceInfo }),
 * });
 * assert.equal((await handler(new Request("https://example.com/"))).status, 200);
 * ```
 */
export interface DeviceInfoOptions {
  /**
   * Record the `User-Agent` header.
   * @default false
   */
  userAgent?: boolean;
  /**
   * Finds the client's address in a request, by a rule that trusts only what your own proxies
   * wrote: `trustedProxies(n)` for `n` proxies that append to `X-Forwarded-For`, or a function of
   * your own (`(req) => req.headers.get("cf-connecting-ip") ?? undefined` on Cloudflare). Never
   * the first `X-Forwarded-For` entry: any client can write it.
   * @default none: no address is recorded
   */
  clientAddress?: (request: Request) => string | undefined;
  /**
   * Changes what is kept before it is stored (truncate an address, drop a user agent's version).
   * @default keep as found
   */
  redact?: (info: DeviceInfo, request: Request) => DeviceInfo;
}

/** The resolved `deviceInfo` option. Internal. */
export interface ResolvedDeviceInfo {
  userAgent: boolean;
  clientAddress: ((request: Request) => string | undefined) | undefined;
  redact: ((info: DeviceInfo, request: Request) => DeviceInfo) | undefined;
}

/**
 * Checks the `deviceInfo` option.
 *
 * @throws {TypeError} When it is not an object, or a field has the wrong type.
 */
export function resolveDeviceInfo(options: DeviceInfoOptions | undefined): ResolvedDeviceInfo | undefined {
  if (options === undefined) return undefined;
  if (typeof options !== "object" || options === null) {
    throw new TypeError("Invalid deviceInfo: expected an object");
  }
  if (options.userAgent !== undefined && typeof options.userAgent !== "boolean") {
    throw new TypeError(`Invalid deviceInfo.userAgent: expected a boolean, got ${typeof options.userAgent}`);
  }
  for (const name of ["clientAddress", "redact"] as const) {
    if (options[name] !== undefined && typeof options[name] !== "function") {
      throw new TypeError(`Invalid deviceInfo.${name}: expected a function`);
    }
  }
  return {
    userAgent: options.userAgent === true,
    clientAddress: options.clientAddress,
    redact: options.redact,
  };
}

/**
 * A `clientAddress` rule for an app behind `hops` proxies of its own, each of which appends the
 * address it received from to one header: `X-Forwarded-For` (the de facto one, the default) or
 * RFC 7239's `Forwarded` (its `for=` parameters; `options.header: "Forwarded"`). Only the header
 * named is read: a client can send the other one too, and would choose the address if it were
 * read as a fallback. The client's address is the entry `hops` from the right: entries further
 * left were written by the client or by proxies you do not run, and are never trusted. With
 * fewer entries than `hops` the request did not come through your proxies: no address. An entry
 * that is not an IP address (an obfuscated `Forwarded` identifier, `unknown`, garbage) gives no
 * address either; a port is dropped.
 *
 * @param hops How many proxies of yours stand in front of the app (1 or more).
 * @param options `header`: the one your proxies append to (`"X-Forwarded-For"` or `"Forwarded"`,
 *   case-insensitive; default `"X-Forwarded-For"`).
 * @returns The rule, for the `deviceInfo.clientAddress` option.
 * @throws {RangeError} When `hops` is not a positive integer.
 * @throws {TypeError} When `header` is neither of the two.
 * @example
 * ```ts
 * import { trustedProxies } from "websession";
 * import assert from "node:assert/strict";
 *
 * const rule = trustedProxies(1);
 * // The client claimed 10.0.0.1; the load balancer saw it connect from 198.51.100.4.
 * const req = new Request("https://example.com/", { headers: { "x-forwarded-for": "10.0.0.1, 198.51.100.4" } });
 * assert.equal(rule(req), "198.51.100.4");
 * assert.equal(trustedProxies(2)(req), "10.0.0.1");
 * assert.equal(trustedProxies(3)(req), undefined);
 * // A proxy that writes RFC 7239's Forwarded; the client's own X-Forwarded-For is ignored.
 * const rfc = new Request("https://example.com/", {
 *   headers: { forwarded: 'for="[2001:db8::17]:4711"', "x-forwarded-for": "10.0.0.1" },
 * });
 * assert.equal(trustedProxies(1, { header: "Forwarded" })(rfc), "2001:db8::17");
 * ```
 */
export function trustedProxies(
  hops: number,
  options: { header?: "X-Forwarded-For" | "Forwarded" } = {},
): (request: Request) => string | undefined {
  if (!Number.isSafeInteger(hops) || hops < 1) {
    throw new RangeError(`Invalid hops: "${String(hops)}" must be a positive integer`);
  }
  const header = String(options?.header ?? "X-Forwarded-For").toLowerCase();
  if (header !== "x-forwarded-for" && header !== "forwarded") {
    throw new TypeError(
      `Invalid header: "${String(options.header)}" is not "X-Forwarded-For" or "Forwarded"`,
    );
  }
  return function clientAddressBehindProxies(request: Request): string | undefined {
    const value = request.headers.get(header);
    if (value === null) return undefined;
    const entries = header === "forwarded" ? forwardedFor(value) : value.split(",");
    if (entries.length < hops) return undefined;
    return ipAddress(entries[entries.length - hops]!);
  };
}

/** The `for=` of each element of a `Forwarded` value (RFC 7239 §4), `""` where an element has none. */
function forwardedFor(value: string): string[] {
  const elements = value.match(/(?:[^,"]|"(?:[^"\\]|\\.)*")+|(?<=^|,)(?=,|$)/g) ?? [];
  return elements.map((element) => {
    const match = /(?:^|;)\s*for\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)/i.exec(element);
    return match === null ? "" : match[1]!.replace(/^"|"$/g, "").replace(/\\(.)/g, "$1");
  });
}

/** An entry as an IP address without a port (`[v6]:port`, `v4:port`), or `undefined`. */
function ipAddress(entry: string): string | undefined {
  let address = entry.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(address);
  if (bracketed !== null) address = bracketed[1]!;
  else if (/^[\d.]+:\d+$/.test(address)) address = address.slice(0, address.lastIndexOf(":"));
  const ipv4 = /^(?:\d{1,3}\.){3}\d{1,3}$/.test(address);
  const ipv6 = address.includes(":") && /^[0-9A-Fa-f:.]+(?:%[\w.-]+)?$/.test(address);
  return ipv4 || ipv6 ? address : undefined;
}

/** The metadata as stored: `seen` in ms since the epoch, the device's fields as recorded. */
export interface StoredMetadata extends DeviceInfo {
  seen?: number;
}

/** Reads the metadata of stored data, ignoring anything malformed. */
export function metadataOf(data: SessionData | undefined): StoredMetadata {
  const meta = data !== undefined && Object.hasOwn(data, META_KEY) ? data[META_KEY] : undefined;
  if (typeof meta !== "object" || meta === null) return {};
  const { seen, userAgent, clientAddress } = meta as Record<string, unknown>;
  const out: StoredMetadata = {};
  if (typeof seen === "number" && Number.isFinite(seen)) out.seen = seen;
  if (typeof userAgent === "string") out.userAgent = userAgent;
  if (typeof clientAddress === "string") out.clientAddress = clientAddress;
  return out;
}

function clip(value: unknown, max: number): string | undefined {
  if (typeof value !== "string" || value === "") return undefined;
  return value.length > max ? value.slice(0, max) : value;
}

/**
 * The metadata a save writes now: `seen` is now; the device fields are read from the request
 * (when the option asks and there is one), else kept from the record it replaces.
 *
 * @param previous The stored data the save replaces (`undefined` for a new session).
 * @param device The resolved option.
 * @param request The request, if any.
 * @param now The clock reading, ms since the epoch.
 */
export function nextMetadata(
  previous: SessionData | undefined,
  device: ResolvedDeviceInfo | undefined,
  request: Request | undefined,
  now: number,
): StoredMetadata {
  const meta: StoredMetadata = { ...metadataOf(previous), seen: now };
  if (device === undefined || request === undefined) return meta;
  let info: DeviceInfo = {};
  if (device.userAgent) info.userAgent = request.headers.get("user-agent") ?? undefined;
  if (device.clientAddress !== undefined) {
    try {
      info.clientAddress = device.clientAddress(request);
    } catch {
      info.clientAddress = undefined; // a failing rule records no address rather than failing the save
    }
  }
  if (device.redact !== undefined) {
    try {
      info = device.redact({ ...info }, request) ?? {};
    } catch {
      info = {}; // what could not be redacted is not kept
    }
  }
  const userAgent = device.userAgent ? clip(info.userAgent, MAX_USER_AGENT) : undefined;
  const clientAddress = device.clientAddress !== undefined
    ? clip(info.clientAddress, MAX_CLIENT_ADDRESS)
    : undefined;
  if (userAgent === undefined) delete meta.userAgent;
  else meta.userAgent = userAgent;
  if (clientAddress === undefined) delete meta.clientAddress;
  else meta.clientAddress = clientAddress;
  return meta;
}

const encoder = new TextEncoder();
const HANDLE_LABEL = "websession session handle\0";
const handleKeys = new Map<string, Promise<CryptoKey>>();

function handleKey(secret: string): Promise<CryptoKey> {
  let key = handleKeys.get(secret);
  if (key === undefined) {
    if (handleKeys.size >= 64) handleKeys.clear();
    key = crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
      "sign",
    ]);
    handleKeys.set(secret, key);
  }
  return key;
}

/**
 * The public handle of a session: `HMAC-SHA256(secret, label ‖ storage key)`, its first 16 bytes
 * in base64url (22 characters). It names one session to a browser or an admin tool; it is
 * neither the cookie value nor the storage key, and neither can be derived from it. It changes
 * when the first secret changes (handles are looked up among a user's listed sessions, so a
 * handle from before a rotation simply names none).
 *
 * @param secret The first of the application's secrets.
 * @param storageKey The session's storage key.
 */
export async function handleOf(secret: string, storageKey: string): Promise<string> {
  const mac = await crypto.subtle.sign(
    "HMAC",
    await handleKey(secret),
    encoder.encode(HANDLE_LABEL + storageKey),
  );
  return encodeBase64Url(new Uint8Array(mac, 0, 16));
}
