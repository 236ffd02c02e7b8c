// A cookie-jar HTTP client over Node's fetch (undici), the way a browser tab keeps its cookies:
// it sends back what Set-Cookie gave it and drops a cookie that was expired (Max-Age=0 or an
// empty value). Node's fetch pools connections per origin with no limit, so concurrent requests
// go out on separate connections. Every exchange is appended to a shared log.

/** One request and its response, body read. */
export interface Exchange {
  method: string;
  path: string;
  status: number;
  body: string;
  setCookies: string[];
  /** From sending the request to the end of the body, in milliseconds. */
  ms: number;
}

/** Whether a Set-Cookie header value deletes its cookie. */
export function clearsCookie(header: string): boolean {
  const pair = header.split(";", 1)[0]!;
  return /;\s*Max-Age=0\s*(;|$)/i.test(header) || pair.slice(pair.indexOf("=") + 1) === "";
}

/** A client with a cookie jar. */
export class JarClient {
  jar = new Map<string, string>();
  #base: string;
  #log: Exchange[];

  /**
   * @param base The server's origin, `http://127.0.0.1:PORT`.
   * @param log Where every exchange is recorded.
   */
  constructor(base: string, log: Exchange[]) {
    this.#base = base;
    this.#log = log;
  }

  /** The Cookie header this client sends. */
  get cookie(): string {
    return [...this.jar].map(([name, value]) => `${name}=${value}`).join("; ");
  }

  /** Sends a request with the jar's cookies, reads the whole body and keeps the cookies set. */
  async request(path: string, method = "GET"): Promise<Exchange> {
    const headers: Record<string, string> = {};
    if (this.jar.size > 0) headers.cookie = this.cookie;
    const start = performance.now();
    const response = await fetch(new URL(path, this.#base), { method, headers });
    const body = await response.text();
    const exchange: Exchange = {
      method,
      path,
      status: response.status,
      body,
      setCookies: response.headers.getSetCookie(),
      ms: performance.now() - start,
    };
    this.#log.push(exchange);
    for (const header of exchange.setCookies) {
      const pair = header.split(";", 1)[0]!;
      const name = pair.slice(0, pair.indexOf("="));
      if (clearsCookie(header)) this.jar.delete(name);
      else this.jar.set(name, pair.slice(name.length + 1));
    }
    return exchange;
  }

  /** Another tab of the same browser at this moment: the same cookies, its own jar from now on. */
  clone(): JarClient {
    const copy = new JarClient(this.#base, this.#log);
    copy.jar = new Map(this.jar);
    return copy;
  }
}
