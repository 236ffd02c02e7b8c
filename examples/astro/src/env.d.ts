declare namespace App {
  interface Locals {
    /** The request's session (opened on the first call). */
    session(): Promise<import("../../../mod.ts").Session<import("./middleware.ts").Data>>;
  }
}
