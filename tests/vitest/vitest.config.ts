// Vitest for the files beside this one. `websession` and `websession/testing` resolve to the
// repository's sources through this folder's tsconfig.json `paths`, as an installed package
// resolves through its `exports`.
import { defineConfig } from "vitest/config";

export default defineConfig({
  resolve: { tsconfigPaths: true },
  test: { include: ["*.test.ts"] },
});
