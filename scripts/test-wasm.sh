#!/usr/bin/env bash
# Runs runtime-wasm's wasm-bindgen tests in Node (wasm32-unknown-unknown through
# wasm-bindgen-test-runner, the runner set in .cargo/config.toml). Extra arguments go to
# `cargo test`, e.g. `scripts/test-wasm.sh -- parses`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/env.sh"
bash "$here/setup.sh"

cd "$here/.."
# Set here too, so the runner is right even when run from a checkout without .cargo/config.toml
# or with a different runner configured in the environment.
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
printf 'test-wasm: cargo test -p edgeshard-wasm --target wasm32-unknown-unknown %s\n' "$*" >&2
cargo test -p edgeshard-wasm --target wasm32-unknown-unknown "$@"
