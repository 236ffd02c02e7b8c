// A MemoryStore that runs a hook after a save has landed, before its answer reaches the caller (a
// round trip): where the race tests put another request between a save and what follows it.
import { MemoryStore, type StoredSession } from "../../mod.ts";

/** Runs `afterSave` (when set) after each save has landed, before the save answers. */
export class HookStore extends MemoryStore {
  afterSave: ((record: StoredSession) => Promise<void>) | undefined;
  override async save(...args: Parameters<MemoryStore["save"]>) {
    const result = await super.save(...args);
    const hook = this.afterSave;
    if (hook !== undefined) await hook(args[1]);
    return result;
  }
}
