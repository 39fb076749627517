#!/usr/bin/env bash
# The main job on the bundled sample: build a snapshot of 2,000 real Debian package descriptions
# (384-d all-MiniLM-L6-v2 embeddings, tests/data/debian-sample), then answer a get and a search,
# and check the search against the data set's exact ground truth.
#
# Usage: scripts/demo.sh [SNAPSHOT_DIR]   (default: a folder under the cargo target directory)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh

echo "== building the edgeshard CLI" >&2
cargo build --quiet -p edgeshard-builder
edgeshard="$CARGO_TARGET_DIR/debug/edgeshard"
snapshot=${1:-$CARGO_TARGET_DIR/demo-snapshot}
rm -rf "$snapshot"

echo "== edgeshard build (2,000 packages, 4 shards, cosine)" >&2
"$edgeshard" build --input tests/data/debian-sample/packages.parquet \
    --key-field id --value-field text --vector-field embedding \
    --payload-fields section,priority --shards 4 --metric cosine --out "$snapshot"

echo "== edgeshard info" >&2
"$edgeshard" info --root "$snapshot" --format table

echo "== edgeshard get surf vim no-such-package" >&2
"$edgeshard" get --root "$snapshot" surf vim no-such-package

echo "== edgeshard search: 'lightweight web browser' (precomputed embedding), k=5" >&2
"$edgeshard" search --root "$snapshot" --k 5 --format table \
    --vector-file tests/data/debian-sample/query-lightweight-web-browser.json

# The exact top 5 over all 62,666 packages; the sample contains every one of them.
expected='surf chromium chromium-shell chromium-headless-shell angelfish'
got=$("$edgeshard" search --root "$snapshot" --k 5 \
    --vector-file tests/data/debian-sample/query-lightweight-web-browser.json \
    | grep -o '"id":"[^"]*"' | cut -d'"' -f4 | tr '\n' ' ' | sed 's/ $//')
if [ "$got" != "$expected" ]; then
    echo "demo: search returned [$got], expected [$expected]" >&2
    exit 1
fi
echo "demo: search matches the exact ground truth ($expected)" >&2
