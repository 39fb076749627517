//! Snapshots on S3 (a real S3-compatible server, moto, on 127.0.0.1): download and range modes
//! answer exactly like local reads, and the sidecar written at build time is used, because the
//! store's ETag of a single-part upload is the MD5 the builder bound it to.

use edgeshard_builder::build::build;
use edgeshard_native::{AccessMode, OpenOptions, Snapshot};
use edgeshard_shared::Key;
use edgeshard_tests::s3_server::S3Server;
use edgeshard_tests::*;
use rand::Rng;
use serde_json::json;
use std::path::{Path, PathBuf};

fn build_snapshot(dir: &Path) -> (PathBuf, Vec<Vec<f32>>) {
    let mut rng = rng(31);
    let rows: Vec<_> = (0..1500i64)
        .map(|id| {
            let len = rng.random_range(20..300);
            let value: String = (0..len)
                .map(|_| rng.random_range(b'a'..=b'z') as char)
                .collect();
            json!({"id": id, "value": value, "emb": vector_json(&random_vector(&mut rng, 8))})
        })
        .collect();
    let input = dir.join("in.jsonl");
    write_jsonl(&input, rows);
    let root = dir.join("snap");
    let mut opts = build_options(&input, &root);
    opts.shards = 3;
    opts.fields.vector_field = Some("emb".into());
    build(&opts).expect("build");
    let queries = (0..5).map(|_| random_vector(&mut rng, 8)).collect();
    (root, queries)
}

fn open(server: &S3Server, url: &str, access: AccessMode, cache: &Path) -> Snapshot {
    open_snapshot_ok(url, access, cache, server.storage_options())
}

#[test]
fn s3_snapshots_read_like_local_ones_in_both_modes() {
    let dir = temp_dir();
    let (root, queries) = build_snapshot(dir.path());
    let server = S3Server::start();
    server.create_bucket("snapshots");
    server.upload_dir(&root, "snapshots", "team/users");
    let url = "s3://snapshots/team/users";
    let local = Snapshot::open(root.to_str().unwrap()).unwrap();
    let keys: Vec<Key> = (0..1550).map(Key::Int).collect();
    let expected = local.multi_get(&keys).unwrap();
    for access in [AccessMode::Download, AccessMode::Range] {
        let remote = open(&server, url, access, &dir.path().join("cache"));
        assert_eq!(remote.multi_get(&keys).unwrap(), expected, "{access:?}");
        for q in &queries {
            assert_eq!(
                remote.search(q, 5, None).unwrap(),
                local.search(q, 5, None).unwrap()
            );
        }
    }
}

#[test]
fn a_missing_bucket_or_prefix_is_not_found() {
    let server = S3Server::start();
    server.create_bucket("empty");
    let dir = temp_dir();
    let err = Snapshot::open_with(
        "s3://empty/nothing/here",
        OpenOptions {
            storage_options: server.storage_options(),
            cache_dir: Some(dir.path().into()),
            ..OpenOptions::default()
        },
    )
    .err()
    .expect("no _CURRENT");
    assert!(
        matches!(err, edgeshard_native::Error::NotFound { .. }),
        "{err}"
    );
}

#[test]
fn cold_lookups_on_s3_use_the_sidecar_one_leaf_read_each() {
    let dir = temp_dir();
    let (root, _) = build_snapshot(dir.path());
    let server = S3Server::start();
    server.create_bucket("snapshots");
    server.upload_dir(&root, "snapshots", "s");
    for key in (0..1500).step_by(150) {
        // A fresh snapshot per key: nothing cached.
        let remote = open(
            &server,
            "s3://snapshots/s",
            AccessMode::Range,
            &dir.path().join("c"),
        );
        let opened = remote.stats();
        assert_eq!(opened.requests, 2, "open: _CURRENT and manifest");
        assert!(remote.get(&Key::Int(key)).unwrap().is_some());
        let cost = remote.stats() - opened;
        // HEAD of shard.db (its ETag), the sidecar (tag == ETag, so it is used), one leaf page.
        assert_eq!(cost.requests, 3, "key {key}: {cost:?}");
        assert!(
            cost.bytes < 32 * 1024,
            "key {key}: {} bytes: the sidecar and one 4 KiB leaf, not a header block",
            cost.bytes
        );
        // The next key on the same shard, on another leaf, costs one ranged read.
        let before = remote.stats();
        let db_id = remote.route(&Key::Int(key)).unwrap();
        let other = (key + 1..key + 1500)
            .map(Key::Int)
            .find(|k| remote.route(k).unwrap() == db_id)
            .unwrap();
        remote.get(&other).unwrap();
        assert!((remote.stats() - before).requests <= 1);
    }
}
