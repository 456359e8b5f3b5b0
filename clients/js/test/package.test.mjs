// `npm pack` makes a package that a project installs, imports in plain Node, and
// type-checks (the bundler and the Node resolutions): what the package.json's
// exports, types and files promise. Offline: the package has no dependencies.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const HERE = dirname(dirname(fileURLToPath(import.meta.url)));
const TSC = join(HERE, "node_modules", "typescript", "bin", "tsc");
const NPM = process.platform === "win32" ? "npm.cmd" : "npm";

function run(command, args, cwd) {
  return execFileSync(command, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

const APP = `
import { CloseCode, SvcInfraError, connect, type Connection, type Status } from "@svc-infra/websocket";

interface Note { text: string }
const conn: Connection = connect<Note>("ws://127.0.0.1:8000/ws/notifications/", {
  token: async () => "jwt",
  onMessage: (note) => console.log(note.text),
  onStatus: (status: Status) => console.log(status),
  onError: (error: SvcInfraError) => console.log(error.kind === "refused", error.code === CloseCode.REPLACED),
});
conn.close();
`;

describe("the npm package", () => {
  let dir;
  let pack;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "svc-infra-websocket-pack-"));
    [pack] = JSON.parse(run(NPM, ["pack", "--json", "--pack-destination", dir], HERE));
  });

  after(() => rmSync(dir, { recursive: true, force: true }));

  test("holds the module, its types, the manifest and the README; nothing else", () => {
    assert.equal(pack.name, "@svc-infra/websocket");
    assert.deepEqual(pack.files.map((f) => f.path).sort(), [
      "README.md",
      "index.d.ts",
      "package.json",
      "src/index.js",
    ]);
  });

  test("installs from the tarball, imports in plain Node, and type-checks", () => {
    const app = join(dir, "app");
    mkdirSync(app);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
    run(NPM, ["install", "--offline", "--no-audit", "--no-fund", "--ignore-scripts", join(dir, pack.filename)], app);

    const imported = run(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        "import { connect, SUBPROTOCOL, closeAction } from '@svc-infra/websocket';" +
          "console.log(typeof connect, SUBPROTOCOL, closeAction(4409));",
      ],
      app,
    );
    assert.equal(imported.trim(), "function svc-infra.v1 stop");

    writeFileSync(join(app, "main.ts"), APP);
    for (const [module, resolution] of [
      ["esnext", "bundler"], // Vite, webpack, Next
      ["nodenext", "nodenext"],
    ]) {
      const config = {
        compilerOptions: {
          strict: true,
          noEmit: true,
          target: "es2022",
          module,
          moduleResolution: resolution,
          lib: ["es2022", "dom"],
          types: [],
        },
        files: ["main.ts"],
      };
      writeFileSync(join(app, "tsconfig.json"), JSON.stringify(config));
      try {
        run(process.execPath, [TSC, "-p", "tsconfig.json"], app);
      } catch (error) {
        assert.fail(`tsc (${resolution}) failed:\n${error.stdout}${error.stderr}`);
      }
    }
  });
});

// npm installs a git dependency (`npm install git+https://...`) by cloning the
// repository and packing its root: the root package.json (generated from this
// package's) must make the same package.
describe("the repository root as a git dependency", () => {
  const ROOT = join(HERE, "..", "..");
  let dir;
  let pack;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "svc-infra-websocket-root-"));
    [pack] = JSON.parse(run(NPM, ["pack", "--json", "--ignore-scripts", "--pack-destination", dir], ROOT));
  });

  after(() => rmSync(dir, { recursive: true, force: true }));

  test("packs the module and its types under clients/js, and imports in plain Node", () => {
    assert.equal(pack.name, "@svc-infra/websocket");
    const paths = pack.files.map((f) => f.path);
    assert.ok(paths.includes("clients/js/src/index.js") && paths.includes("clients/js/index.d.ts"), paths);
    assert.ok(!paths.some((p) => p.startsWith("svc_infra/") || p.startsWith("tests/")), paths);
    const app = join(dir, "app");
    mkdirSync(app);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
    run(NPM, ["install", "--offline", "--no-audit", "--no-fund", "--ignore-scripts", join(dir, pack.filename)], app);
    const imported = run(
      process.execPath,
      ["--input-type=module", "-e", 'import { connect } from "@svc-infra/websocket"; console.log(typeof connect)'],
      app,
    );
    assert.equal(imported.trim(), "function");
  });
});

