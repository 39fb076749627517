//! Range mode: shards read page by page through the range VFS answer exactly like shards read
//! whole, and cost what the sidecar promises (a cold point lookup is one ranged read).

use edgeshard_builder::build::build;
use edgeshard_native::range::{vfs, FileSource, RangeFile};
use edgeshard_native::Snapshot;
use edgeshard_shared::sidecar::analyze;
use edgeshard_tests::*;
use rand::Rng;
use rusqlite::{Connection, OptionalExtension};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A unified snapshot: 3,000 records, 16-d vectors, values of 10..300 bytes and, when
/// `with_large_values`, 10 KB for every 50th record (an overflow chain at page size 4096).
fn build_snapshot(dir: &Path, with_large_values: bool) -> (PathBuf, Vec<(i64, Vec<u8>)>) {
    let mut rng = rng(11);
    let mut records = Vec::new();
    let rows: Vec<_> = (0..3000i64)
        .map(|id| {
            let len = if with_large_values && id % 50 == 0 {
                10_000
            } else {
                rng.random_range(10..300)
            };
            let value: String = (0..len)
                .map(|_| rng.random_range(b'a'..=b'z') as char)
                .collect();
            records.push((id, value.clone().into_bytes()));
            json!({"id": id, "value": value, "emb": vector_json(&random_vector(&mut rng, 16))})
        })
        .collect();
    let input = dir.join("in.jsonl");
    write_jsonl(&input, rows);
    let root = dir.join("snap");
    let mut opts = build_options(&input, &root);
    opts.shards = 4;
    opts.fields.vector_field = Some("emb".into());
    build(&opts).expect("build");
    (root, records)
}

fn shard_files(root: &Path) -> Vec<PathBuf> {
    let snap = Snapshot::open(root.to_str().unwrap()).unwrap();
    let run = &snap.manifest().meta.run_id;
    snap.manifest()
        .shards
        .iter()
        .map(|s| {
            root.join(format!(
                "shards/run_id={run}/db={:05}/attempt=00/shard.db",
                s.db_id
            ))
        })
        .collect()
}

fn range_file(path: &Path, with_sidecar: bool) -> Arc<RangeFile> {
    let sidecar = with_sidecar.then(|| analyze(&std::fs::read(path).unwrap()).unwrap());
    Arc::new(
        RangeFile::open(
            Box::new(FileSource::open(path).unwrap()),
            sidecar,
            4096,
            None,
        )
        .unwrap(),
    )
}

fn kv(conn: &Connection, key: i64) -> Option<Vec<u8>> {
    conn.query_row(
        "SELECT v FROM kv WHERE k = ?1",
        [(key as u64).to_be_bytes()],
        |r| r.get(0),
    )
    .optional()
    .unwrap()
}

#[test]
fn range_reads_answer_like_whole_file_reads() {
    let dir = temp_dir();
    let (root, records) = build_snapshot(dir.path(), true);
    for with_sidecar in [true, false] {
        for path in shard_files(&root) {
            let direct = Connection::open(&path).unwrap();
            let ranged = vfs::open_connection(range_file(&path, with_sidecar)).unwrap();
            for (key, _) in &records {
                assert_eq!(kv(&ranged, *key), kv(&direct, *key), "key {key}");
            }
            // Vector chunks are overflow chains: read them all through ranges too.
            edgeshard_native::sqlite_vec_ext::register();
            let all = |c: &Connection| -> Vec<(i64, Vec<u8>)> {
                let mut stmt = c
                    .prepare("SELECT rowid, vectors FROM vec_index_vector_chunks00")
                    .unwrap();
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
                rows.map(Result::unwrap).collect()
            };
            assert_eq!(all(&ranged), all(&direct));
        }
    }
}

/// Cold lookups, each on a fresh file and connection (nothing cached but pinned pages):
/// returns (value length, rounds, requests, rounds spent at open) per looked-up key.
fn cold_lookup_costs(root: &Path, records: &[(i64, Vec<u8>)]) -> Vec<(usize, u64, u64, u64)> {
    let paths = shard_files(root);
    let snap = Snapshot::open(root.to_str().unwrap()).unwrap();
    records
        .iter()
        .step_by(7)
        .map(|(key, value)| {
            let db_id = snap.route(&edgeshard_shared::Key::Int(*key)).unwrap();
            let shard = snap
                .manifest()
                .shards
                .iter()
                .position(|s| s.db_id == db_id)
                .unwrap();
            let file = range_file(&paths[shard], true);
            let conn = vfs::open_connection(file.clone()).unwrap();
            let after_open = file.stats.snapshot();
            assert_eq!(kv(&conn, *key).as_deref(), Some(&value[..]), "key {key}");
            let cost = file.stats.snapshot() - after_open;
            (value.len(), cost.rounds, cost.requests, after_open.rounds)
        })
        .collect()
}

#[test]
fn cold_point_lookup_costs_one_ranged_read_with_the_sidecar() {
    let dir = temp_dir();
    let (root, records) = build_snapshot(dir.path(), false);
    let costs = cold_lookup_costs(&root, &records);
    assert!(costs.len() > 400);
    for (len, rounds, requests, open_rounds) in costs {
        assert_eq!(open_rounds, 0, "open reads only pinned pages");
        assert_eq!(
            (rounds, requests),
            (1, 1),
            "value of {len} bytes: one leaf read"
        );
    }
}

#[test]
fn large_values_cost_at_most_two_dependent_rounds() {
    let dir = temp_dir();
    let (root, records) = build_snapshot(dir.path(), true);
    let costs = cold_lookup_costs(&root, &records);
    let large: Vec<_> = costs.iter().filter(|c| c.0 == 10_000).collect();
    assert!(large.len() >= 5, "{} large values looked up", large.len());
    for (len, rounds, _, open_rounds) in &costs {
        assert!(
            *open_rounds <= 1,
            "open: pinned pages plus one round of divider chains"
        );
        assert!(*rounds <= 2, "value of {len} bytes took {rounds} rounds");
    }
    // A large value in a leaf: the leaf, then every chain it holds at once. One that is also a
    // divider key of an interior page had its chain pinned at open (then one round).
    for (_, rounds, _, open_rounds) in &large {
        assert!(
            *rounds == 2 || (*rounds == 1 && *open_rounds == 1),
            "{rounds} rounds (open took {open_rounds})"
        );
    }
    assert!(
        large.iter().any(|c| c.1 == 2),
        "the leaf-then-chains path was exercised"
    );
}

#[test]
fn without_sidecar_open_costs_one_header_read() {
    let dir = temp_dir();
    let (root, _) = build_snapshot(dir.path(), true);
    let path = &shard_files(&root)[0];
    let file = range_file(path, false);
    let opened = file.stats.snapshot();
    assert_eq!((opened.rounds, opened.requests), (1, 1));
    assert_eq!(
        opened.bytes,
        65536.min(std::fs::metadata(path).unwrap().len())
    );
    vfs::open_connection(file).unwrap();
}

#[test]
fn a_missing_or_garbage_object_is_a_clear_error() {
    let dir = temp_dir();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![7u8; 8192]).unwrap();
    let err = RangeFile::open(
        Box::new(FileSource::open(&garbage).unwrap()),
        None,
        64,
        None,
    )
    .err()
    .expect("garbage must not open")
    .to_string();
    assert!(err.contains("not a SQLite database"), "{err}");
    assert!(FileSource::open(dir.path().join("absent.db")).is_err());
}

#[test]
fn scans_without_a_sidecar_read_ahead() {
    let dir = temp_dir();
    let (root, _) = build_snapshot(dir.path(), false);
    let path = &shard_files(&root)[0];
    let file = range_file(path, false);
    let conn = vfs::open_connection(file.clone()).unwrap();
    let before = file.stats.snapshot();
    // A full scan of the kv table touches every leaf page, in file order.
    let total: i64 = conn
        .query_row("SELECT sum(length(v)) FROM kv", [], |r| r.get(0))
        .unwrap();
    assert!(total > 0);
    let cost = file.stats.snapshot() - before;
    let pages = cost.bytes / 4096;
    assert!(pages > 20, "the scan read {pages} pages");
    assert!(
        cost.requests * 2 < pages,
        "{} requests for {pages} pages: read-ahead should batch sequential pages",
        cost.requests
    );
}
