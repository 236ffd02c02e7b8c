// The demo as a Cloudflare Worker (module syntax), sessions in Workers KV. The secret and the
// KV namespace come from `env`, so the options are a function of the handler's arguments:
// withSession calls it with (request, env, ctx) on each request.
//
//   npx wrangler kv namespace create SESSIONS       (put its id in wrangler.toml)
//   npx wrangler secret put SESSION_SECRET          (32+ random characters)
//   npx wrangler deploy
//
// Workers KV is eventually consistent and cannot compare-and-set: concurrent writes to one
// session from different locations can overwrite each other. For strict counters use
// DurableObjectStore (websession/durable-object) instead.
import type { ExecutionContext, KVNamespace } from "@cloudflare/workers-types";
import { createApp } from "../app.ts";
import { sessionSecret } from "../secret.ts";
import type { SessionOptions } from "../../mod.ts";
import { CloudflareKvStore } from "../../src/stores/cloudflare_kv.ts";

/** The Worker's bindings (see wrangler.toml). */
export interface Env {
  /** The KV namespace that holds sessions. */
  SESSIONS: KVNamespace;
  /** Signs session cookies: a secret of 32+ characters. */
  SESSION_SECRET: string;
  /** The previous secret while cookies it signed are still around (optional). */
  SESSION_SECRET_PREVIOUS?: string;
  /** "1" to mark cookies Secure (set in wrangler.toml; local plain-http runs leave it out). */
  SECURE_COOKIES?: string;
}

// One options object per env: the same object on every request keeps withSession's resolved
// options (and its cache of verified cookies) instead of rebuilding them each time.
const optionsByEnv = new WeakMap<Env, SessionOptions>();

const WHERE =
  "for wrangler dev, copy examples/workers/.dev.vars.example to .dev.vars; for the deployed Worker, run npx wrangler secret put SESSION_SECRET";

/** The session options for an `env`: one object per env. */
function sessionOptions(_request: Request, env: Env, _ctx: ExecutionContext): SessionOptions {
  let options = optionsByEnv.get(env);
  if (options === undefined) {
    const secret = sessionSecret(env.SESSION_SECRET, WHERE);
    options = {
      store: new CloudflareKvStore({ namespace: env.SESSIONS }),
      secrets: [secret, ...(env.SESSION_SECRET_PREVIOUS ? [env.SESSION_SECRET_PREVIOUS] : [])],
      cookie: { secure: env.SECURE_COOKIES === "1" },
    };
    optionsByEnv.set(env, options);
  }
  return options;
}

const app = createApp(sessionOptions);

export default {
  fetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
    return app(request, env, ctx);
  },
};
