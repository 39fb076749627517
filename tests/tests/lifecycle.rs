//! Versions over time: fallback to an older manifest when the newest is corrupt, refresh that
//! swaps atomically (and keeps serving when the new manifest is bad), history on S3.

use edgeshard_builder::build::build;
use edgeshard_native::{LiveSnapshot, OpenOptions, Refresh, Root, Snapshot};
use edgeshard_shared::Key;
use edgeshard_tests::s3_server::S3Server;
use edgeshard_tests::*;
use serde_json::json;
use std::path::Path;

/// Builds version `tag` of a 50-key snapshot into `root` (values "<tag>-<key>").
fn publish(dir: &Path, root: &Path, tag: &str) -> String {
    let input = dir.join(format!("{tag}.jsonl"));
    write_jsonl(
        &input,
        (0..50i64).map(|id| json!({"id": id, "value": format!("{tag}-{id}")})),
    );
    let mut opts = build_options(&input, root);
    opts.shards = 2;
    // Manifest folder names carry microsecond timestamps; keep versions strictly ordered.
    std::thread::sleep(std::time::Duration::from_millis(2));
    build(&opts).expect("build").manifest
}

fn value(snap: &Snapshot, key: i64) -> String {
    String::from_utf8(snap.get(&Key::Int(key)).unwrap().unwrap()).unwrap()
}

fn corrupt(root: &Path, manifest: &str) {
    std::fs::write(root.join(manifest), b"SQLite format 3\0 but then garbage").unwrap();
}

#[test]
fn a_corrupt_current_manifest_falls_back_to_the_newest_good_one() {
    let dir = temp_dir();
    let root = dir.path().join("snap");
    let v1 = publish(dir.path(), &root, "v1");
    let v2 = publish(dir.path(), &root, "v2");
    corrupt(&root, &v2);
    let snap = Snapshot::open(root.to_str().unwrap()).unwrap();
    assert_eq!(snap.manifest_path(), v1);
    assert_eq!(value(&snap, 7), "v1-7");
    // Four bad versions in a row exceed the fallback depth of 3: a clear error.
    let bad: Vec<String> = (3..7)
        .map(|i| publish(dir.path(), &root, &format!("v{i}")))
        .collect();
    for m in &bad {
        corrupt(&root, m);
    }
    let err = Snapshot::open(root.to_str().unwrap())
        .err()
        .expect("too many corrupt versions");
    assert!(err.to_string().contains("manifest"), "{err}");
}

#[test]
fn refresh_swaps_atomically_and_keeps_serving_on_a_bad_publish() {
    let dir = temp_dir();
    let root = dir.path().join("snap");
    publish(dir.path(), &root, "v1");
    let live = LiveSnapshot::open(root.to_str().unwrap(), OpenOptions::default()).unwrap();
    assert_eq!(live.refresh().unwrap(), Refresh::Unchanged);
    let in_flight = live.current();
    let v2 = publish(dir.path(), &root, "v2");
    assert_eq!(
        live.refresh().unwrap(),
        Refresh::Swapped {
            manifest: v2.clone()
        }
    );
    assert_eq!(value(&live.current(), 3), "v2-3");
    // A request that started before the swap finishes on its version.
    assert_eq!(value(&in_flight, 3), "v1-3");
    let v3 = publish(dir.path(), &root, "v3");
    corrupt(&root, &v3);
    assert!(
        live.refresh().is_err(),
        "a refresh onto a corrupt manifest reports it"
    );
    assert_eq!(
        live.current().manifest_path(),
        v2,
        "and keeps serving the old one"
    );
    assert_eq!(value(&live.current(), 3), "v2-3");
}

#[test]
fn history_lists_versions_on_s3() {
    let dir = temp_dir();
    let root = dir.path().join("snap");
    let v1 = publish(dir.path(), &root, "v1");
    let v2 = publish(dir.path(), &root, "v2");
    let server = S3Server::start();
    server.create_bucket("history");
    server.upload_dir(&root, "history", "p");
    let remote = Root::parse_with("s3://history/p", &server.storage_options()).unwrap();
    let listed: Vec<String> = remote
        .list_manifests()
        .unwrap()
        .into_iter()
        .map(|m| m.manifest_path)
        .collect();
    assert_eq!(listed, vec![v2, v1]);
}
