// The wasm package under Node (a stand-in for server-side edge runtimes) against a real nginx on
// 127.0.0.1, on the sample snapshot built by the native CLI (scripts/wasm-fixtures.sh): answers
// equal runtime-native's, request counts, cache budget, and every failure the reader must name.
// Run through scripts/test-wasm.sh (it builds the package and the fixtures and sets
// WASM_FIXTURES and EDGESHARD_CLI).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, utimesSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { startNginx, bindSidecars, loadPackage, copySample as copySampleInto, shardFiles } from "./harness.mjs";

const fixtures = process.env.WASM_FIXTURES;
if (!fixtures) throw new Error("WASM_FIXTURES is not set: run scripts/test-wasm.sh");
const expected = JSON.parse(readFileSync(join(fixtures, "expected.json"), "utf8"));
const decoder = new TextDecoder();
const text = (bytes) => (bytes === null ? null : decoder.decode(bytes));

let pkg;
let server;
let work;

/** A private copy of the sample snapshot (tests that modify files use their own). */
const copySample = (name) => copySampleInto(work, name);

before(async () => {
  pkg = await loadPackage();
  work = mkdtempSync(join(tmpdir(), "edgeshard-wasm-test-"));
  const root = copySample("bound");
  server = await startNginx(root);
  bindSidecars(root, server.url);
});

after(async () => {
  await server?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

function assertSameSearch(got, want, label) {
  assert.equal(got.results.length, want.results.length, `${label}: number of hits`);
  got.results.forEach((hit, i) => {
    const w = want.results[i];
    assert.equal(hit.id, w.id, `${label} rank ${i}: id`);
    assert.ok(Math.abs(hit.score - w.score) < 1e-6, `${label} rank ${i}: score ${hit.score} vs ${w.score}`);
    assert.deepEqual(hit.payload, w.payload, `${label} rank ${i}: payload`);
    assert.equal(hit.shard, w.shard, `${label} rank ${i}: shard`);
  });
}

test("1,000 random keys: get and getMany equal runtime-native's answers", async () => {
  const snap = await pkg.Snapshot.open(server.url);
  const many = await snap.getMany(expected.keys);
  assert.equal(many.length, 1000);
  assert.deepEqual(many.map(text), expected.values);
  for (let i = 0; i < expected.keys.length; i++) {
    assert.equal(text(await snap.get(expected.keys[i])), expected.values[i], `key ${expected.keys[i]}`);
  }
  assert.equal(expected.values.filter((v) => v === null).length, 50, "50 absent keys asked");
  // Lookups read through the shards' key indexes (no sidecar needed); a search then opens the
  // shards again with their sidecars.
  assert.deepEqual(snap.stats().sidecarShards, [], "lookups need no sidecar");
  const total = snap.stats().total;
  assert.equal(total.keyIndexLookups, 2000, JSON.stringify(total));
  assert.equal(total.keyIndexFallbacks, 0, JSON.stringify(total));
  await snap.search(expected.queries[0].vector, { k: 10 });
  assert.deepEqual(snap.stats().sidecarShards, [0, 1, 2, 3], "searches read with the sidecars");
  assert.deepEqual(text(await snap.get(expected.keys[0])), expected.values[0]);
});

test("100 vector queries: search equals runtime-native's answers (ids, scores, payloads, shards)", async () => {
  const snap = await pkg.Snapshot.open(server.url);
  for (const [i, q] of expected.queries.entries()) {
    const got = await snap.search(new Float32Array(q.vector), { k: q.k });
    assert.deepEqual(got.shards, [0, 1, 2, 3]);
    assertSameSearch(got, q, `query ${i}`);
  }
  // Plain arrays are accepted as well as Float32Array.
  assertSameSearch(await snap.search(expected.queries[0].vector, { k: 10 }), expected.queries[0], "array");
  const warm = snap.stats().last;
  assert.equal(warm.requests, 0, "a warm search sends no request");
});

test("open costs at most 3 requests; a cold get costs one ranged read once its shard is open", async () => {
  // Budget 0: every call starts with an empty page cache (pinned sidecar pages stay).
  const snap = await pkg.Snapshot.open(server.url, { cacheBytes: 0 });
  const open = snap.stats().last;
  assert.ok(open.requests <= 3, `open took ${open.requests} requests`);
  assert.equal(open.requests, 2, "_CURRENT and the manifest (hash-routed: no routing artifact)");
  const numDbs = snap.info().num_dbs;
  const seen = new Set();
  let checked = 0;
  for (const key of expected.keys.slice(0, 200)) {
    const shard = pkg.route_key(key, numDbs);
    await snap.get(key);
    const last = snap.stats().last;
    if (!seen.has(shard)) {
      seen.add(shard);
      // First key of a shard: the shard's open round (key index + one byte of shard.db for
      // its size and ETag) and the one page the index names.
      assert.equal(last.rounds, 2, `first get on shard ${shard}: ${JSON.stringify(last)}`);
      assert.equal(last.requests, 3, `first get on shard ${shard}: ${JSON.stringify(last)}`);
      assert.ok(last.bytes <= 24 * 1024, `first get on shard ${shard}: ${JSON.stringify(last)}`);
    } else {
      // Cache budget 0: the page the key index names is read again.
      assert.equal(last.requests, 1, `cold get of ${key}: ${JSON.stringify(last)}`);
      assert.equal(last.rounds, last.requests);
      assert.equal(last.bytes, 4096 * last.requests, "one leaf page");
      if (last.requests === 1) checked++;
    }
  }
  assert.equal(seen.size, 4);
  assert.ok(checked > 100, `${checked} gets cost one ranged read`);
});

test("a cold search takes at most 3 dependent rounds; a warm one none", async () => {
  const snap = await pkg.Snapshot.open(server.url);
  const q = expected.queries[3];
  assertSameSearch(await snap.search(q.vector, { k: 10 }), q, "cold");
  const cold = snap.stats().last;
  assert.ok(cold.rounds <= 3, `cold search: ${JSON.stringify(cold)}`);
  await snap.search(expected.queries[4].vector, { k: 10 });
  assert.equal(snap.stats().last.requests, 0);
  assert.equal(snap.stats().last.rounds, 0);
  const total = snap.stats().total;
  assert.ok(total.requests >= cold.requests + 2, "totals include open and every call");
});

test("search over given shards touches only those shards", async () => {
  const snap = await pkg.Snapshot.open(server.url);
  const got = await snap.search(expected.queries[1].vector, { k: 5, shards: [2] });
  assert.deepEqual(got.shards, [2]);
  assert.ok(got.results.every((h) => h.shard === 2));
  assert.deepEqual(snap.stats().openShards, [2], "no other shard was opened");
  // The shard-2 hits of the full search come first among shard 2's own top 5.
  const full = expected.queries[1].results.filter((h) => h.shard === 2);
  assert.deepEqual(got.results.slice(0, full.length).map((h) => h.id), full.slice(0, 5).map((h) => h.id));
  // A key-routed snapshot has nothing to probe: refused as runtime-native refuses it, not ignored.
  await assert.rejects(
    snap.search(expected.queries[1].vector, { k: 5, probes: 2 }),
    (e) => e.code === "INVALID_ARGUMENT" && /routes by key/.test(e.message),
  );
});

test("a page cache smaller than one search still answers right, and stays bounded between calls", async () => {
  const snap = await pkg.Snapshot.open(server.url, { cacheBytes: 256 * 1024 });
  for (const [i, q] of expected.queries.slice(0, 5).entries()) {
    assertSameSearch(await snap.search(q.vector, { k: 10 }), q, `small cache, query ${i}`);
  }
  await snap.get(expected.keys[0]);
  const { cache } = snap.stats();
  assert.equal(cache.budget, 256 * 1024);
  assert.ok(cache.bytes <= 256 * 1024 + 64 * 1024, `cache holds ${cache.bytes} bytes after a get`);
});

test("without a bound sidecar (tag differs from the host's ETag) answers are the same", async () => {
  const root = copySample("unbound");
  const unbound = await startNginx(root);
  try {
    const snap = await pkg.Snapshot.open(unbound.url);
    const keys = expected.keys.slice(0, 100);
    assert.deepEqual((await snap.getMany(keys)).map(text), expected.values.slice(0, 100));
    assertSameSearch(await snap.search(expected.queries[7].vector, { k: 10 }), expected.queries[7], "unbound");
    assert.deepEqual(snap.stats().sidecarShards, [], "no sidecar used");
  } finally {
    await unbound.stop();
  }
});

test("a host that ignores Range is refused with RANGE_NOT_SUPPORTED", async () => {
  const ignoring = await startNginx(join(work, "bound"), "ignores-range");
  try {
    const snap = await pkg.Snapshot.open(ignoring.url);
    await assert.rejects(snap.get(expected.keys[0]), (e) => {
      assert.ok(e instanceof Error);
      assert.equal(e.code, "RANGE_NOT_SUPPORTED");
      assert.equal(e.retryable, false);
      assert.match(e.message, /ignored the Range request/);
      return true;
    });
  } finally {
    await ignoring.stop();
  }
});

test("a host that compresses is refused with COMPRESSED_RESPONSE", async () => {
  const gzip = await startNginx(join(work, "bound"), "gzip");
  try {
    await assert.rejects(pkg.Snapshot.open(gzip.url), (e) => {
      assert.equal(e.code, "COMPRESSED_RESPONSE");
      assert.match(e.message, /Content-Encoding: gzip/);
      return true;
    });
  } finally {
    await gzip.stop();
  }
});

test("HTTP 503 is retried with backoff, then reported as retryable", async () => {
  const down = await startNginx(join(work, "bound"), "unavailable");
  try {
    const started = Date.now();
    await assert.rejects(pkg.Snapshot.open(down.url, { retries: 2, retryBackoffMs: 50 }), (e) => {
      assert.equal(e.code, "HTTP_ERROR");
      assert.equal(e.retryable, true);
      assert.match(e.message, /HTTP 503/);
      return true;
    });
    assert.ok(Date.now() - started >= 150, "waited 50 + 100 ms between the 3 attempts");
  } finally {
    await down.stop();
  }
});

test("a missing snapshot is NOT_FOUND; a refused connection is a retryable NETWORK_ERROR", async () => {
  await assert.rejects(pkg.Snapshot.open(`${server.url}/no/such/root`), (e) => {
    assert.equal(e.code, "NOT_FOUND");
    assert.match(e.message, /_CURRENT/);
    return true;
  });
  const { freePort } = await import("./harness.mjs");
  const port = await freePort();
  await assert.rejects(pkg.Snapshot.open(`http://127.0.0.1:${port}`, { retries: 1, retryBackoffMs: 1 }), (e) => {
    assert.equal(e.code, "NETWORK_ERROR");
    assert.equal(e.retryable, true);
    return true;
  });
});

test("a shard that changes while open is OBJECT_CHANGED, never mixed bytes", async () => {
  const root = copySample("changing");
  const host = await startNginx(root);
  try {
    bindSidecars(root, host.url);
    const snap = await pkg.Snapshot.open(host.url, { cacheBytes: 0 });
    assert.deepEqual((await snap.getMany(expected.keys.slice(0, 40))).map(text), expected.values.slice(0, 40));
    // A new modification time is a new ETag for nginx: the object is "another version".
    const later = new Date(Date.now() + 60_000);
    for (const db of shardFiles(root)) utimesSync(db, later, later);
    await assert.rejects(snap.getMany(expected.keys.slice(40, 80)), (e) => {
      assert.equal(e.code, "OBJECT_CHANGED");
      assert.match(e.message, /ETag/);
      return true;
    });
  } finally {
    await host.stop();
  }
});

test("bad arguments are INVALID_ARGUMENT errors with a reason", async () => {
  const snap = await pkg.Snapshot.open(server.url);
  const rejectsWith = (promise, pattern) =>
    assert.rejects(promise, (e) => {
      assert.equal(e.code, "INVALID_ARGUMENT");
      assert.match(e.message, pattern);
      return true;
    });
  await rejectsWith(snap.get(42), /does not fit key encoding utf8/);
  await rejectsWith(snap.get({}), /key must be/);
  await rejectsWith(snap.search([1, 2, 3]), /dimension 3/);
  await rejectsWith(snap.search(expected.queries[0].vector, { k: 0 }), /k must be between/);
  await rejectsWith(snap.search(expected.queries[0].vector, { kk: 3 }), /unknown search option "kk"/);
  await rejectsWith(snap.search(expected.queries[0].vector, { shards: [9] }), /shard 9 does not exist/);
  await rejectsWith(pkg.Snapshot.open(server.url, { cacheByte: 1 }), /unknown option "cacheByte"/);
  const info = snap.info();
  assert.equal(info.num_dbs, 4);
  assert.equal(info.rows, 2000);
  assert.equal(info.key_encoding, "utf8");
  assert.equal(info.vector.dim, 384);
  assert.equal(info.vector_routing.strategy, "all");
});

test("getVector returns a package's stored vector; searching with it finds the package first", async () => {
  const { execFileSync } = await import("node:child_process");
  const { cli } = await import("./harness.mjs");
  const snap = await pkg.Snapshot.open(server.url);
  const vector = await snap.getVector("surf");
  assert.ok(vector instanceof Float32Array);
  assert.equal(vector.length, 384);
  assert.equal(await snap.getVector("no-such-package"), null);
  const got = await snap.search(vector, { k: 10 });
  assert.equal(got.results[0].id, "surf");
  assert.ok(Math.abs(got.results[0].score) < 1e-6);
  const native = JSON.parse(
    execFileSync(cli(), ["search", "--root", join(fixtures, "sample"), "--k", "10", "--vector", JSON.stringify(Array.from(vector))], {
      encoding: "utf8",
    }),
  );
  assertSameSearch(got, native, "more like surf");
});

test("filter and fields: the same answers as runtime-native's CLI", async () => {
  const { execFileSync } = await import("node:child_process");
  const { cli } = await import("./harness.mjs");
  const snap = await pkg.Snapshot.open(server.url);
  const q = expected.queries[4].vector;
  // A common value, a selective one (forces over-fetching past 4 x k), one that matches nothing.
  const cases = [
    [["priority=optional"], ["section"]],
    [["section=editors|web|games", "priority!=optional"], null],
    ["section=no-such-section", null],
  ];
  for (const [filter, fields] of cases) {
    const args = ["search", "--root", join(fixtures, "sample"), "--k", "10", "--vector", JSON.stringify(q)];
    for (const condition of [filter].flat()) args.push("--filter", condition);
    if (fields) args.push("--fields", fields.join(","));
    const native = JSON.parse(execFileSync(cli(), args, { encoding: "utf8" }));
    const got = await snap.search(q, fields ? { k: 10, filter, fields } : { k: 10, filter });
    assertSameSearch(got, native, `filter ${filter}`);
    if (fields) assert.ok(got.results.every((h) => h.payload === null || Object.keys(h.payload).join() === "section"));
  }
  assert.equal((await snap.search(q, { k: 10, filter: "section=no-such-section" })).results.length, 0);
  await assert.rejects(snap.search(q, { filter: "no condition here" }), (e) => e.code === "INVALID_ARGUMENT");
  await assert.rejects(snap.search(q, { fields: "section" }), (e) => e.code === "INVALID_ARGUMENT");
});
