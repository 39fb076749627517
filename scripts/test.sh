#!/usr/bin/env bash
# Every test of the project, from a fresh clone on a fresh machine: installs prerequisites
# (scripts/setup.sh), checks formatting and lints, runs the Rust tests of all crates, the wasm
# tests under Node, and the demo on the bundled sample.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
bash scripts/setup.sh

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check

echo "== cargo clippy (all targets, warnings are errors)" >&2
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== cargo test --workspace" >&2
cargo test --workspace

echo "== wasm tests under Node" >&2
bash scripts/test-wasm.sh

echo "== demo on the bundled sample" >&2
bash scripts/demo.sh

echo "all tests passed" >&2
