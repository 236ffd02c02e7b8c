import { MemoryStore } from "../../src/stores/memory.ts";
import { sessionSuite } from "../conformance/session_suite.ts";

sessionSuite("MemoryStore", { open: () => new MemoryStore() });
// The request-free API (openSession/commitSession) keeps the same guarantees.
sessionSuite("MemoryStore", { open: () => new MemoryStore(), api: "request-free" });
