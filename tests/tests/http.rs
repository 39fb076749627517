//! Snapshots on a static HTTP host (a real nginx on 127.0.0.1): download and range modes answer
//! exactly like local reads; hosts that ignore Range or compress bodies, missing objects and
//! objects replaced mid-read are reported, never misread.

use edgeshard_builder::build::build;
use edgeshard_native::{AccessMode, Error, OpenOptions, Snapshot};
use edgeshard_shared::Key;
use edgeshard_tests::http_server::{ServerMode, StaticServer};
use edgeshard_tests::*;
use rand::Rng;
use serde_json::json;
use std::path::{Path, PathBuf};

const DIM: usize = 16;

/// 2,000 records with 16-d vectors and 20..400-byte values in 4 shards; returns the root and the
/// query vectors to use.
fn build_snapshot(dir: &Path) -> (PathBuf, Vec<Vec<f32>>) {
    let mut rng = rng(21);
    let rows: Vec<_> = (0..2000i64)
        .map(|id| {
            let len = rng.random_range(20..400);
            let value: String = (0..len)
                .map(|_| rng.random_range(b'a'..=b'z') as char)
                .collect();
            json!({"id": id, "value": value, "emb": vector_json(&random_vector(&mut rng, DIM)),
                   "tag": format!("t{}", id % 7)})
        })
        .collect();
    let input = dir.join("in.jsonl");
    write_jsonl(&input, rows);
    let root = dir.join("snap");
    let mut opts = build_options(&input, &root);
    opts.shards = 4;
    opts.fields.vector_field = Some("emb".into());
    opts.fields.payload_fields = vec!["tag".into()];
    build(&opts).expect("build");
    let queries = (0..10).map(|_| random_vector(&mut rng, DIM)).collect();
    (root, queries)
}

fn open(url: &str, access: AccessMode, cache: &Path) -> Snapshot {
    open_snapshot_ok(url, access, cache, Vec::new())
}

#[test]
fn download_and_range_modes_answer_like_local_reads() {
    let dir = temp_dir();
    let (root, queries) = build_snapshot(dir.path());
    let server = StaticServer::start(&root, ServerMode::Normal);
    let local = Snapshot::open(root.to_str().unwrap()).unwrap();
    let keys: Vec<Key> = (0..2100).map(Key::Int).collect(); // 100 absent keys too
    let expected = local.multi_get(&keys).unwrap();
    for access in [AccessMode::Download, AccessMode::Range] {
        let remote = open(&server.base_url, access, &dir.path().join("cache"));
        assert_eq!(remote.access_mode(), access);
        assert_eq!(
            remote.multi_get(&keys).unwrap(),
            expected,
            "{access:?} multi_get"
        );
        for key in keys.iter().step_by(97) {
            assert_eq!(
                remote.get(key).unwrap(),
                local.get(key).unwrap(),
                "{access:?} get {key}"
            );
        }
        for q in &queries {
            assert_eq!(
                remote.search(q, 10, None).unwrap(),
                local.search(q, 10, None).unwrap(),
                "{access:?} search"
            );
        }
        let stats = remote.stats();
        assert!(
            stats.requests > 2 && stats.bytes > 0,
            "{access:?}: {stats:?}"
        );
    }
    // Small snapshot: auto downloads for searches, reads lookups by range.
    let auto = open(
        &server.base_url,
        AccessMode::Auto,
        &dir.path().join("cache2"),
    );
    assert_eq!(auto.access_mode(), AccessMode::Download);
    assert_eq!(auto.lookup_access_mode(), AccessMode::Range);
}

#[test]
fn auto_reads_a_lookup_by_range_and_a_search_downloads_for_the_next_lookups() {
    let dir = temp_dir();
    let (root, queries) = build_snapshot(dir.path());
    let server = StaticServer::start(&root, ServerMode::Normal);
    let local = Snapshot::open(root.to_str().unwrap()).unwrap();
    let cache = dir.path().join("cache");
    let auto = open(&server.base_url, AccessMode::Auto, &cache);
    let shard_bytes = |key: i64| {
        let db_id = local.route(&Key::Int(key)).unwrap();
        local
            .manifest()
            .shards
            .iter()
            .find(|s| s.db_id == db_id)
            .unwrap()
            .db_bytes
    };
    // One key on a shard not yet open: pages, not the shard.
    let before = auto.stats();
    assert_eq!(
        auto.get(&Key::Int(7)).unwrap(),
        local.get(&Key::Int(7)).unwrap()
    );
    let lookup = auto.stats() - before;
    assert!(
        lookup.bytes * 2 < shard_bytes(7),
        "a get read {} bytes of a {}-byte shard",
        lookup.bytes,
        shard_bytes(7)
    );
    assert!(lookup.requests >= 2, "{lookup:?}");
    // A search downloads every shard (each one whole: as many requests as shards).
    let before = auto.stats();
    assert_eq!(
        auto.search(&queries[0], 10, None).unwrap(),
        local.search(&queries[0], 10, None).unwrap()
    );
    let search = auto.stats() - before;
    let total: u64 = local.manifest().shards.iter().map(|s| s.db_bytes).sum();
    assert_eq!(
        search.requests,
        local.manifest().shards.len() as u64,
        "{search:?}"
    );
    assert_eq!(search.bytes, total, "{search:?}");
    // ... after which every lookup is local, the range-read shard of key 7 included.
    let keys: Vec<Key> = (0..2100).map(Key::Int).collect();
    let before = auto.stats();
    assert_eq!(
        auto.multi_get(&keys).unwrap(),
        local.multi_get(&keys).unwrap()
    );
    assert_eq!((auto.stats() - before).requests, 0);
    // A new reader with the same cache finds the downloaded shards: lookups cost no request.
    let again = open(&server.base_url, AccessMode::Auto, &cache);
    let before = again.stats();
    assert_eq!(
        again.multi_get(&keys).unwrap(),
        local.multi_get(&keys).unwrap()
    );
    assert_eq!((again.stats() - before).requests, 0);
}

#[test]
fn range_mode_fetches_pages_not_shards() {
    let dir = temp_dir();
    let (root, _) = build_snapshot(dir.path());
    let server = StaticServer::start(&root, ServerMode::Normal);
    let remote = open(
        &server.base_url,
        AccessMode::Range,
        &dir.path().join("cache"),
    );
    let opened = remote.stats();
    assert_eq!(
        opened.requests, 2,
        "open reads _CURRENT and the manifest only"
    );
    remote.get(&Key::Int(5)).unwrap().expect("key 5 is present");
    let first = remote.stats() - opened;
    let total_bytes: u64 = remote.manifest().shards.iter().map(|s| s.db_bytes).sum();
    assert!(
        first.bytes * 4 < total_bytes,
        "a point lookup read {} of {total_bytes} bytes",
        first.bytes
    );
    // Warm: the same key again costs no request.
    let before = remote.stats();
    remote.get(&Key::Int(5)).unwrap();
    assert_eq!((remote.stats() - before).requests, 0);
}

#[test]
fn a_host_that_ignores_range_is_reported() {
    let dir = temp_dir();
    let (root, _) = build_snapshot(dir.path());
    let server = StaticServer::start(&root, ServerMode::IgnoresRange);
    let remote = open(
        &server.base_url,
        AccessMode::Range,
        &dir.path().join("cache"),
    );
    let err = remote.get(&Key::Int(1)).unwrap_err().to_string();
    assert!(err.contains("Range"), "{err}");
    // Download mode needs no Range support and still works there.
    let download = open(
        &server.base_url,
        AccessMode::Download,
        &dir.path().join("cache"),
    );
    assert!(download.get(&Key::Int(1)).unwrap().is_some());
}

#[test]
fn a_host_that_compresses_bodies_is_reported() {
    let dir = temp_dir();
    let (root, _) = build_snapshot(dir.path());
    let server = StaticServer::start(&root, ServerMode::Gzip);
    let err = Snapshot::open_with(&server.base_url, OpenOptions::default())
        .err()
        .expect("a gzip-labelled _CURRENT must not be read as JSON")
        .to_string();
    assert!(err.contains("Content-Encoding"), "{err}");
}

#[test]
fn missing_objects_are_not_found() {
    let dir = temp_dir();
    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    let server = StaticServer::start(&dir.path().join("empty"), ServerMode::Normal);
    let err = Snapshot::open(&server.base_url)
        .err()
        .expect("no _CURRENT there");
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

#[test]
fn a_shard_replaced_mid_read_is_an_error_not_mixed_bytes() {
    let dir = temp_dir();
    let (root, _) = build_snapshot(dir.path());
    let server = StaticServer::start(&root, ServerMode::Normal);
    let remote = open(
        &server.base_url,
        AccessMode::Range,
        &dir.path().join("cache"),
    );
    // Open every shard (pins its ETag), then replace the shard files on the server.
    for key in 0..40 {
        remote.get(&Key::Int(key)).unwrap();
    }
    let snap = Snapshot::open(root.to_str().unwrap()).unwrap();
    let run = snap.manifest().meta.run_id.clone();
    for shard in &snap.manifest().shards {
        let path = root.join(format!(
            "shards/run_id={run}/db={:05}/attempt=00/shard.db",
            shard.db_id
        ));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0u8; 4096]); // new size, so a new ETag
        std::fs::write(&path, bytes).unwrap();
    }
    // Keys not read yet need new pages: every such read is conditional on the old ETag.
    let failures = (1000..1400)
        .filter_map(|key| remote.get(&Key::Int(key)).err())
        .collect::<Vec<_>>();
    assert!(
        !failures.is_empty(),
        "reads after the replacement must fail"
    );
    for e in &failures {
        assert!(e.to_string().contains("changed"), "{e}");
    }
}

/// A cold lookup on a shard not yet opened reads the shard's HEAD and its key index together,
/// then exactly one page: 3 requests, 2 rounds, a few KB. Without key indexes (an older build,
/// or a shardyfusion one), the sidecar plays that part once it is bound to the host's ETags.
#[test]
fn key_indexes_and_bound_sidecars_make_a_cold_lookup_one_ranged_read_over_http() {
    let dir = temp_dir();
    let (root, _) = build_snapshot(dir.path());
    let server = StaticServer::start(&root, ServerMode::Normal);
    let local = Snapshot::open(root.to_str().unwrap()).unwrap();
    let cold_cost = |key: i64| {
        let remote = open(
            &server.base_url,
            AccessMode::Range,
            &dir.path().join("cache"),
        );
        assert_eq!(remote.stats().requests, 2, "open: _CURRENT and manifest");
        let opened = remote.stats();
        let value = remote.get(&Key::Int(key)).unwrap();
        assert_eq!(value, local.get(&Key::Int(key)).unwrap(), "key {key}");
        remote.stats() - opened
    };
    for key in (0..2000).step_by(111).chain([5000, 1 << 40]) {
        let cost = cold_cost(key);
        // HEAD of shard.db and its key index together, then the one page the index names.
        assert_eq!(cost.requests, 3, "key {key}: {cost:?}");
        assert_eq!(cost.rounds, 2, "key {key}: {cost:?}");
        assert_eq!(cost.key_index_lookups, 1, "key {key}: {cost:?}");
        assert_eq!(cost.key_index_fallbacks, 0, "key {key}: {cost:?}");
        assert!(cost.bytes <= 24 * 1024, "key {key}: {cost:?}");
    }
    // Without key indexes, a sidecar not bound to nginx's ETags is not used either: the header
    // block is read.
    let mut removed = 0;
    for relative in walk(&root) {
        if relative.ends_with("shard.keyindex") {
            std::fs::remove_file(root.join(relative)).unwrap();
            removed += 1;
        }
    }
    assert_eq!(removed, 4, "one key index per shard");
    let unbound = cold_cost(3);
    assert!(
        unbound.bytes >= 65536 && unbound.key_index_fallbacks == 1,
        "without a key index or bound sidecar the header block is read: {unbound:?}"
    );
    let out = sidecar_bind(&root, &server.base_url);
    assert_eq!(json_lines(&out).len(), 4, "{out}");
    for key in (0..2000).step_by(111) {
        let cost = cold_cost(key);
        // HEAD of shard.db with the (missing) key index, the sidecar, then one ranged read:
        // the leaf.
        assert_eq!(cost.requests, 4, "key {key}: {cost:?}");
        assert_eq!(cost.rounds, 3, "key {key}: {cost:?}");
        assert!(
            cost.pinned_hits > 0 && cost.bytes < 32 * 1024,
            "key {key}: {cost:?}"
        );
    }
}

#[test]
fn sidecar_bind_refuses_a_host_serving_other_files() {
    let dir = temp_dir();
    let (root, _) = build_snapshot(dir.path());
    let other = temp_dir();
    let (other_root, _) = {
        let mut rng = rng(5);
        let rows: Vec<_> = (0..10i64).map(|id| json!({"id": id, "value": "x", "emb": vector_json(&random_vector(&mut rng, DIM))})).collect();
        let input = other.path().join("in.jsonl");
        write_jsonl(&input, rows);
        let r = other.path().join("snap");
        let mut opts = build_options(&input, &r);
        opts.shards = 4;
        opts.fields.vector_field = Some("emb".into());
        build(&opts).unwrap();
        (r, ())
    };
    // Serve a different snapshot under the same paths: copy ours over theirs' root layout.
    let server = StaticServer::start(&other_root, ServerMode::Normal);
    let err = run_cli(&[
        "sidecar-bind",
        "--root",
        root.to_str().unwrap(),
        "--host",
        &server.base_url,
    ])
    .expect_err("a host serving other files must be refused");
    assert!(
        err.contains("not found") || err.contains("another snapshot"),
        "{err}"
    );
}

#[test]
fn concurrent_downloads_into_one_cache_are_safe() {
    let dir = temp_dir();
    let (root, _) = build_snapshot(dir.path());
    let server = StaticServer::start(&root, ServerMode::Normal);
    let cache = dir.path().join("shared-cache");
    let keys: Vec<Key> = (0..2000).map(Key::Int).collect();
    let expected = Snapshot::open(root.to_str().unwrap())
        .unwrap()
        .multi_get(&keys)
        .unwrap();
    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let snap = open(&server.base_url, AccessMode::Download, &cache);
                    snap.multi_get(&keys).unwrap()
                })
            })
            .collect();
        for reader in readers {
            assert_eq!(reader.join().unwrap(), expected);
        }
    });
    // No temp files are left behind, one shard.db per shard.
    let files = walk(&cache);
    assert!(files.iter().all(|f| !f.ends_with(".tmp")), "{files:?}");
    assert_eq!(files.iter().filter(|f| f.ends_with("shard.db")).count(), 4);
}

#[test]
fn auto_reads_large_snapshots_by_range() {
    let dir = temp_dir();
    let (root, _) = build_snapshot(dir.path());
    // Claim one shard is 17 MiB (>= 16 MiB): auto must choose range. The manifest is rewritten
    // through the shared model, so it stays valid.
    let snap = Snapshot::open(root.to_str().unwrap()).unwrap();
    let manifest_path = root.join(snap.manifest_path());
    let mut manifest = snap.manifest().clone();
    manifest.shards[0].db_bytes = 17 << 20;
    std::fs::write(&manifest_path, manifest.to_sqlite_bytes().unwrap()).unwrap();
    let server = StaticServer::start(&root, ServerMode::Normal);
    let remote = open(
        &server.base_url,
        AccessMode::Auto,
        &dir.path().join("cache"),
    );
    assert_eq!(remote.access_mode(), AccessMode::Range);
    assert!(remote.get(&Key::Int(1)).unwrap().is_some());
    // Local roots are read in place whatever their size.
    let local = Snapshot::open(root.to_str().unwrap()).unwrap();
    assert_eq!(local.access_mode(), AccessMode::Download);
}
