#!/usr/bin/env bash
# A cluster-routed, vector-only snapshot for the wasm reader's routing tests and benchmarks, built
# by the native CLI's own vector routing (`edgeshard build --vector-only --routing cluster`:
# k-means centroids in vector_meta/run_id=R/centroids.npy, each vector in the shard of its nearest
# centroid, key_col "_vector_id"), from a Parquet file with the Debian set's columns (id, text,
# section, priority, embedding): the bundled sample or ../shared/data/debian-minilm.
#
# Usage: scripts/wasm-cluster-fixture.sh INPUT_PARQUET K NUM_PROBES OUT
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/env.sh"
if [ "$#" -ne 4 ]; then
    echo "usage: $0 INPUT_PARQUET K NUM_PROBES OUT" >&2
    exit 2
fi
input="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
k="$2"
probes="$3"
out="$4"
cd "$here/.."
cargo build --quiet -p edgeshard-builder
edgeshard="$CARGO_TARGET_DIR/debug/edgeshard"
rm -rf "$out"
"$edgeshard" build --quiet --input "$input" --key-field id --value-field text \
    --vector-field embedding --payload-fields section,priority --metric cosine \
    --vector-only --routing cluster --shards "$k" --probes "$probes" --out "$out"
