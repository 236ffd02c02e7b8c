// The Next.js recipe (examples/nextjs), built with `next build` and served by `next start` on
// loopback: route handlers wrapped with withSession, and Server Actions that open the session
// from cookies() and save it with the recipe's saveSession(), driven the way a browser without
// JavaScript submits their forms (the action id from the rendered page, multipart, 303).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  bin,
  bindBase,
  Browser,
  type Driver,
  GATE_SOURCE,
  jsonDriver,
  prepare,
  type Reply,
  rerunAfterConflict,
  runCommand,
  type Running,
  startServer,
  walk,
} from "./harness.ts";

const ENV = { NEXT_TELEMETRY_DISABLED: "1" };

// Test-only route handlers for the conflict that needs the handler again.
const RW = `import { getSession, withSession } from "../../../../mod.ts";
import { options } from "../../lib/session.ts";
import { gate } from "../../gate.js";

export const GET = withSession(async (request) => {
  const session = await getSession(request);
  const n = session.get("n") ?? 0;
  if (new URL(request.url).searchParams.has("hold")) {
    gate().held = true;
    await gate().released;
  }
  session.set("n", n + 1);
  return new Response(String(n + 1));
}, options);
`;
const RW_HELD = `import { gate } from "../../gate.js";
export const GET = () => new Response(gate().held ? "yes" : "no");
`;
const RW_RELEASE = `import { gate } from "../../gate.js";
export const POST = () => {
  gate().release();
  return new Response("released");
};
`;

// Test-only page and Server Action for a conflict a Server Action cannot resolve: it read n, and
// a concurrent action wrote n before it saved.
const BUMP_ACTIONS = `"use server";
import { redirect } from "next/navigation";
import { currentSession, saveSession } from "../../lib/session.ts";
import { gate } from "../../gate.js";

export async function bump(form) {
  const session = await currentSession();
  const n = session.get("n") ?? 0;
  if (form.get("hold") === "1") {
    gate("action").held = true;
    await gate("action").released;
  }
  session.set("n", n + 1);
  await saveSession(session);
  redirect("/bump");
}
`;
const BUMP_PAGE = `import { createElement as h } from "react";
import { currentSession } from "../../lib/session.ts";
import { bump } from "./actions.js";

export default async function Page() {
  const session = await currentSession();
  return h(
    "main",
    null,
    h("p", { id: "n" }, String(session.peek("n") ?? 0)),
    h("form", { id: "bump", action: bump }, h("input", { name: "hold" }), h("button", null, "+1")),
  );
}
`;
const BUMP_HELD = `import { gate } from "../../gate.js";
export const GET = () => new Response(gate("action").held ? "yes" : "no");
`;
const BUMP_RELEASE = `import { gate } from "../../gate.js";
export const POST = () => {
  gate("action").release();
  return new Response("released");
};
`;

let server: Running;
before(async () => {
  const { dir } = await prepare("nextjs", {
    files: {
      "gate.js": GATE_SOURCE,
      "app/rw/route.ts": RW,
      "app/rw-held/route.ts": RW_HELD,
      "app/rw-release/route.ts": RW_RELEASE,
      "app/bump/actions.js": BUMP_ACTIONS,
      "app/bump/page.js": BUMP_PAGE,
      "app/bump-held/route.js": BUMP_HELD,
      "app/bump-release/route.js": BUMP_RELEASE,
    },
    build: (dir) => runCommand(bin("next"), ["build"], { cwd: dir, env: ENV }),
  });
  server = await startServer(bin("next"), ["start", "-H", "127.0.0.1"], { cwd: dir, env: ENV });
});
after(async () => await server?.stop());

walk("next: route handlers wrapped with withSession", () =>
  Promise.resolve({
    driver: jsonDriver(server.base, {
      visit: "/api/visit",
      peek: "/api/visits",
      login: "/api/login",
      logout: "/api/logout",
    }),
    stop: () => Promise.resolve(),
  }));

/** What the Server Component page shows. */
function shownOn(reply: Reply): { visits: number; user: string | null; notice: string | null } {
  assert.equal(reply.status, 200, reply.body.slice(0, 500));
  const text = (id: string) => {
    const match = new RegExp(`id="${id}">([^<]*)<`).exec(reply.body);
    return match === null ? null : match[1]!.replaceAll("&#x27;", "'").replaceAll("&amp;", "&");
  };
  return { visits: Number(text("visits")), user: text("user"), notice: text("notice") };
}

/**
 * Server Actions through the page's forms: each form carries a hidden `$ACTION_ID_<id>` field;
 * a browser without JavaScript posts it as multipart to the page, and the action's redirect
 * answers 303.
 */
function actionsDriver(base: string): Driver {
  const ids = new Map<string, string>();
  async function actionId(form: string): Promise<string> {
    if (!ids.has(form)) {
      // A fresh browser sees the increment and login forms; a logged-in one sees logout.
      const tab = new Browser(base);
      const pages = [(await tab.request("/actions")).body];
      if (form === "logout") {
        await submit(tab, "login", { user: "someone" }, "/actions");
        pages.push((await tab.request("/actions")).body);
      }
      for (const html of pages) {
        for (const match of html.matchAll(/<form id="(\w+)"[^>]*>.*?name="\$ACTION_ID_(\w+)"/gs)) {
          ids.set(match[1]!, match[2]!);
        }
      }
    }
    const id = ids.get(form);
    assert.ok(id, `no action id for the ${form} form`);
    return id;
  }
  async function submit(
    tab: Browser,
    form: string,
    fields: Record<string, string>,
    expectLocation = "/actions",
  ): Promise<Reply> {
    const body = new FormData();
    body.set(`$ACTION_ID_${await actionId(form)}`, "");
    for (const [name, value] of Object.entries(fields)) body.set(name, value);
    const reply = await tab.request("/actions", { method: "POST", body });
    assert.equal(reply.status, 303, reply.body.slice(0, 500));
    assert.equal(reply.headers.get("location"), expectLocation);
    return reply;
  }
  return bindBase({
    async visit(tab) {
      const reply = await submit(tab, "increment", {});
      return { reply, shown: shownOn(await tab.request("/actions")) };
    },
    async peek(tab) {
      const reply = await tab.request("/actions");
      const { visits, user } = shownOn(reply);
      return { reply, shown: { visits, user } };
    },
    login: (tab, user) => submit(tab, "login", { user }),
    logout: (tab) => submit(tab, "logout", {}),
  }, base);
}

walk(
  "next: Server Actions with openSession(await cookies()) and saveSession",
  () => Promise.resolve({ driver: actionsDriver(server.base), stop: () => Promise.resolve() }),
);

describe("next: a conflict that needs the route handler again", () => {
  it("runs the held GET again on the fresh session: both increments land", async () => {
    const { held, n } = await rerunAfterConflict(server.base);
    assert.equal(held.status, 200, `${held.body}\n${server.output()}`);
    assert.equal(held.body, "3");
    assert.equal(n, 3);
  });
});

describe("next: a conflict a Server Action cannot resolve", () => {
  it("refuses the late action (SessionConflictError) and keeps the other's write", async () => {
    const tab = new Browser(server.base);
    const page = await tab.request("/bump");
    const id = /<form id="bump"[^>]*>.*?name="\$ACTION_ID_(\w+)"/s.exec(page.body)?.[1];
    assert.ok(id, page.body.slice(0, 500));
    const bump = (browser: Browser, hold: boolean) => {
      const body = new FormData();
      body.set(`$ACTION_ID_${id}`, "");
      body.set("hold", hold ? "1" : "");
      return browser.request("/bump", { method: "POST", body });
    };
    const n = async () => Number(/id="n">(\d+)</.exec((await tab.request("/bump")).body)?.[1]);

    assert.equal((await bump(tab, false)).status, 303);
    assert.equal(await n(), 1);
    const held = bump(tab.clone(), true);
    for (let i = 0; (await tab.request("/bump-held")).body !== "yes"; i++) {
      assert.ok(i < 600, "the held action never read the session");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal((await bump(tab, false)).status, 303);
    assert.equal(await n(), 2);
    await tab.request("/bump-release", { method: "POST" });
    const late = await held;
    assert.equal(late.status, 500, late.body.slice(0, 500));
    assert.deepEqual(late.setCookies.filter((c) => c.startsWith("session=")), []);
    assert.match(server.output(), /ERR_SESSION_CONFLICT/, "a SessionConflictError");
    assert.equal(await n(), 2, "none of the refused action's changes landed");
    assert.equal((await bump(tab, false)).status, 303);
    assert.equal(await n(), 3);
  });
});
