#!/usr/bin/env bash
# Serves the www/ demo locally: builds the Debian snapshot (../shared/data/debian-minilm, 62,666
# packages, 384-d) into www/data/debian with the native CLI when it is missing, builds the wasm
# package into www/pkg, then serves www/ with nginx on 127.0.0.1 (Range and ETags, like any
# static host) and binds the shards' sidecars to nginx's ETags. Ctrl-C stops it.
#
# Usage: scripts/serve-www.sh [--prepare]    (--prepare: build data and package, do not serve)
#   PORT (default 8080), DEBIAN_MINILM (default ../shared/data/debian-minilm)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/env.sh"
repo="$(cd "$here/.." && pwd)"
www="$repo/www"
data_set="${DEBIAN_MINILM:-$repo/../shared/data/debian-minilm}"
port="${PORT:-8080}"
cd "$repo"

cargo build --quiet -p edgeshard-builder
edgeshard="$CARGO_TARGET_DIR/debug/edgeshard"

snapshot="$www/data/debian"
# Built with binary codes (--quantization binary): a first search reads the codes (~3 MB for
# all 8 shards) and the pages of 40 candidates, not the 96 MB of vectors. A snapshot from before
# (no shard.codes) is rebuilt.
if [ ! -f "$snapshot/_CURRENT" ] || ! compgen -G "$snapshot/shards/*/*/*/shard.codes" >/dev/null; then
    echo "serve-www: building the Debian snapshot into $snapshot" >&2
    rm -rf "$snapshot"
    mkdir -p "$www/data"
    "$edgeshard" build --quiet --input "$data_set/packages.parquet" \
        --key-field id --value-field text --vector-field embedding \
        --payload-fields section,priority --shards 8 --metric cosine --quantization binary \
        --out "$snapshot" >&2
fi
cp "$data_set/text_queries.jsonl" "$www/data/text_queries.jsonl"

if [ ! -f "$www/pkg/edgeshard_wasm_bg.wasm" ] || [ -n "${REBUILD_PKG:-}" ]; then
    bash "$here/build-wasm-pkg.sh" "$www/pkg"
fi
if [ "${1:-}" = "--prepare" ]; then
    exit 0
fi

nginx=$(command -v nginx || echo /usr/sbin/nginx)
state="$(mktemp -d)"
cat > "$state/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1;
error_log $state/error.log warn; pid $state/nginx.pid;
events { worker_connections 256; }
http {
  access_log off; sendfile on; default_type application/octet-stream;
  types { text/html html; application/javascript js mjs; application/wasm wasm;
          text/css css; application/json json; image/png png; }
  client_body_temp_path $state/body; proxy_temp_path $state/proxy;
  fastcgi_temp_path $state/fastcgi; uwsgi_temp_path $state/uwsgi; scgi_temp_path $state/scgi;
  server { listen 127.0.0.1:$port; root $www; }
}
CONF
"$nginx" -c "$state/nginx.conf" -p "$state" &
nginx_pid=$!
trap 'kill "$nginx_pid" 2>/dev/null; wait "$nginx_pid" 2>/dev/null; rm -rf "$state"' EXIT INT TERM
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.1
done
"$edgeshard" sidecar-bind --root "$snapshot" --host "http://127.0.0.1:$port/data/debian" >/dev/null
echo "serve-www: http://127.0.0.1:$port/ (Ctrl-C stops)" >&2
wait "$nginx_pid"
