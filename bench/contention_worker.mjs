// The Worker of the Durable Objects contention row (bundled with esbuild by
// bench/contention_workerd.ts from the built package, run in Miniflare): sessions in
// `DurableObjectStore` over the SESSIONS binding (SessionDurableObject, exported below), one store
// object per isolate, served by both subjects of bench/contention_rounds.mjs:
//   /ws/get, /ws/post, /ws/read        websession
//   /lock/get, /lock/post, /lock/read  the lock subject (its per-session lock in the isolate's memory)
//   /runs                              {"ws": n, "lock": n}: handler runs so far
// Every request comes from outside the isolate (Miniflare's dispatchFetch), as on Workers.
import * as core from "websession";
import { DurableObjectStore } from "websession/durable-object";
import { lockSubject, websessionSubject } from "./contention_rounds.mjs";

export { SessionDurableObject } from "websession/durable-object";

let subjects;

export default {
  fetch(request, env) {
    if (subjects === undefined) {
      const store = new DurableObjectStore({ namespace: env.SESSIONS });
      subjects = { ws: websessionSubject(core, store), lock: lockSubject(store) };
    }
    const [, name, handler] = new URL(request.url).pathname.split("/");
    if (name === "runs") {
      return Response.json({ ws: subjects.ws.runs(), lock: subjects.lock.runs() });
    }
    const subject = subjects[name];
    if (subject === undefined || !["get", "post", "read"].includes(handler)) {
      return new Response("not found", { status: 404 });
    }
    return subject[handler](request);
  },
};
