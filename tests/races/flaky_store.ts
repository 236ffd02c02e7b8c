// A MemoryStore that fails on cue, for the race tests: a connection reset on a save or an index read.
import { MemoryStore } from "../../mod.ts";

/** Fails the n-th save from when `failIn` is set (a connection reset). */
export class FlakyStore extends MemoryStore {
  failIn = 0;
  override save(...args: Parameters<MemoryStore["save"]>) {
    if (this.failIn > 0 && --this.failIn === 0) return Promise.reject(new Error("connection reset"));
    return super.save(...args);
  }
}
