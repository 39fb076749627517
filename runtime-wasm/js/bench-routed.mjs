// Cold and warm search on a cluster/LSH-routed snapshot (numbers for docs/benchmarks.md):
// each query on a fresh handle (cold: its probed shards opened and read), then all queries again
// on one handle (warm). Recall@10 against the text queries' exact top 10 (top10_base).
//   node runtime-wasm/js/bench-routed.mjs SNAPSHOT_DIR TEXT_QUERIES_JSONL [PROBES]
import { readFileSync } from "node:fs";
import { startNginx, bindSidecars, loadPackage } from "./test/harness.mjs";

const [dir, queriesPath, probesText] = process.argv.slice(2);
const probes = probesText ? Number(probesText) : undefined;
const queries = readFileSync(queriesPath, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
const server = await startNginx(dir);
try {
  bindSidecars(dir, server.url);
  const pkg = await loadPackage();
  const cold = [];
  let recall = 0;
  for (const q of queries) {
    const snap = await pkg.Snapshot.open(server.url, { cacheBytes: 512 << 20 });
    const open = snap.stats().last;
    const t = performance.now();
    const got = await snap.search(new Float32Array(q.vector), { k: 10, probes });
    const ms = performance.now() - t;
    const last = snap.stats().last;
    const truth = new Set(q.top10_base.map(([id]) => id));
    recall += got.results.filter((h) => truth.has(h.id)).length / 10;
    cold.push({ ms, ...last, shards: got.shards.length, opened: snap.stats().openShards.length, openRequests: open.requests });
  }
  const avg = (f) => cold.reduce((s, c) => s + f(c), 0) / cold.length;
  const max = (f) => Math.max(...cold.map(f));
  const snap = await pkg.Snapshot.open(server.url, { cacheBytes: 1 << 30 });
  for (const q of queries) await snap.search(new Float32Array(q.vector), { k: 10, probes });
  const warm = [];
  for (let r = 0; r < 3; r++) {
    for (const q of queries) {
      const t = performance.now();
      await snap.search(new Float32Array(q.vector), { k: 10, probes });
      warm.push(performance.now() - t);
    }
  }
  warm.sort((a, b) => a - b);
  console.log(
    JSON.stringify(
      {
        info: snap.info().vector_routing,
        num_dbs: snap.info().num_dbs,
        open_requests: avg((c) => c.openRequests),
        cold: {
          ms_mean: avg((c) => c.ms),
          ms_max: max((c) => c.ms),
          requests_mean: avg((c) => c.requests),
          mb_mean: avg((c) => c.bytes) / 1e6,
          rounds_max: max((c) => c.rounds),
          shards_searched_max: max((c) => c.shards),
          shards_opened_max: max((c) => c.opened),
        },
        warm_ms: { p50: warm[Math.floor(warm.length / 2)], p99: warm[Math.floor(warm.length * 0.99)] },
        recall_at_10: recall / queries.length,
      },
      null,
      1,
    ),
  );
} finally {
  await server.stop();
}
