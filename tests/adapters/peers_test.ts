// Each framework adapter's framework is an optional peer dependency of the package: a user of
// websession/hono has hono, and npm checks its version; a user of the core is asked for neither.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** Each adapter subpath and the framework it is for. */
const FRAMEWORKS: Record<string, string> = { "./hono": "hono", "./react-router": "react-router" };

describe("framework adapters", () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));

  it("declare their framework, and every package they import, as an optional peer dependency", () => {
    const adapters = Object.entries(pkg.exports as Record<string, { default?: string }>)
      .filter(([, target]) => typeof target === "object" && target.default?.includes("/adapters/"));
    assert.deepEqual(adapters.map(([subpath]) => subpath).sort(), Object.keys(FRAMEWORKS).sort());
    const needed = new Set(Object.values(FRAMEWORKS));
    for (const file of readdirSync(join(ROOT, "src", "adapters")).filter((name) => name.endsWith(".ts"))) {
      const code = readFileSync(join(ROOT, "src", "adapters", file), "utf8").replace(/\/\*[\s\S]*?\*\//g, "");
      for (const match of code.matchAll(/^\s*(?:import|export)\b[^;]*?from\s+"([^".][^"]*)"/gm)) {
        const name = match[1]!.startsWith("@")
          ? match[1]!.split("/").slice(0, 2).join("/")
          : match[1]!.split("/")[0]!;
        needed.add(name);
      }
    }
    for (const name of needed) {
      assert.equal(typeof pkg.peerDependencies?.[name], "string", `peerDependencies["${name}"]`);
      assert.equal(
        pkg.peerDependenciesMeta?.[name]?.optional,
        true,
        `peerDependenciesMeta["${name}"].optional`,
      );
    }
  });
});
