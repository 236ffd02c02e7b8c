// The store contract's cases, published for store authors as `websession/conformance`.
export { storeSuite, type StoreSuiteOptions } from "../../src/conformance.ts";
