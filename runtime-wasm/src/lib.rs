//! edgeshard for wasm32 (browsers, Node, edge workers), through wasm-bindgen.
//!
//! [`api`] is the JavaScript API: `await Snapshot.open(url, options)`, then `get`, `getMany`,
//! `search`, `info`, `stats`. A snapshot is read lazily over HTTP Range requests through the
//! global `fetch`, with SQLite and sqlite-vec running inside the module:
//!
//! - [`snapshot`]: open (`_CURRENT`, manifest, vector routing artifact), shards opened on first
//!   use (sidecar + first block in one round), and the async driver that runs statements over
//!   the page cache and fetches what they missed, all shards in one round;
//! - `edgeshard_shared::pages` and `edgeshard_shared::sqlite_vfs` (shared with runtime-native's
//!   range mode): pinned pages, the LRU page cache under a byte budget, miss recording,
//!   read-ahead, checked stores, and the read-only SQLite VFS over those pages;
//! - [`http`]: GETs with retries, Range checks, ETag pinning;
//! - `edgeshard_shared::btree`: enough of SQLite's page format to plan a cold search's reads.
//!
//! Manifest model, routing, key encodings, sidecar parsing, vector probes and the top-k merge
//! come from `edgeshard-shared`. The crate is also an `rlib` and compiles on native targets (the
//! pure modules are tested there); the I/O modules exist only on wasm32.

// The links above name the wasm32-only modules: they resolve in the wasm32 documentation
// (`cargo doc --target wasm32-unknown-unknown`), not in a host build where those modules are
// compiled out.
#![cfg_attr(not(target_arch = "wasm32"), allow(rustdoc::broken_intra_doc_links))]

pub mod error;

#[cfg(target_arch = "wasm32")]
pub mod api;
#[cfg(target_arch = "wasm32")]
pub mod http;
#[cfg(target_arch = "wasm32")]
pub mod snapshot;

pub use error::{Error, Result};

use edgeshard_shared::manifest::Strategy;
use edgeshard_shared::routing::shard_for_key;
use edgeshard_shared::{Key, Manifest};
use serde_json::{json, Value};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// Largest integer a JS `number` represents exactly (`Number.MAX_SAFE_INTEGER`).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Parses and validates a manifest (the bytes of its SQLite file) and returns a JSON summary:
///
/// ```json
/// {"format_version": 4, "run_id": "...", "created_at": "...", "num_dbs": 4,
///  "key_encoding": "u64be", "key_col": "_key", "s3_prefix": "s3://...",
///  "sharding": "hash", "shard_ids": [0, 2], "total_rows": 55,
///  "vector": null | {"dim": 4, "metric": "cosine", "backend": "sqlite-vec" | null, "unified": false}}
/// ```
///
/// Returned as JSON text (use `JSON.parse`). Throws an `Error` when the bytes are not a valid
/// format-4 manifest.
#[wasm_bindgen]
pub fn parse_manifest(bytes: &[u8]) -> Result<String, JsError> {
    manifest_summary(bytes)
        .map(|summary| summary.to_string())
        .map_err(|e| JsError::new(&e.to_string()))
}

/// The shard slot (`0..num_dbs`) `key` routes to, byte-exact with shardyfusion
/// (`xxh3_64(canonical_bytes(key)) % num_dbs`).
///
/// `key` may be:
/// - a `number` that is an integer within `Number.MAX_SAFE_INTEGER`, or a `bigint` within the
///   signed 64-bit range: an integer key;
/// - a `string`: a string key (hashed as its UTF-8 bytes);
/// - a `Uint8Array`: a bytes key.
///
/// The key's JS type matters: `7` and `"7"` route differently. For snapshots with integer key
/// encodings (`u64be`, `u32be`) pass numbers or bigints. Throws an `Error` for any other value or
/// when `num_dbs` is 0.
#[wasm_bindgen]
pub fn route_key(key: JsValue, num_dbs: u32) -> Result<u32, JsError> {
    let key = key_from_js(key).map_err(|why| JsError::new(&why))?;
    route(&key, num_dbs).map_err(|e| JsError::new(&e.to_string()))
}

/// Summary of a page-cache sidecar (`shard.sidecar`, format v8): `{"tag", "page_size",
/// "pinned_pages": [..], "chains": n, "chain_pages": n}` as JSON text. This is what the range
/// reader pins at open; parsing it here shows the sidecar code (pure-Rust zstd) runs in wasm.
/// Throws an `Error` for a malformed sidecar (a reader then falls back to plain page reads).
#[wasm_bindgen]
pub fn parse_sidecar(bytes: &[u8]) -> Result<String, JsError> {
    sidecar_summary(bytes)
        .map(|summary| summary.to_string())
        .map_err(|e| JsError::new(&e.to_string()))
}

/// Plain-Rust form of [`parse_sidecar`].
pub fn sidecar_summary(bytes: &[u8]) -> edgeshard_shared::Result<Value> {
    let sidecar = edgeshard_shared::sidecar::Sidecar::parse(bytes)?;
    Ok(serde_json::json!({
        "tag": sidecar.tag,
        "page_size": sidecar.content.page_size,
        "pinned_pages": sidecar.content.pages.keys().collect::<Vec<_>>(),
        "chains": sidecar.content.chains.len(),
        "chain_pages": sidecar.content.chains.iter().map(Vec::len).sum::<usize>(),
    }))
}

/// Plain-Rust form of [`parse_manifest`]: the summary as a JSON value.
pub fn manifest_summary(bytes: &[u8]) -> edgeshard_shared::Result<Value> {
    let manifest = Manifest::from_sqlite_bytes(bytes)?;
    let meta = &manifest.meta;
    let vector = manifest.vector_spec()?.map(|spec| {
        json!({
            "dim": spec.dim,
            "metric": spec.metric.as_str(),
            "backend": spec.backend.map(|b| b.as_str()),
            "unified": spec.unified,
        })
    });
    Ok(json!({
        "format_version": meta.format_version,
        "run_id": meta.run_id,
        "created_at": meta.created_at,
        "num_dbs": meta.num_dbs,
        "key_encoding": meta.key_encoding.as_str(),
        "key_col": meta.key_col,
        "s3_prefix": meta.s3_prefix,
        "sharding": match meta.sharding.strategy {
            Strategy::Hash => "hash",
            Strategy::Cel => "cel",
        },
        "shard_ids": manifest.shards.iter().map(|s| s.db_id).collect::<Vec<_>>(),
        "total_rows": manifest.shards.iter().map(|s| s.row_count).sum::<u64>(),
        "vector": vector,
    }))
}

/// Plain-Rust form of [`route_key`].
pub fn route(key: &Key, num_dbs: u32) -> edgeshard_shared::Result<u32> {
    shard_for_key(key, num_dbs)
}

/// The [`Key`] a JS value stands for (see [`route_key`]), or why it stands for none.
pub(crate) fn key_from_js(value: JsValue) -> Result<Key, String> {
    if let Some(text) = value.as_string() {
        return Ok(Key::Str(text));
    }
    if let Some(n) = value.as_f64() {
        if n.fract() != 0.0 || n.abs() > MAX_SAFE_INTEGER {
            return Err(format!(
                "number key {n} is not an integer within Number.MAX_SAFE_INTEGER \
                 (pass a bigint for larger integers)"
            ));
        }
        // Exact: |n| <= 2^53 - 1 and n has no fraction (`-0` becomes 0).
        return Ok(Key::Int(n as i64));
    }
    if value.is_bigint() {
        return i64::try_from(value)
            .map(Key::Int)
            .map_err(|_| "bigint key is outside the signed 64-bit range".to_string());
    }
    if let Some(bytes) = value.dyn_ref::<js_sys::Uint8Array>() {
        return Ok(Key::Bytes(bytes.to_vec()));
    }
    Err(format!(
        "key must be a number, bigint, string or Uint8Array, got {}",
        value.js_typeof().as_string().unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &[u8] =
        include_bytes!("../../tests/data/shardyfusion/manifest_v4_example.sqlite");

    #[test]
    fn summary_of_the_shardyfusion_fixture() {
        let summary = manifest_summary(MANIFEST).unwrap();
        assert_eq!(summary["num_dbs"], 4);
        assert_eq!(summary["key_encoding"], "u64be");
        assert_eq!(summary["shard_ids"], json!([0, 2]));
        assert_eq!(summary["run_id"], "0123456789abcdef0123456789abcdef");
        assert_eq!(summary["total_rows"], 55);
    }

    #[test]
    fn corrupted_manifest_is_an_error() {
        let mut bytes = MANIFEST.to_vec();
        bytes[0] ^= 0xff;
        assert!(manifest_summary(&bytes).is_err());
    }

    #[test]
    fn routing_matches_golden_values() {
        let shards: Vec<u32> = (0..10).map(|i| route(&Key::Int(i), 3).unwrap()).collect();
        assert_eq!(shards, [2, 2, 1, 1, 0, 2, 0, 2, 0, 0]);
        assert_eq!(route(&Key::Str("user-1".into()), 16).unwrap(), 9);
        assert!(route(&Key::Int(1), 0).is_err());
    }
}

/// sqlite-vec inside the wasm module (compiled by `build.rs` from the same sqlite-vec release
/// the native builder links), registered with SQLite as an auto-extension.
#[cfg(target_arch = "wasm32")]
pub mod sqlite_vec_ext {
    use rusqlite::ffi;
    use std::ffi::{c_char, c_int};
    use std::sync::Once;

    extern "C" {
        fn sqlite3_vec_init(
            db: *mut ffi::sqlite3,
            error: *mut *mut c_char,
            api: *const ffi::sqlite3_api_routines,
        ) -> c_int;
    }

    static REGISTER: Once = Once::new();

    /// Makes `vec0` available to every connection opened afterwards. Idempotent.
    pub fn register() {
        // SAFETY: sqlite3_vec_init has the entry-point signature SQLite expects; SQLite only
        // stores the pointer and calls it on each new connection.
        REGISTER.call_once(|| unsafe {
            ffi::sqlite3_auto_extension(Some(sqlite3_vec_init));
        });
    }
}
