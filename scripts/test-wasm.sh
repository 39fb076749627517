#!/usr/bin/env bash
# The wasm reader's tests:
#   1. runtime-wasm's wasm-bindgen tests in Node (wasm32-unknown-unknown through
#      wasm-bindgen-test-runner, the runner set in .cargo/config.toml); extra arguments go to
#      this `cargo test`, e.g. `scripts/test-wasm.sh -- parses`;
#   2. the ES-module package (scripts/build-wasm-pkg.sh, into www/pkg) under Node against a real
#      nginx on 127.0.0.1, on a snapshot the native CLI builds from the bundled sample, compared
#      with the native CLI's answers (scripts/wasm-fixtures.sh); node's test runner;
#   3. the same package in headless Chromium (page and dedicated worker) and in workerd
#      (miniflare), against nginx on 127.0.0.1;
#   4. the www/ demo on the 62,666-package Debian snapshot, clicked through in Chromium.
# Closes with one line `wasm-js: N passed, N failed` for the JS suites.
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

echo "test-wasm: building the package (scripts/build-wasm-pkg.sh)" >&2
bash "$here/build-wasm-pkg.sh"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "test-wasm: fixtures from the bundled sample (scripts/wasm-fixtures.sh)" >&2
EDGESHARD_CLI="$(bash "$here/wasm-fixtures.sh" "$work/fixtures")"
export EDGESHARD_CLI WASM_FIXTURES="$work/fixtures"
# The sample as a cluster-routed, vector-only snapshot (16 shards, 2 probes), by the builder.
bash "$here/wasm-cluster-fixture.sh" tests/data/debian-sample/packages.parquet 16 2 \
    "$WASM_FIXTURES/cluster" >/dev/null

echo "test-wasm: the www demo's data and package (scripts/serve-www.sh --prepare)" >&2
bash "$here/serve-www.sh" --prepare

echo "test-wasm: node --test runtime-wasm/js/test" >&2
status=0
# Each suite bounds itself (servers stopped in after hooks); the timeout is a last resort.
timeout 900 node --test --test-concurrency=1 runtime-wasm/js/test/*.test.mjs 2>&1 \
    | tee "$work/node-test.log" || status=$?
passed=$(grep -Eo '^# pass [0-9]+' "$work/node-test.log" | awk '{s += $3} END {print s + 0}')
failed=$(grep -Eo '^# fail [0-9]+' "$work/node-test.log" | awk '{s += $3} END {print s + 0}')
echo "wasm-js: $passed passed, $failed failed"
exit "$status"
