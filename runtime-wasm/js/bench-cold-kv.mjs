// Cold key lookups in headless Chromium, side by side (numbers for docs/benchmarks.md, issue 12):
// edgeshard's wasm package and sql.js-httpvfs 0.8.12, the usual way to query SQLite over HTTP
// from a browser, on the same shard files behind one nginx on 127.0.0.1. Usage:
//   node runtime-wasm/js/bench-cold-kv.mjs SNAPSHOT_DIR [ROWS] [KEYS]
// SNAPSHOT_DIR: a KV snapshot with integer keys 0..ROWS-1 (default 1,000,000), e.g. the one
// `cargo run --release -p edgeshard-tests --example kv_cold_bench -- 1000000 8 50 OUT` keeps in
// OUT/snap. KEYS (default 50) random keys; for each, a fresh edgeshard handle (its open,
// `_CURRENT` + manifest, reported apart) and a fresh sql.js-httpvfs worker on the key's shard
// file (sql.js-httpvfs has no manifest: it is given the file, as its users host one database).
// Requests and bytes are each library's own counters; Chromium's count of requests is shown too
// (edgeshard's includes its snapshot open; sql.js-httpvfs's its worker script and wasm).
import { existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { tmpdir } from "node:os";
import { chromium } from "playwright-core";
import { startNginx, bindSidecars, repo, shardFiles, CHROMIUM_ARGS } from "./test/harness.mjs";

const [snapshotArg, rowsArg, keysArg] = process.argv.slice(2);
if (!snapshotArg) {
  console.error("usage: node bench-cold-kv.mjs SNAPSHOT_DIR [ROWS] [KEYS]");
  process.exit(2);
}
const rows = Number(rowsArg || 1_000_000);
const count = Number(keysArg || 50);
const sqljs = join(repo, "runtime-wasm", "js", "node_modules", "sql.js-httpvfs", "dist");
if (!existsSync(sqljs)) throw new Error("sql.js-httpvfs is missing: run scripts/setup.sh");

// The shard files by db id (a snapshot of one build: one run).
const root = resolve(snapshotArg);
const shardPaths = {};
for (const file of shardFiles(root)) {
  const db = Number(/db=(\d+)/.exec(file)[1]);
  if (db in shardPaths) throw new Error(`two builds in ${root}: use a snapshot of one build`);
  shardPaths[db] = file.slice(root.length + 1);
}
const numDbs = Object.keys(shardPaths).length;
const work = mkdtempSync(join(tmpdir(), "edgeshard-bench-kv-"));
symlinkSync(resolve(snapshotArg), join(work, "snap"));
symlinkSync(join(repo, "www", "pkg"), join(work, "pkg"));
symlinkSync(sqljs, join(work, "sqljs"));
writeFileSync(join(work, "index.html"), `<!doctype html><script src="/sqljs/index.js"></script>`);
const server = await startNginx(work);
let browser;
try {
  bindSidecars(resolve(snapshotArg), `${server.url}/snap`);
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
  const context = await browser.newContext();
  const page = await context.newPage();
  // Chromium's own count of requests (page and workers, scripts included).
  const seen = { requests: 0 };
  context.on("requestfinished", () => {
    seen.requests += 1;
  });
  await page.goto(`${server.url}/index.html`);
  let seed = 12;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const keys = Array.from({ length: count }, () => Math.floor(random() * rows));
  const results = [];
  for (const key of keys) {
    for (const reader of ["edgeshard", "sql.js-httpvfs"]) {
      const before = { ...seen };
      const r = await page.evaluate(
        async ({ reader, key, root, shardPaths, numDbs }) => {
          const pkg = await import("/pkg/edgeshard_wasm.js");
          if (!globalThis.__inited) {
            await pkg.default();
            globalThis.__inited = true;
          }
          const keyBytes = new Uint8Array(8);
          new DataView(keyBytes.buffer).setBigUint64(0, BigInt(key));
          const hex = (b) => (b ? Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("") : null);
          if (reader === "edgeshard") {
            const snap = await pkg.Snapshot.open(root);
            const open = snap.stats().last;
            const t0 = performance.now();
            const value = await snap.get(key);
            const ms = performance.now() - t0;
            const cost = snap.stats().last;
            return { open, requests: cost.requests, rounds: cost.rounds, bytes: cost.bytes, ms, value: hex(value) };
          }
          // The key's shard file, as a sql.js-httpvfs user would host that one database.
          const url = `${root}/${shardPaths[pkg.route_key(key, numDbs)]}`;
          const t0 = performance.now();
          const worker = await globalThis.createDbWorker(
            [{ from: "inline", config: { serverMode: "full", requestChunkSize: 4096, url } }],
            "/sqljs/sqlite.worker.js",
            "/sqljs/sql-wasm.wasm",
          );
          const found = await worker.db.query("SELECT v FROM kv WHERE k = ?", [keyBytes]);
          const ms = performance.now() - t0;
          const stats = await worker.worker.getStats();
          return {
            requests: stats.totalRequests,
            bytes: stats.totalFetchedBytes,
            ms,
            value: found.length ? hex(found[0].v) : null,
          };
        },
        { reader, key, root: `${server.url}/snap`, shardPaths, numDbs },
      );
      r.seen = seen.requests - before.requests;
      results.push({ key, reader, ...r });
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const max = (xs) => Math.max(...xs);
  let mismatches = 0;
  for (let i = 0; i < results.length; i += 2) {
    if (results[i].value !== results[i + 1].value) mismatches += 1;
  }
  console.log(`${count} cold keys of ${rows}; value mismatches between the readers: ${mismatches}`);
  const open = results.find((r) => r.reader === "edgeshard").open;
  console.log(`edgeshard snapshot open (apart): ${open.requests} requests, ${open.bytes} bytes`);
  console.log("| reader | requests median (max) | bytes median (max) | requests Chromium saw (median) | ms median |");
  console.log("|---|---|---|---|---|");
  for (const reader of ["edgeshard", "sql.js-httpvfs"]) {
    const rs = results.filter((r) => r.reader === reader);
    const col = (f) => rs.map(f);
    console.log(
      `| ${reader} | ${median(col((r) => r.requests))} (${max(col((r) => r.requests))}) | ` +
        `${median(col((r) => r.bytes))} (${max(col((r) => r.bytes))}) | ` +
        `${median(col((r) => r.seen))} | ` +
        `${median(col((r) => r.ms)).toFixed(1)} |`,
    );
  }
  const ours = results.filter((r) => r.reader === "edgeshard");
  const theirs = results.filter((r) => r.reader === "sql.js-httpvfs");
  const fewerRequests = ours.filter((r, i) => r.requests < theirs[i].requests).length;
  const fewerBytes = ours.filter((r, i) => r.bytes < theirs[i].bytes).length;
  console.log(`keys where edgeshard sent fewer requests: ${fewerRequests}/${count}; fewer bytes: ${fewerBytes}/${count}`);
} finally {
  await browser?.close();
  await server.stop();
  rmSync(work, { recursive: true, force: true });
}
