#!/usr/bin/env bash
# Test fixtures of the wasm package's JS tests, all from the bundled sample
# (tests/data/debian-sample: 2,000 Debian packages, 384-d embeddings):
#   DIR/sample/         a unified snapshot (4 shards, cosine) built by the native CLI
#   DIR/conformance/    the reader conformance suite's snapshots (tests/conformance)
#   DIR/expected.json   runtime-native's answers on it, through the CLI: 1,000 keys
#                       (950 present, 50 absent, seeded) and 100 vector queries (the 20 text
#                       queries and 80 seeded mixes of them), k = 10
# Usage: scripts/wasm-fixtures.sh DIR    (prints the path of the CLI it used)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/env.sh"
repo="$(cd "$here/.." && pwd)"
dir="$1"
cd "$repo"
cargo build --quiet -p edgeshard-builder
edgeshard="$CARGO_TARGET_DIR/debug/edgeshard"

rm -rf "$dir"
mkdir -p "$dir"
"$edgeshard" build --quiet --input tests/data/debian-sample/packages.parquet \
    --key-field id --value-field text --vector-field embedding \
    --payload-fields section,priority --shards 4 --metric cosine --out "$dir/sample" >/dev/null

# The reader conformance suite's snapshots (tests/conformance/cases.json), built with the
# arguments tests/tests/reader_conformance.rs uses.
python3 - "$dir/conformance" "$edgeshard" <<'PY'
import json, subprocess, sys
out, edgeshard = sys.argv[1], sys.argv[2]
suite = json.load(open("tests/conformance/cases.json"))
for name, spec in suite["snapshots"].items():
    if "prebuilt" in spec:  # written by shardyfusion: a script assembles the root
        subprocess.run([sys.executable, f"tests/conformance/{spec['prebuilt']}", f"{out}/{name}"],
                       check=True)
        continue
    args = [edgeshard, "build", "--quiet", "--input", f"tests/conformance/{spec['input']}",
            "--key-field", "id", "--value-field", "value", "--shards", str(spec["shards"]),
            "--out", f"{out}/{name}"]
    if "vector_field" in spec:
        args += ["--vector-field", spec["vector_field"], "--metric", spec["metric"]]
    if spec.get("vector_only"):
        args += ["--vector-only"]
    if "routing" in spec:
        args += ["--routing", spec["routing"]]
    if "shard_field" in spec:
        args += ["--shard-field", spec["shard_field"]]
    if "vector_index" in spec:
        args += ["--vector-index", spec["vector_index"]]
    if "quantization" in spec:
        args += ["--quantization", spec["quantization"]]
    if "payload_fields" in spec:
        args += ["--payload-fields", ",".join(spec["payload_fields"])]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
PY

# Keys (from the shards themselves) and query vectors, seeded so every run asks the same.
python3 - "$dir" <<'PY'
import glob, json, math, random, sqlite3, sys
out = sys.argv[1]
keys = []
for path in sorted(glob.glob(f"{out}/sample/shards/*/*/*/shard.db")):
    db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    keys += [k.decode() for (k,) in db.execute("SELECT k FROM kv")]
rng = random.Random(20261201)
asked = rng.sample(sorted(keys), 950) + [f"no-such-package-{i}" for i in range(50)]
rng.shuffle(asked)
with open(f"{out}/keys.txt", "w") as f:
    f.write("".join(k + "\n" for k in asked))
texts = [json.loads(line) for line in open("tests/data/debian-sample/text_queries.jsonl")]
queries = [t["vector"] for t in texts]
while len(queries) < 100:
    a, b = rng.sample(range(len(texts)), 2)
    w = rng.random()
    v = [w * x + (1 - w) * y for x, y in zip(texts[a]["vector"], texts[b]["vector"])]
    norm = math.sqrt(sum(x * x for x in v))
    queries.append([x / norm for x in v])
with open(f"{out}/queries.jsonl", "w") as f:
    f.write("".join(json.dumps(q) + "\n" for q in queries))
PY

"$edgeshard" multiget --root "$dir/sample" < "$dir/keys.txt" > "$dir/native-get.jsonl"
: > "$dir/native-search.jsonl"
while IFS= read -r query; do
    "$edgeshard" search --root "$dir/sample" --k 10 --vector "$query" >> "$dir/native-search.jsonl"
done < "$dir/queries.jsonl"

python3 - "$dir" <<'PY'
import json, sys
out = sys.argv[1]
gets = [json.loads(line) for line in open(f"{out}/native-get.jsonl")]
queries = [json.loads(line) for line in open(f"{out}/queries.jsonl")]
searches = [json.loads(line) for line in open(f"{out}/native-search.jsonl")]
assert len(gets) == 1000 and len(searches) == 100, (len(gets), len(searches))
json.dump({
    "keys": [g["key"] for g in gets],
    "values": [g["value"] for g in gets],
    "queries": [{"vector": q, "k": 10, "results": s["results"]} for q, s in zip(queries, searches)],
}, open(f"{out}/expected.json", "w"))
PY
echo "$edgeshard"
