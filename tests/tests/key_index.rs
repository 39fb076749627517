//! Key indexes (`shard.keyindex`, issue 12): a range reader's lookup reads the one page the
//! index names, answers exactly like SQLite on the whole file (keys on leaf pages and on the
//! interior cells of the `WITHOUT ROWID` tree, absent keys, values spilling into overflow
//! chains), costs one round on an open shard, and falls back to the sidecar, answers unchanged,
//! when an index is missing, damaged or belongs to another shard.

use edgeshard_builder::build::build;
use edgeshard_native::{AccessMode, Snapshot};
use edgeshard_shared::Key;
use edgeshard_tests::http_server::{ServerMode, StaticServer};
use edgeshard_tests::proxy::DelayProxy;
use edgeshard_tests::*;
use rand::Rng;
use serde_json::json;
use std::path::{Path, PathBuf};

const SHARDS: usize = 4;

/// A KV snapshot of 4,000 string keys of 1..40 bytes (long shared prefixes, so separators are
/// not trivial) and values of 0..300 bytes, every 37th of 5,000..20,000 bytes (overflow chains
/// of 2..5 pages at page size 4096). Returns the root and the keys.
fn build_snapshot(dir: &Path) -> (PathBuf, Vec<String>) {
    let mut rng = rng(12);
    let mut keys = Vec::new();
    let rows: Vec<_> = (0..4000usize)
        .map(|i| {
            let key = format!(
                "user/{:04}/{}",
                i % 997,
                "x".repeat(rng.random_range(0..25))
            );
            let key = format!("{key}{i}");
            let len = match i % 37 {
                0 => rng.random_range(5_000..20_000),
                _ => rng.random_range(0..300),
            };
            let value: String = (0..len)
                .map(|_| rng.random_range(b'a'..=b'z') as char)
                .collect();
            keys.push(key.clone());
            json!({"id": key, "value": value})
        })
        .collect();
    let input = dir.join("in.jsonl");
    write_jsonl(&input, rows);
    let root = dir.join("snap");
    let mut opts = build_options(&input, &root);
    opts.shards = SHARDS as u32;
    build(&opts).expect("build");
    (root, keys)
}

fn key_index_files(root: &Path) -> Vec<PathBuf> {
    let files: Vec<PathBuf> = walk(root)
        .into_iter()
        .filter(|relative| relative.ends_with("shard.keyindex"))
        .map(|relative| root.join(relative))
        .collect();
    assert_eq!(files.len(), SHARDS, "one key index per shard");
    files
}

/// Every key, and keys that are absent (below, between and above the stored ones), read by
/// range through the key indexes, one at a time and all at once, equal the whole-file answers.
fn assert_answers_like_whole_files(root: &Path, keys: &[String], cache: &Path) -> Snapshot {
    let whole = Snapshot::open(root.to_str().unwrap()).unwrap();
    let ranged = open_snapshot_ok(root.to_str().unwrap(), AccessMode::Range, cache, Vec::new());
    let mut probes: Vec<Key> = keys.iter().map(|k| Key::Str(k.clone())).collect();
    for absent in [
        "",
        "a",
        "user/",
        "user/0001/",
        "user/0500/xx",
        "zzz",
        "user/0996/~",
    ] {
        probes.push(Key::Str(absent.to_string()));
    }
    for (i, key) in keys.iter().enumerate().step_by(7) {
        probes.push(Key::Str(format!("{key}!")));
        probes.push(Key::Str(key[..key.len() - 1].to_string() + &i.to_string()));
    }
    for key in &probes {
        assert_eq!(
            ranged.get(key).unwrap(),
            whole.get(key).unwrap(),
            "key {key:?}"
        );
    }
    assert_eq!(
        ranged.multi_get(&probes).unwrap(),
        whole.multi_get(&probes).unwrap()
    );
    ranged
}

#[test]
fn lookups_through_key_indexes_answer_like_whole_files() {
    let dir = temp_dir();
    let (root, keys) = build_snapshot(dir.path());
    let files = key_index_files(&root);
    let ranged = assert_answers_like_whole_files(&root, &keys, &dir.path().join("c1"));
    let stats = ranged.stats();
    assert!(stats.key_index_lookups > keys.len() as u64, "{stats:?}");
    assert_eq!(stats.key_index_fallbacks, 0, "{stats:?}");
    // The index is a small fraction of its sidecar.
    for file in &files {
        let index = std::fs::metadata(file).unwrap().len();
        let sidecar = std::fs::metadata(file.with_file_name("shard.sidecar"))
            .unwrap()
            .len();
        assert!(index * 3 < sidecar, "{index} vs sidecar {sidecar}");
    }
}

#[test]
fn damaged_missing_or_swapped_key_indexes_fall_back_to_the_sidecar() {
    let dir = temp_dir();
    let (root, keys) = build_snapshot(dir.path());
    let files = key_index_files(&root);
    // Shard 0's index under shard 1 and back: bound to another file's content hash.
    let (a, b) = (
        std::fs::read(&files[0]).unwrap(),
        std::fs::read(&files[1]).unwrap(),
    );
    std::fs::write(&files[0], &b).unwrap();
    std::fs::write(&files[1], &a).unwrap();
    // Shard 2's damaged in the middle, shard 3's gone.
    let mut c = std::fs::read(&files[2]).unwrap();
    let middle = c.len() / 2;
    c[middle] ^= 0x01;
    std::fs::write(&files[2], c).unwrap();
    std::fs::remove_file(&files[3]).unwrap();
    let ranged = assert_answers_like_whole_files(&root, &keys, &dir.path().join("c2"));
    let stats = ranged.stats();
    assert_eq!(stats.key_index_lookups, 0, "{stats:?}");
    assert_eq!(stats.key_index_fallbacks, SHARDS as u64, "{stats:?}");
}

/// Over HTTP: a cold lookup is the shard's HEAD and key index together, then one page (an
/// overflowing value: its chain, usually in one more round); on an open shard, one round.
#[test]
fn a_cold_lookup_over_http_is_two_rounds_and_an_open_shard_one() {
    let dir = temp_dir();
    let (root, keys) = build_snapshot(dir.path());
    let server = StaticServer::start(&root, ServerMode::Normal);
    let whole = Snapshot::open(root.to_str().unwrap()).unwrap();
    let cache = dir.path().join("c3");
    let mut overflow_rounds = Vec::new();
    for (i, key) in keys.iter().enumerate().step_by(97) {
        let key = Key::Str(key.clone());
        let remote = open_snapshot_ok(&server.base_url, AccessMode::Range, &cache, Vec::new());
        let opened = remote.stats();
        let value = remote.get(&key).unwrap();
        assert_eq!(value, whole.get(&key).unwrap(), "key {key:?}");
        let cold = remote.stats() - opened;
        let large = value.as_ref().is_some_and(|v| v.len() > 4000);
        if large {
            overflow_rounds.push(cold.rounds);
        } else {
            assert_eq!((cold.requests, cold.rounds), (3, 2), "key {i}: {cold:?}");
            assert!(cold.bytes <= 24 * 1024, "key {i}: {cold:?}");
        }
        // Another key of the same shard: one round, one page.
        let before = remote.stats();
        let next = keys
            .iter()
            .map(|k| Key::Str(k.clone()))
            .filter(|k| remote.route(k).unwrap() == remote.route(&key).unwrap())
            .find(|k| whole.get(k).unwrap().is_some_and(|v| v.len() < 1000) && *k != key)
            .unwrap();
        assert_eq!(remote.get(&next).unwrap(), whole.get(&next).unwrap());
        let warm = remote.stats() - before;
        assert!(warm.rounds <= 1 && warm.requests <= 1, "key {i}: {warm:?}");
        assert!(warm.bytes <= 4096, "key {i}: {warm:?}");
    }
    assert!(!overflow_rounds.is_empty(), "no overflowing value sampled");
    // HEAD + index, the cell's page, its chain (consecutive pages, asked for together).
    assert!(
        overflow_rounds.iter().all(|r| *r <= 3),
        "{overflow_rounds:?}"
    );
}

/// Range reads reuse their HTTP connections (keep-alive): 300 lookups, cold and warm, over every
/// shard of one handle open a handful of TCP connections, not one per request.
#[test]
fn range_reads_reuse_connections() {
    let dir = temp_dir();
    let (root, keys) = build_snapshot(dir.path());
    let server = StaticServer::start(&root, ServerMode::Normal);
    let port: u16 = server
        .base_url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap();
    let proxy = DelayProxy::start(port, std::time::Duration::ZERO);
    let cache = dir.path().join("c4");
    let snap = open_snapshot_ok(&proxy.endpoint, AccessMode::Range, &cache, Vec::new());
    for key in keys.iter().step_by(13).take(300) {
        snap.get(&Key::Str(key.clone())).unwrap();
    }
    let traffic = proxy.traffic();
    assert!(traffic.requests > 150, "{traffic:?}");
    // The shards' opens fetch HEAD and key index in parallel, so a few connections are open at
    // once; after that they are reused.
    assert!(traffic.connections <= 2 * SHARDS as u64, "{traffic:?}");
}

/// A key index rewritten with one leaf segment left out, its checksums and binding to shard.db
/// all recomputed, would place that leaf's keys on the previous leaf and answer "not found":
/// the manifest row's hash of the key index refuses it, and the sidecar answers.
#[test]
fn a_key_index_resealed_without_a_segment_is_refused() {
    use edgeshard_builder::sidecar_writer::encode_key_index_content;
    use edgeshard_shared::key_index::analyze;
    let dir = temp_dir();
    let (root, keys) = build_snapshot(dir.path());
    let files = key_index_files(&root);
    let db_path = files[0].with_file_name("shard.db");
    let db = std::fs::read(&db_path).unwrap();
    let kv_root: u32 = rusqlite::Connection::open(&db_path)
        .unwrap()
        .query_row(
            "SELECT rootpage FROM sqlite_master WHERE name = 'kv'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let mut content = analyze(&db, kv_root).unwrap().unwrap();
    // A leaf segment in the middle (first == last only for interior cells).
    let victim = (content.segments.len() / 2..content.segments.len())
        .find(|&i| content.segments[i].first != content.segments[i].last)
        .unwrap();
    let removed = content.segments.remove(victim);
    std::fs::write(&files[0], encode_key_index_content(&content, &db).unwrap()).unwrap();
    let whole = Snapshot::open(root.to_str().unwrap()).unwrap();
    let ranged = open_snapshot_ok(
        root.to_str().unwrap(),
        AccessMode::Range,
        &dir.path().join("c5"),
        vec![],
    );
    let key = Key::Str(String::from_utf8(removed.first.clone()).unwrap());
    assert!(keys
        .iter()
        .any(|k| k.as_bytes() == removed.first.as_slice()));
    let want = whole.get(&key).unwrap();
    assert!(want.is_some());
    assert_eq!(ranged.get(&key).unwrap(), want);
    assert_eq!(
        ranged.stats().key_index_fallbacks,
        1,
        "{:?}",
        ranged.stats()
    );
}
