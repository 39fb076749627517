# shellcheck shell=bash
# Common environment for edgeshard scripts. Source it: `source "$(dirname "$0")/env.sh"`.
# Only exports variables; safe to source more than once and from interactive shells.

# One build directory outside the repository, for one checkout at a time: cargo names a
# workspace crate's artifacts by its path inside the workspace, so a second checkout building into
# the same directory overwrites them, and each checkout can then take the other's build of a crate
# for its own (fresh by file times). Give other checkouts their own CARGO_TARGET_DIR.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/edgeshard-target}"
# Builds with the `lancedb` feature get their own directory: LanceDB changes the features of
# shared dependencies (tokio, arrow, object_store), so in one directory each build would
# invalidate the other's artifacts. Use as `CARGO_TARGET_DIR="$EDGESHARD_LANCE_TARGET_DIR" cargo ...`.
export EDGESHARD_LANCE_TARGET_DIR="${EDGESHARD_LANCE_TARGET_DIR:-$HOME/.cache/edgeshard-target-lance}"
# Tools installed by scripts/setup.sh outside the system's packages (Python venvs), kept between
# runs like the build directories.
export EDGESHARD_TOOLS_DIR="${EDGESHARD_TOOLS_DIR:-$HOME/.cache/edgeshard-tools}"

# rustup's cargo and `cargo install`ed tools (wasm-bindgen, wasm-bindgen-test-runner).
case ":${PATH}:" in
    *":$HOME/.cargo/bin:"*) ;;
    *) export PATH="$HOME/.cargo/bin:$PATH" ;;
esac
