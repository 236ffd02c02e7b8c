// The floor: the least code that does the same observable work as websession's MemoryStore path,
// and nothing else. A comparison subject for the benchmark, never shipped.
//
// - the session cookie is read from the Cookie header by a substring search (no full parse);
// - a cookie value that verified once (HMAC-SHA256 over the id) is looked up in a Map of
//   verified values, which holds its storage key (no crypto on a returning or read-only request);
// - the record is loaded from an in-memory Map through an async call (a store interface is async),
//   kept as JSON text with a version and an expiry, and parsed;
// - the handler gets `get` / `update`; a changed session is saved by compare-and-set on the version;
// - every response that loaded the session gets `Vary: Cookie`; a new session also gets its
//   `Set-Cookie` and `Cache-Control: private, no-store`, on a copy of the handler's Response (as the
//   library does since the copy rule) or, with `copy: false`, on the handler's own Response.
//
// Plain JavaScript: Node, Deno, Bun and workerd load it as is.

const encoder = new TextEncoder();
const IDLE_MS = 3600_000;

function base64url(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64url(text) {
  const bin = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

/**
 * A floor session layer over an in-memory map.
 *
 * @param {{ secret: string, copy?: boolean }} options
 * @returns {{ wrap(handler: (req: Request, session: FloorSession) => Response | Promise<Response>): (req: Request) => Promise<Response> }}
 */
export function createFloor(options) {
  const copy = options.copy !== false;
  const records = new Map(); // storage key -> { json, version, expiresAt }
  let verified = new Map(); // cookie value -> storage key
  const keyPromise = crypto.subtle.importKey(
    "raw",
    encoder.encode(options.secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign", "verify"],
  );

  // deno-lint-ignore require-await -- a store interface is async: the floor pays its promise too
  async function load(key) {
    return records.get(key);
  }
  // deno-lint-ignore require-await -- likewise
  async function save(key, json, expected) {
    const current = records.get(key);
    if ((current === undefined ? null : current.version) !== expected) return false;
    records.set(key, {
      json,
      version: expected === null ? 1 : expected + 1,
      expiresAt: Date.now() + IDLE_MS,
    });
    return true;
  }

  async function verify(value) {
    const dot = value.indexOf(".");
    if (dot < 0) return undefined;
    const id = value.slice(0, dot);
    const ok = await crypto.subtle.verify(
      "HMAC",
      await keyPromise,
      fromBase64url(value.slice(dot + 1)),
      encoder.encode(id),
    );
    if (!ok) return undefined;
    const key = base64url(new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(id))));
    if (verified.size >= 4096) verified = new Map();
    verified.set(value, key);
    return key;
  }

  function cookieOf(request) {
    const header = request.headers.get("cookie");
    if (header === null) return undefined;
    const at = header.indexOf("session=");
    if (at < 0) return undefined;
    const end = header.indexOf(";", at);
    return header.slice(at + 8, end < 0 ? undefined : end);
  }

  return {
    wrap(handler) {
      return async function floor(request) {
        const value = cookieOf(request);
        let key = value === undefined ? undefined : verified.get(value);
        if (key === undefined && value !== undefined) key = await verify(value);
        let data = {};
        let version = null;
        if (key !== undefined) {
          const record = await load(key);
          if (record !== undefined && record.expiresAt > Date.now()) {
            data = JSON.parse(record.json);
            version = record.version;
          } else key = undefined;
        }
        let changed = false;
        const session = {
          get: (name) => data[name],
          update(name, fn) {
            const next = fn(data[name]);
            data[name] = next;
            changed = true;
            return next;
          },
        };
        const response = await handler(request, session);
        let cookie;
        if (changed) {
          if (key === undefined) {
            // A new session: an id, its signature and its storage key.
            const id = base64url(crypto.getRandomValues(new Uint8Array(18)));
            const [signature, digest] = await Promise.all([
              keyPromise.then((k) => crypto.subtle.sign("HMAC", k, encoder.encode(id))),
              crypto.subtle.digest("SHA-256", encoder.encode(id)),
            ]);
            key = base64url(new Uint8Array(digest));
            const signed = `${id}.${base64url(new Uint8Array(signature))}`;
            verified.set(signed, key);
            cookie = `session=${signed}; Path=/; HttpOnly; Secure; SameSite=Lax`;
          }
          if (!(await save(key, JSON.stringify(data), version))) {
            return new Response("conflict", { status: 409 });
          }
        }
        if (key === undefined && cookie === undefined) return response;
        if (cookie === undefined) {
          response.headers.set("vary", "Cookie");
          return response;
        }
        const out = copy ? new Response(response.body, response) : response;
        out.headers.set("vary", "Cookie");
        out.headers.append("set-cookie", cookie);
        out.headers.set("cache-control", "private, no-store");
        return out;
      };
    },
  };
}
