//! The storage issue's acceptance checks at their stated scale: 10,000 random keys and 100 vector
//! queries answer identically in download and range mode, over S3 (moto) and over HTTP (nginx);
//! rollback works on S3 through the conditional `_CURRENT` write.

use edgeshard_builder::build::build;
use edgeshard_native::{AccessMode, OpenOptions, Snapshot};
use edgeshard_shared::Key;
use edgeshard_tests::http_server::{ServerMode, StaticServer};
use edgeshard_tests::s3_server::S3Server;
use edgeshard_tests::*;
use rand::Rng;
use serde_json::json;
use std::path::Path;

const RECORDS: i64 = 12_000;
const DIM: usize = 16;

/// 12,000 records, 16-d vectors, in 4 shards; `out` is a local dir or an s3:// URL.
fn build_into(dir: &Path, out: &str, storage_options: Vec<(String, String)>, tag: &str) -> String {
    let mut rng = rng(77);
    let input = dir.join(format!("{tag}.jsonl"));
    write_jsonl(
        &input,
        (0..RECORDS).map(|id| {
            let len = rng.random_range(10..120);
            let value: String = (0..len)
                .map(|_| rng.random_range(b'a'..=b'z') as char)
                .collect();
            json!({"id": id, "value": format!("{tag}:{value}"),
                   "emb": vector_json(&random_vector(&mut rng, DIM))})
        }),
    );
    let mut opts = build_options(&input, Path::new("unused"));
    opts.out = out.to_string();
    opts.storage_options = storage_options;
    opts.shards = 4;
    opts.fields.vector_field = Some("emb".into());
    build(&opts).expect("build").run_id
}

fn check_modes_agree(url: &str, storage_options: Vec<(String, String)>, cache: &Path) {
    let mut rng = rng(9);
    // 10,000 random keys, some absent.
    let keys: Vec<Key> = (0..10_000)
        .map(|_| Key::Int(rng.random_range(0..RECORDS + 500)))
        .collect();
    let queries: Vec<Vec<f32>> = (0..100).map(|_| random_vector(&mut rng, DIM)).collect();
    let open = |access| {
        Snapshot::open_with(
            url,
            OpenOptions {
                access,
                cache_dir: Some(cache.to_path_buf()),
                storage_options: storage_options.clone(),
                ..OpenOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("open {url} {access:?}: {e}"))
    };
    let (download, range) = (open(AccessMode::Download), open(AccessMode::Range));
    let values = download.multi_get(&keys).unwrap();
    assert!(values.iter().filter(|v| v.is_some()).count() > 9000);
    assert_eq!(range.multi_get(&keys).unwrap(), values, "multi_get differs");
    for key in keys.iter().take(500) {
        assert_eq!(
            range.get(key).unwrap(),
            download.get(key).unwrap(),
            "get {key}"
        );
    }
    for q in &queries {
        assert_eq!(
            range.search(q, 10, None).unwrap(),
            download.search(q, 10, None).unwrap()
        );
    }
}

#[test]
fn ten_thousand_keys_and_a_hundred_queries_agree_over_http() {
    let dir = temp_dir();
    let root = dir.path().join("snap");
    build_into(dir.path(), root.to_str().unwrap(), Vec::new(), "v1");
    let server = StaticServer::start(&root, ServerMode::Normal);
    check_modes_agree(&server.base_url, Vec::new(), &dir.path().join("cache"));
}

#[test]
fn ten_thousand_keys_and_a_hundred_queries_agree_over_s3_and_rollback_works_there() {
    let dir = temp_dir();
    let server = S3Server::start();
    server.create_bucket("accept");
    let url = "s3://accept/snap";
    let v1 = build_into(dir.path(), url, server.storage_options(), "v1");
    check_modes_agree(url, server.storage_options(), &dir.path().join("cache"));

    let v2 = build_into(dir.path(), url, server.storage_options(), "v2");
    let opened = |run: &str| {
        let snap = Snapshot::open_with(
            url,
            OpenOptions {
                storage_options: server.storage_options(),
                cache_dir: Some(dir.path().join("c2")),
                ..OpenOptions::default()
            },
        )
        .unwrap();
        assert_eq!(snap.manifest().meta.run_id, run);
        String::from_utf8(snap.get(&Key::Int(1)).unwrap().unwrap()).unwrap()
    };
    assert!(opened(&v2).starts_with("v2:"));
    // The CLI reads credentials from the environment, as a user's would (moto accepts any).
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    let s3 = ["--root", url, "--s3-endpoint", &server.endpoint];
    let history = json_lines(&run_cli(&[&["history"][..], &s3[..]].concat()).unwrap());
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["current"], true);
    run_cli(&[&["rollback", "--offset", "1"][..], &s3[..]].concat()).expect("rollback on S3");
    assert!(opened(&v1).starts_with("v1:"));
    run_cli(&[&["rollback", "--run-id", &v2][..], &s3[..]].concat()).expect("roll forward");
    assert!(opened(&v2).starts_with("v2:"));
}
