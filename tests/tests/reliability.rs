//! The reproductions of the reliability campaign (issue 9), each a test: builds that must not
//! lose data or leave half-published versions, manifests that must not lead readers outside
//! the root or to wrong shards, and bytes (downloads, cached files, range bodies) that must
//! match what the manifest says before anything is answered from them.

use edgeshard_builder::build::{build, VectorOnlyOptions, VectorRoutingKind};
use edgeshard_native::{AccessMode, OpenOptions, Snapshot};
use edgeshard_shared::npy::{self, Matrix};
use edgeshard_shared::Key;
use edgeshard_tests::fault_server::{Fault, FaultServer};
use edgeshard_tests::http_server::{ServerMode, StaticServer};
use edgeshard_tests::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Publishes version `tag` of a 60-key snapshot (values "<tag>-<key>") into `root`, 4 shards.
fn publish(dir: &Path, root: &Path, tag: &str) -> String {
    let input = dir.join(format!("{tag}.jsonl"));
    write_jsonl(
        &input,
        (0..60i64).map(|id| json!({"id": id, "value": format!("{tag}-{id}")})),
    );
    let mut opts = build_options(&input, root);
    opts.shards = 4;
    // Manifest folder names carry microsecond timestamps; keep versions strictly ordered.
    std::thread::sleep(std::time::Duration::from_millis(2));
    build(&opts).expect("build").manifest
}

fn value(snap: &Snapshot, key: i64) -> Option<String> {
    snap.get(&Key::Int(key))
        .expect("get")
        .map(|v| String::from_utf8(v).expect("utf-8 value"))
}

fn open_error(root: &str) -> String {
    match Snapshot::open(root) {
        Ok(_) => panic!("{root} opened, but it must be refused"),
        Err(e) => e.to_string(),
    }
}

fn root_str(root: &Path) -> &str {
    root.to_str().expect("utf-8 temp path")
}

/// Runs SQL on the current manifest (what a tampered or buggy writer would leave).
fn edit_manifest(root: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(current_manifest_file(root)).expect("open manifest");
    conn.execute_batch(sql).expect("edit manifest");
}

fn shard_files(root: &Path, run_id: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walk(&root.join("shards").join(format!("run_id={run_id}")))
        .into_iter()
        .filter(|p| p.ends_with("shard.db"))
        .map(|p| root.join("shards").join(format!("run_id={run_id}")).join(p))
        .collect();
    files.sort();
    files
}

fn current_run_id(root: &Path) -> String {
    let current: Value =
        serde_json::from_slice(&std::fs::read(root.join("_CURRENT")).expect("_CURRENT"))
            .expect("_CURRENT is JSON");
    current["run_id"].as_str().expect("run_id").to_string()
}

fn flip_byte(path: &Path, offset_from_end: usize) {
    let mut bytes = std::fs::read(path).expect("read file");
    let at = bytes.len() - offset_from_end;
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).expect("write file");
}

// ---- Data loss and half-published versions ----

#[test]
fn a_run_id_that_names_the_root_is_refused_and_nothing_is_removed() {
    let dir = temp_dir();
    let root = dir.path().join("snap");
    publish(dir.path(), &root, "v1");
    write_text(&root.join("unrelated.txt"), "not edgeshard's");
    let before = walk(&root);
    let input = dir.path().join("v1.jsonl");
    for bad in ["..", ".", "a/b", "../x", ".hidden", ""] {
        let mut opts = build_options(&input, &root);
        opts.run_id = Some(bad.to_string());
        let err = build(&opts).expect_err("bad run id").to_string();
        assert!(err.contains("run id"), "{bad:?}: {err}");
        assert_eq!(walk(&root), before, "run id {bad:?} changed the root");
    }
    assert_eq!(
        value(&Snapshot::open(root_str(&root)).unwrap(), 5).unwrap(),
        "v1-5"
    );
}

#[test]
fn an_empty_out_or_root_is_a_usage_error() {
    let dir = temp_dir();
    let input = dir.path().join("in.jsonl");
    write_jsonl(&input, [json!({"id": 1, "value": "a"})]);
    let err = run_cli(&[
        "build",
        "--input",
        input.to_str().unwrap(),
        "--key-field",
        "id",
        "--value-field",
        "value",
        "--out",
        "",
    ])
    .expect_err("empty --out");
    assert!(err.contains("--out is empty"), "{err}");
    let err = run_cli(&["get", "--root", "", "1"]).expect_err("empty --root");
    assert!(err.contains("root is empty"), "{err}");
}

#[test]
fn a_build_failing_at_current_leaves_no_listed_version_and_no_lost_shards() {
    let dir = temp_dir();
    let root = dir.path().join("snap");
    publish(dir.path(), &root, "v1");
    let v1_current = std::fs::read(root.join("_CURRENT")).unwrap();
    // `_CURRENT` made a directory: the commit step of the next build fails.
    std::fs::remove_file(root.join("_CURRENT")).unwrap();
    std::fs::create_dir(root.join("_CURRENT")).unwrap();
    let before = RootState::capture(&root);
    let input = dir.path().join("v2.jsonl");
    write_jsonl(
        &input,
        (0..60i64).map(|id| json!({"id": id, "value": "v2"})),
    );
    let mut opts = build_options(&input, &root);
    opts.shards = 4;
    build(&opts).expect_err("publishing _CURRENT must fail");
    let after = RootState::capture(&root);
    assert_eq!(
        after.manifests, before.manifests,
        "a failed build left a manifest"
    );
    assert_eq!(
        after.shard_runs, before.shard_runs,
        "a failed build left shards"
    );
    assert!(!root.join(".edgeshard-staging").exists());
    // The previous version is whole: put its pointer back and it serves.
    std::fs::remove_dir(root.join("_CURRENT")).unwrap();
    std::fs::write(root.join("_CURRENT"), v1_current).unwrap();
    let snap = Snapshot::open(root_str(&root)).unwrap();
    assert_eq!(value(&snap, 59).unwrap(), "v1-59");
    // And `history` lists only v1, so a rollback has nothing broken to point at.
    let history = json_lines(&run_cli(&["history", "--root", root_str(&root)]).unwrap());
    assert_eq!(history.len(), 1, "{history:?}");
}

#[test]
fn rollback_refuses_a_version_whose_shards_are_missing_or_damaged() {
    let dir = temp_dir();
    let root = dir.path().join("snap");
    publish(dir.path(), &root, "v1");
    let v1_run = current_run_id(&root);
    publish(dir.path(), &root, "v2");
    let current = std::fs::read(root.join("_CURRENT")).unwrap();
    let files = shard_files(&root, &v1_run);
    assert_eq!(files.len(), 4);

    // Same size, one bit changed: only the content hash can tell.
    flip_byte(&files[1], 100);
    let err = run_cli(&["rollback", "--root", root_str(&root), "--offset", "1"])
        .expect_err("damaged shard");
    assert!(
        err.contains("refusing to roll back") && err.contains("content"),
        "{err}"
    );
    assert_eq!(std::fs::read(root.join("_CURRENT")).unwrap(), current);
    flip_byte(&files[1], 100);

    // A shard file gone.
    let kept = std::fs::read(&files[2]).unwrap();
    std::fs::remove_file(&files[2]).unwrap();
    let err = run_cli(&["rollback", "--root", root_str(&root), "--offset", "1"])
        .expect_err("missing shard");
    assert!(
        err.contains("refusing to roll back") && err.contains("shard 2"),
        "{err}"
    );
    assert_eq!(std::fs::read(root.join("_CURRENT")).unwrap(), current);

    // Whole again: the rollback goes through and serves v1.
    std::fs::write(&files[2], kept).unwrap();
    let out =
        json_lines(&run_cli(&["rollback", "--root", root_str(&root), "--offset", "1"]).unwrap());
    assert_eq!(out[0]["run_id"], v1_run.as_str());
    assert_eq!(
        value(&Snapshot::open(root_str(&root)).unwrap(), 3).unwrap(),
        "v1-3"
    );
}

#[test]
fn verify_names_a_damaged_shard() {
    let dir = temp_dir();
    let root = dir.path().join("snap");
    publish(dir.path(), &root, "v1");
    let rows = json_lines(&run_cli(&["verify", "--root", root_str(&root)]).unwrap());
    assert_eq!(rows.len(), 4);
    assert!(
        rows.iter().all(|r| r["checked"] == "size+xxh3_128"),
        "{rows:?}"
    );
    let files = shard_files(&root, &current_run_id(&root));
    flip_byte(&files[3], 10);
    let err = run_cli(&["verify", "--root", root_str(&root)]).expect_err("damaged");
    assert!(err.contains("shard 3"), "{err}");
}

#[test]
fn cleanup_keeps_the_live_run_however_current_spells_its_path() {
    for spelling in ["manifests//", "manifests/./"] {
        let dir = temp_dir();
        let root = dir.path().join("snap");
        publish(dir.path(), &root, "v1");
        let live = publish(dir.path(), &root, "v2");
        let live_run = current_run_id(&root);
        let text = String::from_utf8(std::fs::read(root.join("_CURRENT")).unwrap()).unwrap();
        let respelled = text.replace("manifests/", spelling);
        assert_ne!(text, respelled);
        std::fs::write(root.join("_CURRENT"), respelled).unwrap();
        let removed = json_lines(
            &run_cli(&["cleanup", "--root", root_str(&root), "--keep-last", "0"]).unwrap(),
        );
        assert!(
            removed.iter().all(|r| r["run_id"] != live_run.as_str()),
            "{spelling}: removed the live run: {removed:?}"
        );
        assert!(root.join(&live).exists());
        assert_eq!(
            value(&Snapshot::open(root_str(&root)).unwrap(), 1).unwrap(),
            "v2-1"
        );
    }
}

#[test]
fn cleanup_with_an_enormous_age_is_an_error_not_a_panic() {
    let dir = temp_dir();
    let root = dir.path().join("snap");
    publish(dir.path(), &root, "v1");
    let err = run_cli(&[
        "cleanup",
        "--root",
        root_str(&root),
        "--older-than",
        "999999999999999d",
    ])
    .expect_err("overflowing age");
    assert!(err.contains("too large"), "{err}");
    // The largest age that fits removes nothing (nothing is that old).
    let removed = json_lines(
        &run_cli(&[
            "cleanup",
            "--root",
            root_str(&root),
            "--keep-last",
            "0",
            "--older-than",
            "18446744073709551615",
        ])
        .unwrap(),
    );
    assert!(removed.is_empty(), "{removed:?}");
}

// ---- A manifest that cannot lead readers astray ----

#[test]
fn recorded_paths_that_leave_the_root_are_refused() {
    let dir = temp_dir();
    let root = dir.path().join("snap");
    let other = dir.path().join("other");
    publish(dir.path(), &root, "mine");
    publish(dir.path(), &other, "theirs");
    let other_run = current_run_id(&other);
    // db_url climbing out of the root into another snapshot.
    let escape = format!(
        "file://{}/shards/../../other/shards/run_id={other_run}/db=00003/attempt=00",
        root.display()
    );
    edit_manifest(
        &root,
        &format!("UPDATE shards SET db_url = '{escape}' WHERE db_id = 3"),
    );
    let err = open_error(root_str(&root));
    assert!(err.contains(".."), "{err}");

    // manifest_ref climbing out: readers must not follow it to the other root's manifest.
    let dir2 = temp_dir();
    let root2 = dir2.path().join("snap");
    publish(dir2.path(), &root2, "mine");
    let text = String::from_utf8(std::fs::read(root2.join("_CURRENT")).unwrap()).unwrap();
    let respelled = text.replace("manifests/", "manifests/../../other/manifests/");
    std::fs::write(root2.join("_CURRENT"), respelled).unwrap();
    let err = open_error(root_str(&root2));
    assert!(err.contains("manifest_ref") || err.contains(".."), "{err}");
}

#[test]
fn shard_rows_that_contradict_the_routing_are_refused() {
    let cases = [
        // Aborted every command (allocation failure) before.
        ("UPDATE build_meta SET num_dbs = 100000000", "num_dbs"),
        ("UPDATE build_meta SET num_dbs = 4294967295", "num_dbs"),
        // 4 -> 5 made keys silently "not found".
        ("UPDATE build_meta SET num_dbs = 5", "route"),
        // Swapped rows: each shard's keys route to the other's id.
        (
            "UPDATE shards SET db_id = 100 WHERE db_id = 0;
             UPDATE shards SET db_id = 0 WHERE db_id = 1;
             UPDATE shards SET db_id = 1 WHERE db_id = 100;",
            "route",
        ),
        // Panicked `info` before (the total overflowed).
        (
            "UPDATE shards SET row_count = 9223372036854775807 WHERE db_id = 0",
            "row_count or db_bytes",
        ),
    ];
    for (sql, needle) in cases {
        let dir = temp_dir();
        let root = dir.path().join("snap");
        publish(dir.path(), &root, "v1");
        edit_manifest(&root, sql);
        let err = open_error(root_str(&root));
        assert!(err.contains(needle), "{sql}: {err}");
    }
    // Rows another writer made (no `writer_info.writer`: bounds are informational, so the
    // manifest opens): the first miss in a shard checks that its first stored key routes to
    // it, so swapped rows are an error, never "not found".
    let dir = temp_dir();
    let root = dir.path().join("snap");
    publish(dir.path(), &root, "v1");
    edit_manifest(
        &root,
        "UPDATE shards SET writer_info = json_remove(writer_info, '$.writer');
         UPDATE shards SET db_id = 100 WHERE db_id = 0;
         UPDATE shards SET db_id = 0 WHERE db_id = 1;
         UPDATE shards SET db_id = 1 WHERE db_id = 100;",
    );
    let snap = Snapshot::open(root_str(&root)).expect("bounds of other writers are not checked");
    let keys: Vec<Key> = (0..60i64).map(Key::Int).collect();
    let err = snap
        .multi_get(&keys)
        .expect_err("swapped shards must not answer")
        .to_string();
    assert!(err.contains("routes to shard"), "{err}");
    // Key by key too: every key of a swapped shard is an error, none "not found".
    let snap = Snapshot::open(root_str(&root)).unwrap();
    for key in &keys {
        let shard = snap.route(key).unwrap();
        match snap.get(key) {
            Ok(value) => assert!(shard > 1, "key {key} in swapped shard {shard}: {value:?}"),
            Err(e) => assert!(e.to_string().contains("routes to shard"), "{e}"),
        }
    }
}

/// A vector-only snapshot (200 random 8-d vectors, cluster routing over 4 shards) at `root`.
fn publish_vector_only(dir: &Path, root: &Path) {
    let mut rng = rng(9);
    let input = dir.join("v.jsonl");
    write_jsonl(
        &input,
        (0..200i64).map(|id| json!({"id": id, "emb": vector_json(&random_vector(&mut rng, 8))})),
    );
    let mut opts = build_options(&input, root);
    opts.shards = 4;
    opts.fields.value_field = None;
    opts.fields.vector_field = Some("emb".into());
    opts.vector_only = Some(VectorOnlyOptions {
        routing: VectorRoutingKind::Cluster,
        num_probes: 2,
        shard_field: None,
        hash_bits: None,
        spill: 0.0,
    });
    build(&opts).expect("vector-only build");
}

#[test]
fn deleted_or_altered_shard_rows_are_refused() {
    // A deleted row read as an empty slot: present keys answered "found": false, and searches
    // left the shard out, with exit 0.
    let kv_cases = [
        "DELETE FROM shards WHERE db_id = 0",
        "DELETE FROM shards",
        "UPDATE shards SET row_count = row_count - 1 WHERE db_id = 2",
    ];
    for sql in kv_cases {
        let dir = temp_dir();
        let root = dir.path().join("snap");
        publish(dir.path(), &root, "v1");
        edit_manifest(&root, sql);
        let err = open_error(root_str(&root));
        assert!(err.contains("deleted or altered"), "{sql}: {err}");
    }
    // Vector-only: by edgeshard's record, and by `total_vectors` (any writer's) without it.
    for sql in [
        "DELETE FROM shards WHERE db_id = 0",
        "DELETE FROM shards WHERE db_id = 0;
         UPDATE build_meta SET custom = json_remove(custom, '$.edgeshard_shard_totals');",
    ] {
        let dir = temp_dir();
        let root = dir.path().join("snap");
        publish_vector_only(dir.path(), &root);
        edit_manifest(&root, sql);
        let err = open_error(root_str(&root));
        assert!(err.contains("deleted or altered"), "{sql}: {err}");
    }
    // Without the record, a KV manifest missing a row cannot be told from an empty slot: the
    // record is what makes the difference (and other writers' manifests still open).
    let dir = temp_dir();
    let root = dir.path().join("snap");
    publish(dir.path(), &root, "v1");
    edit_manifest(
        &root,
        "UPDATE build_meta SET custom = json_remove(custom, '$.edgeshard_shard_totals')",
    );
    let snap = Snapshot::open(root_str(&root)).expect("a manifest without the record");
    assert_eq!(value(&snap, 7).as_deref(), Some("v1-7"));
}

#[test]
fn non_finite_routing_artifacts_are_refused() {
    let dir = temp_dir();
    let root = dir.path().join("snap");
    publish_vector_only(dir.path(), &root);
    let run = current_run_id(&root);
    let centroids = root.join(format!("vector_meta/run_id={run}/centroids.npy"));
    let good = npy::read(&std::fs::read(&centroids).unwrap()).unwrap();
    let mut data = good.data.clone();
    data[5] = f32::NAN;
    let bad = Matrix {
        rows: good.rows,
        cols: good.cols,
        data,
    };
    std::fs::write(&centroids, npy::write(&bad)).unwrap();
    let err = open_error(root_str(&root));
    assert!(err.contains("NaN") && err.contains("centroids"), "{err}");
}

// ---- Vectors at the edges ----

#[test]
fn cosine_vectors_whose_norm_under_or_overflows_are_refused_at_build_and_query() {
    for (tiny_or_huge, needle) in [(1e-30f32, "below"), (1e-44, "below"), (1e30, "above")] {
        let dir = temp_dir();
        let root = dir.path().join("snap");
        let input = dir.path().join("in.jsonl");
        write_jsonl(
            &input,
            [
                json!({"id": 1, "value": "a", "emb": [1.0, 0.5, 0.0, 0.0]}),
                json!({"id": 2, "value": "b", "emb": [tiny_or_huge, 0.0, 0.0, 0.0]}),
            ],
        );
        let mut opts = build_options(&input, &root);
        opts.shards = 1;
        opts.fields.vector_field = Some("emb".into());
        let err = build(&opts).expect_err("bad norm").to_string();
        assert!(err.contains("record 2") && err.contains(needle), "{err}");
    }
    // Queries too.
    let dir = temp_dir();
    let root = dir.path().join("snap");
    let input = dir.path().join("in.jsonl");
    write_jsonl(
        &input,
        [json!({"id": 1, "value": "a", "emb": [1.0, 0.5, 0.0, 0.0]})],
    );
    let mut opts = build_options(&input, &root);
    opts.shards = 1;
    opts.fields.vector_field = Some("emb".into());
    build(&opts).expect("build");
    let snap = Snapshot::open(root_str(&root)).unwrap();
    assert!(snap.search(&[1e-30, 0.0, 0.0, 0.0], 1, None).is_err());
    assert!(snap.search(&[1e30, 0.0, 0.0, 0.0], 1, None).is_err());
    assert_eq!(
        snap.search(&[1.0, 0.0, 0.0, 0.0], 1, None)
            .unwrap()
            .results
            .len(),
        1
    );
}

// ---- Integrity of what is read ----

fn open_remote(url: &str, access: AccessMode, cache: &Path) -> edgeshard_native::Result<Snapshot> {
    open_snapshot(url, access, cache, Vec::new())
}

fn get_all(snap: &Snapshot) -> edgeshard_native::Result<Vec<Option<Vec<u8>>>> {
    let keys: Vec<Key> = (0..60i64).map(Key::Int).collect();
    snap.multi_get(&keys)
}

#[test]
fn a_download_damaged_in_transit_is_an_error_and_never_cached() {
    let dir = temp_dir();
    let root = dir.path().join("snap");
    publish(dir.path(), &root, "v1");
    let cache = dir.path().join("cache");
    let server = FaultServer::start(&root, Fault::FlipBit, "shard.db");
    let snap = open_remote(&server.base_url, AccessMode::Download, &cache).expect("open");
    let err = get_all(&snap)
        .expect_err("a flipped bit must not be served")
        .to_string();
    assert!(err.contains("content hash"), "{err}");
    assert!(server.damaged() > 0);
    // Nothing damaged entered the cache: every cached shard file checks out.
    for file in walk(&cache).iter().filter(|p| p.ends_with("shard.db")) {
        let bytes = std::fs::read(cache.join(file)).unwrap();
        let twin = walk(&root)
            .into_iter()
            .filter(|p| p.ends_with("shard.db"))
            .any(|p| std::fs::read(root.join(p)).unwrap() == bytes);
        assert!(twin, "cached {file} is not any shard's bytes");
    }
    // The server recovers: the same cache now serves correct answers.
    let good = FaultServer::start(&root, Fault::None, "shard.db");
    let snap = open_remote(&good.base_url, AccessMode::Download, &cache).expect("open");
    let values = get_all(&snap).expect("served after recovery");
    assert_eq!(values[7].as_deref(), Some(&b"v1-7"[..]));
}

#[test]
fn a_cached_shard_damaged_on_disk_is_fetched_again() {
    let dir = temp_dir();
    let root = dir.path().join("snap");
    publish(dir.path(), &root, "v1");
    let cache = dir.path().join("cache");
    let server = StaticServer::start(&root, ServerMode::Normal);
    let snap = open_remote(&server.base_url, AccessMode::Download, &cache).expect("open");
    assert_eq!(get_all(&snap).unwrap().iter().flatten().count(), 60);
    drop(snap);
    let cached: Vec<String> = walk(&cache)
        .into_iter()
        .filter(|p| p.ends_with("shard.db"))
        .collect();
    assert_eq!(cached.len(), 4);
    for file in &cached {
        flip_byte(&cache.join(file), 50);
    }
    let snap = open_remote(&server.base_url, AccessMode::Download, &cache).expect("reopen");
    let values = get_all(&snap).expect("re-fetched");
    for (id, v) in values.iter().enumerate() {
        assert_eq!(
            v.as_deref(),
            Some(format!("v1-{id}").as_bytes()),
            "key {id}"
        );
    }
}

#[test]
fn range_reads_refuse_short_bodies_and_shards_of_another_size() {
    let dir = temp_dir();
    let root = dir.path().join("snap");
    publish(dir.path(), &root, "v1");
    let cache = dir.path().join("cache");
    // A 206 body half as long as asked: zero-padded into pages (found: false) before.
    let server = FaultServer::start(&root, Fault::ShortRangeBody, "shard.db");
    let outcome =
        open_remote(&server.base_url, AccessMode::Range, &cache).and_then(|snap| get_all(&snap));
    let err = outcome
        .expect_err("a short body must be an error")
        .to_string();
    assert!(err.contains("bytes"), "{err}");
    assert!(server.damaged() > 0);

    // Another build's shard (another size) under this shard's path.
    let other = dir.path().join("other");
    let input = dir.path().join("big.jsonl");
    write_jsonl(
        &input,
        (0..3000i64).map(|id| json!({"id": id, "value": format!("other-{id}-{}", "x".repeat(40))})),
    );
    let mut opts = build_options(&input, &other);
    opts.shards = 4;
    build(&opts).expect("other build");
    let mine = shard_files(&root, &current_run_id(&root));
    let theirs = shard_files(&other, &current_run_id(&other));
    std::fs::copy(&theirs[0], &mine[0]).unwrap();
    let server = StaticServer::start(&root, ServerMode::Normal);
    for access in [AccessMode::Range, AccessMode::Download] {
        let outcome = open_remote(
            &server.base_url,
            access,
            &dir.path().join(format!("c{access:?}")),
        )
        .and_then(|snap| get_all(&snap));
        let err = outcome.expect_err("a shard of another size").to_string();
        assert!(err.contains("the manifest says"), "{access:?}: {err}");
    }
    // Locally too.
    let snap = Snapshot::open(root_str(&root)).unwrap();
    let err = get_all(&snap)
        .expect_err("local shard of another size")
        .to_string();
    assert!(err.contains("the manifest says"), "{err}");
}

#[test]
fn dot_product_is_exact_when_one_norm_dwarfs_the_rest() {
    // 4-d data with one vector of norm ~10,000 (every query was wrong before) and 64-d data
    // with one vector x3,000 (most top-10 ids were missing).
    for (dim, giant, seed) in [(4usize, 1e4f32, 31u64), (64, 3e3, 32)] {
        let dir = temp_dir();
        let root = dir.path().join("snap");
        let mut rng = rng(seed);
        let mut items: Vec<(edgeshard_native::VectorId, Vec<f32>)> = (0..600i64)
            .map(|id| {
                (
                    edgeshard_native::VectorId::Int(id),
                    random_vector(&mut rng, dim),
                )
            })
            .collect();
        items[123].1 = items[123].1.iter().map(|x| x * giant).collect();
        let input = dir.path().join("in.jsonl");
        write_jsonl(
            &input,
            items.iter().map(|(id, v)| {
                let edgeshard_native::VectorId::Int(id) = id else {
                    unreachable!()
                };
                json!({"id": id, "value": "x", "emb": vector_json(v)})
            }),
        );
        let mut opts = build_options(&input, &root);
        opts.shards = 2;
        opts.metric = edgeshard_shared::Metric::DotProduct;
        opts.fields.vector_field = Some("emb".into());
        build(&opts).expect("build");
        let snap = Snapshot::open(root_str(&root)).unwrap();
        for _ in 0..25 {
            let q = random_vector(&mut rng, dim);
            let got: Vec<_> = snap
                .search(&q, 10, None)
                .expect("search")
                .results
                .into_iter()
                .map(|h| (h.id, h.score))
                .collect();
            assert_matches_brute_force(
                &format!("dim {dim}"),
                edgeshard_shared::Metric::DotProduct,
                &q,
                &items,
                &got,
                10,
                Tolerance {
                    tie_eps: 1e-9,
                    score_tol: 1e-9,
                },
            );
        }
    }
}

// ---- Page checksums: every page a range reader uses is checked ----

/// Publishes version `tag` of a 3,000-key snapshot into `root` (4 shards of several hundred
/// KB: interior pages, a sidecar). Values "<tag>-<key>-xxx..." have the same length in every
/// version, so two versions' shards have the same sizes.
fn publish_big(dir: &Path, root: &Path, tag: &str) {
    publish_big_as(dir, root, tag, None);
}

/// [`publish_big`] with the given `--run-id`.
fn publish_big_as(dir: &Path, root: &Path, tag: &str, run_id: Option<&str>) {
    let input = dir.join(format!("{tag}-big.jsonl"));
    write_jsonl(
        &input,
        (0..3000i64).map(|id| json!({"id": id, "value": big_value(tag, id)})),
    );
    let mut opts = build_options(&input, root);
    opts.shards = 4;
    opts.run_id = run_id.map(str::to_string);
    build(&opts).expect("build");
}

fn big_value(tag: &str, id: i64) -> String {
    format!("{tag}-{id:05}-{}", "x".repeat(60))
}

/// Every key of a `publish_big` snapshot, checked against its value.
fn check_big(snap: &Snapshot, tag: &str) -> edgeshard_native::Result<()> {
    let keys: Vec<Key> = (0..3000i64).map(Key::Int).collect();
    let values = snap.multi_get(&keys)?;
    for (id, value) in values.iter().enumerate() {
        assert_eq!(
            value.as_deref(),
            Some(big_value(tag, id as i64).as_bytes()),
            "key {id}"
        );
    }
    Ok(())
}

/// A local root read page by page (the sidecar beside each shard is trusted: no ETag).
fn open_local_range(root: &Path) -> edgeshard_native::Result<Snapshot> {
    Snapshot::open_with(
        root_str(root),
        OpenOptions {
            access: AccessMode::Range,
            cache_dir: None,
            cache_pages: 1024,
            storage_options: Vec::new(),
        },
    )
}

fn range_error(url: &str, cache: &Path) -> String {
    match open_remote(url, AccessMode::Range, cache).and_then(|snap| check_big(&snap, "v1")) {
        Ok(()) => panic!("{url}: damaged pages were answered from"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn range_reads_check_every_page_and_read_a_damaged_one_again() {
    let dir = temp_dir();
    let root = dir.path().join("snap");
    publish_big(dir.path(), &root, "v1");
    let manifest = std::fs::read(current_manifest_file(&root)).unwrap();
    let manifest = edgeshard_shared::manifest::Manifest::from_sqlite_bytes(&manifest).unwrap();
    for shard in &manifest.shards {
        assert!(
            shard.page_verifier().unwrap().is_some(),
            "shard {}",
            shard.db_id
        );
    }
    for file in shard_files(&root, &current_run_id(&root)) {
        assert_eq!(
            std::fs::read(&file).unwrap()[20],
            8,
            "{file:?} reserves 8 bytes"
        );
    }

    // Every body damaged in transit: an error naming the page, never an answer.
    let server = FaultServer::start(&root, Fault::FlipBit, "shard.db");
    let err = range_error(&server.base_url, &dir.path().join("c1"));
    assert!(err.contains("fails its checksum"), "{err}");
    assert!(server.damaged() > 0);

    // One body damaged in transit: read again, and every answer is right.
    let server = FaultServer::start(&root, Fault::FlipBitOnce, "shard.db");
    let snap = open_remote(&server.base_url, AccessMode::Range, &dir.path().join("c2")).unwrap();
    check_big(&snap, "v1").expect("healed by the second read");
    assert_eq!(server.damaged(), 1);

    // Damaged at rest (a byte of a leaf page): local and remote range reads refuse it.
    let files = shard_files(&root, &current_run_id(&root));
    flip_byte(&files[2], 3000);
    // Read directly from disk (the default local mode): the whole file's hash at open.
    let direct = Snapshot::open(root_str(&root)).unwrap();
    let err = check_big(&direct, "v1").unwrap_err().to_string();
    assert!(
        err.contains("content hash") && err.contains("shard 2"),
        "{err}"
    );
    let local = open_local_range(&root).unwrap();
    let err = check_big(&local, "v1").unwrap_err().to_string();
    assert!(
        err.contains("fails its checksum") && err.contains("shard 2"),
        "{err}"
    );
    let server = StaticServer::start(&root, ServerMode::Normal);
    let err = range_error(&server.base_url, &dir.path().join("c3"));
    assert!(err.contains("fails its checksum"), "{err}");
}

#[test]
fn a_same_size_shard_of_another_build_is_refused_in_every_mode() {
    assert_foreign_shard_refused(None);
}

#[test]
fn a_shard_of_another_build_with_the_same_run_id_is_refused_in_every_mode() {
    // Page checksums were seeded by run id and slot only, so range reads served the pages of
    // another build that reused `--run-id` (same keys, other values) with exit 0.
    assert_foreign_shard_refused(Some("nightly"));
}

/// Copies shard 1 of another build of the same keys (other values, same file size; the same
/// run id when given) over shard 1 of `root`: no access mode may answer from it.
fn assert_foreign_shard_refused(run_id: Option<&str>) {
    let dir = temp_dir();
    let root = dir.path().join("snap");
    let other = dir.path().join("other");
    publish_big_as(dir.path(), &root, "v1", run_id);
    publish_big_as(dir.path(), &other, "v2", run_id);
    let mine = shard_files(&root, &current_run_id(&root));
    let theirs = shard_files(&other, &current_run_id(&other));
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert_eq!(size(&mine[1]), size(&theirs[1]), "same-size replacement");
    std::fs::copy(&theirs[1], &mine[1]).unwrap();
    let server = StaticServer::start(&root, ServerMode::Normal);
    for access in [AccessMode::Range, AccessMode::Download] {
        let outcome = open_remote(
            &server.base_url,
            access,
            &dir.path().join(format!("c{access:?}")),
        )
        .and_then(|snap| check_big(&snap, "v1"));
        let err = outcome.expect_err("another build's shard").to_string();
        assert!(
            err.contains("checksum") || err.contains("content hash"),
            "{access:?}: {err}"
        );
    }
    let local = open_local_range(&root).and_then(|snap| check_big(&snap, "v1"));
    let err = local
        .expect_err("another build's shard, local range")
        .to_string();
    assert!(err.contains("fails its checksum"), "local range: {err}");
    // With its own sidecar copied along too (a whole foreign shard folder).
    let sidecar = |p: &Path| p.with_file_name("shard.sidecar");
    std::fs::copy(sidecar(&theirs[1]), sidecar(&mine[1])).unwrap();
    let err = range_error(&server.base_url, &dir.path().join("c4"));
    assert!(err.contains("fails its checksum"), "{err}");
}

#[test]
fn a_sidecar_page_altered_under_a_valid_zstd_checksum_is_refused() {
    use edgeshard_shared::sidecar::Sidecar;
    let dir = temp_dir();
    let root = dir.path().join("snap");
    publish_big(dir.path(), &root, "v1");
    let files = shard_files(&root, &current_run_id(&root));
    let path = files[0].with_file_name("shard.sidecar");
    let mut sidecar = Sidecar::parse(&std::fs::read(&path).unwrap()).unwrap();
    // An interior page's last cell byte (just before the reserved checksum bytes).
    let (number, page) = sidecar
        .content
        .pages
        .iter_mut()
        .find(|(n, p)| **n > 1 && matches!(p[0], 2 | 5))
        .expect("an interior page");
    let at = page.len() - 9;
    page[at] ^= 0x01;
    let number = *number;
    let (bytes, _) =
        edgeshard_builder::sidecar_writer::encode_sidecar(&sidecar.content, &sidecar.tag)
            .unwrap()
            .unwrap();
    Sidecar::parse(&bytes).expect("the altered sidecar is well-formed");
    std::fs::write(&path, bytes).unwrap();
    // Lookups read through key indexes never touch the sidecar: without them, they do.
    for file in files.iter().map(|f| f.with_file_name("shard.keyindex")) {
        std::fs::remove_file(file).unwrap();
    }
    let expected = format!("page {number} fails its checksum");
    // Locally the sidecar beside the file is trusted (no ETag): its pages are still checked.
    let err = open_local_range(&root)
        .and_then(|snap| check_big(&snap, "v1"))
        .expect_err("an altered sidecar page must not be used")
        .to_string();
    assert!(err.contains(&expected), "{err}");
    // Remotely, bound to the host's ETags as a deployment would do.
    let server = StaticServer::start(&root, ServerMode::Normal);
    run_cli(&[
        "sidecar-bind",
        "--root",
        root_str(&root),
        "--host",
        &server.base_url,
    ])
    .expect("sidecar-bind");
    let err = range_error(&server.base_url, &dir.path().join("c"));
    assert!(err.contains(&expected), "{err}");
}

#[test]
fn plain_sqlite_reads_checksummed_shards_as_before() {
    // shardyfusion reads shards with Python's sqlite3 (plain SQLite): reserved bytes are part of
    // the file format, so the checksums must be invisible to it.
    let dir = temp_dir();
    let root = dir.path().join("snap");
    publish_big(dir.path(), &root, "v1");
    let script = r#"
import sqlite3, sys
total = 0
for path in sys.argv[1:]:
    conn = sqlite3.connect("file:" + path + "?mode=ro", uri=True)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", path
    for k, v in conn.execute("SELECT k, v FROM kv"):
        key = int.from_bytes(k, "big", signed=True)
        assert v.decode() == "v1-%05d-%s" % (key, "x" * 60), (path, key)
        total += 1
print(total)
"#;
    let files = shard_files(&root, &current_run_id(&root));
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(&files)
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "3000");
}

#[test]
fn range_reads_refuse_an_answer_from_another_version_of_the_object() {
    // A server that ignores `If-Match` (this one does, like many static hosts) answered with
    // another version of a shard in the middle of a read; the reader took it (only page
    // checksums stood between it and a mixed answer).
    let dir = temp_dir();
    let root = dir.path().join("snap");
    publish_big(dir.path(), &root, "v1");
    let server = FaultServer::start(&root, Fault::None, "shard.db");
    let snap = Snapshot::open_with(
        &server.base_url,
        OpenOptions {
            access: AccessMode::Range,
            cache_dir: None,
            // Too few to keep a shard's pages: later reads go to the server again.
            cache_pages: 4,
            storage_options: Vec::new(),
        },
    )
    .unwrap();
    // Each shard opened (its ETag seen) and a few of its pages read.
    let first: Vec<Key> = (0..8i64).map(Key::Int).collect();
    snap.multi_get(&first).expect("the objects as opened");
    for file in shard_files(&root, &current_run_id(&root)) {
        flip_byte(&file, 3000);
    }
    let err = check_big(&snap, "v1").expect_err("another version of the shards");
    assert!(err.to_string().contains("ETag"), "{err}");
}
