// CookieStore's cookies through a real HTTP server: Node's own node:http with its default limits
// (16 KiB for the request line and all headers together, `--max-http-header-size`), driven by
// Node's fetch (undici) the way a browser sends cookies back. Node only: it is Node's server
// whose limit is under test.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  createServer,
  type IncomingMessage,
  maxHeaderSize,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { CookieStore } from "../../src/stores/cookie.ts";
import { getSession, withSession } from "../../mod.ts";
import { randomKey } from "../conformance/util.ts";
import { ID, randomText, record } from "./cookie/seals.ts";

const SECRET = "a secret of at least thirty-two characters";
/** About 12.5 KB of data deflate gains little on: more than the default budget lets through. */
const BLOB = randomText(12_500);
/** What a browser typically sends besides the session: other cookies of the site (~1.9 KB)... */
const OTHER_COOKIES = [
  `_ga=GA1.1.${"1234567890".repeat(2)}.1700000000`,
  `_ga_ABCDEF1234=GS1.1.1700000000.1.1.1700000000.0.0.${"0".repeat(10)}`,
  `consent=${"granted|".repeat(40)}`,
  `csrf=${randomKey()}${randomKey()}`,
  `prefs=${encodeURIComponent(JSON.stringify({ theme: "dark", lang: "en-GB", tz: "Europe/London" }))}`,
  `ab_tests=${"experiment-checkout-v2:b,".repeat(30)}`,
  `recently_viewed=${"sku-0000000000,".repeat(40)}`,
].join("; ");
/** ... and the headers of a current browser's navigation. */
const BROWSER_HEADERS = {
  "user-agent":
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
  accept: "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8",
  "accept-language": "en-GB,en-US;q=0.9,en;q=0.8,fr;q=0.7,de;q=0.6",
  referer: `https://shop.example/search?q=${"long+search+terms+".repeat(8)}`,
  "sec-ch-ua": '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"',
  "sec-fetch-site": "same-origin",
  "sec-fetch-mode": "navigate",
};
/** nginx's default per-line buffer (`large_client_header_buffers 4 8k`). */
const NGINX_LINE = 8192;

/** A fetch handler served by node:http with its defaults. */
async function serve(
  handler: (request: Request) => Promise<Response>,
): Promise<{ server: Server; url: string }> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (typeof value === "string") headers.set(name, value);
    }
    handler(new Request(new URL(req.url!, "http://127.0.0.1"), { method: req.method, headers })).then(
      async (response) => {
        const setCookies = response.headers.getSetCookie();
        res.statusCode = response.status;
        if (setCookies.length > 0) res.setHeader("set-cookie", setCookies);
        res.end(await response.text());
      },
      (error) => {
        res.statusCode = 599;
        res.end(String(error));
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** The session cookies a response set, as `name=value` pairs (cleared ones left out). */
function sessionCookies(response: Response): string[] {
  return response.headers.getSetCookie()
    .map((header) => header.split(";")[0]!)
    .filter((pair) => !pair.endsWith("="));
}

describe("CookieStore behind node:http with its default header limit", () => {
  const errors: unknown[] = [];
  let server: Server;
  let url: string;
  // Data are set by POST /fill?n=N (the first N characters of BLOB) and read back by GET /read.
  const handler = withSession(async (request: Request) => {
    const session = await getSession<{ blob?: string }>(request);
    const { pathname, searchParams } = new URL(request.url);
    if (pathname === "/fill") session.set("blob", BLOB.slice(0, Number(searchParams.get("n"))));
    const blob = session.get("blob") ?? "";
    return Response.json({ length: blob.length, intact: BLOB.startsWith(blob) });
  }, {
    store: new CookieStore({ secrets: SECRET }),
    onError(error) {
      errors.push(error);
      return new Response("refused", { status: 500 });
    },
  });

  before(async () => {
    ({ server, url } = await serve(handler));
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  /** Sends the session cookies back with the other cookies and headers of a browser. */
  function read(cookies: string[]): Promise<Response> {
    return fetch(`${url}/read`, {
      headers: { ...BROWSER_HEADERS, cookie: [...cookies, OTHER_COOKIES].join("; ") },
    });
  }

  it("runs with Node's default limit of 16 KiB", () => {
    assert.equal(maxHeaderSize, 16 * 1024);
  });

  it("round-trips the largest session the defaults accept; one character more is refused at seal time and nothing is sent", async () => {
    // Binary search over POST /fill: each probe is a new session, sealed or refused.
    let lo = { n: 0, cookies: [] as string[] };
    let hi = { n: BLOB.length, response: undefined as Response | undefined };
    const probe = async (n: number) => {
      const response = await fetch(`${url}/fill?n=${n}`, { method: "POST" });
      await response.text();
      return response;
    };
    const first = await probe(hi.n);
    assert.equal(first.status, 500, "~12.5 KB of data is refused by default");
    hi.response = first;
    while (hi.n - lo.n > 1) {
      const n = (lo.n + hi.n) >> 1;
      const response = await probe(n);
      if (response.status === 200) lo = { n, cookies: sessionCookies(response) };
      else hi = { n, response };
    }
    assert.ok(lo.n > 4000, `${lo.n} characters: more than one cookie's worth`);
    // The session at n: every cookie within 4096 bytes, all within 6 KiB of Cookie header.
    const sessionPart = lo.cookies.join("; ");
    assert.ok(lo.cookies.length >= 2, "split over chunk cookies");
    assert.ok(lo.cookies.every((pair) => pair.length - 1 <= 4096));
    assert.ok(sessionPart.length <= 6144, `${sessionPart.length} bytes`);
    // With ~1.9 KB of other cookies the whole Cookie line still fits nginx's 8 KiB buffer.
    const line = `Cookie: ${sessionPart}; ${OTHER_COOKIES}\r\n`;
    assert.ok(line.length <= NGINX_LINE, `${line.length} bytes`);
    const response = await read(lo.cookies);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { length: lo.n, intact: true });
    // At n + 1: refused when sealing, with no Set-Cookie at all.
    assert.equal(hi.n, lo.n + 1);
    assert.equal(hi.response!.status, 500);
    assert.deepEqual(hi.response!.headers.getSetCookie(), []);
    assert.ok(errors.length > 0);
    assert.equal((errors.at(-1) as Error).name, "SessionTooLargeError");
    assert.match((errors.at(-1) as Error).message, /over maxCookieHeaderBytes "6144"/);
  });

  it("answers 431 to the ~17 KB of cookies a raised budget seals for ~12.5 KB of incompressible data", async () => {
    // Deflate off stands for data it cannot shrink (already compressed or encrypted values).
    const raised = new CookieStore({ secrets: SECRET, maxCookieHeaderBytes: 32_768, compress: false });
    const cookies = await raised.seal(ID, record({ blob: BLOB }), "session");
    const pairs = cookies.map((c) => `${c.name}=${c.value}`);
    assert.ok(pairs.join("; ").length > 16 * 1024, `${pairs.join("; ").length} bytes`);
    const response = await read(pairs);
    await response.arrayBuffer();
    assert.equal(response.status, 431);
  });
});
