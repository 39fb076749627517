// The wasm package in workerd (the Cloudflare Workers runtime, run locally by miniflare from
// npm): a module worker imports the package and its compiled .wasm, and reads the sample
// snapshot from nginx on 127.0.0.1 through workerd's own fetch. Answers must equal
// runtime-native's, and the worker answers every case of the reader conformance suite
// (tests/conformance) like the oracle.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { Miniflare } from "miniflare";
import { startNginx, bindSidecars, repo } from "./harness.mjs";

const fixtures = process.env.WASM_FIXTURES;
if (!fixtures) throw new Error("WASM_FIXTURES is not set: run scripts/test-wasm.sh");
const expected = JSON.parse(readFileSync(join(fixtures, "expected.json"), "utf8"));
// Every key and query native answered (1,000 keys, 100 queries), as in the Node suite.
const KEYS = expected.keys;
const QUERIES = expected.queries;
const suite = JSON.parse(readFileSync(join(repo, "tests", "conformance", "cases.json"), "utf8"));

let work;
let server;
let mf;

before(async () => {
  work = mkdtempSync(join(tmpdir(), "edgeshard-wasm-workerd-"));
  cpSync(join(fixtures, "sample"), join(work, "snap"), { recursive: true });
  cpSync(join(fixtures, "conformance"), join(work, "conformance"), { recursive: true });
  server = await startNginx(join(work));
  bindSidecars(join(work, "snap"), `${server.url}/snap`);
  for (const name of Object.keys(suite.snapshots)) {
    bindSidecars(join(work, "conformance", name), `${server.url}/conformance/${name}`);
  }
  const code = join(work, "worker");
  cpSync(join(repo, "www", "pkg"), join(code, "pkg"), { recursive: true });
  cpSync(join(repo, "runtime-wasm", "js", "test", "browser", "run.js"), join(code, "browser", "run.js"));
  cpSync(join(repo, "runtime-wasm", "js", "test", "browser", "conformance.js"), join(code, "browser", "conformance.js"));
  writeFileSync(
    join(code, "worker.mjs"),
    `import { runChecks } from "./browser/run.js";
     import { runConformance } from "./browser/conformance.js";
     import init, { Snapshot } from "./pkg/edgeshard_wasm.js";
     import wasmModule from "./pkg/edgeshard_wasm_bg.wasm";
     export default {
       async fetch(request, env) {
         const { keys, queries, suite } = await request.json();
         if (suite) {
           try {
             await init({ module_or_path: wasmModule });
             const result = await runConformance(Snapshot, env.CONFORMANCE_URL, suite);
             return Response.json({ ok: true, result, runtime: navigator.userAgent });
           } catch (e) {
             return Response.json({ ok: false, error: String(e && e.code) + " " + String(e && e.message) });
           }
         }
         try {
           const result = await runChecks(env.SNAPSHOT_URL, keys, queries, { module_or_path: wasmModule });
           return Response.json({ ok: true, result, runtime: navigator.userAgent });
         } catch (e) {
           return Response.json({ ok: false, error: String(e && e.code) + " " + String(e && e.message) });
         }
       },
     };`,
  );
  mf = new Miniflare({
    modules: true,
    scriptPath: join(code, "worker.mjs"),
    modulesRoot: code,
    modulesRules: [
      { type: "ESModule", include: ["**/*.js", "**/*.mjs"] },
      { type: "CompiledWasm", include: ["**/*.wasm"] },
    ],
    compatibilityDate: "2025-01-01",
    bindings: { SNAPSHOT_URL: `${server.url}/snap`, CONFORMANCE_URL: `${server.url}/conformance` },
  });
  await mf.ready;
});

after(async () => {
  await mf?.dispose();
  await server?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

test("in workerd (miniflare): answers equal runtime-native's", async () => {
  const response = await mf.dispatchFetch("http://worker.test/", {
    method: "POST",
    body: JSON.stringify({ keys: KEYS, queries: QUERIES.map((q) => q.vector) }),
  });
  const body = await response.json();
  assert.ok(body.ok, body.error);
  assert.equal(body.runtime, "Cloudflare-Workers", "ran in workerd");
  const result = body.result;
  assert.ok(result.open.requests <= 3);
  assert.deepEqual(result.values, expected.values.slice(0, KEYS.length));
  assert.equal(result.single, expected.values[0]);
  result.searches.forEach((got, i) => {
    const want = QUERIES[i].results;
    assert.deepEqual(got.results.map((h) => h.id), want.map((h) => h.id), `query ${i}`);
    got.results.forEach((h, r) => assert.ok(Math.abs(h.score - want[r].score) < 1e-6));
  });
  assert.equal(result.error.code, "INVALID_ARGUMENT");
  assert.deepEqual(result.stats.sidecarShards, [0, 1, 2, 3]);
});

test("in workerd (miniflare): every reader conformance case answered like the oracle", async () => {
  const response = await mf.dispatchFetch("http://worker.test/", {
    method: "POST",
    body: JSON.stringify({ suite }),
  });
  const body = await response.json();
  assert.ok(body.ok, body.error);
  assert.equal(body.runtime, "Cloudflare-Workers", "ran in workerd");
  const { asked, failures } = body.result;
  assert.equal(asked, suite.cases.length);
  assert.equal(failures.length, 0, `${failures.length} of ${asked} answers differ:\n${failures.join("\n")}`);
});
