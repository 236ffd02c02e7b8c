// A Server Component reads the session from cookies(). Reading a flash changes the session:
// commitSession saves that (a Server Component cannot set cookies, and a flash read needs none).
import { createElement as h } from "react";
import { commitSession } from "../../../../mod.ts";
import { currentSession } from "../../lib/session.ts";
import { increment, login, logout } from "./actions.ts";

export default async function Page() {
  const session = await currentSession();
  const notice = session.get("notice");
  const visits = session.peek("visits") ?? 0;
  const user = session.get("user");
  await commitSession(session);
  return h(
    "main",
    null,
    notice ? h("p", { id: "notice" }, notice) : null,
    h("p", null, "Visits: ", h("strong", { id: "visits" }, visits)),
    user ? h("p", null, "Logged in as ", h("strong", { id: "user" }, user)) : null,
    h("form", { id: "increment", action: increment }, h("button", null, "Count a visit")),
    user ? h("form", { id: "logout", action: logout }, h("button", null, "Log out")) : h(
      "form",
      { id: "login", action: login },
      h("input", { name: "user", required: true }),
      h("button", null, "Log in"),
    ),
  );
}
