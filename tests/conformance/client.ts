// A tiny cookie-jar client for driving a wrapped handler with plain Requests, the way a browser
// would: it sends back what Set-Cookie gave it and drops cookies that were expired.
import type { SealedSessionStore, SessionStore } from "../../src/store.ts";
import { sealedStore } from "../../src/backends/sealed.ts";

// deno-lint-ignore no-explicit-any -- handlers take any trailing arguments (env, ctx, info)
export type Handler = (request: Request, ...rest: any[]) => Promise<Response>;

export class Client {
  jar = new Map<string, string>();
  #handler: Handler;
  #base: string;

  constructor(handler: Handler, base = "https://app.example") {
    this.#handler = handler;
    this.#base = base;
  }

  /** The Cookie header this client would send. */
  get cookie(): string {
    return [...this.jar].map(([name, value]) => `${name}=${value}`).join("; ");
  }

  async fetch(path: string, init: RequestInit & { extra?: unknown[] } = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.jar.size > 0 && !headers.has("cookie")) headers.set("cookie", this.cookie);
    const response = await this.#handler(
      new Request(new URL(path, this.#base), { ...init, headers }),
      ...(init.extra ?? []),
    );
    this.absorb(response);
    return response;
  }

  /** Fetches and returns the body text (the body is always consumed). */
  async text(path: string, init?: RequestInit & { extra?: unknown[] }): Promise<string> {
    return await (await this.fetch(path, init)).text();
  }

  absorb(response: Response): void {
    for (const header of response.headers.getSetCookie()) {
      const [pair] = header.split(";");
      const eq = pair!.indexOf("=");
      const name = pair!.slice(0, eq);
      const value = pair!.slice(eq + 1);
      if (/;\s*Max-Age=0(;|$)/i.test(header) || value === "") this.jar.delete(name);
      else this.jar.set(name, value);
    }
  }

  clone(): Client {
    const copy = new Client(this.#handler, this.#base);
    copy.jar = new Map(this.jar);
    return copy;
  }
}

/** Counts the calls a store receives, passing each through to the real store. */
export interface Counted<S extends SessionStore | SealedSessionStore = SessionStore> {
  store: S;
  calls: { load: number; save: number; destroy: number; touch: number };
  reset(): void;
  /** While set, every call fails as if the backend were down. */
  down: boolean;
}

export function counted(inner: SessionStore): Counted {
  const calls = { load: 0, save: 0, destroy: 0, touch: 0 };
  const counter: Counted = {
    calls,
    down: false,
    reset() {
      calls.load =
        calls.save =
        calls.destroy =
        calls.touch =
          0;
    },
    store: undefined as unknown as SessionStore,
  };
  const fail = () => {
    if (counter.down) throw new Error("connection refused (simulated outage)");
  };
  counter.store = {
    capabilities: inner.capabilities,
    async load(key, minVersion) {
      calls.load++;
      fail();
      return await (minVersion === undefined ? inner.load(key) : inner.load(key, minVersion));
    },
    async save(key, record, expected, index) {
      calls.save++;
      fail();
      return await (index === undefined
        ? inner.save(key, record, expected)
        : inner.save(key, record, expected, index));
    },
    async destroy(key) {
      calls.destroy++;
      fail();
      return await inner.destroy(key);
    },
    ...(inner.touch && {
      async touch(key: string, expiresAt: number, version: number) {
        calls.touch++;
        fail();
        return await inner.touch!(key, expiresAt, version);
      },
    }),
    // Locks and the per-user index pass through uncounted.
    ...(inner.lock && inner.unlock && {
      async lock(key: string, owner: string, ttlMs: number) {
        fail();
        return await inner.lock!(key, owner, ttlMs);
      },
      async unlock(key: string, owner: string) {
        fail();
        return await inner.unlock!(key, owner);
      },
    }),
    ...(inner.keysOfUser && {
      async keysOfUser(user: string) {
        fail();
        return await inner.keysOfUser!(user);
      },
    }),
  };
  return counter;
}

/**
 * Counts the calls a sealed store receives, as a server store's: an `open` is a load, a `seal` a
 * save, a `revoke` a destroy (it has no touch).
 */
export function countedSealed(inner: SealedSessionStore): Counted<SealedSessionStore> {
  const calls = { load: 0, save: 0, destroy: 0, touch: 0 };
  const counter: Counted<SealedSessionStore> = {
    calls,
    down: false,
    reset() {
      calls.load =
        calls.save =
        calls.destroy =
        calls.touch =
          0;
    },
    store: undefined as unknown as SealedSessionStore,
  };
  const fail = () => {
    if (counter.down) throw new Error("connection refused (simulated outage)");
  };
  counter.store = sealedStore({
    sealed: true,
    capabilities: inner.capabilities,
    async open(get, name) {
      calls.load++;
      fail();
      return await inner.open(get, name);
    },
    // Every argument passed on, the optional ones included (what a seal replaces, the data a
    // regenerate carries on): the store's protections rest on them.
    async seal(...args: Parameters<SealedSessionStore["seal"]>) {
      calls.save++;
      fail();
      return await inner.seal(...args);
    },
    ...(inner.revoke && {
      async revoke(...args: Parameters<NonNullable<SealedSessionStore["revoke"]>>) {
        calls.destroy++;
        fail();
        return await inner.revoke!(...args);
      },
    }),
  });
  return counter;
}

/** A promise with its resolve function, for holding a request mid-flight. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}
