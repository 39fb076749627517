//! The wasm-bindgen API under Node (wasm-bindgen-test's default environment):
//! `cargo test -p edgeshard-wasm --target wasm32-unknown-unknown`, with
//! `wasm-bindgen-test-runner` as the target's runner (see `.cargo/config.toml`).
//! On native targets this file compiles to nothing.
#![cfg(target_arch = "wasm32")]
// Integration tests stop where they fail: unwrap, expect and panic are how they assert.
// (clippy.toml's allow-*-in-tests covers #[test] functions, not #[wasm_bindgen_test] ones.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use edgeshard_wasm::{parse_manifest, parse_sidecar, route_key};
use serde_json::Value;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

/// shardyfusion's manifest example (format 4): 4 slots, shards 0 and 2, u64be keys.
const MANIFEST: &[u8] = include_bytes!("../../tests/data/shardyfusion/manifest_v4_example.sqlite");

#[wasm_bindgen_test]
fn parses_the_shardyfusion_manifest() {
    let text = parse_manifest(MANIFEST).expect("fixture manifest parses");
    let summary: Value = serde_json::from_str(&text).expect("summary is JSON");
    assert_eq!(summary["num_dbs"], 4);
    assert_eq!(summary["key_encoding"], "u64be");
    assert_eq!(summary["shard_ids"], serde_json::json!([0, 2]));
    assert_eq!(summary["run_id"], "0123456789abcdef0123456789abcdef");
    assert_eq!(summary["format_version"], 4);
}

#[wasm_bindgen_test]
fn corrupted_manifest_is_an_error() {
    let mut bytes = MANIFEST.to_vec();
    bytes[0] ^= 0xff;
    assert!(parse_manifest(&bytes).is_err());
    assert!(parse_manifest(&[]).is_err());
}

#[wasm_bindgen_test]
fn integer_keys_route_like_shardyfusion() {
    let shards: Vec<u32> = (0..10)
        .map(|i| route_key(JsValue::from(i), 3).expect("integer key routes"))
        .collect();
    assert_eq!(shards, [2, 2, 1, 1, 0, 2, 0, 2, 0, 0]);
    // A bigint is the same integer key as a number.
    let big: Vec<u32> = (0..10i64)
        .map(|i| route_key(JsValue::from(i), 3).expect("bigint key routes"))
        .collect();
    assert_eq!(big, shards);
    // Golden table (spec section 4): i64::MAX and -1.
    assert_eq!(route_key(JsValue::from(i64::MAX), 16).ok(), Some(6));
    assert_eq!(route_key(JsValue::from(-1), 16).ok(), Some(3));
}

#[wasm_bindgen_test]
fn string_and_bytes_keys_route_like_shardyfusion() {
    assert_eq!(route_key(JsValue::from_str("user-1"), 16).ok(), Some(9));
    let bytes = js_sys::Uint8Array::from(&[1u8, 2, 3][..]);
    assert_eq!(route_key(bytes.into(), 16).ok(), Some(11));
}

#[wasm_bindgen_test]
fn bad_keys_and_zero_shards_are_errors() {
    assert!(route_key(JsValue::from(1.5), 3).is_err());
    assert!(route_key(JsValue::from(9_007_199_254_740_992.0), 3).is_err());
    assert!(route_key(JsValue::NULL, 3).is_err());
    assert!(route_key(JsValue::TRUE, 3).is_err());
    assert!(route_key(JsValue::from(1), 0).is_err());
}

/// shardyfusion's sidecar for its sqlite-vec fixture shard, bound to `"etag-1"`.
const SIDECAR: &[u8] =
    include_bytes!("../../tests/data/shardyfusion/sqlite_vec_cosine_dim4_shard.sidecar");

#[wasm_bindgen_test]
fn parses_the_shardyfusion_sidecar_in_wasm() {
    let summary: Value = serde_json::from_str(&parse_sidecar(SIDECAR).expect("parses")).unwrap();
    assert_eq!(summary["tag"], "\"etag-1\"");
    assert_eq!(summary["page_size"], 4096);
    assert_eq!(summary["pinned_pages"], serde_json::json!([1, 2]));
    assert_eq!(summary["chains"], 2);
    assert_eq!(summary["chain_pages"], 6);
    let mut corrupt = SIDECAR.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert!(
        parse_sidecar(&corrupt).is_err(),
        "checksum catches the flipped byte"
    );
}

/// shardyfusion's sqlite-vec shard: 2,000 KV rows (u64be keys 0..1999, values `v{i}`), 50
/// cosine vectors of dim 4, even ids int, odd ids "id-N".
const SHARD: &[u8] =
    include_bytes!("../../tests/data/shardyfusion/sqlite_vec_cosine_dim4_shard.db");

/// The fixture shard, loaded into an in-memory SQLite inside the wasm module.
fn fixture_shard() -> rusqlite::Connection {
    edgeshard_wasm::sqlite_vec_ext::register();
    let mut conn = rusqlite::Connection::open_in_memory().expect("in-memory SQLite in wasm");
    conn.deserialize_read_exact("main", SHARD, SHARD.len(), true)
        .expect("deserialize the fixture shard");
    conn
}

#[wasm_bindgen_test]
fn sqlite_vec_runs_in_wasm_with_the_builders_version() {
    let conn = fixture_shard();
    let version: String = conn
        .query_row("SELECT vec_version()", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, "v0.1.9");
    let value: Vec<u8> = conn
        .query_row(
            "SELECT v FROM kv WHERE k = ?1",
            [42u64.to_be_bytes()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(value, b"v42");
}

#[wasm_bindgen_test]
fn vec0_knn_in_wasm_equals_brute_force_on_the_fixture() {
    let conn = fixture_shard();
    let mut stmt = conn
        .prepare("SELECT rowid, embedding FROM vec_index")
        .unwrap();
    let vectors: Vec<(i64, Vec<f32>)> = stmt
        .query_map([], |r| {
            let blob: Vec<u8> = r.get(1)?;
            let v = blob
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Ok((r.get(0)?, v))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(vectors.len(), 50);
    for (qi, (_, query)) in vectors.iter().enumerate().step_by(7) {
        let mut expected: Vec<(f64, i64)> = vectors
            .iter()
            .map(|(id, v)| (edgeshard_shared::Metric::Cosine.score(query, v), *id))
            .collect();
        expected.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let bytes: Vec<u8> = query.iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut knn = conn
            .prepare("SELECT rowid, distance FROM vec_index WHERE embedding MATCH ?1 AND k = 5")
            .unwrap();
        let got: Vec<(i64, f64)> = knn
            .query_map(rusqlite::params![bytes], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got.len(), 5);
        for (rank, ((id, distance), (want_score, _))) in got.iter().zip(&expected).enumerate() {
            assert!(
                (distance - want_score).abs() < 1e-5,
                "query {qi} rank {rank}: id {id}"
            );
        }
        assert_eq!(
            got[0].0, vectors[qi].0,
            "a vector is its own nearest neighbour"
        );
    }
}
