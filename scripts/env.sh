# shellcheck shell=bash
# Common environment for edgeshard scripts. Source it: `source "$(dirname "$0")/env.sh"`.
# Only exports variables; safe to source more than once and from interactive shells.

# One shared build directory outside the repository (several checkouts reuse the same artifacts).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/edgeshard-target}"
# Builds with the `lancedb` feature get their own directory: LanceDB changes the features of
# shared dependencies (tokio, arrow, object_store), so in one directory each build would
# invalidate the other's artifacts. Use as `CARGO_TARGET_DIR="$EDGESHARD_LANCE_TARGET_DIR" cargo ...`.
export EDGESHARD_LANCE_TARGET_DIR="${EDGESHARD_LANCE_TARGET_DIR:-$HOME/.cache/edgeshard-target-lance}"

# rustup's cargo and `cargo install`ed tools (wasm-bindgen, wasm-bindgen-test-runner).
case ":${PATH}:" in
    *":$HOME/.cargo/bin:"*) ;;
    *) export PATH="$HOME/.cargo/bin:$PATH" ;;
esac
