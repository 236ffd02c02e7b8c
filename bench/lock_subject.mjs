// The comparison subject for contention: a plain per-session lock taken before loading, what
// CherryPy's implicit locking does (`acquire_lock()` before `load()`, release after `save()`),
// over the same store objects websession uses (their `load` and compare-and-set `save`). Within
// one process the lock serializes a session's requests completely, so no save is ever refused:
// the latency of waiting in line is all it costs. Across processes this lock does not reach
// (CherryPy's RAM sessions do not either); its rows are one process only.
//
// Plain JavaScript, like the floor, so that any runtime can load it.

const encoder = new TextEncoder();
const IDLE_MS = 3600_000;

function base64url(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * @param {{ store: { load(key: string): Promise<any>, save(key: string, record: any, expected: number | null): Promise<unknown> }, secret: string }} options
 */
export function createLockedSessions(options) {
  const { store } = options;
  const keyPromise = crypto.subtle.importKey(
    "raw",
    encoder.encode(options.secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const known = new Map(); // signed cookie value -> storage key (this subject only reads cookies it signed)
  const locks = new Map(); // storage key -> tail of the queue

  async function acquire(key) {
    const previous = locks.get(key);
    let release;
    const mine = new Promise((resolve) => (release = resolve));
    const tail = previous === undefined ? mine : previous.then(() => mine);
    locks.set(key, tail);
    if (previous !== undefined) await previous;
    return () => {
      release();
      if (locks.get(key) === tail) locks.delete(key);
    };
  }

  return {
    wrap(handler) {
      return async function locked(request) {
        const header = request.headers.get("cookie") ?? "";
        const at = header.indexOf("session=");
        const value = at < 0 ? undefined : header.slice(at + 8).split(";", 1)[0];
        let key = value === undefined ? undefined : known.get(value);
        let cookie;
        if (key === undefined) {
          const id = base64url(crypto.getRandomValues(new Uint8Array(18)));
          const [signature, digest] = await Promise.all([
            keyPromise.then((k) => crypto.subtle.sign("HMAC", k, encoder.encode(id))),
            crypto.subtle.digest("SHA-256", encoder.encode(id)),
          ]);
          key = base64url(new Uint8Array(digest));
          const signed = `${id}.${base64url(new Uint8Array(signature))}`;
          known.set(signed, key);
          cookie = `session=${signed}; Path=/; HttpOnly; Secure; SameSite=Lax`;
        }
        const release = await acquire(key);
        try {
          const record = await store.load(key);
          const data = record?.data ?? {};
          const version = record?.version ?? null;
          let changed = false;
          const session = {
            get: (name) => data[name],
            set(name, v) {
              data[name] = v;
              changed = true;
            },
            update(name, fn) {
              data[name] = fn(data[name]);
              changed = true;
              return data[name];
            },
          };
          const response = await handler(request, session);
          if (changed) {
            const now = Date.now();
            const saved = await store.save(key, {
              data,
              version: version === null ? 1 : version + 1,
              createdAt: record?.createdAt ?? now,
              expiresAt: now + IDLE_MS,
            }, version);
            if (saved !== true) return new Response("conflict", { status: 409 });
          }
          const out = cookie === undefined ? response : new Response(response.body, response);
          out.headers.set("vary", "Cookie");
          if (cookie !== undefined) out.headers.append("set-cookie", cookie);
          return out;
        } finally {
          release();
        }
      };
    },
  };
}
