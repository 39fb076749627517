#!/usr/bin/env bash
# Every test that gates a landing, from a fresh clone on a fresh machine: installs prerequisites
# (scripts/setup.sh), checks formatting, builds and lints every crate (host and wasm32), runs the
# Rust tests of all crates and of the LanceDB backend, the wasm tests (Node, Chromium, workerd,
# the www demo), a bounded fuzz run, and the demo on the bundled sample. Benchmarks and long
# runs are not here: scripts/test-long.sh.
#
# Each step's wall time is printed at the end and kept in $CARGO_TARGET_DIR/test-timings.tsv
# (docs/ci.md holds the measured cold and warm tables). EDGESHARD_CARGO_TIMINGS=1 adds cargo's
# --timings report (per-crate compile times, HTML under each target dir's cargo-timings/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh

# Test runner output is also collected here, to print one total at the end.
results=$(mktemp)
mkdir -p "$CARGO_TARGET_DIR"
timings="$CARGO_TARGET_DIR/test-timings.tsv"
: >"$timings"
run_start=$SECONDS
current_step=
current_start=0

# The table of step times is printed and kept however the run ends (a failed step is marked),
# so a red run still tells what each step cost.
finish() {
    local status=$?
    if [ -n "$current_step" ]; then
        printf '%s (failed)\t%d\n' "$current_step" "$((SECONDS - current_start))" >>"$timings"
    fi
    printf '%s\t%d\n' "total" "$((SECONDS - run_start))" >>"$timings"
    echo "== wall time per step (seconds)" >&2
    column -t -s $'\t' "$timings" >&2
    rm -f "$results"
    exit "$status"
}
trap finish EXIT

# step NAME COMMAND...: runs COMMAND, records its wall time under NAME.
step() {
    current_step=$1
    shift
    current_start=$SECONDS
    echo "== $current_step" >&2
    "$@"
    printf '%s\t%d\n' "$current_step" "$((SECONDS - current_start))" >>"$timings"
    current_step=
}

cargo_timings=()
if [ "${EDGESHARD_CARGO_TIMINGS:-0}" = 1 ]; then
    cargo_timings=(--timings)
fi

step "setup (scripts/setup.sh)" bash scripts/setup.sh

# rustfmt, then what its nightly-only error_on_line_overflow would report (rustfmt.toml): code
# lines rustfmt could not fit in 100 columns, and string literals that lost a `\` continuation.
fmt_check() {
    cargo fmt --all -- --check
    git ls-files -z '*.rs' | xargs -0 python3 scripts/check-rust-lines.py
}
step "cargo fmt --check + line widths" fmt_check

# Lints without a second compilation: clippy-driver compiles the workspace's own crates inside the
# test build (what `cargo clippy` does inside a check build), so the dependencies are compiled
# once, not again in check mode. Exported for the whole run, so the later builds of this script
# (the wasm32 test and package builds, the demo's CLI) are linted too and find their artifacts
# fresh. CLIPPY_ARGS is how cargo-clippy hands clippy-driver its flags: every warning, rustc's or
# clippy's, is an error. That includes runtime-wasm for wasm32: scripts/test-wasm.sh's
# `cargo test --target wasm32-unknown-unknown` (its lib, lib tests and tests/node.rs) and the
# package build compile the crate through this wrapper, so it is linted for the target it ships
# for, at no extra compile. The lints themselves are configured in Cargo.toml
# ([workspace.lints]) and clippy.toml.
RUSTC_WORKSPACE_WRAPPER="$(rustup which clippy-driver)"
CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
export RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS

build_workspace() {
    cargo test --workspace --no-run "${cargo_timings[@]}"
}
step "build + clippy: workspace tests (host)" build_workspace

test_workspace() {
    cargo test --workspace 2>&1 | tee -a "$results"
}
step "cargo test --workspace" test_workspace

# The LanceDB backend (cargo feature `lancedb`, off by default: its dependency tree is large),
# built in its own target directory (scripts/env.sh) with the same clippy-driver wrapper. The
# bench example is compiled here (not run) so it cannot rot; it shares the test build's deps.
# Profile `lance` (Cargo.toml): dependencies at opt-level 1, which compiles LanceDB's tree
# faster than the dev profile's opt-level 2.
lance_cargo() {
    CARGO_TARGET_DIR="$EDGESHARD_LANCE_TARGET_DIR" \
        cargo "$@" --profile lance --features edgeshard-tests/lancedb,edgeshard-native/lancedb
}
build_lance() {
    lance_cargo test -p edgeshard-native -p edgeshard-tests --lib --test lancedb --no-run \
        "${cargo_timings[@]}"
    lance_cargo build -p edgeshard-tests --example lance_bench
}
step "build + clippy: LanceDB backend (feature lancedb)" build_lance

test_lance() {
    lance_cargo test -p edgeshard-native -p edgeshard-tests --lib --test lancedb 2>&1 \
        | tee -a "$results"
}
step "LanceDB backend tests" test_lance

# `edgeshard serve` fuzzed against its OpenAPI document by schemathesis, bounded (20 s of
# generated requests).
step "schemathesis: edgeshard serve vs /openapi.json" bash scripts/test-server-schema.sh 20

# The Python package (python/): built into its venv with maturin, tested with pytest.
test_python() {
    bash scripts/test-python.sh 2>&1 | tee -a "$results"
}
step "Python package (maturin, pytest)" test_python

test_wasm() {
    bash scripts/test-wasm.sh 2>&1 | tee -a "$results"
}
step "wasm tests (wasm-bindgen, Node, Chromium, workerd, www)" test_wasm

# rustdoc with every warning an error (broken or private intra-doc links, bad code blocks), for
# the host crates and for runtime-wasm as built for wasm32 (its reader is wasm32-only code).
# Documents the workspace's crates only. After the wasm tests, so the build scripts and C code
# the wasm32 builds compiled are reused; dependencies are compiled in check mode (docs/ci.md).
docs_check() {
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
    RUSTDOCFLAGS="-D warnings" cargo doc -p edgeshard-wasm --no-deps --target wasm32-unknown-unknown
}
step "cargo doc -D warnings (host, wasm32)" docs_check

# Bounded coverage-guided fuzzing of shared's parsers and page helpers: every committed seed
# (regressions included) and a few seconds of new inputs per target; the long run is
# `scripts/fuzz.sh --runs 10000000` (docs/benchmarks.md).
step "fuzz smoke (5 s per target)" bash scripts/fuzz.sh --seconds 5

step "demo on the bundled sample" bash scripts/demo.sh

# One closing line for the whole run: every test of every runner above.
passed=$(grep -Eo '[0-9]+ passed' "$results" | awk '{s += $1} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed' "$results" | awk '{s += $1} END {print s + 0}')
echo "edgeshard: $passed passed, $failed failed"
