/**
 * The published packages: the npm build (dist/ ESM + declarations, exports map, file list,
 * publint, attw), the JSR package (`deno publish --dry-run`), the two export maps in step (optional
 * peer dependencies included), and the bundle guard (the core pulls in neither jose nor a driver;
 * the optional peer `@opentelemetry/api` stays external and only `./otel` imports it).
 *
 * Everything runs on a copy of the package in a temporary directory, so the test neither reads
 * nor leaves a `dist/` in the working tree.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { cp, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { publint } from "publint";
import { formatMessage } from "publint/utils";
import { checkExports, entryPoints } from "../scripts/check_exports.ts";
import { checkBundles, measureBundles } from "../scripts/bundle_size.ts";
import { checkDocs, readDocs } from "../scripts/check_docs.ts";

const ROOT = resolve(import.meta.dirname, "..");
const BIN = join(ROOT, "node_modules", ".bin");
const DOCS = ["README.md", "LICENSE"].filter((name) => existsSync(join(ROOT, name)));
const STEP_TIMEOUT = 60_000;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], cwd: string): Promise<Run> {
  return new Promise((done) => {
    execFile(
      command,
      args,
      {
        cwd,
        timeout: STEP_TIMEOUT,
        maxBuffer: 32 * 1024 * 1024,
        env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
      },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : null;
        done({ code, stdout, stderr });
      },
    );
  });
}

function explain(result: Run): string {
  return `exit ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
}

/** Copies what the packages are made from into a fresh directory that shares node_modules. */
async function copyPackage(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const files = ["package.json", "deno.json", "tsconfig.json", "tsconfig.build.json", "mod.ts", ...DOCS];
  for (const name of files) await cp(join(ROOT, name), join(dir, name));
  for (const folder of ["src", "scripts"]) {
    await cp(join(ROOT, folder), join(dir, folder), { recursive: true });
  }
  await symlink(join(ROOT, "node_modules"), join(dir, "node_modules"), "dir");
  return dir;
}

/** The TypeScript sources the packages publish: `mod.ts` and every `.ts` under `src/`. */
async function sources(dir: string): Promise<string[]> {
  const nested = await readdir(join(dir, "src"), { recursive: true });
  return ["mod.ts", ...nested.map((path) => `src/${path.split("\\").join("/")}`)]
    .filter((path) => path.endsWith(".ts"))
    .sort();
}

describe("npm and JSR packages", { timeout: 120_000 }, () => {
  let dir = "";
  let tarball = "";
  const temporary: string[] = [];

  before(async () => {
    dir = await copyPackage("websession-package-");
    temporary.push(dir);
    const built = await run("npm", ["run", "build"], dir);
    assert.equal(built.code, 0, explain(built));
    const packed = await run("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", dir], dir);
    assert.equal(packed.code, 0, explain(packed));
    const [info] = JSON.parse(packed.stdout) as [{ filename: string }];
    tarball = join(dir, info.filename);
  });

  after(async () => {
    for (const path of temporary) await rm(path, { recursive: true, force: true });
  });

  it("builds an ES module and a declaration file for every source, importing .js", async () => {
    for (const source of await sources(dir)) {
      const base = join(dir, "dist", source.slice(0, -".ts".length));
      const js = await readFile(`${base}.js`, "utf8");
      const dts = await readFile(`${base}.d.ts`, "utf8");
      for (const [file, text] of [[`${base}.js`, js], [`${base}.d.ts`, dts]] as const) {
        const code = text.replace(/\/\*[\s\S]*?\*\//g, ""); // JSDoc examples may import "./x.ts"
        const relative = [...code.matchAll(/(?:from|import)\s*\(?\s*["'](\.\.?\/[^"']+)["']/g)].map((m) =>
          m[1]
        );
        for (const specifier of relative) {
          assert.match(specifier!, /\.js$/, `${file} imports "${specifier}"`);
        }
      }
      assert.doesNotMatch(js, /\brequire\(|module\.exports/, `${source} compiled to CommonJS`);
    }
  });

  it("resolves every subpath by the package's own name in plain Node, with the sources' exports", async () => {
    const entries = entryPoints(dir);
    const script = `
      const names = {};
      for (const subpath of ${JSON.stringify(entries.map((e) => e.subpath))}) {
        const specifier = "websession" + subpath.slice(1);
        names[subpath] = Object.keys(await import(specifier)).sort();
      }
      const { withSession, getSession, MemoryStore } = await import("websession");
      const handler = withSession(async (request) => {
        const session = await getSession(request);
        session.set("n", 1);
        return new Response("ok");
      }, { store: new MemoryStore(), secrets: ["a secret of at least thirty-two characters"] });
      const response = await handler(new Request("https://example.com/"));
      console.log(JSON.stringify({ names, cookie: response.headers.get("set-cookie") }));
    `;
    // No tsx here: the built JavaScript alone, found through the exports map.
    const result = await run(process.execPath, ["--input-type=module", "-e", script], dir);
    assert.equal(result.code, 0, explain(result));
    const { names, cookie } = JSON.parse(result.stdout) as {
      names: Record<string, string[]>;
      cookie: string;
    };
    assert.match(cookie, /HttpOnly/i);
    for (const entry of entries) {
      const fromSource = Object.keys(await import(pathToFileURL(join(ROOT, entry.source)).href)).sort();
      assert.deepEqual(names[entry.subpath], fromSource, `exports of "${entry.subpath}"`);
    }
  });

  it("packs only the build, the SQL schema, package.json and the docs", async () => {
    const result = await run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], dir);
    assert.equal(result.code, 0, explain(result));
    const [info] = JSON.parse(result.stdout) as [{ files: { path: string }[] }];
    const listed = info.files.map((file) => file.path).sort();
    const built = (await sources(dir)).flatMap((source) => {
      const base = `dist/${source.slice(0, -".ts".length)}`;
      return [`${base}.d.ts`, `${base}.js`];
    });
    const expected = [...built, "package.json", "src/stores/postgres.sql", ...DOCS].sort();
    assert.deepEqual(listed, expected);
  });

  it("has nothing for publint to report, suggestions included", async () => {
    const { messages, pkg } = await publint({ pkgDir: dir, level: "suggestion", strict: true, pack: "npm" });
    assert.deepEqual(messages.map((message) => formatMessage(message, pkg, { color: false })), []);
  });

  it("has correct types for ESM consumers (attw, esm-only profile)", async () => {
    const result = await run(
      join(BIN, "attw"),
      [tarball, "--profile", "esm-only", "--exclude-entrypoints", "./postgres.sql", "--format", "json"],
      dir,
    );
    assert.equal(result.code, 0, explain(result));
    const report = JSON.parse(result.stdout) as { analysis: { entrypoints: Record<string, unknown> } };
    const checked = Object.keys(report.analysis.entrypoints).sort();
    const expected = [...entryPoints(dir).map((e) => e.subpath), "./package.json"].sort();
    assert.deepEqual(checked, expected);
  });

  it("keeps package.json and deno.json exports in step", () => {
    assert.deepEqual(checkExports(ROOT), []);
    assert.deepEqual(checkExports(dir), []);
  });

  it("reports a subpath that one package exports and the other does not", async () => {
    const copy = await copyPackage("websession-exports-");
    temporary.push(copy);
    const deno = JSON.parse(await readFile(join(copy, "deno.json"), "utf8"));
    delete deno.exports["./cookie"];
    await writeFile(join(copy, "deno.json"), JSON.stringify(deno));
    const pkg = JSON.parse(await readFile(join(copy, "package.json"), "utf8"));
    pkg.exports["./redis"].default = "./dist/src/stores/postgres.js";
    await writeFile(join(copy, "package.json"), JSON.stringify(pkg));
    const problems = checkExports(copy);
    assert.ok(problems.some((line) => line.includes('missing subpath "./cookie"')), problems.join("\n"));
    assert.ok(problems.some((line) => line.includes('"./redis": package.json default')), problems.join("\n"));
  });

  it("accepts only optional peer dependencies, each with the same range in deno.json", async () => {
    const copy = await copyPackage("websession-peers-");
    temporary.push(copy);
    const pkg = JSON.parse(await readFile(join(copy, "package.json"), "utf8"));
    assert.equal(pkg.peerDependenciesMeta["@opentelemetry/api"].optional, true);
    pkg.peerDependencies["@opentelemetry/api"] = "^1.4.0"; // deno.json still says ^1.3.0
    pkg.peerDependencies["pg"] = "^8.0.0"; // required: not allowed
    await writeFile(join(copy, "package.json"), JSON.stringify(pkg));
    const expected = [
      'package.json: peer dependency "pg" must be optional: set peerDependenciesMeta["pg"].optional to true',
      'deno.json: imports["pg"] must be "npm:pg@^8.0.0": found "undefined"',
      'deno.json: imports["@opentelemetry/api"] must be "npm:@opentelemetry/api@^1.4.0": found ' +
      '"npm:@opentelemetry/api@^1.3.0"',
    ];
    assert.deepEqual(checkExports(copy).sort(), expected.sort());
  });

  it("bundles the core without jose, drivers or other stores", async () => {
    const figures = await measureBundles(dir);
    assert.deepEqual(checkBundles(figures), []);
    const core = figures.find((figure) => figure.name === ".");
    assert.ok(core);
    assert.deepEqual(core.packages, []);
    assert.deepEqual(core.externals, []);
    assert.ok(core.files.includes("src/stores/memory.ts"));
    assert.deepEqual(figures.find((figure) => figure.name === "./cookie")?.packages, ["jose"]);
    // The optional peer is the user's: imported by ./otel, left external, never bundled.
    const otel = figures.find((figure) => figure.name === "./otel");
    assert.ok(otel);
    assert.deepEqual(otel.packages, []);
    assert.deepEqual(otel.peers, ["@opentelemetry/api"]);
    assert.deepEqual(otel.externals, ["@opentelemetry/api"]);
    const withPeer = figures.filter((figure) => figure.peers.length > 0).map((figure) => figure.name);
    assert.deepEqual(withPeer, ["./otel", ". + ./otel"]);
  });

  it("fails the bundle guard when the core imports the optional peer", async () => {
    const copy = await copyPackage("websession-peer-bundle-");
    temporary.push(copy);
    const mod = await readFile(join(copy, "mod.ts"), "utf8");
    await writeFile(join(copy, "mod.ts"), `${mod}\nexport { trace } from "@opentelemetry/api";\n`);
    const figures = await measureBundles(copy);
    const core = figures.find((figure) => figure.name === ".");
    assert.deepEqual(core?.packages, []); // left external, so not bundled...
    const problems = checkBundles(figures);
    assert.ok(problems.includes('"." imports the optional peer "@opentelemetry/api"'), problems.join("\n"));
    assert.ok(!problems.some((line) => line.startsWith('"./otel"')), problems.join("\n")); // ...and allowed there
  });

  it("fails the bundle guard when the core imports the cookie store", async () => {
    const copy = await copyPackage("websession-bundle-");
    temporary.push(copy);
    const mod = await readFile(join(copy, "mod.ts"), "utf8");
    await writeFile(join(copy, "mod.ts"), `${mod}\nexport { CookieStore } from "./src/stores/cookie.ts";\n`);
    const problems = checkBundles(await measureBundles(copy));
    assert.ok(problems.includes('"." bundles the package "jose"'), problems.join("\n"));
    assert.ok(problems.includes('"." bundles the store "src/stores/cookie.ts"'), problems.join("\n"));
  });

  it("fails the bundle guard when the core flow calls sessions per user instead of the option", async () => {
    const copy = await copyPackage("websession-users-bundle-");
    temporary.push(copy);
    const server = join(copy, "src", "backends", "server.ts");
    const source = await readFile(server, "utf8");
    assert.ok(source.includes("o.users?.noteMeta(h, due.now);"));
    await writeFile(
      server,
      `import { noteMeta } from "../users/sign_in.ts";\n${
        source.replace("o.users?.noteMeta(h, due.now);", "noteMeta(h, due.now, undefined);")
      }`,
    );
    const problems = checkBundles(await measureBundles(copy));
    assert.ok(
      problems.includes(
        '"worker" bundles "src/users/sign_in.ts", a feature only an import of it should bring',
      ),
      problems.join("\n"),
    );
  });

  it("documents every exported symbol, with an example on every function, class and type", () => {
    const entries = readDocs(dir);
    assert.ok(entries.some((entry) => entry.name === "withSession" && entry.example));
    const { undocumented, valuesWithoutExample, typesWithoutExample } = checkDocs(entries);
    assert.deepEqual(undocumented.map((entry) => `${entry.name} ${entry.location}`), []);
    assert.deepEqual(valuesWithoutExample.map((entry) => `${entry.name} ${entry.location}`), []);
    assert.deepEqual(typesWithoutExample.map((entry) => `${entry.name} ${entry.location}`), []);
  });

  it("publishes to JSR cleanly: no slow types, only the sources and docs", async () => {
    const result = await run(join(BIN, "deno"), ["publish", "--dry-run", "--allow-dirty"], dir);
    assert.equal(result.code, 0, explain(result));
    const output = result.stdout + result.stderr;
    assert.match(output, /Dry run complete/);
    assert.doesNotMatch(output, /^\s*(?:warning|error)\b/im, output); // diagnostics, slow types included
    const listed = [...output.matchAll(/file:\/\/\S*?\/(websession-package-[^/]+)\/(\S+)/g)]
      .map((match) => match[2]!)
      .sort();
    const expected = [...(await sources(dir)), "src/stores/postgres.sql", "deno.json", ...DOCS].sort();
    assert.deepEqual(listed, expected);
  });
});
