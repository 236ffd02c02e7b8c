// websession/testing under Vitest: runs `vitest run` in this folder, as an application runs its
// tests (the test files `*.test.ts` beside this one, vitest.config.ts), on the Node that runs
// this test, and asserts from Vitest's JSON report that every test ran and passed.
//
//   node --import tsx --test tests/vitest/vitest_test.ts
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { run } from "../spawn.ts";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const VITEST = fileURLToPath(new URL("../../node_modules/vitest/vitest.mjs", import.meta.url));

/** The part of Vitest's JSON report (`--reporter=json`) read here. */
interface Report {
  numTotalTests: number;
  numPassedTests: number;
  numFailedTests: number;
  success: boolean;
  testResults: { name: string; assertionResults: { fullName: string; status: string }[] }[];
}

describe("websession/testing under Vitest", () => {
  it("vitest run passes every test of tests/vitest", { timeout: 120_000 }, async () => {
    const version = JSON.parse(
      await readFile(join(VITEST, "..", "package.json"), "utf8"),
    ) as { version: string };
    assert.match(version.version, /^4\./);
    const dir = await mkdtemp(join(tmpdir(), "websession-vitest-"));
    try {
      const report = join(dir, "report.json");
      const { code, output } = await run(process.execPath, [
        VITEST,
        "run",
        "--reporter=json",
        `--outputFile=${report}`,
      ], {
        cwd: HERE,
        env: { NO_COLOR: "1", CI: "1", NODE_OPTIONS: undefined, FORCE_COLOR: undefined },
      });
      assert.equal(code, 0, output);
      const result = JSON.parse(await readFile(report, "utf8")) as Report;
      assert.equal(result.success, true, output);
      const tests = result.testResults.flatMap((file) =>
        file.assertionResults.map((test) =>
          `${file.name.slice(HERE.length)}: ${test.fullName}: ${test.status}`
        )
      );
      assert.deepEqual(tests, [
        "testing_kit.test.ts: websession/testing under Vitest signIn's Cookie header reaches the page behind the login over HTTP: passed",
        "testing_kit.test.ts: websession/testing under Vitest the handler itself, and a TestClock moved past idleTimeout: passed",
      ]);
      assert.equal(result.numFailedTests, 0);
      assert.equal(result.numPassedTests, result.numTotalTests);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
