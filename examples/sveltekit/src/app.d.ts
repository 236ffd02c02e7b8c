import type { Session } from "../../../mod.ts";
import type { Data } from "./hooks.server.ts";

declare global {
  namespace App {
    interface Locals {
      /** The request's session (opened on the first call). */
      session(): Promise<Session<Data>>;
    }
  }
}

export {};
