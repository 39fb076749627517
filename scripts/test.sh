#!/usr/bin/env bash
# Every test of the project, from a fresh clone on a fresh machine: installs prerequisites
# (scripts/setup.sh), checks formatting and lints, runs the Rust tests of all crates, the wasm
# tests under Node, and the demo on the bundled sample.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
bash scripts/setup.sh

# Test runner output is also collected here, to print one total at the end.
results=$(mktemp)
trap 'rm -f "$results"' EXIT

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check

echo "== cargo clippy (all targets, warnings are errors)" >&2
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== cargo test --workspace" >&2
cargo test --workspace 2>&1 | tee -a "$results"

# The LanceDB backend (cargo feature `lancedb`, off by default: its dependency tree is large),
# built in its own target directory (scripts/env.sh). Lints: clippy-driver compiles the
# workspace crates inside this test build (what `cargo clippy` does in a check build), so
# LanceDB's dependencies are compiled once, not a second time in check mode; any warning fails.
echo "== LanceDB backend: tests and clippy (feature lancedb)" >&2
lance_log=$(mktemp)
clippy_driver=$(rustup which clippy-driver)
lance_cargo() {
    RUSTC_WORKSPACE_WRAPPER="$clippy_driver" CARGO_TARGET_DIR="$EDGESHARD_LANCE_TARGET_DIR" \
        cargo "$@" --features edgeshard-tests/lancedb,edgeshard-native/lancedb 2>&1 | tee -a "$lance_log"
}
lance_cargo build -p edgeshard-tests --example lance_bench
lance_cargo test -p edgeshard-native -p edgeshard-tests --lib --test lancedb | tee -a "$results"
if grep -E '^(warning|error)' "$lance_log"; then
    echo "LanceDB build: warnings (clippy or rustc) above; fix them" >&2
    exit 1
fi
rm -f "$lance_log"

echo "== wasm tests under Node" >&2
bash scripts/test-wasm.sh 2>&1 | tee -a "$results"

echo "== demo on the bundled sample" >&2
bash scripts/demo.sh

# One closing line for the whole run: every test of every runner above.
passed=$(grep -Eo '[0-9]+ passed' "$results" | awk '{s += $1} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed' "$results" | awk '{s += $1} END {print s + 0}')
echo "edgeshard: $passed passed, $failed failed"
