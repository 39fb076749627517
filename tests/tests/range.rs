//! Range mode: shards read page by page through the shared page VFS and its miss -> fetch ->
//! rerun driver answer exactly like shards read whole, and cost what the sidecar promises (a
//! cold point lookup is one ranged read).

use edgeshard_builder::build::build;
use edgeshard_native::range::{FileSource, RangeShard, RangeStats};
use edgeshard_native::{Error, Snapshot};
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

/// A shard opened for range reads, and what its reads cost.
fn range_shard(path: &Path, with_sidecar: bool) -> (RangeShard, Arc<RangeStats>) {
    let sidecar = with_sidecar.then(|| analyze(&std::fs::read(path).unwrap()).unwrap());
    let stats = Arc::new(RangeStats::default());
    let shard = RangeShard::open(
        0,
        Box::new(FileSource::open(path).unwrap()),
        sidecar,
        4096,
        stats.clone(),
        None,
    )
    .unwrap();
    (shard, stats)
}

fn sql(e: rusqlite::Error) -> Error {
    Error::InvalidRequest(e.to_string())
}

fn kv_query(conn: &Connection, key: i64) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.query_row(
        "SELECT v FROM kv WHERE k = ?1",
        [(key as u64).to_be_bytes()],
        |r| r.get(0),
    )
    .optional()
}

fn kv(conn: &Connection, key: i64) -> Option<Vec<u8>> {
    kv_query(conn, key).unwrap()
}

/// A lookup through the range driver (run again after each round of reads).
fn ranged_kv(shard: &RangeShard, key: i64) -> Option<Vec<u8>> {
    shard.run(|c| kv_query(c, key).map_err(sql)).unwrap()
}

#[test]
fn range_reads_answer_like_whole_file_reads() {
    let dir = temp_dir();
    let (root, records) = build_snapshot(dir.path(), true);
    for with_sidecar in [true, false] {
        for path in shard_files(&root) {
            let direct = Connection::open(&path).unwrap();
            let (ranged, _) = range_shard(&path, with_sidecar);
            for (key, _) in &records {
                assert_eq!(ranged_kv(&ranged, *key), kv(&direct, *key), "key {key}");
            }
            // Vector chunks are overflow chains: read them all through ranges too.
            edgeshard_native::sqlite_vec_ext::register();
            let all = |c: &Connection| -> rusqlite::Result<Vec<(i64, Vec<u8>)>> {
                let mut stmt = c.prepare("SELECT rowid, vectors FROM vec_index_vector_chunks00")?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect()
            };
            assert_eq!(
                ranged.run(|c| all(c).map_err(sql)).unwrap(),
                all(&direct).unwrap()
            );
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
            let (file, stats) = range_shard(&paths[shard], true);
            let after_open = stats.snapshot();
            assert_eq!(
                ranged_kv(&file, *key).as_deref(),
                Some(&value[..]),
                "key {key}"
            );
            let cost = stats.snapshot() - after_open;
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
    let (file, stats) = range_shard(path, false);
    let opened = stats.snapshot();
    assert_eq!((opened.rounds, opened.requests), (1, 1));
    assert_eq!(
        opened.bytes,
        65536.min(std::fs::metadata(path).unwrap().len())
    );
    assert_eq!(file.len(), std::fs::metadata(path).unwrap().len());
}

#[test]
fn a_missing_or_garbage_object_is_a_clear_error() {
    let dir = temp_dir();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![7u8; 8192]).unwrap();
    let err = RangeShard::open(
        0,
        Box::new(FileSource::open(&garbage).unwrap()),
        None,
        64,
        Arc::new(RangeStats::default()),
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
    let (file, stats) = range_shard(path, false);
    let before = stats.snapshot();
    // A full scan of the kv table touches every leaf page, in file order.
    let total: i64 = file
        .run(|c| {
            c.query_row("SELECT sum(length(v)) FROM kv", [], |r| r.get(0))
                .map_err(sql)
        })
        .unwrap();
    assert!(total > 0);
    let cost = stats.snapshot() - before;
    let pages = cost.bytes / 4096;
    assert!(pages > 20, "the scan read {pages} pages");
    assert!(
        cost.requests * 2 < pages,
        "{} requests for {pages} pages: read-ahead should batch sequential pages",
        cost.requests
    );
}

/// A cold search on a range-read shard takes at most 3 rounds of reads (the shard's open, the
/// leaves of its vector tables, their overflow chains: what the sidecar's pinned interior pages
/// let the reader plan), like the wasm reader, instead of discovering pages level by level; and
/// answers exactly like whole-file reads. 384-d vectors: every vector chunk is an overflow chain.
#[test]
fn a_cold_search_takes_at_most_three_rounds_per_shard() {
    let dir = temp_dir();
    let mut rng = rng(5);
    let rows: Vec<_> = (0..3000i64)
        .map(|id| json!({"id": id, "value": format!("v{id}"), "emb": vector_json(&random_vector(&mut rng, 384))}))
        .collect();
    let input = dir.path().join("in.jsonl");
    write_jsonl(&input, rows);
    let root = dir.path().join("snap");
    let mut opts = build_options(&input, &root);
    opts.shards = 4;
    opts.fields.vector_field = Some("emb".into());
    build(&opts).expect("build");
    let url = root.to_str().unwrap();
    let whole = Snapshot::open(url).unwrap();
    for shard in 0..4u32 {
        let query = random_vector(&mut rng, 384);
        let options = edgeshard_native::SearchOptions {
            k: 10,
            shard_ids: Some(vec![shard]),
            ..Default::default()
        };
        let ranged = Snapshot::open_with(
            url,
            edgeshard_native::OpenOptions {
                access: edgeshard_native::AccessMode::Range,
                ..Default::default()
            },
        )
        .unwrap();
        let before = ranged.stats();
        let answer = ranged.search_with(&query, &options).unwrap();
        let cost = ranged.stats() - before;
        assert_eq!(answer, whole.search_with(&query, &options).unwrap());
        assert!(
            cost.rounds <= 3,
            "shard {shard}: a cold search took {} rounds ({} requests, {} bytes)",
            cost.rounds,
            cost.requests,
            cost.bytes
        );
        // Warm: no read at all.
        let before = ranged.stats();
        ranged.search_with(&query, &options).unwrap();
        assert_eq!((ranged.stats() - before).rounds, 0);
    }
}
