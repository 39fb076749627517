#!/usr/bin/env bash
# A cluster-routed, vector-only snapshot for the wasm reader's routing tests and benchmarks, made
# from a unified snapshot: its vectors are clustered (cosine k-means, a few Lloyd rounds from
# evenly spaced seeds, deterministic) into K shards; each shard is built with the native CLI
# (one shard per cluster, sidecar included) and the root is laid out as shardyfusion lays out a
# cluster-routed vector-only snapshot: custom.vector.sharding_strategy = "cluster",
# vector_meta/run_id=R/centroids.npy, key_col "_vector_id".
#
# This is a TEST FIXTURE generator, not the builder's vector routing (that is another issue):
# it only arranges records the CLI already knows how to build.
#
# Usage: scripts/wasm-cluster-fixture.sh SOURCE_SNAPSHOT K NUM_PROBES OUT
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/env.sh"
repo="$(cd "$here/.." && pwd)"
source_root="$(cd "$1" && pwd)"
k="$2"
probes="$3"
out="$4"
cd "$repo"
cargo build --quiet -p edgeshard-builder
edgeshard="$CARGO_TARGET_DIR/debug/edgeshard"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# 1. Rows of the source shards: metadata as JSON lines, vectors as one float32 matrix.
python3 - "$source_root" "$work" <<'PY'
import glob, json, re, sqlite3, sys
src, work = sys.argv[1], sys.argv[2]
meta = open(f"{work}/rows.jsonl", "w")
vectors = open(f"{work}/vectors.f32", "wb")
for path in sorted(glob.glob(f"{src}/shards/*/*/*/shard.db")):
    db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    chunks = dict(db.execute("SELECT rowid, vectors FROM vec_index_vector_chunks00"))
    payloads = dict(db.execute("SELECT rowid, payload FROM vec_payloads"))
    ids = dict(db.execute("SELECT internal_id, original_id FROM vec_id_map"))
    texts = {bytes(k).decode(): bytes(v).decode() for k, v in db.execute("SELECT k, v FROM kv")}
    schema = db.execute("SELECT sql FROM sqlite_master WHERE name = 'vec_index'").fetchone()[0]
    size = 4 * int(re.search(r"float\[(\d+)\]", schema).group(1))  # bytes per vector
    for rowid, chunk_id, offset in db.execute(
        "SELECT rowid, chunk_id, chunk_offset FROM vec_index_rowids ORDER BY rowid"
    ):
        original = json.loads(ids[rowid])
        blob = chunks[chunk_id]
        payload = json.loads(payloads.get(rowid, "null"))
        meta.write(json.dumps({"id": original["v"], "text": texts.get(str(original["v"]), ""), "payload": payload}) + "\n")
        vectors.write(blob[offset * size:(offset + 1) * size])
PY

# 2. Clustering (Node: fast enough for 62,666 x 384 in a few seconds) and the per-cluster inputs.
node - "$work" "$k" <<'JS'
const fs = require("node:fs");
const [work, kText] = process.argv.slice(2);
const K = Number(kText);
const rows = fs.readFileSync(`${work}/rows.jsonl`, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
const raw = fs.readFileSync(`${work}/vectors.f32`);
const all = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
const n = rows.length;
const dim = all.length / n;
const unit = (v) => { let s = 0; for (const x of v) s += x * x; s = Math.sqrt(s) || 1; return v.map((x) => x / s); };
const vec = (i) => all.subarray(i * dim, (i + 1) * dim);
let centroids = Array.from({ length: K }, (_, c) => unit(Float32Array.from(vec(Math.floor((c * n) / K)))));
const assign = new Int32Array(n);
// Nearest centroid by cosine distance (1 - cos), ties to the lower index: the reader's rule.
const nearest = (v) => {
  let norm = 0; for (const x of v) norm += x * x; norm = Math.sqrt(norm);
  let best = 0, bestD = Infinity;
  for (let c = 0; c < K; c++) {
    const m = centroids[c]; let dot = 0, cn = 0;
    for (let d = 0; d < dim; d++) { dot += v[d] * m[d]; cn += m[d] * m[d]; }
    const dist = 1 - dot / (norm * Math.sqrt(cn));
    if (dist < bestD) { bestD = dist; best = c; }
  }
  return best;
};
for (let round = 0; round < 4; round++) {
  for (let i = 0; i < n; i++) assign[i] = nearest(vec(i));
  const sums = Array.from({ length: K }, () => new Float64Array(dim));
  const counts = new Int32Array(K);
  for (let i = 0; i < n; i++) { const v = vec(i); const s = sums[assign[i]]; for (let d = 0; d < dim; d++) s[d] += v[d]; counts[assign[i]]++; }
  centroids = centroids.map((old, c) => (counts[c] ? unit(Float32Array.from(sums[c])) : old));
}
// Final assignment with the final centroids, exactly as a reader computes probes.
for (let i = 0; i < n; i++) assign[i] = nearest(vec(i));
const files = Array.from({ length: K }, (_, c) => fs.openSync(`${work}/cluster-${c}.jsonl`, "w"));
for (let i = 0; i < n; i++) {
  const r = rows[i];
  const record = { id: r.id, text: r.text, embedding: Array.from(vec(i)), ...(r.payload || {}) };
  fs.writeSync(files[assign[i]], JSON.stringify(record) + "\n");
}
files.forEach((f) => fs.closeSync(f));
// centroids.npy: NPY v1.0, '<f4', C order, data 64-byte aligned.
let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${K}, ${dim}), }`;
const unpadded = 6 + 4 + header.length + 1;
header += " ".repeat((64 - (unpadded % 64)) % 64) + "\n";
const head = Buffer.alloc(10);
Buffer.from("\x93NUMPY", "latin1").copy(head);
head[6] = 1; head[7] = 0; head.writeUInt16LE(header.length, 8);
const body = Buffer.from(Float32Array.from(centroids.flatMap((c) => Array.from(c))).buffer);
fs.writeFileSync(`${work}/centroids.npy`, Buffer.concat([head, Buffer.from(header, "latin1"), body]));
fs.writeFileSync(`${work}/sizes.json`, JSON.stringify(Array.from({ length: K }, (_, c) => assign.filter((a) => a === c).length)));
JS

# 3. One single-shard build per non-empty cluster (payload fields: whatever the source had).
payload_fields=$(python3 -c "
import json
keys = set()
for line in open('$work/rows.jsonl'):
    keys |= set((json.loads(line).get('payload') or {}).keys())
print(','.join(sorted(keys)))")
for ((c = 0; c < k; c++)); do
    if [ -s "$work/cluster-$c.jsonl" ]; then
        "$edgeshard" build --quiet --input "$work/cluster-$c.jsonl" --key-field id --value-field text \
            --vector-field embedding ${payload_fields:+--payload-fields "$payload_fields"} \
            --shards 1 --metric cosine --out "$work/build-$c" >/dev/null
    fi
done

# 4. The cluster-routed root: shards, centroids, manifest, _CURRENT.
rm -rf "$out"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
python3 - "$work" "$out" "$k" "$probes" <<'PY'
import datetime, glob, hashlib, json, os, shutil, sqlite3, sys
work, out, K, probes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
now = datetime.datetime.now(datetime.timezone.utc)
ts = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
run = hashlib.sha1(f"cluster-{K}-{ts}".encode()).hexdigest()[:32]
root_url = f"file://{out}"
os.makedirs(f"{out}/vector_meta/run_id={run}")
shutil.copy(f"{work}/centroids.npy", f"{out}/vector_meta/run_id={run}/centroids.npy")
shards, total, dim = [], 0, None
for c in range(K):
    dbs = glob.glob(f"{work}/build-{c}/shards/*/*/*/shard.db")
    if not dbs:
        continue
    rel = f"shards/run_id={run}/db={c:05d}/attempt=00"
    os.makedirs(f"{out}/{rel}")
    shutil.copy(dbs[0], f"{out}/{rel}/shard.db")
    shutil.copy(os.path.join(os.path.dirname(dbs[0]), "shard.sidecar"), f"{out}/{rel}/shard.sidecar")
    rows = sqlite3.connect(f"file:{out}/{rel}/shard.db?mode=ro&immutable=1", uri=True).execute(
        "SELECT count(*) FROM vec_id_map").fetchone()[0]
    total += rows
    shards.append((c, f"{root_url}/{rel}", rows, os.path.getsize(f"{out}/{rel}/shard.db")))
source_manifest = glob.glob(f"{work}/build-*/manifests/*/manifest")[0]
src = sqlite3.connect(source_manifest).execute("SELECT custom FROM build_meta").fetchone()[0]
custom = json.loads(src)
vector = custom["vector"]
custom["vector"] = {
    "dim": vector["dim"], "metric": vector["metric"], "index_type": vector.get("index_type", "flat"),
    "quantization": vector.get("quantization"), "total_vectors": total,
    "sharding_strategy": "cluster", "num_probes": probes,
    "centroids_ref": f"{root_url}/vector_meta/run_id={run}/centroids.npy", "backend": "sqlite-vec",
}
mdir = f"{out}/manifests/{ts}_run_id={run}"
os.makedirs(mdir)
db = sqlite3.connect(f"{mdir}/manifest")
db.execute("PRAGMA page_size = 4096")
db.execute("""CREATE TABLE build_meta (run_id TEXT NOT NULL, created_at TEXT NOT NULL, num_dbs INTEGER NOT NULL,
  s3_prefix TEXT NOT NULL, key_col TEXT NOT NULL, sharding TEXT NOT NULL, db_path_template TEXT NOT NULL,
  shard_prefix TEXT NOT NULL, format_version INTEGER NOT NULL, key_encoding TEXT NOT NULL,
  custom TEXT NOT NULL DEFAULT '{}')""")
db.execute("""CREATE TABLE shards (db_id INTEGER NOT NULL PRIMARY KEY, db_url TEXT, attempt INTEGER NOT NULL,
  row_count INTEGER NOT NULL, db_bytes INTEGER NOT NULL, min_key TEXT, max_key TEXT,
  checkpoint_id TEXT, writer_info TEXT NOT NULL DEFAULT '{}')""")
sharding = {"strategy": "hash", "hash_algorithm": "xxh3_64", "routing_values": None, "cel_expr": None, "cel_columns": None}
db.execute("INSERT INTO build_meta VALUES (?,?,?,?,?,?,?,?,?,?,?)",
    (run, ts, K, root_url, "_vector_id", json.dumps(sharding, sort_keys=True), "db={db_id:05d}", "shards", 4, "utf8",
     json.dumps(custom, sort_keys=True)))
for c, url, rows, size in shards:
    db.execute("INSERT INTO shards VALUES (?,?,?,?,?,?,?,?,?)", (c, url, 0, rows, size, None, None, None, "{}"))
db.commit()
db.close()
with open(f"{out}/_CURRENT", "w") as f:
    json.dump({"format_version": 1, "manifest_content_type": "application/x-sqlite3",
               "manifest_ref": f"{root_url}/manifests/{ts}_run_id={run}/manifest", "run_id": run,
               "updated_at": ts}, f, separators=(",", ":"), sort_keys=True)
print(json.dumps({"root": out, "num_dbs": K, "non_empty": len(shards), "vectors": total}))
PY
