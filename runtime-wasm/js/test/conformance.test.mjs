// The reader conformance suite (tests/conformance/cases.json: answers computed from the records
// alone by tests/conformance/oracle.py) asked of the wasm reader in Node, over a real nginx with
// the snapshots' sidecars bound, exactly as tests/tests/reader_conformance.rs asks every native
// reader (Chromium and workerd run it too: chromium.test.mjs, workerd.test.mjs). Any case
// answered differently fails, naming the case and both answers.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { startNginx, bindSidecars, loadPackage, repo } from "./harness.mjs";
import { runConformance } from "./browser/conformance.js";

const fixtures = process.env.WASM_FIXTURES;
if (!fixtures) throw new Error("WASM_FIXTURES is not set: run scripts/test-wasm.sh");
const suite = JSON.parse(readFileSync(join(repo, "tests", "conformance", "cases.json"), "utf8"));
let pkg, server, work;

before(async () => {
  pkg = await loadPackage();
  work = mkdtempSync(join(tmpdir(), "edgeshard-wasm-conformance-"));
  cpSync(join(fixtures, "conformance"), work, { recursive: true });
  server = await startNginx(work);
  for (const name of Object.keys(suite.snapshots)) {
    bindSidecars(join(work, name), `${server.url}/${name}`);
  }
});

after(async () => {
  await server?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

test("the wasm reader answers every conformance case like the oracle (Node)", async () => {
  assert.ok(suite.cases.length >= 60, `the suite lost cases: ${suite.cases.length}`);
  const { asked, failures } = await runConformance(pkg.Snapshot, server.url, suite);
  assert.equal(asked, suite.cases.length);
  assert.equal(failures.length, 0, `${failures.length} of ${asked} answers differ:\n${failures.join("\n")}`);
});
