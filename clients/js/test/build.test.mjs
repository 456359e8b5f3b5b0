// The script-tag build the Python package ships is generated from src/index.js:
// it must be up to date (CI fails on drift) and define the same API as the module.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import vm from "node:vm";

import * as client from "../src/index.js";
import { OUTPUTS, exportedNames, renderScript, renderTypes, stale } from "../scripts/build.mjs";

describe("the generated script-tag build", () => {
  test("is up to date with src/index.js and index.d.ts (else: make js-build)", () => {
    assert.deepEqual(stale(), [], "run `make js-build` and commit the generated files");
  });

  test("defines window.SvcInfra with everything the module exports", () => {
    const window = { URL, TextEncoder, TextDecoder, btoa, setTimeout, clearTimeout };
    vm.createContext(window);
    vm.runInContext(readFileSync(OUTPUTS.script, "utf8"), window);
    assert.deepEqual(Object.keys(window.SvcInfra).sort(), Object.keys(client).sort());
    assert.equal(window.SvcInfra.SUBPROTOCOL, "svc-infra.v1");
    assert.equal(window.SvcInfra.closeAction(4409), "stop");
    assert.equal(typeof window.SvcInfra.connect, "function");
  });

  test("keeps what the demo's test reads in it", () => {
    const script = readFileSync(OUTPUTS.script, "utf8");
    assert.ok(script.includes('protocols.push("bearer"') && script.includes("svc-infra.v1"));
    assert.match(script, /GENERATED from clients\/js\/src\/index\.js .*do not edit/);
  });

  test("refuses a source it cannot turn into a global", () => {
    assert.throws(() => exportedNames('import x from "y";\nexport const a = 1;\n'), /no imports/);
    assert.throws(() => exportedNames("const a = 1;\nexport { a };\n"), /export only/);
    assert.throws(() => exportedNames("export default function f() {}\n"), /export only/);
    assert.deepEqual(exportedNames("export const a = 1;\nexport function b() {}\nexport class C {}\n"), [
      "a",
      "b",
      "C",
    ]);
    assert.match(renderScript("export const a = 1;\n"), /^const a = 1;$/m);
    assert.throws(() => renderTypes("export declare function f(): void;\n"), /plain `export`/);
  });
});
