#!/usr/bin/env bash
# A black-box campaign against the release CLI (issue 9's "rerun"): mutated-file reads
# (mutate.py: one file of a small flat, IVF or binary-codes snapshot damaged per trial, every key
# and an exact search (codes: one re-ranking every vector) read in auto and range mode, any answer differing from the truth with exit 0 is WRONG,
# exit 101 / a signal / "panicked" is a CRASH) and publishing checks (publish.sh: odd run ids,
# --out '', cleanup and rollback variants, _CURRENT made a directory; nothing outside a run's own
# folders may go and the live snapshot must stay readable). Not part of CI (about a minute per
# 2,500 trials). Usage: bash tests/campaign/run.sh [TRIALS] [SEED]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../scripts/env.sh"
cargo build --quiet --release -p edgeshard-builder
export EDGESHARD_CLI="$CARGO_TARGET_DIR/release/edgeshard"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 - "$work" <<'PY'
import json, random, sys
random.seed(5)
with open(f"{sys.argv[1]}/recs.jsonl", "w") as f:
    for i in range(300):
        v = [round(random.gauss(0, 1), 4) for _ in range(8)]
        f.write(json.dumps({"id": i * 3, "value": f"value-{i * 3}-" + "x" * (i % 50), "emb": v,
                            "color": random.choice(["red", "blue"])}) + "\n")
PY
common=(--quiet --input "$work/recs.jsonl" --key-field id --value-field value --vector-field emb
        --payload-fields color --shards 4)
"$EDGESHARD_CLI" build "${common[@]}" --out "$work/base" >/dev/null
"$EDGESHARD_CLI" build "${common[@]}" --vector-index ivf --out "$work/baseivf" >/dev/null
"$EDGESHARD_CLI" build "${common[@]}" --quantization binary --out "$work/basebin" >/dev/null
python3 "$here/mutate.py" "${1:-2500}" "${2:-7}" "$work"
bash "$here/publish.sh" "$work"
