#!/usr/bin/env bash
# What does not gate a landing and may run for a long time: the benchmarks behind
# docs/benchmarks.md (release builds, real data sets) and, as they come, long fuzz runs.
# scripts/test.sh (CI) compiles every benchmark so none can rot, and keeps the bounded smoke
# versions; this script runs them for real. Results are printed; copy the figures, with the
# command and the machine, into docs/benchmarks.md.
#
#   bash scripts/test-long.sh            # kv + remote + Debian benchmarks (sqlite-vec)
#   bash scripts/test-long.sh lancedb    # also the LanceDB benchmarks (feature lancedb)
#
# The Debian benchmarks read ../shared/data/debian-minilm (the team's data folder beside the
# clone) and are skipped, with a note, when it is absent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh

with_lance=0
case "${1:-}" in
    "") ;;
    lancedb) with_lance=1 ;;
    -h | --help)
        sed -n '2,12p' "$0"
        exit 0
        ;;
    *)
        echo "usage: bash scripts/test-long.sh [lancedb]" >&2
        exit 2
        ;;
esac

bash scripts/setup-bench.sh
data=../shared/data/debian-minilm
started=$SECONDS

bench() {
    echo "== bench $*" >&2
    cargo run --release -q -p edgeshard-tests --example bench -- "$@"
}

bench kv 100000 8
bench kv 1000000 8
echo "== remote_bench (nginx + moto on 127.0.0.1)" >&2
cargo run --release -q -p edgeshard-tests --example remote_bench
echo "== kv_cold_bench (1M KV rows: nginx, S3 on tests/s3-server; then Chromium vs sql.js-httpvfs)" >&2
kv_out="$(mktemp -d)"
cargo run --release -q -p edgeshard-tests --example kv_cold_bench -- 1000000 8 50 "$kv_out"
cargo build --release -q -p edgeshard-builder
bash scripts/build-wasm-pkg.sh
EDGESHARD_CLI="$CARGO_TARGET_DIR/release/edgeshard" \
    node runtime-wasm/js/bench-cold-kv.mjs "$kv_out/snap" 1000000 50
rm -rf "$kv_out"
bench synthetic 1000000 8
if [ -d "$data" ]; then
    bench debian "$data" 8
    echo "== server_bench (edgeshard serve under wrk, the Debian set)" >&2
    cargo run --release -q -p edgeshard-tests --example server_bench -- "$data" 10
else
    echo "skipping the Debian benchmarks: $data is absent" >&2
fi

if [ "$with_lance" = 1 ]; then
    # The dev profile (dependencies at opt-level 2), as docs/benchmarks.md's LanceDB figures were
    # measured; CI builds the `lance` profile (opt-level 1), so this compiles its own tree.
    lance() {
        echo "== lance_bench $*" >&2
        CARGO_TARGET_DIR="$EDGESHARD_LANCE_TARGET_DIR" \
            cargo run -q -p edgeshard-tests --features lancedb --example lance_bench -- "$@"
    }
    if [ -d "$data" ]; then
        lance debian "$data" 2
        lance s3 "$data"
    fi
    lance synthetic 100000 8
fi
echo "test-long: done in $((SECONDS - started)) s" >&2
