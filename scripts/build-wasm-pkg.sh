#!/usr/bin/env bash
# Builds the wasm reader as an ES-module package: a size-optimised release build of
# runtime-wasm for wasm32-unknown-unknown, `wasm-bindgen --target web` (one package for browser
# pages and workers, Node and workerd: the caller passes the .wasm bytes or module to `init`
# where fetching it by URL does not apply), then `wasm-opt -Oz` (binaryen from npm: Debian's is
# too old and produces modules that fail to instantiate). Prints the size, raw and gzipped.
#
# Usage: scripts/build-wasm-pkg.sh [OUT_DIR]   (default: www/pkg, gitignored)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/env.sh"
repo="$(cd "$here/.." && pwd)"
out="${1:-$repo/www/pkg}"
wasm_opt="$repo/runtime-wasm/js/node_modules/.bin/wasm-opt"
if [ ! -x "$wasm_opt" ] || ! command -v wasm-bindgen >/dev/null 2>&1; then
    bash "$here/setup.sh"
fi

# Size settings for this build only, through cargo's environment (the workspace's release
# profile, which native benchmarks use, stays as it is).
export CARGO_PROFILE_RELEASE_OPT_LEVEL=z
export CARGO_PROFILE_RELEASE_LTO=true
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
export CARGO_PROFILE_RELEASE_DEBUG=false
# SQLite features the reader never uses, compiled out (sqlite-wasm-rs enables them by default).
export SQLITE_WASM_RS_FLAGS="-USQLITE_ENABLE_FTS5 -USQLITE_ENABLE_RTREE -USQLITE_ENABLE_SESSION \
-USQLITE_ENABLE_PREUPDATE_HOOK -USQLITE_ENABLE_DBSTAT_VTAB -USQLITE_ENABLE_DBPAGE_VTAB \
-USQLITE_ENABLE_BYTECODE_VTAB -USQLITE_ENABLE_STMTVTAB -USQLITE_ENABLE_COLUMN_METADATA \
-USQLITE_ENABLE_UNLOCK_NOTIFY -USQLITE_ENABLE_OFFSET_SQL_FUNC -USQLITE_ENABLE_MATH_FUNCTIONS"

cd "$repo"
echo "build-wasm-pkg: cargo build --release -p edgeshard-wasm --target wasm32-unknown-unknown" >&2
# The zstd decoder (sidecars) at opt-level 3: 2x faster decoding for 1.6 KB gzipped.
cargo build --quiet --release -p edgeshard-wasm --target wasm32-unknown-unknown \
    --config "profile.release.package.ruzstd.opt-level=3"
raw="$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/edgeshard_wasm.wasm"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
wasm-bindgen --target web --out-dir "$stage" "$raw"
# The features rustc's wasm32 target emits, and simd128 (the exact-scan loops of
# shared::kernels); wasm-opt must be told, or it refuses the module.
"$wasm_opt" -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types --enable-multivalue --enable-simd \
    -o "$stage/edgeshard_wasm_bg.opt.wasm" "$stage/edgeshard_wasm_bg.wasm"
mv "$stage/edgeshard_wasm_bg.opt.wasm" "$stage/edgeshard_wasm_bg.wasm"

mkdir -p "$out"
rm -f "$out"/edgeshard_wasm*
cp "$stage"/edgeshard_wasm* "$out"/
cat > "$out/package.json" <<'JSON'
{
  "name": "edgeshard-wasm",
  "version": "0.1.0",
  "description": "edgeshard snapshot reader for browsers, Node and edge workers (HTTP Range over fetch)",
  "type": "module",
  "main": "edgeshard_wasm.js",
  "types": "edgeshard_wasm.d.ts",
  "files": ["edgeshard_wasm.js", "edgeshard_wasm.d.ts", "edgeshard_wasm_bg.wasm", "edgeshard_wasm_bg.wasm.d.ts"],
  "license": "Apache-2.0"
}
JSON

size() { stat -c %s "$1"; }
gz() { gzip -9 -c "$1" | wc -c; }
wasm="$out/edgeshard_wasm_bg.wasm"
js="$out/edgeshard_wasm.js"
printf 'build-wasm-pkg: %s\n' "$out" >&2
printf 'build-wasm-pkg: edgeshard_wasm_bg.wasm %d bytes raw, %d gzipped (-9)\n' "$(size "$wasm")" "$(gz "$wasm")" >&2
printf 'build-wasm-pkg: edgeshard_wasm.js %d bytes raw, %d gzipped (-9)\n' "$(size "$js")" "$(gz "$js")" >&2
