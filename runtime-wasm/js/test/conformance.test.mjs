// The reader conformance suite (tests/conformance/cases.json: answers computed from the records
// alone by tests/conformance/oracle.py) asked of the wasm reader in Node, over a real nginx with
// the snapshots' sidecars bound, exactly as tests/tests/reader_conformance.rs asks every native
// reader. Any case answered differently fails, naming the case and both answers.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { startNginx, bindSidecars, loadPackage, cli, repo } from "./harness.mjs";

const suiteDir = join(repo, "tests", "conformance");
const suite = JSON.parse(readFileSync(join(suiteDir, "cases.json"), "utf8"));
let pkg, server, work;

/** The CLI arguments of tests/tests/reader_conformance.rs's build_args. */
function buildArgs(spec, out) {
  const args = ["build", "--quiet", "--input", join(suiteDir, spec.input), "--key-field", "id",
    "--value-field", "value", "--shards", String(spec.shards), "--out", out];
  if (spec.vector_field) args.push("--vector-field", spec.vector_field, "--metric", spec.metric);
  if (spec.payload_fields) args.push("--payload-fields", spec.payload_fields.join(","));
  return args;
}

before(async () => {
  pkg = await loadPackage();
  work = mkdtempSync(join(tmpdir(), "edgeshard-wasm-conformance-"));
  for (const [name, spec] of Object.entries(suite.snapshots)) {
    execFileSync(cli(), buildArgs(spec, join(work, name)), { stdio: "pipe" });
  }
  server = await startNginx(work);
  for (const name of Object.keys(suite.snapshots)) {
    bindSidecars(join(work, name), `${server.url}/${name}`);
  }
});

after(async () => {
  await server?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

const text = (bytes) => (bytes == null ? null : new TextDecoder().decode(bytes));

async function answer(snap, c) {
  try {
    switch (c.op) {
      case "get":
        return { value: text(await snap.get(c.key)) };
      case "multiget":
        return { values: (await snap.getMany(c.keys)).map(text) };
      case "search": {
        const options = { k: c.k };
        for (const name of ["probes", "shards", "filter", "fields"]) {
          if (c[name] !== undefined) options[name] = c[name];
        }
        const { results } = await snap.search(c.vector, options);
        return { results: results.map(({ id, score, payload, shard }) => ({ id, score, payload, shard })) };
      }
      default:
        throw new Error(`unknown op ${c.op}`);
    }
  } catch (error) {
    if (!error.code) throw error;
    return { error: error.kind, message: error.message };
  }
}

function conforms(expected, got) {
  if ("error" in expected) return got.error === expected.error;
  if ("results" in expected) {
    return Array.isArray(got.results) && got.results.length === expected.results.length &&
      expected.results.every((w, i) => {
        const h = got.results[i];
        return w.id === h.id && w.shard === h.shard &&
          JSON.stringify(w.payload) === JSON.stringify(h.payload) &&
          Math.abs(w.score - h.score) <= 1e-4;
      });
  }
  try {
    assert.deepStrictEqual(got, expected);
    return true;
  } catch {
    return false;
  }
}

test("the wasm reader answers every conformance case like the oracle", async () => {
  assert.ok(suite.cases.length >= 60, `the suite lost cases: ${suite.cases.length}`);
  const snaps = {};
  for (const name of Object.keys(suite.snapshots)) {
    snaps[name] = await pkg.Snapshot.open(`${server.url}/${name}`);
  }
  const failures = [];
  for (const [i, c] of suite.cases.entries()) {
    const got = await answer(snaps[c.snapshot], c);
    if (!conforms(c.expect, got)) {
      failures.push(`case ${i} (${c.op} on ${c.snapshot}):\n  expected ${JSON.stringify(c.expect)}\n  got      ${JSON.stringify(got)}`);
    }
  }
  assert.equal(failures.length, 0, `${failures.length} of ${suite.cases.length} answers differ:\n${failures.join("\n")}`);
});
