# shellcheck shell=bash
# Common environment for edgeshard scripts. Source it: `source "$(dirname "$0")/env.sh"`.
# Only exports variables; safe to source more than once and from interactive shells.

# One shared build directory outside the repository (several checkouts reuse the same artifacts).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/edgeshard-target}"

# rustup's cargo and `cargo install`ed tools (wasm-bindgen, wasm-bindgen-test-runner).
case ":${PATH}:" in
    *":$HOME/.cargo/bin:"*) ;;
    *) export PATH="$HOME/.cargo/bin:$PATH" ;;
esac
