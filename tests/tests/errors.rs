//! The one error vocabulary (issue 10, item 4): every failure has a kind that says what to do
//! about it, decided from structure (status codes, error variants), never from message text;
//! only `unavailable` is retryable; a corrupt shard names its real db_id; the CLI's hint follows
//! the kind. Each failure is produced for real (HTTP servers, damaged files), not constructed.

use clap::Parser;
use edgeshard_builder::cli::{self, Cli};
use edgeshard_native::{AccessMode, Error, ErrorKind, Snapshot};
use edgeshard_shared::Key;
use edgeshard_tests::fault_server::{Fault, FaultServer};
use edgeshard_tests::http_server::{ServerMode, StaticServer};
use edgeshard_tests::*;
use serde_json::json;
use std::path::{Path, PathBuf};

/// A 60-key snapshot in 4 shards (values "v-<key>") at `dir/snap`.
fn publish(dir: &Path) -> PathBuf {
    let root = dir.join("snap");
    let input = dir.join("in.jsonl");
    write_jsonl(
        &input,
        (0..60i64).map(|id| json!({"id": id, "value": format!("v-{id}")})),
    );
    let mut opts = build_options(&input, &root);
    opts.shards = 4;
    edgeshard_builder::build::build(&opts).expect("build");
    root
}

fn open(root: &str, access: AccessMode, cache: &Path) -> edgeshard_native::Result<Snapshot> {
    open_snapshot(root, access, cache, Vec::new())
}

fn get_all(snap: &Snapshot) -> edgeshard_native::Result<Vec<Option<Vec<u8>>>> {
    let keys: Vec<Key> = (0..60i64).map(Key::Int).collect();
    snap.multi_get(&keys)
}

/// Opens `root` and reads every key; the error it fails with.
fn read_error(root: &str, access: AccessMode, cache: &Path) -> Error {
    match open(root, access, cache).and_then(|snap| get_all(&snap)) {
        Ok(_) => panic!("{root} ({access:?}) was read, but it must fail"),
        Err(e) => e,
    }
}

/// Runs the CLI in-process and returns the error it ends with, as main() reports it on stderr.
fn cli_report(args: &[&str]) -> String {
    let argv = std::iter::once("edgeshard").chain(args.iter().copied());
    let parsed = Cli::try_parse_from(argv).expect("arguments parse");
    let mut out: Vec<u8> = Vec::new();
    let mut input = std::io::Cursor::new(Vec::new());
    match cli::run(parsed, &mut out, &mut input) {
        Ok(()) => panic!("edgeshard {args:?} succeeded, but it must fail"),
        Err(e) => e.report(),
    }
}

/// Binds the local root's sidecars to the ETags `host` reports (HEAD only), so a range reader
/// of `host` pins the sidecar's pages and reads only leaf pages: every ranged read then happens
/// inside SQLite, through the VFS.
fn bind_sidecars(root: &Path, host: &str) {
    run_cli(&[
        "sidecar-bind",
        "--root",
        root.to_str().unwrap(),
        "--host",
        host,
    ])
    .expect("sidecar-bind");
}

#[test]
fn a_refused_credential_is_permission_denied_and_never_worth_retrying() {
    let dir = temp_dir();
    let root = publish(dir.path());
    for status in [403, 401] {
        // At open: _CURRENT is refused.
        let server = FaultServer::start(&root, Fault::Status(status), "_CURRENT");
        let err = open(&server.base_url, AccessMode::Range, &dir.path().join("c"))
            .err()
            .expect("a refused _CURRENT");
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{status}: {err}");
        assert!(!err.is_retryable(), "{status}: {err}");
        let report = cli_report(&["get", "--root", &server.base_url, "1"]);
        assert!(report.starts_with("error: "), "{report}");
        assert!(report.contains("permission denied"), "{report}");
        assert!(!report.contains("retrying can help"), "{report}");

        // In the middle of a query: the shard's HEAD and sidecar succeed, its page reads are
        // refused, and the refusal comes back through SQLite as itself (it was "shard N is
        // corrupt" before).
        let server = FaultServer::start(&root, Fault::Status(status), "shard.db");
        bind_sidecars(&root, &server.base_url);
        for access in [AccessMode::Range, AccessMode::Download] {
            let cache = dir.path().join(format!("c{status}{access:?}"));
            let err = read_error(&server.base_url, access, &cache);
            assert_eq!(
                err.kind(),
                ErrorKind::PermissionDenied,
                "{status} {access:?}: {err}"
            );
            assert!(!err.is_retryable(), "{status} {access:?}: {err}");
        }
        assert!(server.damaged() > 0);
    }
}

#[test]
fn a_cut_range_body_is_unavailable_and_worth_retrying() {
    let dir = temp_dir();
    let root = publish(dir.path());
    let server = FaultServer::start(&root, Fault::ShortRangeBody, "shard.db");
    bind_sidecars(&root, &server.base_url);
    let err = read_error(&server.base_url, AccessMode::Range, &dir.path().join("c"));
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable(), "{err}");
    let report = cli_report(&[
        "get",
        "--root",
        &server.base_url,
        "--access",
        "range",
        "--cache-dir",
        dir.path().join("c2").to_str().unwrap(),
        "7",
    ]);
    assert!(report.contains("retrying can help"), "{report}");
}

#[test]
fn hosts_that_cannot_serve_ranges_are_unsupported_not_transient() {
    let dir = temp_dir();
    let root = publish(dir.path());
    let server = StaticServer::start(&root, ServerMode::IgnoresRange);
    let err = read_error(&server.base_url, AccessMode::Range, &dir.path().join("c1"));
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("Range"), "{err}");
    let server = StaticServer::start(&root, ServerMode::Gzip);
    let err = read_error(&server.base_url, AccessMode::Range, &dir.path().join("c2"));
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("Content-Encoding"), "{err}");
    assert!(!err.is_retryable());
}

#[test]
fn a_missing_root_is_not_found_and_a_bad_key_is_invalid_input() {
    let dir = temp_dir();
    let root = publish(dir.path());
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let server = StaticServer::start(&empty, ServerMode::Normal);
    let err = open(&server.base_url, AccessMode::Range, &dir.path().join("c"))
        .err()
        .expect("no _CURRENT");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let snap = Snapshot::open(root.to_str().unwrap()).unwrap();
    let err = snap.get(&Key::Str("not an int".into())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[test]
fn a_corrupt_shard_names_its_own_db_id_in_every_mode() {
    let dir = temp_dir();
    let root = publish(dir.path());
    let snap = Snapshot::open(root.to_str().unwrap()).unwrap();
    let key = (0..60i64)
        .map(Key::Int)
        .find(|k| snap.route(k).unwrap() == 3)
        .expect("a key of shard 3");
    drop(snap);
    // A writer that records no page checksums and no content hash (shardyfusion's), and no
    // sidecar: nothing but the shard's own header says what it is.
    let conn = rusqlite::Connection::open(current_manifest_file(&root)).unwrap();
    conn.execute("UPDATE shards SET writer_info = '{}'", [])
        .unwrap();
    drop(conn);
    let shard = walk(&root)
        .into_iter()
        .find(|p| p.contains("db=00003") && p.ends_with("shard.db"))
        .map(|p| root.join(p))
        .expect("shard 3's file");
    std::fs::remove_file(shard.with_file_name("shard.sidecar")).unwrap();
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[..100].fill(0);
    std::fs::write(&shard, bytes).unwrap();

    let check = |what: &str, err: Error| {
        assert!(
            matches!(err, Error::CorruptShard { db_id: 3, .. }),
            "{what}: {err}"
        );
        assert!(err.to_string().starts_with("shard 3 "), "{what}: {err}");
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{what}");
    };
    let local = root.to_str().unwrap();
    for access in [AccessMode::Download, AccessMode::Range] {
        let snap = open(local, access, &dir.path().join("c")).unwrap();
        check(&format!("local {access:?}"), snap.get(&key).unwrap_err());
    }
    let server = StaticServer::start(&root, ServerMode::Normal);
    for access in [AccessMode::Download, AccessMode::Range] {
        let cache = dir.path().join(format!("c{access:?}"));
        let snap = open(&server.base_url, access, &cache).unwrap();
        check(&format!("http {access:?}"), snap.get(&key).unwrap_err());
    }
}
