import { MemoryStore } from "../../src/stores/memory.ts";
import { sessionSuite } from "../conformance/session_suite.ts";

sessionSuite("MemoryStore", { open: () => new MemoryStore() });
