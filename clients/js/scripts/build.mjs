#!/usr/bin/env node
// Generate the script-tag build of the client from its one source:
//
//   src/index.js  -> svc_infra/websocket/static/svc_infra/websocket.js   (global SvcInfra)
//   index.d.ts    -> svc_infra/websocket/static/svc_infra/websocket.d.ts (namespace SvcInfra)
//   package.json  -> package.json at the repository's root
//
// The root package.json is what `npm install <git URL>` reads (npm installs a git
// dependency from the repository's root only): the same package, its paths under
// clients/js/.
//
// The Python package ships both (the demo pages load the script). No bundler: the
// source has no imports and exports only top-level `export const|function|class`
// declarations, so the global build is the source without the `export` keywords,
// wrapped in a function that sets window.SvcInfra to those names.
//
//   node scripts/build.mjs           write the generated files
//   node scripts/build.mjs --check   exit 1 if they differ from what would be written
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(dirname(fileURLToPath(import.meta.url))); // clients/js
const ROOT = join(HERE, "..", "..");
const STATIC = join(ROOT, "svc_infra", "websocket", "static", "svc_infra");

export const SOURCE = join(HERE, "src", "index.js");
export const TYPES = join(HERE, "index.d.ts");
export const MANIFEST = join(HERE, "package.json");
export const OUTPUTS = {
  script: join(STATIC, "websocket.js"),
  types: join(STATIC, "websocket.d.ts"),
  manifest: join(ROOT, "package.json"),
};

const EXPORT = /^export (const|function|class) ([A-Za-z_$][\w$]*)/gm;

/** The names src/index.js exports, in order, checking the source's shape. */
export function exportedNames(source) {
  const lines = source.split("\n");
  const bad = lines.filter(
    (line) => /^\s*import[\s{*"']/.test(line) || (/^\s*export\b/.test(line) && !/^export (const|function|class) /.test(line)),
  );
  if (bad.length) {
    throw new Error(
      "src/index.js must have no imports and export only top-level " +
        `\`export const|function|class\` declarations; found:\n  ${bad.join("\n  ")}`,
    );
  }
  return [...source.matchAll(EXPORT)].map((m) => m[2]);
}

function banner(from, comment) {
  const src = relative(ROOT, from);
  const by = relative(ROOT, join(HERE, "scripts", "build.mjs"));
  return `${comment} GENERATED from ${src} by ${by}: do not edit.\n${comment} Edit the source, then run \`make js-build\` (CI fails while this file is out of date).\n`;
}

/** The script-tag build: the source as a function that sets root.SvcInfra. */
export function renderScript(source) {
  const names = exportedNames(source);
  const body = source.replace(/^export (const|function|class) /gm, "$1 ").trimEnd();
  const globals = names.map((name) => `  ${name}: ${name},`).join("\n");
  return (
    banner(SOURCE, "//") +
    "(function (root) {\n" +
    '"use strict";\n\n' +
    body +
    "\n\n// The global of the script-tag build.\nroot.SvcInfra = {\n" +
    globals +
    '\n};\n})(typeof window !== "undefined" ? window : globalThis);\n'
  );
}

/** The types of the script-tag build: index.d.ts as the global namespace SvcInfra. */
export function renderTypes(types) {
  if (/^\s*(import|export\s+(default|\{|\*|=)|export\s+declare\b)/m.test(types)) {
    throw new Error("index.d.ts must declare with plain `export` only (no imports, no `declare`)");
  }
  const body = types
    .trimEnd()
    .split("\n")
    .map((line) => (line ? `  ${line}` : line))
    .join("\n");
  return `${banner(TYPES, "//")}// Types of the global SvcInfra that websocket.js defines.\n\ndeclare namespace SvcInfra {\n${body}\n}\n`;
}

/** The root package.json: clients/js/package.json with its paths under clients/js/. */
export function renderManifest(manifest) {
  const pkg = JSON.parse(manifest);
  const under = (path) => path.replace(/^\.\//, "./clients/js/");
  const root = {
    "//": `GENERATED from ${relative(ROOT, MANIFEST)} by ${relative(ROOT, join(HERE, "scripts", "build.mjs"))}: do not edit (npm installs a git dependency from this root).`,
  };
  for (const key of ["name", "version", "description", "license", "type", "sideEffects"]) {
    if (key in pkg) root[key] = pkg[key];
  }
  root.exports = {};
  for (const [path, target] of Object.entries(pkg.exports)) {
    root.exports[path] =
      path === "./package.json" ? "./package.json" :
      typeof target === "string"
        ? under(target)
        : Object.fromEntries(Object.entries(target).map(([k, v]) => [k, under(v)]));
  }
  for (const key of ["main", "module", "types"]) {
    if (key in pkg) root[key] = under(pkg[key]);
  }
  root.files = pkg.files.map((file) => `clients/js/${file}`);
  for (const key of ["engines", "keywords"]) {
    if (key in pkg) root[key] = pkg[key];
  }
  return `${JSON.stringify(root, null, 2)}\n`;
}

export function render() {
  return {
    script: renderScript(readFileSync(SOURCE, "utf8")),
    types: renderTypes(readFileSync(TYPES, "utf8")),
    manifest: renderManifest(readFileSync(MANIFEST, "utf8")),
  };
}

/** The generated files that differ from what is on disk (relative paths). */
export function stale() {
  const wanted = render();
  return Object.keys(OUTPUTS).filter((key) => {
    let current = null;
    try {
      current = readFileSync(OUTPUTS[key], "utf8");
    } catch {
      // missing: stale
    }
    return current !== wanted[key];
  }).map((key) => relative(ROOT, OUTPUTS[key]));
}

function main(args) {
  if (args.includes("--check")) {
    const out = stale();
    if (out.length) {
      console.error(`out of date: ${out.join(", ")}; run \`make js-build\` and commit the result`);
      process.exit(1);
    }
    console.log("generated files are up to date");
    return;
  }
  const wanted = render();
  for (const key of Object.keys(OUTPUTS)) {
    writeFileSync(OUTPUTS[key], wanted[key]);
    console.log(`wrote ${relative(ROOT, OUTPUTS[key])}`);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2));
}
