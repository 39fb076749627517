//! On wasm32, compiles sqlite-vec's C (from the `sqlite-vec` crate, the same version the native
//! builder uses) against sqlite-wasm-rs's SQLite headers and libc shim, so `vec0` shards can be
//! read in browsers and edge runtimes. Native builds need nothing here: runtime-native links
//! the `sqlite-vec` crate directly.
//!
//! Neither crate exports its source directory to other build scripts, so both are found in
//! cargo's registry by their pinned versions (cargo has downloaded them: sqlite-wasm-rs is a
//! dependency on wasm32, sqlite-vec a build-dependency of this crate).

use std::path::{Path, PathBuf};

const SQLITE_VEC: &str = "sqlite-vec-0.1.9";
const SQLITE_WASM_RS: &str = "sqlite-wasm-rs-0.6.3";

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if !target.starts_with("wasm32") {
        return;
    }
    let vec_dir = registry_crate(SQLITE_VEC);
    let wasm_dir = registry_crate(SQLITE_WASM_RS);
    let shim = wasm_dir.join("shim");
    println!("cargo::rerun-if-changed=c/libc_extra.c");
    cc::Build::new()
        .file(vec_dir.join("sqlite-vec.c"))
        .file("c/libc_extra.c")
        // sqlite-wasm-rs's sqlite3.h first: the API vec0 is compiled against is the one linked.
        .include(wasm_dir.join("sqlite3"))
        .include(&shim)
        .include(shim.join("musl/arch/generic"))
        .include(shim.join("musl/include"))
        .flag("-include")
        .flag(shim.join("wasm-shim.h").to_string_lossy().as_ref())
        .define("SQLITE_CORE", None)
        .define("__COSMOPOLITAN__", None)
        .define("SQLITE_VEC_OMIT_FS", None)
        .warnings(false)
        .compile("sqlite_vec_wasm");
}

/// `$CARGO_HOME/registry/src/<index>/<name>`.
fn registry_crate(name: &str) -> PathBuf {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_default();
    let src = cargo_home.join("registry").join("src");
    let found = std::fs::read_dir(&src)
        .into_iter()
        .flatten()
        .flatten()
        .map(|index| index.path().join(name))
        .find(|dir| dir.is_dir());
    match found {
        Some(dir) => dir,
        None => panic!(
            "cannot find {name} under {}: run `cargo fetch` (it is a pinned dependency)",
            src.display()
        ),
    }
}
