//! `edgeshard build --out s3://bucket/prefix` on a real S3-compatible server (moto on
//! 127.0.0.1): the published snapshot reads like a local build of the same input, sidecars are
//! bound to the uploads' ETags (a cold range lookup is HEAD + sidecar + one leaf), a second
//! build moves `_CURRENT`, and a publisher that lost a race for `_CURRENT` fails loudly
//! without touching it.

use edgeshard_builder::build::{build, BuildOptions};
use edgeshard_builder::remote_publish::{publish_current_if, read_current_version};
use edgeshard_builder::Error as BuildError;
use edgeshard_native::remote::RemoteRoot;
use edgeshard_native::{AccessMode, Snapshot};
use edgeshard_shared::current::CurrentPointer;
use edgeshard_shared::Key;
use edgeshard_tests::s3_server::S3Server;
use edgeshard_tests::*;
use rand::Rng;
use serde_json::json;
use std::path::{Path, PathBuf};

const ROWS: i64 = 2000;
const DIM: usize = 16;

/// A JSONL input of `ROWS` int keys with text values and 16-d vectors, and some queries.
fn write_input(dir: &Path, seed: u64) -> (PathBuf, Vec<Vec<f32>>) {
    let mut rng = rng(seed);
    let rows: Vec<_> = (0..ROWS)
        .map(|id| {
            let len = rng.random_range(20..400);
            let value: String = (0..len)
                .map(|_| rng.random_range(b'a'..=b'z') as char)
                .collect();
            json!({"id": id, "value": value, "emb": vector_json(&random_vector(&mut rng, DIM))})
        })
        .collect();
    let input = dir.join(format!("in-{seed}.jsonl"));
    write_jsonl(&input, rows);
    let queries = (0..5).map(|_| random_vector(&mut rng, DIM)).collect();
    (input, queries)
}

fn options(input: &Path, out: &str, server: &S3Server) -> BuildOptions {
    let mut opts = build_options(input, Path::new("unused"));
    opts.out = out.to_string();
    opts.storage_options = server.storage_options();
    opts.shards = 4;
    opts.fields.vector_field = Some("emb".into());
    opts
}

fn open(server: &S3Server, url: &str, access: AccessMode, cache: &Path) -> Snapshot {
    open_snapshot_ok(url, access, cache, server.storage_options())
}

fn remote(server: &S3Server, url: &str) -> RemoteRoot {
    RemoteRoot::parse_with(url, &server.storage_options()).expect("remote root")
}

#[test]
fn a_build_published_to_s3_reads_like_a_local_build() {
    let dir = temp_dir();
    let (input, queries) = write_input(dir.path(), 41);
    let server = S3Server::start();
    server.create_bucket("snapshots");
    let url = "s3://snapshots/team/users";

    let local_root = dir.path().join("local");
    let mut local_opts = options(&input, local_root.to_str().unwrap(), &server);
    local_opts.storage_options.clear();
    build(&local_opts).expect("local build");
    let summary = build(&options(&input, url, &server)).expect("build to S3");
    assert_eq!(summary.root, url);
    assert_eq!(summary.rows, ROWS as u64);

    // Nothing was staged inside a local folder named like the URL.
    assert!(!Path::new("s3:").exists());

    // _CURRENT, manifest_ref, s3_prefix and db_url are s3:// URLs.
    let store = remote(&server, url);
    let current = CurrentPointer::parse(&store.read("_CURRENT").unwrap()).unwrap();
    assert_eq!(
        current.manifest_ref,
        format!("{url}/{}", summary.manifest),
        "manifest_ref"
    );
    let local = Snapshot::open(local_root.to_str().unwrap()).unwrap();
    let keys: Vec<Key> = (0..ROWS + 50).map(Key::Int).collect();
    let expected = local.multi_get(&keys).unwrap();
    for access in [AccessMode::Download, AccessMode::Range] {
        let snap = open(&server, url, access, &dir.path().join("cache"));
        let manifest = snap.manifest();
        assert_eq!(manifest.meta.s3_prefix, url);
        assert_eq!(manifest.shards.len(), 4);
        for shard in &manifest.shards {
            let db_url = shard.db_url.as_deref().unwrap();
            let relative = format!(
                "shards/run_id={}/db={:05}/attempt=00",
                summary.run_id, shard.db_id
            );
            assert_eq!(db_url, format!("{url}/{relative}"));
            // The sidecar is bound to the ETag S3 reports for the uploaded shard.db.
            let (_, etag) = store.head(&format!("{relative}/shard.db")).unwrap();
            assert_eq!(
                shard
                    .writer_info
                    .get("sidecar_tag")
                    .and_then(|v| v.as_str()),
                etag.as_deref(),
                "shard {}",
                shard.db_id
            );
            assert!(store.head(&format!("{relative}/shard.sidecar")).is_ok());
        }
        assert_eq!(snap.multi_get(&keys).unwrap(), expected, "{access:?}");
        for q in &queries {
            assert_eq!(
                snap.search(q, 7, None).unwrap(),
                local.search(q, 7, None).unwrap(),
                "{access:?}"
            );
        }
    }

    // Range mode, cold: HEAD of shard.db, the sidecar (its tag is that ETag), one leaf page.
    for key in (0..ROWS).step_by(250) {
        let snap = open(&server, url, AccessMode::Range, &dir.path().join("c"));
        let opened = snap.stats();
        assert!(snap.get(&Key::Int(key)).unwrap().is_some());
        let cost = snap.stats() - opened;
        assert_eq!(cost.requests, 3, "key {key}: {cost:?}");
    }
}

#[test]
fn a_second_build_moves_current_and_the_cli_publishes_to_s3() {
    let dir = temp_dir();
    let (first, _) = write_input(dir.path(), 1);
    let server = S3Server::start();
    server.create_bucket("bkt");
    let url = "s3://bkt/prefix";
    let one = build(&options(&first, url, &server)).expect("first build");
    let store = remote(&server, url);
    let current_one = store.read("_CURRENT").unwrap();

    // The second build through the in-process CLI, credentials from the environment.
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    let input = dir.path().join("second.jsonl");
    write_jsonl(
        &input,
        (0..500).map(|i| json!({"id": i, "value": format!("second-{i}")})),
    );
    let output = run_cli(&[
        "build",
        "--input",
        input.to_str().unwrap(),
        "--key-field",
        "id",
        "--value-field",
        "value",
        "--shards",
        "3",
        "--out",
        url,
        "--s3-endpoint",
        &server.endpoint,
        "--quiet",
    ])
    .expect("CLI build to S3");
    let two = &json_lines(&output)[0];
    assert_ne!(store.read("_CURRENT").unwrap(), current_one);
    let snap = open(&server, url, AccessMode::Download, &dir.path().join("c"));
    assert_eq!(snap.manifest().meta.run_id, two["run_id"].as_str().unwrap());
    assert_eq!(
        snap.get(&Key::Int(7)).unwrap().as_deref(),
        Some(&b"second-7"[..])
    );
    let history = snap.history().unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[1].run_id, one.run_id);
}

#[test]
fn a_publisher_that_lost_the_race_for_current_fails_and_changes_nothing() {
    let dir = temp_dir();
    let (input, _) = write_input(dir.path(), 2);
    let server = S3Server::start();
    server.create_bucket("bkt");
    let url = "s3://bkt/race";
    let store = remote(&server, url);

    // No _CURRENT yet: both publishers read "absent"; the second create must fail.
    assert_eq!(read_current_version(&store).unwrap(), None);
    let first = build(&options(&input, url, &server)).expect("first build");
    let late = CurrentPointer {
        manifest_ref: format!("{url}/manifests/late/manifest"),
        run_id: "late".into(),
        updated_at: "2026-01-01T00:00:00.000000Z".into(),
    };
    let err = publish_current_if(&store, &late, None).expect_err("create over an existing one");
    assert!(matches!(err, BuildError::Conflict(_)), "{err}");
    let current_after_first = store.read("_CURRENT").unwrap();
    assert!(String::from_utf8_lossy(&current_after_first).contains(&first.run_id));

    // Publisher A reads _CURRENT's ETag; publisher B publishes; A's put with the stale ETag fails.
    let seen = read_current_version(&store).unwrap().expect("an ETag");
    let b = build(&options(&input, url, &server)).expect("publisher B");
    let current_b = store.read("_CURRENT").unwrap();
    let err = publish_current_if(&store, &late, Some(&seen)).expect_err("stale ETag");
    let text = err.to_string();
    assert!(matches!(err, BuildError::Conflict(_)), "{text}");
    assert!(
        text.contains("_CURRENT changed since this build read it: another publisher won"),
        "{text}"
    );
    assert!(text.contains("nothing was lost"), "{text}");
    assert!(text.contains(&late.manifest_ref), "{text}");
    assert_eq!(store.read("_CURRENT").unwrap(), current_b);
    let snap = open(&server, url, AccessMode::Download, &dir.path().join("c"));
    assert_eq!(snap.manifest().meta.run_id, b.run_id);

    // With the fresh ETag the same put succeeds (the condition is what failed, nothing else).
    let fresh = read_current_version(&store).unwrap();
    publish_current_if(&store, &late, fresh.as_deref()).expect("up-to-date ETag");
    assert_eq!(store.read("_CURRENT").unwrap(), late.to_json_bytes());
}

#[test]
fn publishing_to_a_missing_bucket_fails_before_current() {
    let dir = temp_dir();
    let (input, _) = write_input(dir.path(), 3);
    let server = S3Server::start();
    let err = build(&options(&input, "s3://no-such-bucket/p", &server)).expect_err("no bucket");
    let text = err.to_string();
    assert!(text.contains("no-such-bucket"), "{text}");
}

#[test]
fn large_files_go_up_as_multipart_and_return_the_etag_head_reports() {
    let dir = temp_dir();
    let server = S3Server::start();
    server.create_bucket("bkt");
    let store = RemoteRoot::parse_for_publish("s3://bkt/big", &server.storage_options()).unwrap();
    let file = dir.path().join("big.bin");
    let size = edgeshard_native::remote::SINGLE_PUT_MAX as usize + (3 << 20);
    let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &bytes).unwrap();
    let etag = store
        .put_file("x/shard.db", &file)
        .unwrap()
        .expect("an ETag");
    // 16 MiB parts: 5 of them, so an S3 multipart ETag ("<md5 of md5s>-5").
    assert!(etag.ends_with("-5\""), "{etag}");
    let (len, head_etag) = store.head("x/shard.db").unwrap();
    assert_eq!(len, size as u64);
    assert_eq!(head_etag.as_deref(), Some(etag.as_str()));
    assert_eq!(store.read("x/shard.db").unwrap(), bytes);
}

#[test]
fn a_vector_only_cluster_build_on_s3_publishes_its_centroids() {
    use edgeshard_builder::build::{VectorOnlyOptions, VectorRoutingKind};
    use edgeshard_native::SearchOptions;
    let dir = temp_dir();
    let (input, queries) = write_input(dir.path(), 43);
    let server = S3Server::start();
    server.create_bucket("vectors");
    let url = "s3://vectors/routed";
    let vector_only = Some(VectorOnlyOptions {
        routing: VectorRoutingKind::Cluster,
        num_probes: 2,
        shard_field: None,
        hash_bits: None,
        spill: 0.0,
    });
    let local_root = dir.path().join("local");
    let mut local_opts = options(&input, local_root.to_str().unwrap(), &server);
    local_opts.storage_options.clear();
    local_opts.vector_only = vector_only.clone();
    build(&local_opts).expect("local build");
    let mut opts = options(&input, url, &server);
    opts.vector_only = vector_only;
    let summary = build(&opts).expect("vector-only build to S3");

    // The artifact sits where custom.vector.centroids_ref says, as the same bytes as locally.
    let store = remote(&server, url);
    let key = format!("vector_meta/run_id={}/centroids.npy", summary.run_id);
    let remote_npy = store.read(&key).expect("centroids.npy uploaded");
    let local_run = std::fs::read_dir(local_root.join("vector_meta"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        remote_npy,
        std::fs::read(local_run.join("centroids.npy")).unwrap(),
        "same seeded k-means, same centroids"
    );
    let snap = open(
        &server,
        url,
        AccessMode::Download,
        &dir.path().join("cache"),
    );
    let vector = &snap.manifest().meta.custom["vector"];
    assert_eq!(vector["centroids_ref"], format!("{url}/{key}"));
    let local = Snapshot::open(local_root.to_str().unwrap()).unwrap();
    for q in &queries {
        let options = SearchOptions {
            k: 7,
            ..SearchOptions::default()
        };
        let got = snap.search_with(q, &options).unwrap();
        assert!(got.shards_queried <= 2);
        assert_eq!(got, local.search_with(q, &options).unwrap());
    }
}

/// Binary codes (`--quantization binary`) go up beside their shards, and a search over S3
/// through them (download and range) answers as the local build does.
#[test]
fn binary_codes_are_published_beside_their_shards() {
    use edgeshard_builder::build::Quantization;
    let dir = temp_dir();
    let (input, queries) = write_input(dir.path(), 43);
    let server = S3Server::start();
    server.create_bucket("snapshots");
    let url = "s3://snapshots/codes";
    let local_root = dir.path().join("local");
    let mut local_opts = options(&input, local_root.to_str().unwrap(), &server);
    local_opts.storage_options.clear();
    local_opts.quantization = Quantization::Binary;
    build(&local_opts).expect("local build");
    let mut opts = options(&input, url, &server);
    opts.quantization = Quantization::Binary;
    let summary = build(&opts).expect("build to S3");
    let store = remote(&server, url);
    let local = Snapshot::open(local_root.to_str().unwrap()).unwrap();
    for access in [AccessMode::Download, AccessMode::Range] {
        let snap = open(&server, url, access, &dir.path().join("cache"));
        for shard in &snap.manifest().shards {
            let relative = format!(
                "shards/run_id={}/db={:05}/attempt=00/shard.codes",
                summary.run_id, shard.db_id
            );
            assert!(store.head(&relative).is_ok(), "{relative} missing");
        }
        for q in &queries {
            assert_eq!(
                snap.search(q, 7, None).unwrap(),
                local.search(q, 7, None).unwrap(),
                "{access:?}"
            );
        }
        let checks = snap.verify_shards().unwrap();
        assert!(
            checks.iter().all(|c| c.checked.ends_with("codes")),
            "{checks:?}"
        );
    }
}
