// The documentation works as written: every TypeScript block of the README and of the pages under
// docs/ is type-checked against the package's sources (Node blocks with tsc under the project's
// NodeNext settings, app blocks under bundler resolution, Deno blocks with `deno check`, Bun and
// Workers blocks with their platform's globals), and the blocks marked runnable run, against the
// real Redis, PostgreSQL and Memcached on loopback where they use them. How each block is checked
// is said by a comment before it (scripts/check_readme.ts). The checker itself is proven on a
// small Markdown file with a block of each kind, broken ones included. Every relative link of the
// README and docs/ resolves (file and heading anchor; links into docs/api/ against the API
// reference, built here with `deno doc --html`, whose own links are checked too). The Worker
// example runs locally as the docs say: with the values of examples/workers/.dev.vars.example it
// answers, without them it cannot, and git ignores the files wrangler dev reads and writes. And
// the docs stay complete: the table of store capabilities matches the sources, and they name
// every option of withSession and of every store, every event and store operation, and every
// package the project depends on; the README stays a door (at most 350 lines). Node only: it
// drives tsc, Deno, Bun and Miniflare.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Log, LogLevel, Miniflare } from "miniflare";
import {
  type BlockProblem,
  checkReadme,
  describeBlock,
  parseReadme,
  type ReadmeBlock,
  ReadmeSyntaxError,
  runBlock,
  typeCheck,
  writeBlocks,
  type WrittenBlock,
} from "../scripts/check_readme.ts";
import { checkLinks, type DocBlock, docFiles, parseDocs } from "../scripts/check_docs.ts";
import { buildApiDocs, checkApiLinks } from "../scripts/api_docs.ts";
import { entryPoints } from "../scripts/check_exports.ts";
import { skipWithoutMemcached } from "./services.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const DOCS = docFiles(ROOT);
/** The text of a Markdown file of the package. */
const read = (path: string): string => readFileSync(join(ROOT, path), "utf8");
const fence = "```";

mkdirSync(join(ROOT, ".tmp"), { recursive: true });
// A block that talks to Memcached runs only where one answers (always under CI).
const memcachedSkip = await skipWithoutMemcached();

function show(block: ReadmeBlock, problems: readonly BlockProblem[]): string {
  return problems.map((p) => `${(block as DocBlock).doc}:${p.line}: ${p.message}`).join("\n");
}

describe("the blocks of the README and docs/", () => {
  const blocks = parseDocs(ROOT, DOCS);
  const checked = blocks.filter((block) => block.mode !== "skip");
  let dir = "";
  let written: WrittenBlock[] = [];
  let errors = new Map<WrittenBlock, BlockProblem[]>();
  let unplaced: string[] = [];

  before(async () => {
    dir = mkdtempSync(join(ROOT, ".tmp", "readme-"));
    written = writeBlocks(blocks, ROOT, dir);
    ({ errors, unplaced } = await typeCheck(written, ROOT));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const writtenOf = (block: ReadmeBlock): WrittenBlock => written.find((w) => w.block === block)!;

  it("has TypeScript blocks, some of them run, and every skipped one says why", () => {
    assert.ok(checked.length >= 50, `only ${checked.length} blocks are checked`);
    assert.ok(checked.filter((block) => block.mode === "run").length >= 20);
    assert.ok(
      blocks.some((block) => block.doc === "README.md" && block.mode === "run"),
      "the README runs a block",
    );
    for (const block of blocks.filter((b) => b.mode === "skip")) {
      assert.ok((block.reason ?? "").length >= 10, `${describeBlock(block)} is skipped without a reason`);
    }
  });

  it("type-checking reported nothing outside the blocks", () => {
    assert.deepEqual(unplaced, []);
  });

  for (const block of checked) {
    it(`${describeBlock(block)}: type-checks on ${block.runtime}`, () => {
      assert.equal(show(block, errors.get(writtenOf(block)) ?? []), "");
    });
    if (block.mode === "run") {
      const skip = /memcache/i.test(block.before.code + block.code + block.after.code)
        ? memcachedSkip
        : undefined;
      it(`${describeBlock(block)}: runs on ${block.runtime}`, { skip }, async () => {
        assert.equal(
          show(block, errors.get(writtenOf(block)) ?? []),
          "",
          "it does not type-check, so it was not run",
        );
        const { ok, output } = await runBlock(writtenOf(block), ROOT);
        assert.ok(ok, output);
      });
    }
  }
});

/** A file of the package itself (its sources), not of the README's blocks. */
function inPackage(path: string): boolean {
  return /^(?:src\/|mod\.ts\b)/.test(path);
}

describe("the blocks of the README and docs/ in a user's project", () => {
  // A user's tsconfig has no allowImportingTsExtensions (TS5097 on `import ... from "./app.ts"`)
  // and may have exactOptionalPropertyTypes (an `undefined` given where a property is only
  // optional). The package's own sources are not a user's to compile: errors there do not count.
  const blocks = parseDocs(ROOT, DOCS).filter((block) => block.mode !== "skip" && block.runtime !== "deno");
  let dir = "";
  let problems: string[] = [];

  before(async () => {
    dir = mkdtempSync(join(ROOT, ".tmp", "readme-user-"));
    const written = writeBlocks(blocks, ROOT, dir);
    for (const tsconfig of new Set(written.flatMap((w) => (w.tsconfig === undefined ? [] : [w.tsconfig])))) {
      const config = JSON.parse(readFileSync(tsconfig, "utf8"));
      config.compilerOptions = {
        ...config.compilerOptions,
        exactOptionalPropertyTypes: true,
        allowImportingTsExtensions: false,
      };
      writeFileSync(tsconfig, JSON.stringify(config, null, 2));
    }
    const { errors, unplaced } = await typeCheck(written, ROOT);
    problems = [...errors].flatMap(([w, list]) =>
      list.map((p) => `${(w.block as DocBlock).doc}:${p.line}: ${p.message}`)
    );
    for (const entry of unplaced) {
      const lines = entry.split("\n").filter((line) => / error TS\d+|^\S+:\d+: TS\d+/.test(line));
      const foreign = lines.filter((line) => !inPackage(line.replace(/^tsc -p \S+ failed:/, "")));
      if (foreign.length > 0 || lines.length === 0) problems.push(entry);
    }
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("type-check under exactOptionalPropertyTypes and without allowImportingTsExtensions", () => {
    assert.ok(blocks.length >= 50);
    assert.equal(problems.join("\n"), "");
  });
});

describe("the wrangler.toml blocks of the README and docs/", () => {
  const text = DOCS.map(read).join("\n");
  const tomls = [...text.matchAll(/^```toml\n([\s\S]*?)^```$/gm)].map((m) => m[1]!)
    .filter((toml) => /^#\s*wrangler\.toml\b/.test(toml));

  it("each carry name, main and compatibility_date, so wrangler can start from them", () => {
    assert.ok(tomls.length >= 1, "the docs show a wrangler.toml");
    for (const toml of tomls) {
      // Top-level keys: those before the first [table].
      const top = toml.split(/^\[/m)[0]!;
      for (const key of ["name", "main", "compatibility_date"]) {
        assert.match(
          top,
          new RegExp(`^${key}\\s*=\\s*"[^"]+"`, "m"),
          `wrangler.toml without ${key}:\n${toml}`,
        );
      }
    }
  });
});

describe("the README checker", () => {
  // Lines of this Markdown file are counted by the assertions below: keep them in step.
  const sample = [
    "# Sample", // 1
    "", // 2
    `${fence}ts`, // 3
    'import { MemoryStore } from "websession";', // 4
    "const store: MemoryStore = new MemoryStore();", // 5
    "void store;", // 6
    fence, // 7
    "", // 8
    "## Broken", // 9
    "", // 10
    `${fence}ts`, // 11
    'import { withSession } from "websession";', // 12
    "const handler: number = withSession(() => new Response(), {});", // 13
    "void handler;", // 14
    fence, // 15
    "", // 16
    "<!-- check: run", // 17
    'import assert from "node:assert/strict";', // 18
    "---", // 19
    'assert.equal(visits, "visit 1");', // 20
    "const count: number = visits; // hidden lines are checked too", // 21
    "-->", // 22
    `${fence}ts`, // 23
    'import { getSession, MemoryStore, withSession } from "websession";', // 24
    "const handler = withSession(async (req: Request) => {", // 25
    "  const session = await getSession<{ n?: number }>(req);", // 26
    '  return new Response(`visit ${session.update("n", (n = 0) => n + 1)}`);', // 27
    "}, { store: new MemoryStore(), secrets: [process.env.SESSION_SECRET!], cookie: { secure: false } });", // 28
    'const visits = await (await handler(new Request("http://localhost/"))).text();', // 29
    fence, // 30
    "", // 31
    "<!-- check: run -->", // 32
    `${fence}ts`, // 33
    'import { Redis } from "ioredis";', // 34
    "const client = new Redis(process.env.REDIS_URL!);", // 35
    'if ((await client.ping()) !== "PONG") throw new Error("no PONG");', // 36
    'throw new Error("this block fails when run");', // 37
    fence, // 38
    "", // 39
    `${fence}ts`, // 40
    "// app/options.server.ts", // 41
    "export const secret = process.env.SESSION_SECRET!;", // 42
    fence, // 43
    "", // 44
    `${fence}ts`, // 45
    "// app/routes/home.ts (imports the block above)", // 46
    'import { secret } from "../options.server.ts";', // 47
    "export const length: string = secret.length;", // 48
    fence, // 49
    "", // 50
    "<!-- check: types deno -->", // 51
    `${fence}ts`, // 52
    "const kv = await Deno.openKv();", // 53
    'const n: string = kv.get(["x"]);', // 54
    fence, // 55
    "", // 56
    "<!-- check: types workers -->", // 57
    `${fence}ts`, // 58
    "export const cwd = process.cwd(); // no Node globals in a Worker", // 59
    fence, // 60
    "", // 61
    "<!-- check: skip: a fragment that cannot compile, on purpose -->", // 62
    `${fence}ts`, // 63
    "this is not TypeScript", // 64
    fence, // 65
    "", // 66
    "<!-- check: run", // 67
    'import assert from "node:assert/strict";', // 68
    "---", // 69
    'assert.equal(await response.text(), "visit 1");', // 70
    "-->", // 71
    `${fence}ts`, // 72
    'import { getSession, MemoryStore, withSession } from "websession";', // 73
    "const handler = withSession(async (req: Request) => {", // 74
    "  const session = await getSession<{ n?: number }>(req);", // 75
    '  return new Response(`visit ${session.update("n", (n = 0) => n + 1)}`);', // 76
    "}, { store: new MemoryStore(), secrets: [process.env.SESSION_SECRET!], cookie: { secure: false } });", // 77
    'const response = await handler(new Request("http://localhost/"));', // 78
    fence, // 79
    "", // 80
    "## Globals", // 81
    "", // 82
    `${fence}ts`, // 83
    "// src/app.d.ts", // 84
    "declare global {", // 85
    "  var readmeCounter: UnknownType;", // 86
    "}", // 87
    "export {};", // 88
    fence, // 89
    "", // 90
    `${fence}ts`, // 91
    "globalThis.readmeCounter = 1; // declared only in the block above, a program of its own", // 92
    fence, // 93
    "", // 94
    `${fence}ts`, // 95
    "// src/one.ts", // 96
    "export const one = 1;", // 97
    fence, // 98
    "", // 99
    "## Another heading", // 100
    "", // 101
    `${fence}ts`, // 102
    "// src/two.ts", // 103
    'import { one } from "./one.ts";', // 104
    "export const two = one + 1;", // 105
    fence, // 106
  ].join("\n");

  let results: Awaited<ReturnType<typeof checkReadme>>;
  let dir = "";
  before(async () => {
    dir = mkdtempSync(join(ROOT, ".tmp", "readme-sample-"));
    const file = join(dir, "SAMPLE.md");
    writeFileSync(file, sample);
    results = await checkReadme(file, ROOT, join(dir, "blocks"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const at = (line: number) => results.results.find((r) => r.block.line === line)!;
  const lines = (problems: readonly BlockProblem[]) => problems.map((p) => p.line);

  it("passes a block that compiles, resolving websession to the sources", () => {
    assert.deepEqual(at(4).typeErrors, []);
    assert.equal(at(4).ran, undefined, "a block is not run unless marked run");
  });

  it("fails a block that does not compile, at its README line", () => {
    assert.deepEqual(lines(at(12).typeErrors), [13]);
    assert.match(at(12).typeErrors[0]!.message, /TS2322/);
  });

  it("checks hidden lines with the block and reports them at the comment's line", () => {
    assert.deepEqual(lines(at(24).typeErrors), [21]);
    assert.equal(at(24).ran, undefined, "a block that does not type-check is not run");
  });

  it("runs a runnable block with its hidden lines", () => {
    assert.deepEqual(at(73).typeErrors, []);
    assert.equal(at(73).ran?.ok, true, at(73).ran?.output ?? "not run");
  });

  it("runs a runnable block against the loopback services and fails it when it throws", () => {
    assert.deepEqual(at(34).typeErrors, []);
    assert.equal(at(34).ran?.ok, false);
    assert.match(at(34).ran!.output, /this block fails when run/);
    assert.doesNotMatch(at(34).ran!.output, /no PONG/, "the block reached the real Redis");
  });

  it("checks blocks that name files together, so they import each other", () => {
    assert.deepEqual(at(41).typeErrors, []);
    assert.deepEqual(lines(at(46).typeErrors), [48]);
    assert.match(at(46).typeErrors[0]!.message, /'number' is not assignable to type 'string'/);
  });

  it("checks a declaration block, and keeps its globals from other blocks", () => {
    assert.deepEqual(lines(at(84).typeErrors), [86]);
    assert.match(at(84).typeErrors[0]!.message, /UnknownType/);
    assert.deepEqual(lines(at(92).typeErrors), [92]);
  });

  it("does not join named blocks across headings", () => {
    assert.deepEqual(at(96).typeErrors, []);
    assert.deepEqual(lines(at(103).typeErrors), [104]);
  });

  it("checks Deno blocks with deno check", () => {
    assert.deepEqual(lines(at(53).typeErrors), [54]);
  });

  it("checks Workers blocks without Node's globals", () => {
    assert.deepEqual(lines(at(59).typeErrors), [59]);
  });

  it("leaves skipped blocks out and keeps their reason", () => {
    assert.equal(results.results.some((r) => r.block.line === 64), false);
    assert.deepEqual(results.skipped.map((b) => [b.line, b.reason]), [[
      64,
      "a fragment that cannot compile, on purpose",
    ]]);
    assert.deepEqual(results.unplaced, []);
  });

  it("refuses a check comment it cannot follow", () => {
    const cases: Array<[string, RegExp]> = [
      [`<!-- check: skip -->\n${fence}ts\nx\n${fence}`, /needs a reason/],
      [`<!-- check: typed -->\n${fence}ts\nx\n${fence}`, /unknown check "typed"/],
      [`<!-- check: types node18 -->\n${fence}ts\nx\n${fence}`, /unknown runtime "node18"/],
      [`<!-- check: run workers -->\n${fence}ts\nx\n${fence}`, /type-checked only/],
      [`<!-- check: types -->\nSome prose.\n${fence}ts\nx\n${fence}`, /right before its code block/],
      [`<!-- check: types -->\n${fence}sh\nnpm test\n${fence}`, /"sh" block, not TypeScript/],
      [`<!-- check: types\nconst a = 1; -->\n${fence}ts\nx\n${fence}`, /on a line of its own/],
      [`${fence}ts\nx\n`, /never closed/],
    ];
    for (const [text, message] of cases) {
      assert.throws(() => parseReadme(text), (error: unknown) => {
        assert.ok(error instanceof ReadmeSyntaxError);
        assert.match(error.message, message);
        assert.equal(error.line, 1);
        return true;
      });
    }
  });
});

describe("the Worker example, run locally as the README says", () => {
  const dir = join(ROOT, "examples", "workers");

  /** `KEY="value"` lines, as wrangler reads .dev.vars. */
  function dotenv(text: string): Record<string, string> {
    const vars: Record<string, string> = {};
    for (const line of text.split("\n")) {
      const m = /^\s*([A-Z_][A-Z0-9_]*)\s*=\s*"?(.*?)"?\s*$/.exec(line);
      if (m) vars[m[1]!] = m[2]!;
    }
    return vars;
  }

  /** The `[vars]` table of wrangler.toml (`KEY = "value"` lines). */
  function tomlVars(text: string): Record<string, string> {
    const section = /^\[vars\]\s*$([\s\S]*?)(?=^\[|(?![\s\S]))/m.exec(text)?.[1] ?? "";
    return dotenv(section);
  }

  let script = "";
  before(async () => {
    const bundled = await build({
      entryPoints: [join(dir, "worker.ts")],
      bundle: true,
      format: "esm",
      platform: "neutral",
      target: "es2022",
      write: false,
      logLevel: "silent",
    });
    script = bundled.outputFiles[0]!.text;
  });

  async function get(bindings: Record<string, string>): Promise<Response> {
    const mf = new Miniflare({
      modules: true,
      script,
      compatibilityDate: "2026-05-01",
      kvNamespaces: ["SESSIONS"],
      bindings,
      cf: false,
      log: new Log(LogLevel.NONE),
    });
    try {
      const response = await mf.dispatchFetch("http://localhost:8787/");
      const body = await response.text();
      return new Response(body, { status: response.status, headers: response.headers as unknown as Headers });
    } finally {
      await mf.dispose();
    }
  }

  it("answers with the values of .dev.vars.example, with a cookie a plain-http localhost keeps", async () => {
    const vars = {
      ...tomlVars(readFileSync(join(dir, "wrangler.toml"), "utf8")),
      ...dotenv(readFileSync(join(dir, ".dev.vars.example"), "utf8")),
    };
    assert.ok((vars.SESSION_SECRET ?? "").length >= 32);
    const response = await get(vars);
    assert.equal(response.status, 200);
    const setCookie = response.headers.get("set-cookie") ?? "";
    assert.match(setCookie, /^session=/);
    assert.doesNotMatch(setCookie, /;\s*Secure/i);
  });

  it("answers 500 without them (what the README warns of)", async () => {
    const response = await get(tomlVars(readFileSync(join(dir, "wrangler.toml"), "utf8")));
    assert.equal(response.status, 500);
  });

  it("git ignores .dev.vars and .wrangler/, not the example", () => {
    const ignored = (path: string): boolean => {
      try {
        execFileSync("git", ["check-ignore", "-q", path], { cwd: ROOT, stdio: "ignore" });
        return true;
      } catch {
        return false;
      }
    };
    assert.equal(ignored("examples/workers/.dev.vars"), true);
    assert.equal(ignored("examples/workers/.wrangler/state/v3/kv"), true);
    assert.equal(ignored("examples/workers/.dev.vars.example"), false);
  });
});

describe("the table of store capabilities (docs/stores/README.md)", () => {
  const CAPABILITIES = ["compareAndSet", "ttl", "locks", "users"] as const;

  /** Each store class's `capabilities` as its source declares them (an absent flag is false). */
  /** Stores made of other stores, whose capabilities are those of the stores they compose. */
  const COMPOSED = new Set(["TieredStore", "MigratingStore"]);

  function declared(): Map<string, Record<string, boolean>> {
    const stores = new Map<string, Record<string, boolean>>();
    const dir = join(ROOT, "src", "stores");
    for (const name of readdirSync(dir).filter((file) => file.endsWith(".ts"))) {
      const source = readFileSync(join(dir, name), "utf8");
      for (const match of source.matchAll(/^export class (\w+Store) implements \w+/gm)) {
        // Stores made of other stores take their capabilities from those: no table row.
        if (COMPOSED.has(match[1]!)) continue;
        const body = source.slice(match.index);
        const literal = /capabilities(?::[^=;]*)? = (\{[^}]*\})/.exec(body)?.[1];
        assert.ok(literal !== undefined, `${match[1]}: no capabilities literal found in src/stores/${name}`);
        const flags: Record<string, boolean> = {};
        for (const [, key, value] of literal.matchAll(/(\w+): (true|false)\b/g)) {
          flags[key!] = value === "true";
        }
        stores.set(match[1]!, flags);
      }
    }
    return stores;
  }

  /** The table whose header names the capabilities: store -> flag -> yes/no. */
  function documented(): Map<string, Record<string, boolean>> {
    const lines = read("docs/stores/README.md").split("\n");
    const header = lines.findIndex((line) => /^\|\s*store\s*\|\s*`compareAndSet`/.test(line));
    assert.ok(header >= 0, "docs/stores/README.md has no table of capabilities");
    const columns = lines[header]!.split("|").slice(1, -1).map((cell) => /`(\w+)`/.exec(cell)?.[1] ?? "");
    const rows = new Map<string, Record<string, boolean>>();
    for (const line of lines.slice(header + 2)) {
      if (!line.startsWith("|")) break;
      const cells = line.split("|").slice(1, -1).map((cell) => cell.trim());
      const flags: Record<string, boolean> = {};
      columns.forEach((column, i) => {
        if (i === 0) return;
        assert.match(cells[i]!, /^(yes|no)$/, `capabilities table: "${cells[i]}" in ${line}`);
        flags[column] = cells[i] === "yes";
      });
      rows.set(/`(\w+)`/.exec(cells[0]!)![1]!, flags);
    }
    return rows;
  }

  it("names every store, and says what each store's capabilities say", () => {
    const stores = declared();
    const table = documented();
    assert.ok(stores.size >= 9, `only ${stores.size} stores found in src/stores`);
    assert.deepEqual([...table.keys()].sort(), [...stores.keys()].sort());
    for (const [store, flags] of stores) {
      for (const capability of CAPABILITIES) {
        assert.equal(
          table.get(store)![capability],
          flags[capability] === true,
          `docs/stores/README.md says ${store} ${
            table.get(store)![capability] ? "has" : "lacks"
          } ${capability}; its source says otherwise`,
        );
      }
    }
  });
});

describe("the docs name every option, event and dependency", () => {
  /** The text of the section under `heading` in a Markdown file (to the next heading of its level or higher). */
  function section(file: string, heading: string): string {
    const text = read(file);
    const match = new RegExp(`^(#{1,4}) ${heading.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\s*$`, "m").exec(
      text,
    );
    assert.ok(match, `${file} has no section "${heading}"`);
    const rest = text.slice(match.index + match[0].length);
    const next = new RegExp(`^#{1,${match[1]!.length}} `, "m").exec(rest);
    return next === null ? rest : rest.slice(0, next.index);
  }

  /** The field names of `interface name` in a source file. */
  function fields(file: string, name: string): string[] {
    const source = readFileSync(join(ROOT, file), "utf8");
    const start = source.search(new RegExp(`export interface ${name}[<\\s]`));
    assert.ok(start >= 0, `${file} declares no interface ${name}`);
    const body = source.slice(start, source.indexOf("\n}", start));
    return [...body.matchAll(/^ {2}(\w+)\??:/gm)].map((m) => m[1]!);
  }

  /** The members of a union of string literals, `export type name = | "a" | "b"`, in a source file. */
  function literals(file: string, name: string): string[] {
    const source = readFileSync(join(ROOT, file), "utf8");
    const start = source.search(new RegExp(`export type ${name}\\b`));
    assert.ok(start >= 0, `${file} declares no type ${name}`);
    const body = source.slice(start, source.indexOf(";", start));
    return [...body.matchAll(/"([\w-]+)"/g)].map((m) => m[1]!);
  }

  const PAGES: Record<string, string> = {
    MemoryStore: "docs/stores/memory.md",
    FileStore: "docs/stores/file.md",
    RedisStore: "docs/stores/redis.md",
    PostgresStore: "docs/stores/postgres.md",
    MemcachedStore: "docs/stores/memcached.md",
    DenoKvStore: "docs/stores/deno-kv.md",
    DurableObjectStore: "docs/stores/durable-object.md",
    CloudflareKvStore: "docs/stores/cloudflare-kv.md",
    CookieStore: "docs/stores/cookie.md",
    TieredStore: "docs/stores/tiered.md",
    MigratingStore: "docs/stores/migrating.md",
  };

  it("of withSession, in the table of docs/guides/options.md", () => {
    const table = section("docs/guides/options.md", "Options");
    const names = fields("src/session_options.ts", "SessionOptions");
    assert.ok(names.length >= 16);
    for (const name of names) assert.match(table, new RegExp(`^\\| \`${name}\`\\s`, "m"), `option ${name}`);
  });

  it("of the package: every dependency says why it is there (docs/guides/development.md)", () => {
    // The root package and the test toolchain (a package of its own, tests/toolchain).
    const manifests = ["package.json", "tests/toolchain/package.json"].map((file) =>
      JSON.parse(readFileSync(join(ROOT, file), "utf8")) as Record<string, Record<string, string>>
    );
    const table = section("docs/guides/development.md", "Dependencies");
    const names = [
      ...new Set(
        manifests.flatMap((manifest) =>
          ["dependencies", "devDependencies", "peerDependencies"].flatMap((field) =>
            Object.keys(manifest[field] ?? {})
          )
        ),
      ),
    ];
    assert.ok(names.length >= 30);
    for (const name of names) {
      assert.ok(table.includes(`\`${name}\``), `package ${name} is not in the dependency table`);
    }
  });

  it("of every store, on that store's page, which says what the store cannot do", () => {
    // A store's options may live in its folder (src/stores/<name>/options.ts) beside its main file.
    const dir = join(ROOT, "src", "stores");
    const seen: string[] = [];
    const files = readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((name) =>
      name.endsWith(".ts")
    );
    for (const file of files.map((name) => name.split(sep).join("/"))) {
      const source = readFileSync(join(dir, file), "utf8");
      for (const [, store] of source.matchAll(/^export interface (\w+Store)Options \{/gm)) {
        seen.push(store!);
        const page = PAGES[store!];
        assert.ok(page !== undefined, `${store} has no page in this test's list`);
        const text = read(page);
        for (const name of fields(`src/stores/${file}`, `${store}Options`)) {
          assert.ok(text.includes(`\`${name}\``), `${store}'s option ${name} is not on ${page}`);
        }
        assert.match(text, /^## What it cannot do$/m, `${page} has no "What it cannot do" section`);
      }
    }
    assert.deepEqual(seen.sort(), Object.keys(PAGES).sort());
  });

  it("of the events: every event type and store operation, in docs/guides/observability.md", () => {
    const events = section("docs/guides/observability.md", "Events");
    const source = readFileSync(join(ROOT, "src", "events.ts"), "utf8");
    const union = source.slice(
      source.indexOf("export type SessionEvent"),
      source.indexOf("\n\n", source.indexOf("export type SessionEvent")),
    );
    const types = [...union.matchAll(/type: ("[\w-]+"(?: \| "[\w-]+")*)/g)].flatMap((m) =>
      [...m[1]!.matchAll(/"([\w-]+)"/g)].map((t) => t[1]!)
    );
    assert.ok(types.length >= 8, `only ${types.length} event types found in src/events.ts`);
    for (const type of types) assert.match(events, new RegExp(`\`${type}\``), `event type ${type}`);
    const operations = literals("src/events.ts", "StoreOperation");
    assert.ok(operations.length >= 12, `only ${operations.length} store operations found in src/events.ts`);
    for (const operation of operations) {
      assert.match(events, new RegExp(`^\\| \`${operation}\`\\s`, "m"), `store operation ${operation}`);
    }
  });
});

describe("the README is a door", () => {
  it("within 350 lines, with the two commands, and a link to every page under docs/", () => {
    const readme = read("README.md");
    assert.ok(readme.split("\n").length <= 350, `README.md has ${readme.split("\n").length} lines`);
    assert.match(readme, /^npm install && npm start\b/m);
    assert.match(readme, /^npm test\b/m);
    const index = read("docs/README.md");
    for (const page of DOCS.filter((doc) => doc.startsWith("docs/") && doc !== "docs/README.md")) {
      const link = page.slice("docs/".length);
      assert.ok(index.includes(`](${link})`), `docs/README.md does not link ${link}`);
    }
  });
});

describe("the links of the README and docs/", () => {
  let api = "";
  before(() => {
    api = mkdtempSync(join(ROOT, ".tmp", "api-"));
    buildApiDocs(ROOT, api);
  });
  after(() => rmSync(api, { recursive: true, force: true }));

  it("the API reference has a page for every entry point, and its own links resolve", () => {
    for (const { subpath } of entryPoints(ROOT)) {
      const page = subpath === "." ? "index.html" : `${subpath.slice(2)}/index.html`;
      assert.ok(readdirSync(join(api, dirname(page))).includes("index.html"), `no API page for ${subpath}`);
    }
    assert.deepEqual(checkApiLinks(api), []);
  });

  it("every relative link resolves to a file, and every #fragment to a heading of it", () => {
    assert.ok(DOCS.length >= 30, `only ${DOCS.length} Markdown files`);
    const broken = checkLinks(ROOT, DOCS, api).map((b) => `${b.doc}:${b.line}: ${b.link} (${b.reason})`);
    assert.deepEqual(broken, []);
  });
});
