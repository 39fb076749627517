#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer through cargo-fuzz, on stable Rust with --sanitizer none)
# of edgeshard-shared's parsers and validators: manifest, _CURRENT, sidecar, NPY, filters,
# recorded paths and SQLite page bytes (shared/fuzz/fuzz_targets/). A crash, panic or failed
# assertion stops the run and leaves the input under $CARGO_TARGET_DIR/fuzz/artifacts/<target>/.
#
#   bash scripts/fuzz.sh --seconds 10            # bounded smoke run per target (CI, test.sh)
#   bash scripts/fuzz.sh --runs 10000000         # the documented long run (scripts/test-long.sh)
#   bash scripts/fuzz.sh --runs 1000 manifest    # one target
#
# The corpus of each target starts from the committed seeds (shared/fuzz/seeds/<target>/) and
# grows in $CARGO_TARGET_DIR/fuzz/corpus/<target>/, kept between runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh

limit=(-max_total_time=10)
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) limit=("-max_total_time=$2"); shift 2 ;;
        --runs) limit=("-runs=$2"); shift 2 ;;
        -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
        -*) echo "usage: bash scripts/fuzz.sh [--seconds N | --runs N] [target...]" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
all=(manifest current sidecar npy filter layout pages)
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

# cargo-fuzz from crates.io, once (cached in ~/.cargo/bin).
fuzz_version=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$fuzz_version"; then
    cargo install --locked cargo-fuzz --version "$fuzz_version"
fi

work="$CARGO_TARGET_DIR/fuzz"
mkdir -p "$work"
fuzz_dir=shared/fuzz
# RUSTC_WORKSPACE_WRAPPER (test.sh's clippy-driver) must not wrap the instrumented build.
build() {
    env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS \
        cargo fuzz "$1" --fuzz-dir "$fuzz_dir" --sanitizer none --release \
        --target-dir "$work/target" "${@:2}"
}
for target in "${targets[@]}"; do
    corpus="$work/corpus/$target"
    artifacts="$work/artifacts/$target/"
    mkdir -p "$corpus" "$artifacts"
    cp -n "$fuzz_dir/seeds/$target/"* "$corpus/" 2>/dev/null || true
    echo "== fuzz $target (${limit[*]})" >&2
    log="$work/$target.log"
    if ! build run "$target" "$corpus" -- "${limit[@]}" -artifact_prefix="$artifacts" \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "fuzz: $target failed; the input is under $artifacts" >&2
        exit 1
    fi
    # One line per target: executions and coverage, from libFuzzer's final stats.
    runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo '?')
    cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -n 1 | grep -Eo '[0-9]+' || echo '?')
    echo "fuzz $target: $runs executions, coverage $cov, 0 crashes"
done
