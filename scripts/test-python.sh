#!/usr/bin/env bash
# The Python package (python/: pyo3 + maturin): builds it into the venv scripts/setup.sh made
# ($EDGESHARD_TOOLS_DIR/pyvenv: maturin, pytest, numpy, pinned), editable, with the workspace's
# debug build directory, then runs its pytest suite against the CLI on the bundled sample.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
venv="$EDGESHARD_TOOLS_DIR/pyvenv"
if [ ! -x "$venv/bin/maturin" ]; then
    echo "test-python: $venv is missing: run scripts/setup.sh" >&2
    exit 1
fi
cargo build --quiet -p edgeshard-builder
(cd python && VIRTUAL_ENV="$venv" "$venv/bin/maturin" develop --quiet >&2)
cd python
EDGESHARD_CLI="$CARGO_TARGET_DIR/debug/edgeshard" timeout 600 "$venv/bin/python" -m pytest -q tests
