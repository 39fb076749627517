// Vector routing in the wasm reader: a cluster-routed, vector-only snapshot (16 shards, 2 probes;
// built from the sample by `edgeshard build --vector-only --routing cluster`, see
// scripts/wasm-cluster-fixture.sh) served by nginx. A cold search
// must touch only the probed shards, in at most 3 dependent rounds, and answer exactly what
// runtime-native answers over those shards.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { startNginx, bindSidecars, loadPackage, cli } from "./harness.mjs";

const fixtures = process.env.WASM_FIXTURES;
if (!fixtures) throw new Error("WASM_FIXTURES is not set: run scripts/test-wasm.sh");
const expected = JSON.parse(readFileSync(join(fixtures, "expected.json"), "utf8"));
let pkg, server, work, root;

/** The reader's rule, computed independently: the `probes` nearest centroids by 1 - cos. */
function probesOf(query, centroids, probes) {
  const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  return centroids
    .map((c, i) => ({ i, d: 1 - c.reduce((s, x, j) => s + x * query[j], 0) / (norm(c) * norm(query)) }))
    .sort((a, b) => a.d - b.d || a.i - b.i)
    .slice(0, probes)
    .map((x) => x.i)
    .sort((a, b) => a - b);
}

function readCentroids(dir) {
  const run = readdirSync(join(dir, "vector_meta"))[0];
  const bytes = readFileSync(join(dir, "vector_meta", run, "centroids.npy"));
  const headerLen = bytes.readUInt16LE(8);
  const header = bytes.subarray(10, 10 + headerLen).toString("latin1");
  const [rows, cols] = header.match(/\((\d+), (\d+)\)/).slice(1).map(Number);
  const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset + 10 + headerLen, bytes.byteOffset + bytes.length));
  return Array.from({ length: rows }, (_, r) => Array.from(data.subarray(r * cols, (r + 1) * cols)));
}

before(async () => {
  pkg = await loadPackage();
  work = mkdtempSync(join(tmpdir(), "edgeshard-wasm-cluster-"));
  root = join(work, "cluster");
  cpSync(join(fixtures, "cluster"), root, { recursive: true });
  server = await startNginx(root);
  bindSidecars(root, server.url);
});

after(async () => {
  await server?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

test("open reads _CURRENT, the manifest and centroids.npy: 3 requests", async () => {
  const snap = await pkg.Snapshot.open(server.url);
  assert.equal(snap.stats().last.requests, 3);
  assert.deepEqual(snap.info().vector_routing, { strategy: "cluster", num_probes: 2 });
  assert.deepEqual(snap.stats().openShards, []);
});

test("a cold search touches only the probed shards, in at most 3 rounds, with native's answers", async () => {
  const centroids = readCentroids(root);
  assert.equal(centroids.length, 16);
  for (const [i, q] of expected.queries.slice(0, 20).entries()) {
    const snap = await pkg.Snapshot.open(server.url);
    const got = await snap.search(q.vector, { k: 10 });
    const last = snap.stats().last;
    const probed = probesOf(q.vector, centroids, 2);
    assert.deepEqual(got.shards, probed, `query ${i}: probed shards`);
    assert.deepEqual(snap.stats().openShards, probed, `query ${i}: no other shard opened`);
    assert.ok(last.rounds <= 3, `query ${i}: ${JSON.stringify(last)}`);
    assert.ok(got.results.every((h) => probed.includes(h.shard)));
    const native = JSON.parse(
      execFileSync(cli(), ["search", "--root", root, "--k", "10", "--shards", probed.join(","), "--vector", JSON.stringify(q.vector)], {
        encoding: "utf8",
      }),
    );
    assert.deepEqual(got.results.map((h) => h.id), native.results.map((h) => h.id), `query ${i}: ids`);
    got.results.forEach((h, r) => assert.ok(Math.abs(h.score - native.results[r].score) < 1e-6));
  }
});

test("the probes option widens the search; shards overrides routing", async () => {
  const snap = await pkg.Snapshot.open(server.url);
  const q = expected.queries[2].vector;
  const four = await snap.search(q, { k: 10, probes: 4 });
  assert.deepEqual(four.shards, probesOf(q, readCentroids(root), 4));
  const all = await snap.search(q, { k: 10, probes: 16 });
  assert.equal(all.shards.length, 16);
  // Every shard probed: the exact answer over the whole set, as the unified sample gives it.
  assert.deepEqual(all.results.map((h) => h.id), expected.queries[2].results.map((h) => h.id));
  const given = await snap.search(q, { k: 3, shards: [5] });
  assert.deepEqual(given.shards, [5]);
  await assert.rejects(snap.search(q, { probes: 0 }), (e) => e.code === "INVALID_ARGUMENT");
  // The plan every reader shares: probes and shards together are refused, not one ignored.
  await assert.rejects(
    snap.search(q, { k: 3, probes: 2, shards: [5] }),
    (e) => e.code === "INVALID_ARGUMENT" && /not both/.test(e.message),
  );
});
