// Benchmark of the wasm package under Node against nginx on 127.0.0.1 (numbers for
// docs/benchmarks.md). Usage:
//   node runtime-wasm/js/bench.mjs SNAPSHOT_DIR QUERIES_JSONL [KEYS_TXT]
// SNAPSHOT_DIR: a local snapshot (served by a private nginx; its sidecars get bound to it);
// QUERIES_JSONL: lines with a "vector" field (text_queries.jsonl); KEYS_TXT: keys, one a line
// (default: the ids of the query file's top10_base).
import { readFileSync } from "node:fs";
import { startNginx, bindSidecars, loadPackage } from "./test/harness.mjs";

const [snapshotDir, queriesPath, keysPath] = process.argv.slice(2);
if (!snapshotDir || !queriesPath) {
  console.error("usage: node bench.mjs SNAPSHOT_DIR QUERIES_JSONL [KEYS_TXT]");
  process.exit(2);
}
const queries = readFileSync(queriesPath, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
const keys = keysPath
  ? readFileSync(keysPath, "utf8").split("\n").filter(Boolean)
  : [...new Set(queries.flatMap((q) => (q.top10_base || []).map(([id]) => id)))];

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
function summary(ms) {
  const s = [...ms].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  return { n: s.length, p50: pct(s, 50), p99: pct(s, 99), mean };
}
const fmt = (x) => (x < 0.1 ? x.toFixed(4) : x.toFixed(2));

const server = await startNginx(snapshotDir);
try {
  bindSidecars(snapshotDir, server.url);
  const pkg = await loadPackage();
  const out = {};

  // Cold gets as runtime-native's remote bench counts them: a fresh handle per key, so the get
  // opens its shard (sidecar + first page, one round) and reads one leaf; open not counted.
  {
    const costs = [];
    for (const k of keys.slice(0, 20)) {
      const snap = await pkg.Snapshot.open(server.url);
      out.open = snap.stats().last;
      const t = performance.now();
      await snap.get(k);
      costs.push({ ms: performance.now() - t, ...snap.stats().last });
    }
    out.coldGet = {
      ...summary(costs.map((c) => c.ms)),
      requests: costs.reduce((s, c) => s + c.requests, 0) / costs.length,
      bytes: costs.reduce((s, c) => s + c.bytes, 0) / costs.length,
      rounds: costs.reduce((s, c) => s + c.rounds, 0) / costs.length,
    };
  }

  // Cold searches: a fresh handle each (open not counted), five different queries; the
  // median time and the largest requests / bytes / rounds.
  {
    const colds = [];
    for (const q of queries.slice(0, 5)) {
      const fresh = await pkg.Snapshot.open(server.url, { cacheBytes: 512 << 20 });
      const t = performance.now();
      await fresh.search(new Float32Array(q.vector), { k: 10 });
      colds.push({ ms: performance.now() - t, ...fresh.stats().last });
    }
    const most = (f) => Math.max(...colds.map(f));
    out.coldSearch = {
      ms: summary(colds.map((c) => c.ms)).p50,
      requests: most((c) => c.requests),
      bytes: most((c) => c.bytes),
      rounds: most((c) => c.rounds),
    };
  }
  // Warm: one handle, everything cached (default budget 64 MiB, or enough for the vectors).
  const snap = await pkg.Snapshot.open(server.url, { cacheBytes: 512 << 20 });
  for (const k of keys) await snap.get(k);
  const getMs = [];
  for (let round = 0; round < 5; round++) {
    for (const k of keys) {
      const t = performance.now();
      await snap.get(k);
      getMs.push(performance.now() - t);
    }
  }
  out.warmGet = summary(getMs);
  {
    const t = performance.now();
    await snap.getMany(keys);
    out.warmGetMany = { keys: keys.length, ms: performance.now() - t };
  }
  for (const q of queries) await snap.search(new Float32Array(q.vector), { k: 10 });
  const searchMs = [];
  for (let round = 0; round < 3; round++) {
    for (const q of queries) {
      const t = performance.now();
      await snap.search(new Float32Array(q.vector), { k: 10 });
      searchMs.push(performance.now() - t);
    }
  }
  out.warmSearch = summary(searchMs);
  // recall@10 against the data set's exact top 10 (top10_base), where the query file has it.
  {
    let found = 0;
    let asked = 0;
    for (const q of queries.filter((q) => q.top10_base)) {
      const hits = (await snap.search(new Float32Array(q.vector), { k: 10 })).results;
      const want = new Set(q.top10_base.map(([id]) => id));
      found += hits.filter((h) => want.has(h.id)).length;
      asked += 10;
    }
    out.recall = asked ? found / asked : null;
  }
  out.warmSearchRequests = snap.stats().last.requests;

  console.log(JSON.stringify(out, null, 1));
  console.log(
    [
      `open: ${out.open.requests} requests, ${out.open.bytes} bytes`,
      `cold get (fresh handle: shard open + leaf): mean ${fmt(out.coldGet.mean)} ms, ${out.coldGet.requests.toFixed(2)} requests, ${out.coldGet.bytes.toFixed(0)} bytes, ${out.coldGet.rounds.toFixed(2)} rounds`,
      `warm get: p50 ${fmt(out.warmGet.p50)} ms, p99 ${fmt(out.warmGet.p99)} ms (n=${out.warmGet.n})`,
      `warm getMany: ${out.warmGetMany.keys} keys in ${fmt(out.warmGetMany.ms)} ms`,
      `cold search (5 fresh handles): p50 ${fmt(out.coldSearch.ms)} ms, at most ${out.coldSearch.requests} requests, ${(out.coldSearch.bytes / 1e6).toFixed(2)} MB, ${out.coldSearch.rounds} rounds`,
      `recall@10 (text queries' exact top 10): ${out.recall}`,
      `warm search k=10: p50 ${fmt(out.warmSearch.p50)} ms, p99 ${fmt(out.warmSearch.p99)} ms (n=${out.warmSearch.n})`,
    ].join("\n"),
  );
} finally {
  await server.stop();
}
