#!/usr/bin/env bash
# What the benchmarks need beyond scripts/setup.sh (not CI): the S3-compatible server the S3
# latency benchmarks run on, tests/s3-server (s3s-fs with TCP_NODELAY), built from crates.io with
# its committed Cargo.lock into $EDGESHARD_TOOLS_DIR/s3-server (about 100 s on 2 cores the first
# time; a second run checks a stamp and does nothing). Idempotent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
bash scripts/setup.sh
log() { printf 'setup-bench: %s\n' "$*" >&2; }

root="$EDGESHARD_TOOLS_DIR/s3-server"
stamp="$root/source.sha256"
source_hash=$(cat tests/s3-server/Cargo.toml tests/s3-server/Cargo.lock tests/s3-server/src/*.rs \
    | sha256sum | cut -d' ' -f1)
if [ -x "$root/bin/edgeshard-s3-server" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$source_hash" ]; then
    log "edgeshard-s3-server present"
else
    log "building edgeshard-s3-server (tests/s3-server) into $root"
    CARGO_TARGET_DIR="$EDGESHARD_TOOLS_DIR/s3-server-target" \
        cargo install --quiet --locked --force --path tests/s3-server --root "$root" >&2
    echo "$source_hash" >"$stamp"
fi
