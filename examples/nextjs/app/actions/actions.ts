"use server";
// Server Actions: open the session from cookies(), change it, save it with saveSession().
import { redirect } from "next/navigation";
import { currentSession, saveSession } from "../../lib/session.ts";

export async function increment(): Promise<void> {
  const session = await currentSession();
  session.update("visits", (n = 0) => n + 1);
  await saveSession(session);
  redirect("/actions");
}

export async function login(form: FormData): Promise<void> {
  const session = await currentSession();
  const user = String(form.get("user") ?? "guest");
  session.regenerate(); // a new id on log in: defeats session fixation
  session.set("user", user);
  session.flash("notice", `Welcome, ${user}!`);
  await saveSession(session);
  redirect("/actions");
}

export async function logout(): Promise<void> {
  const session = await currentSession();
  const user = session.get("user");
  session.destroy();
  session.flash("notice", `Goodbye, ${user}.`);
  await saveSession(session);
  redirect("/actions");
}
