//! On wasm32, compiles sqlite-vec's C (from the `sqlite-vec` crate, the same version the native
//! builder uses) against sqlite-wasm-rs's SQLite headers and libc shim, so `vec0` shards can be
//! read in browsers and edge runtimes. Native builds need nothing here: runtime-native links
//! the `sqlite-vec` crate directly.
//!
//! Neither crate exports its source directory to other build scripts, so this script asks cargo
//! where they are: `cargo metadata` (the same cargo that runs this build, from the `CARGO`
//! variable) resolves this package's `sqlite-vec` and `sqlite-wasm-rs` dependencies to the
//! exact packages this build uses and reports each one's `manifest_path`. That works with any
//! registry layout: the default one, a vendored directory or any other source replacement.
//!
//! A build script reports failure by panicking, so the panics here are the error path.
#![allow(clippy::panic, clippy::expect_used)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if !target.starts_with("wasm32") {
        return;
    }
    let deps = DependencySources::locate(&["sqlite_vec", "sqlite_wasm_rs"]);
    let vec_dir = deps.dir("sqlite_vec");
    let wasm_dir = deps.dir("sqlite_wasm_rs");
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

/// The source directories of some of this package's dependencies, by crate name (`sqlite_vec`).
struct DependencySources(Vec<(String, PathBuf)>);

impl DependencySources {
    /// Runs `cargo metadata` and resolves `names` among this package's dependencies.
    fn locate(names: &[&str]) -> Self {
        let manifest_dir = PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .expect("cargo sets CARGO_MANIFEST_DIR for build scripts"),
        );
        let manifest = manifest_dir.join("Cargo.toml");
        let metadata = cargo_metadata(&manifest);
        if let Some(root) = metadata["workspace_root"].as_str() {
            // A changed lock file may mean other versions of the sources.
            println!(
                "cargo::rerun-if-changed={}",
                Path::new(root).join("Cargo.lock").display()
            );
        }
        let packages = metadata["packages"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let manifest_of = |id: &str| {
            packages
                .iter()
                .find(|p| p["id"] == id)
                .and_then(|p| p["manifest_path"].as_str())
                .map(PathBuf::from)
        };
        let this_id = packages
            .iter()
            .find(|p| p["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path()))
            .and_then(|p| p["id"].as_str())
            .unwrap_or_else(|| {
                panic!(
                    "`cargo metadata` does not list the package of {}",
                    manifest.display()
                )
            });
        let nodes = metadata["resolve"]["nodes"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let deps = nodes
            .iter()
            .find(|n| n["id"] == this_id)
            .and_then(|n| n["deps"].as_array())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let found = names
            .iter()
            .map(|&name| {
                let dir = deps
                    .iter()
                    .find(|d| d["name"] == name)
                    .and_then(|d| d["pkg"].as_str())
                    .and_then(manifest_of)
                    .and_then(|path| path.parent().map(Path::to_path_buf))
                    .unwrap_or_else(|| {
                        panic!(
                            "`cargo metadata` resolves no dependency `{name}` of {} to a \
                             package with a manifest",
                            manifest.display()
                        )
                    });
                (name.to_string(), dir)
            })
            .collect();
        DependencySources(found)
    }

    /// The directory holding dependency `name`'s Cargo.toml (one of the names `locate` resolved).
    fn dir(&self, name: &str) -> &Path {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, dir)| dir.as_path())
            .unwrap_or_else(|| panic!("dependency `{name}` was not located"))
    }
}

/// `cargo metadata` of the workspace holding `manifest`. Offline first (after `cargo fetch`, or
/// with a vendored registry, everything is local); if that fails (a partial download), once more
/// allowing cargo to download what is missing. `--locked`: the lock file is never changed.
fn cargo_metadata(manifest: &Path) -> Value {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let run = |offline: bool| {
        let mut cmd = Command::new(&cargo);
        cmd.args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--manifest-path",
        ]);
        cmd.arg(manifest);
        if offline {
            cmd.arg("--offline");
        }
        match cmd.output() {
            Ok(out) if out.status.success() => serde_json::from_slice::<Value>(&out.stdout)
                .map_err(|e| format!("its output is not JSON: {e}")),
            Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
            Err(e) => Err(format!("cannot run {}: {e}", Path::new(&cargo).display())),
        }
    };
    run(true)
        .or_else(|offline| run(false).map_err(|online| (offline, online)))
        .unwrap_or_else(|(offline, online)| {
            panic!(
                "`cargo metadata` failed, so the sources of sqlite-vec and sqlite-wasm-rs cannot \
                 be found (run `cargo fetch`).\noffline: {offline}\nonline: {online}"
            )
        })
}
