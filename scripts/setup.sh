#!/usr/bin/env bash
# Installs what building and testing edgeshard needs on a Debian 12 machine (root, rustup, node,
# npm). Idempotent: each step checks first and does nothing when its tool is already there, so a
# second run takes a second or two.
#   - apt: clang (sqlite-wasm-rs compiles SQLite's C for wasm32 with it),
#          protobuf-compiler + libprotobuf-dev (LanceDB's build runs protoc, which needs the
#          well-known types such as google/protobuf/empty.proto from libprotobuf-dev),
#          nginx-light (the real static HTTP server, with Range, that HTTP tests run on 127.0.0.1),
#          chromium (the headless browser the wasm package's page/worker tests drive),
#          wrk (the HTTP load generator of the server benchmark, tests/examples/server_bench.rs)
#   - pip: moto[server] (the S3-compatible server S3 tests run on 127.0.0.1); schemathesis,
#     pinned, in its own venv under $EDGESHARD_TOOLS_DIR (scripts/test-server-schema.sh);
#     maturin, pytest and numpy, pinned, in a venv there (scripts/test-python.sh)
#   - rustup target wasm32-unknown-unknown
#   - wasm-bindgen-cli, exactly the version runtime-wasm pins (wasm-bindgen and the CLI must match)
#   - npm (runtime-wasm/js, from its package-lock.json): binaryen (wasm-opt; Debian's is too old
#     and produces modules that fail to instantiate), playwright-core (drives /usr/bin/chromium;
#     it never downloads a browser), miniflare (runs workerd, the Cloudflare Workers runtime),
#     sql.js-httpvfs (the reader runtime-wasm/js/bench-cold-kv.mjs compares cold lookups with)
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

# Must equal the `wasm-bindgen = "=..."` pin in runtime-wasm/Cargo.toml.
WASM_BINDGEN_VERSION=0.2.130

log() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

# --- apt packages -------------------------------------------------------------------------------
# package:command pairs; a package counts as present when dpkg says so or its command is on PATH
# (an empty command: dpkg alone decides).
missing=()
for entry in clang:clang protobuf-compiler:protoc libprotobuf-dev: nginx-light:nginx chromium:chromium \
    wrk:wrk; do
    pkg=${entry%%:*}
    cmd=${entry#*:}
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' \
        || command -v "$cmd" >/dev/null 2>&1; then
        log "apt: $pkg present"
    else
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "apt: installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >&2
fi

# --- moto: the S3-compatible server S3 tests run on 127.0.0.1 -----------------------------------
if python3 -c "import moto.server, flask" >/dev/null 2>&1; then
    log "pip: moto[server] present"
else
    log "pip: installing moto[server]"
    python3 -m pip install -q "moto[server]>=5" >&2
fi

# --- schemathesis: fuzzes `edgeshard serve` against its OpenAPI document (test-server-schema.sh) --
# In its own venv (its dependencies must not move moto's), pinned.
schemathesis_version=4.32.5
schemathesis_venv="${EDGESHARD_TOOLS_DIR:-$HOME/.cache/edgeshard-tools}/schemathesis"
if "$schemathesis_venv/bin/schemathesis" --version 2>/dev/null | grep -q "$schemathesis_version"; then
    log "pip: schemathesis $schemathesis_version present"
else
    log "pip: installing schemathesis $schemathesis_version (venv $schemathesis_venv)"
    python3 -m venv "$schemathesis_venv" >&2
    "$schemathesis_venv/bin/pip" install -q "schemathesis==$schemathesis_version" >&2
fi

# --- the Python package's build and test tools (scripts/test-python.sh), pinned, own venv ------
pyvenv="${EDGESHARD_TOOLS_DIR:-$HOME/.cache/edgeshard-tools}/pyvenv"
py_tools=("maturin==1.16.0" "pytest==8.4.2" "numpy==2.2.6")
if [ -x "$pyvenv/bin/maturin" ] && [ "$(cat "$pyvenv/.edgeshard-tools" 2>/dev/null)" = "${py_tools[*]}" ]; then
    log "pip: ${py_tools[*]} present"
else
    log "pip: installing ${py_tools[*]} (venv $pyvenv)"
    python3 -m venv "$pyvenv" >&2
    "$pyvenv/bin/pip" install -q "${py_tools[@]}" >&2
    echo "${py_tools[*]}" >"$pyvenv/.edgeshard-tools"
fi

# --- Rust wasm target ---------------------------------------------------------------------------
if rustup target list --installed | grep -qx 'wasm32-unknown-unknown'; then
    log "rustup: wasm32-unknown-unknown present"
else
    log "rustup: adding target wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown >&2
fi

# --- clippy and rustfmt (test.sh lints; the LanceDB step runs clippy-driver directly) --------
for component in clippy rustfmt; do
    if rustup component list --installed | grep -q "^${component}"; then
        log "rustup: ${component} present"
    else
        log "rustup: adding component ${component}"
        rustup component add "${component}" >&2
    fi
done

# --- wasm-bindgen-cli ---------------------------------------------------------------------------
# No --locked: the CLI's lockfile wants a webpki-roots version the reachable registry may lack.
# Takes several minutes the first time; the binaries land in ~/.cargo/bin.
have_cli_version() {
    local tool=$1
    command -v "$tool" >/dev/null 2>&1 \
        && [ "$("$tool" --version 2>/dev/null | awk '{print $2}')" = "$WASM_BINDGEN_VERSION" ]
}
if have_cli_version wasm-bindgen && command -v wasm-bindgen-test-runner >/dev/null 2>&1; then
    log "cargo: wasm-bindgen-cli $WASM_BINDGEN_VERSION present"
else
    log "cargo: installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (takes several minutes)"
    # CARGO_TARGET_DIR is not for this build: keep the project's build directory free of it.
    env -u CARGO_TARGET_DIR cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force >&2
fi

# --- Node (runs the wasm tests) -----------------------------------------------------------------
if command -v node >/dev/null 2>&1; then
    log "node: $(node --version) present"
else
    log "node: missing; wasm-bindgen-test-runner needs Node (20 or newer) on PATH"
    exit 1
fi

# --- npm tooling of the wasm package's tests (runtime-wasm/js/node_modules) --------------------
# Present when every tool the scripts call is there and the install is not older than the lock.
js_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/runtime-wasm/js"
js_bin="$js_dir/node_modules/.bin"
if [ -x "$js_bin/wasm-opt" ] && [ -f "$js_dir/node_modules/playwright-core/package.json" ] \
    && [ -x "$js_bin/workerd" ] && [ -f "$js_dir/node_modules/miniflare/package.json" ] \
    && [ -f "$js_dir/node_modules/sql.js-httpvfs/package.json" ] \
    && [ ! "$js_dir/package-lock.json" -nt "$js_dir/node_modules/.package-lock.json" ]; then
    log "npm: runtime-wasm/js tooling present"
else
    log "npm: installing runtime-wasm/js tooling (npm ci)"
    # PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: belt and braces, playwright-core downloads nothing anyway.
    (cd "$js_dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund >&2)
fi

log "done"
