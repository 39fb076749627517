#!/usr/bin/env bash
# `edgeshard serve` against its own OpenAPI document, fuzzed by schemathesis (PyPI, pinned,
# installed by scripts/setup.sh in its own venv): a real server process on 127.0.0.1 over a
# snapshot of the bundled sample, every operation of /openapi.json, bounded in time.
#
# Checks: all of schemathesis's, but `positive_data_acceptance`: a request can be valid by the
# schema and still wrong for the snapshot served (a vector of another dimension, an integer key
# for a snapshot of string keys, `exact` together with `nprobes`); the server answers those with
# a 400 naming the problem, which the schema declares. Everything else must hold: no 5xx, only
# documented statuses and content types, responses matching their schemas, schema-invalid
# requests refused.
#
# Usage: scripts/test-server-schema.sh [SECONDS]   (time budget of the fuzzing, default 20)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
budget=${1:-20}
schemathesis="$EDGESHARD_TOOLS_DIR/schemathesis/bin/schemathesis"
if [ ! -x "$schemathesis" ]; then
    echo "test-server-schema: $schemathesis is missing: run scripts/setup.sh" >&2
    exit 1
fi
cargo build --quiet -p edgeshard-builder
edgeshard="$CARGO_TARGET_DIR/debug/edgeshard"
work="$(mktemp -d)"
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

"$edgeshard" build --input tests/data/debian-sample/packages.parquet \
    --key-field id --value-field text --vector-field embedding \
    --payload-fields section,priority --shards 4 --out "$work/snap" >/dev/null
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$edgeshard" serve --root "$work/snap" --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
        break
    fi
    sleep 0.1
done
curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || {
    echo "test-server-schema: the server did not become ready:" >&2
    cat "$work/server.log" >&2
    exit 1
}

echo "test-server-schema: schemathesis $("$schemathesis" --version | awk '{print $NF}') against http://127.0.0.1:$port/openapi.json (${budget} s)" >&2
cd "$work"
timeout $((budget + 120)) "$schemathesis" run "http://127.0.0.1:$port/openapi.json" \
    --checks all --exclude-checks positive_data_acceptance \
    --max-examples 20 --seed 1 --max-time "$budget" --request-timeout 10 --workers 1
