// dot_product in the wasm reader: a snapshot the native CLI builds with --metric dot_product from
// vectors of very different norms (so dot ranks differently from cosine), stored as sqlite-vec's
// L2 reduction. The wasm reader must return exactly runtime-native's ids, scores (1 - q.v) and
// shards, and those must be the brute-force dot ranking.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { startNginx, bindSidecars, loadPackage, cli } from "./harness.mjs";

const DIM = 16;
const ROWS = 1500;
let pkg, server, work, root;
const vectors = [];

/** Deterministic pseudo-random numbers (a 32-bit LCG): the data set is the same on every run. */
function lcg(seed) {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

before(async () => {
  pkg = await loadPackage();
  work = mkdtempSync(join(tmpdir(), "edgeshard-wasm-dot-"));
  const rand = lcg(7);
  const lines = [];
  for (let id = 0; id < ROWS; id++) {
    const scale = 0.2 + 3 * rand();
    const v = Array.from({ length: DIM }, () => (rand() * 2 - 1) * scale);
    vectors.push(v);
    lines.push(JSON.stringify({ id, value: `v${id}`, emb: v, tag: `t${id % 3}` }));
  }
  writeFileSync(join(work, "dot.jsonl"), lines.join("\n") + "\n");
  root = join(work, "snap");
  execFileSync(cli(), [
    "build", "--quiet", "--input", join(work, "dot.jsonl"), "--key-field", "id", "--value-field", "value",
    "--vector-field", "emb", "--payload-fields", "tag", "--metric", "dot_product", "--shards", "4", "--out", root,
  ]);
  server = await startNginx(root);
  bindSidecars(root, server.url);
});

after(async () => {
  await server?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

test("dot_product search equals runtime-native's and brute force", async () => {
  const snap = await pkg.Snapshot.open(server.url);
  assert.equal(snap.info().vector.metric, "dot_product");
  const rand = lcg(99);
  for (let i = 0; i < 20; i++) {
    const q = Array.from({ length: DIM }, () => rand() * 2 - 1);
    const got = await snap.search(q, { k: 10 });
    const native = JSON.parse(
      execFileSync(cli(), ["search", "--root", root, "--k", "10", "--vector", JSON.stringify(q)], { encoding: "utf8" }),
    );
    assert.deepEqual(got.results.map((h) => h.id), native.results.map((h) => h.id), `query ${i}: ids`);
    got.results.forEach((h, r) => {
      assert.ok(Math.abs(h.score - native.results[r].score) < 1e-9, `query ${i} rank ${r}: score`);
      assert.equal(h.shard, native.results[r].shard);
    });
    // Brute force in f64 over the input: the exact top 10 by 1 - q.v, ties by id.
    const dot = (v) => v.reduce((s, x, j) => s + Math.fround(x) * Math.fround(q[j]), 0);
    const want = vectors
      .map((v, id) => ({ id, score: 1 - dot(v) }))
      .sort((a, b) => a.score - b.score || a.id - b.id)
      .slice(0, 10);
    assert.deepEqual(got.results.map((h) => h.id), want.map((h) => h.id), `query ${i}: brute force`);
  }
});
