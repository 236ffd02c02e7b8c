// The library's module graph: no import cycle among src/ modules (value imports; type-only imports
// are erased and do not count). A cycle makes evaluation order matter (a module may see another's
// exports still undefined) and keeps one concept from having one home.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";

const SRC = fileURLToPath(new URL("../src", import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

const STATEMENT = /^(?:import|export)\s+(type\s+)?([^;]*?)\s*from\s+"(\.[^"]+)"/gms;

/** The modules a file imports values from (relative specifiers only; `import type` left out). */
export function valueImports(file: string, source: string): string[] {
  const found: string[] = [];
  for (const [, typeOnly, clause, specifier] of source.matchAll(STATEMENT)) {
    if (typeOnly !== undefined) continue;
    const names = /^\{([^}]*)\}$/.exec(clause!.trim())?.[1];
    if (names !== undefined) {
      const items = names.split(",").map((item) => item.trim()).filter((item) => item !== "");
      if (items.length > 0 && items.every((item) => item.startsWith("type "))) continue;
    }
    found.push(normalize(join(dirname(file), specifier!)));
  }
  return found;
}

/** The strongly connected components with more than one module (Tarjan). */
export function cycles(graph: Map<string, string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (stack.includes(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        component.push(w);
      } while (w !== v);
      if (component.length > 1) found.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

describe("the module graph of src/", () => {
  it("finds a cycle when there is one, and type-only imports do not make one", () => {
    const a = valueImports("/x/a.ts", 'import { b } from "./b.ts";\nimport type { C } from "./c.ts";');
    const b = valueImports("/x/b.ts", 'import {\n  a,\n  type A,\n} from "./a.ts";');
    const c = valueImports("/x/c.ts", 'import { type A } from "./a.ts";');
    assert.deepEqual(a, ["/x/b.ts"]);
    assert.deepEqual(c, []);
    const graph = new Map([["/x/a.ts", a], ["/x/b.ts", b], ["/x/c.ts", c]]);
    assert.deepEqual(cycles(graph), [["/x/a.ts", "/x/b.ts"]]);
  });

  it("has no import cycle", () => {
    const graph = new Map(sources(SRC).map((file) => [file, valueImports(file, readFileSync(file, "utf8"))]));
    assert.ok(graph.size > 20, "the sources were found");
    const found = cycles(graph).map((component) => component.map((file) => relative(SRC, file)));
    assert.deepEqual(found, [], `import cycles: ${JSON.stringify(found)}`);
  });
});
