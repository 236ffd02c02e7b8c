// The Worker the workerd rows run (bundled with esbuild by bench/workerd.ts, importing the built
// package measured as "websession"): GET /batch?subject=S&scenario=C&n=N runs N requests of a scenario one after
// another inside the isolate, on freshly built Requests, and answers "ok". CPU is read from
// outside (workerd's threads in /proc): inside a Worker the clocks stand still while code runs.
import { getSession, MemoryStore, withSession } from "websession";
import { createFloor } from "./floor.mjs";

const SECRET = "benchmark secret: at least thirty-two characters";
const bare = () => new Response("ok");
const floor = createFloor({ secret: SECRET });
const options = { store: new MemoryStore(), secrets: SECRET };
const subjects = {
  bare: { read: bare, count: bare, sets: false },
  floor: {
    read: floor.wrap((_r, s) => (s.get("visits"), new Response("ok"))),
    count: floor.wrap((_r, s) => (s.update("visits", (n = 0) => n + 1), new Response("ok"))),
    sets: true,
  },
  websession: {
    read: withSession(async (req) => ((await getSession(req)).get("visits"), new Response("ok")), options),
    count: withSession(
      async (req) => ((await getSession(req)).update("visits", (n = 0) => n + 1), new Response("ok")),
      options,
    ),
    sets: true,
  },
};
const pools = new Map();

async function pool(subject) {
  let cookies = pools.get(subject);
  if (cookies) return cookies;
  cookies = [];
  for (let i = 0; i < 64; i++) {
    const response = await subjects[subject].count(new Request("https://bench.example/count"));
    await response.arrayBuffer();
    const pair = response.headers.getSetCookie().map((h) => h.split(";", 1)[0]).join("; ");
    cookies.push(pair || "session=aaaaaaaaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
  }
  pools.set(subject, cookies);
  return cookies;
}

export default {
  async fetch(request) {
    const url = new URL(request.url);
    const subject = url.searchParams.get("subject");
    const scenario = url.searchParams.get("scenario");
    const n = Number(url.searchParams.get("n"));
    const s = subjects[subject];
    const cookies = await pool(subject);
    const handler = scenario === "read" ? s.read : s.count;
    const target = scenario === "read" ? "https://bench.example/read" : "https://bench.example/count";
    for (let i = 0; i < n; i++) {
      const req = scenario === "new"
        ? new Request(target)
        : new Request(target, { headers: { cookie: cookies[i & 63] } });
      const response = await handler(req);
      if (response.status !== 200) {
        return new Response(`${scenario} answered ${response.status}`, { status: 500 });
      }
      response.headers.getSetCookie();
    }
    return new Response("ok");
  },
};
