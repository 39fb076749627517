//! `edgeshard cleanup`: old runs go (manifest first, then shards), the current run, the newest
//! --keep-last runs and anything a build may still be writing stay.

use edgeshard_builder::build::build;
use edgeshard_native::Snapshot;
use edgeshard_shared::Key;
use edgeshard_tests::*;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, SystemTime};

fn publish(dir: &Path, root: &Path, tag: &str) -> String {
    let input = dir.join(format!("{tag}.jsonl"));
    write_jsonl(
        &input,
        (0..20i64).map(|id| json!({"id": id, "value": format!("{tag}-{id}")})),
    );
    let mut opts = build_options(&input, root);
    opts.shards = 2;
    std::thread::sleep(Duration::from_millis(2));
    build(&opts).expect("build").run_id
}

fn cli(args: &[&str]) -> Vec<serde_json::Value> {
    json_lines(&run_cli(args).unwrap_or_else(|e| panic!("{args:?}: {e}")))
}

fn age(path: &Path, by: Duration) {
    let file = std::fs::File::open(path).unwrap();
    file.set_modified(SystemTime::now() - by).unwrap();
}

#[test]
fn cleanup_keeps_current_and_newest_and_removes_the_rest() {
    let dir = temp_dir();
    let root = dir.path().join("snap");
    let runs: Vec<String> = (1..=5)
        .map(|i| publish(dir.path(), &root, &format!("v{i}")))
        .collect();
    let r = root.to_str().unwrap();

    // Dry run: reports, removes nothing.
    let before = walk(&root);
    let planned = cli(&["cleanup", "--root", r, "--keep-last", "2", "--dry-run"]);
    assert_eq!(
        planned.len(),
        6,
        "3 manifests + 3 shard folders: {planned:?}"
    );
    assert!(planned.iter().all(|p| p["action"] == "would remove"));
    assert_eq!(walk(&root), before);

    // Serve v1 again, then clean: v1 (current) and v4, v5 (newest two) stay.
    cli(&["rollback", "--root", r, "--run-id", &runs[0]]);
    let removed = cli(&["cleanup", "--root", r, "--keep-last", "2"]);
    let removed_runs: std::collections::BTreeSet<String> = removed
        .iter()
        .map(|x| x["run_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        removed_runs,
        [runs[1].clone(), runs[2].clone()].into_iter().collect()
    );
    let history = cli(&["history", "--root", r]);
    let listed: Vec<&str> = history
        .iter()
        .map(|h| h["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        vec![runs[4].as_str(), runs[3].as_str(), runs[0].as_str()]
    );
    for run in &runs[1..3] {
        assert!(!root.join(format!("shards/run_id={run}")).exists());
    }
    // Rollback by manifest reference (a full URL, as history shows it) and back.
    let v4_manifest = history[1]["manifest"].as_str().unwrap().to_string();
    let url = format!("file://{}/{v4_manifest}", root.display());
    cli(&["rollback", "--root", r, "--ref", &url]);
    assert_eq!(Snapshot::open(r).unwrap().manifest_path(), v4_manifest);
    cli(&["rollback", "--root", r, "--run-id", &runs[0]]);
    assert!(run_cli(&["rollback", "--root", r, "--ref", "manifests/nope/manifest"]).is_err());
    // What remains still reads.
    let snap = Snapshot::open(r).unwrap();
    assert_eq!(snap.get(&Key::Int(4)).unwrap().unwrap(), b"v1-4");
    // Nothing left to remove; an age filter that matches nothing removes nothing.
    assert!(cli(&[
        "cleanup",
        "--root",
        r,
        "--keep-last",
        "0",
        "--older-than",
        "1d"
    ])
    .is_empty());
}

#[test]
fn leftovers_of_failed_builds_go_only_once_they_are_old() {
    let dir = temp_dir();
    let root = dir.path().join("snap");
    publish(dir.path(), &root, "v1");
    let r = root.to_str().unwrap();
    let old_orphan = root.join("shards/run_id=crashed-long-ago");
    let fresh_orphan = root.join("shards/run_id=maybe-still-building");
    for orphan in [&old_orphan, &fresh_orphan] {
        std::fs::create_dir_all(orphan.join("db=00000/attempt=00")).unwrap();
        std::fs::write(orphan.join("db=00000/attempt=00/shard.db"), b"partial").unwrap();
    }
    age(&old_orphan, Duration::from_secs(2 * 3600));
    let removed = cli(&["cleanup", "--root", r]);
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0]["run_id"], "crashed-long-ago");
    assert_eq!(removed[0]["kind"], "shards");
    assert!(!old_orphan.exists() && fresh_orphan.exists());
}

#[test]
fn cleanup_on_s3_removes_old_runs_objects() {
    use edgeshard_builder::cleanup::{cleanup, CleanupOptions};
    use edgeshard_native::{OpenOptions, Root};
    let dir = temp_dir();
    let server = edgeshard_tests::s3_server::S3Server::start();
    server.create_bucket("tidy");
    let url = "s3://tidy/snap";
    let mut runs = Vec::new();
    for i in 1..=3 {
        let input = dir.path().join(format!("v{i}.jsonl"));
        write_jsonl(
            &input,
            (0..20i64).map(|id| json!({"id": id, "value": format!("v{i}-{id}")})),
        );
        let mut opts = build_options(&input, Path::new("unused"));
        opts.out = url.to_string();
        opts.storage_options = server.storage_options();
        opts.shards = 2;
        std::thread::sleep(Duration::from_millis(2));
        runs.push(build(&opts).unwrap().run_id);
    }
    let root = Root::parse_with(url, &server.storage_options()).unwrap();
    let options = |dry_run| CleanupOptions {
        keep_last: 1,
        older_than: None,
        dry_run,
    };
    let planned = cleanup(&root, &options(true)).unwrap();
    assert_eq!(planned.len(), 4, "2 runs x (manifest, shards): {planned:?}");
    assert_eq!(
        root.list_manifests().unwrap().len(),
        3,
        "dry run removes nothing"
    );
    let removed = cleanup(&root, &options(false)).unwrap();
    assert_eq!(removed.len(), 4);
    let Root::Remote(remote) = &root else {
        unreachable!()
    };
    let left: Vec<String> = remote
        .list_objects("shards")
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert!(
        !left.is_empty() && left.iter().all(|p| p.contains(&runs[2])),
        "{left:?}"
    );
    assert_eq!(root.list_manifests().unwrap().len(), 1);
    let snap = Snapshot::open_with(
        url,
        OpenOptions {
            storage_options: server.storage_options(),
            cache_dir: Some(dir.path().join("c")),
            ..OpenOptions::default()
        },
    )
    .unwrap();
    assert_eq!(snap.get(&Key::Int(3)).unwrap().unwrap(), b"v3-3");
}

#[test]
fn cleanup_removes_old_vector_only_runs_routing_artifacts() {
    use edgeshard_builder::build::{VectorOnlyOptions, VectorRoutingKind};
    let dir = temp_dir();
    let root = dir.path().join("snap");
    let input = dir.path().join("v.jsonl");
    write_jsonl(
        &input,
        (0..30i64).map(|id| json!({"id": id, "emb": [1.0, id as f64, (id % 7) as f64]})),
    );
    let runs: Vec<String> = (0..3)
        .map(|_| {
            let mut opts = build_options(&input, &root);
            opts.fields.value_field = None;
            opts.fields.vector_field = Some("emb".into());
            opts.shards = 3;
            opts.vector_only = Some(VectorOnlyOptions {
                routing: VectorRoutingKind::Cluster,
                num_probes: 1,
                shard_field: None,
                hash_bits: None,
                spill: 0.0,
            });
            std::thread::sleep(Duration::from_millis(2));
            build(&opts).expect("build").run_id
        })
        .collect();
    let meta = |run: &str| root.join(format!("vector_meta/run_id={run}/centroids.npy"));
    assert!(runs.iter().all(|r| meta(r).is_file()));
    let removed = cli(&[
        "cleanup",
        "--root",
        root.to_str().unwrap(),
        "--keep-last",
        "1",
    ]);
    let kinds: Vec<(&str, &str)> = removed
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["run_id"].as_str().unwrap()))
        .collect();
    for run in &runs[..2] {
        for kind in ["manifest", "shards", "vector_meta"] {
            assert!(
                kinds.contains(&(kind, run.as_str())),
                "{kind} of {run}: {kinds:?}"
            );
        }
        assert!(!meta(run).exists());
    }
    assert!(
        meta(&runs[2]).is_file(),
        "the current run keeps its centroids"
    );
    let snap = Snapshot::open(root.to_str().unwrap()).unwrap();
    assert_eq!(
        snap.search(&[1.0, 3.0, 3.0], 3, None)
            .unwrap()
            .results
            .len(),
        3
    );
}

/// Every folder and file under `root`, modified `by` ago (links themselves, not their targets).
fn age_tree(root: &Path, by: Duration) {
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            age_tree(&path, by);
        }
        if !meta.file_type().is_symlink() {
            age(&path, by);
        }
    }
    age(root, by);
}

/// Every key of [`publish`]'s input answers with its tag's value.
fn assert_serves(root: &Path, tag: &str) {
    let snapshot = Snapshot::open(root.to_str().unwrap()).expect("open after cleanup");
    for id in 0..20i64 {
        let value = snapshot
            .get(&Key::Int(id))
            .unwrap_or_else(|e| panic!("get {id} after cleanup: {e}"))
            .unwrap_or_else(|| panic!("key {id} lost by cleanup"));
        assert_eq!(value, format!("{tag}-{id}").as_bytes());
    }
}

#[test]
fn cleanup_keeps_the_shards_the_current_manifest_names_whatever_its_folder_says() {
    // The live manifest's folder names run "renamed" while its shards are run B's: cleanup
    // deleted run B's shards as an orphan (data loss) before it read what manifests reference.
    let dir = temp_dir();
    let root = dir.path().join("snap");
    let run_b = publish(dir.path(), &root, "v1");
    let manifests = root.join("manifests");
    let folder = std::fs::read_dir(&manifests)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let old_name = folder.file_name().to_string_lossy().into_owned();
    let new_name = old_name.replace(&format!("run_id={run_b}"), "run_id=renamed");
    std::fs::rename(folder.path(), manifests.join(&new_name)).unwrap();
    let current = std::fs::read_to_string(root.join("_CURRENT")).unwrap();
    std::fs::write(root.join("_CURRENT"), current.replace(&old_name, &new_name)).unwrap();
    assert_serves(&root, "v1");
    age_tree(&root, Duration::from_secs(2 * 3600));

    let removed = cli(&[
        "cleanup",
        "--root",
        root.to_str().unwrap(),
        "--keep-last",
        "5",
    ]);
    assert!(removed.is_empty(), "{removed:?}");
    assert_serves(&root, "v1");
}

#[test]
fn cleanup_keeps_an_older_runs_shard_that_the_current_manifest_points_at() {
    // Run B's manifest points slot 0 at run A's shard (as a manifest may: db_url names the
    // file). `--keep-last 1` removed run A with its shards, and B lost slot 0.
    let dir = temp_dir();
    let root = dir.path().join("snap");
    let run_a = publish(dir.path(), &root, "v1");
    let manifest_a = current_manifest_file(&root);
    publish(dir.path(), &root, "v1");
    let columns = "db_url, attempt, row_count, db_bytes, min_key, max_key, checkpoint_id, \
                   writer_info";
    let row_a: Vec<rusqlite::types::Value> = rusqlite::Connection::open(&manifest_a)
        .unwrap()
        .query_row(
            &format!("SELECT {columns} FROM shards WHERE db_id = 0"),
            [],
            |r| (0..8).map(|i| r.get(i)).collect(),
        )
        .unwrap();
    let changed = rusqlite::Connection::open(current_manifest_file(&root))
        .unwrap()
        .execute(
            "UPDATE shards SET db_url = ?1, attempt = ?2, row_count = ?3, db_bytes = ?4, \
             min_key = ?5, max_key = ?6, checkpoint_id = ?7, writer_info = ?8 WHERE db_id = 0",
            rusqlite::params_from_iter(row_a),
        )
        .unwrap();
    assert_eq!(changed, 1);
    assert_serves(&root, "v1");

    let removed = cli(&[
        "cleanup",
        "--root",
        root.to_str().unwrap(),
        "--keep-last",
        "1",
    ]);
    let kinds: Vec<(&str, &str)> = removed
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["run_id"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, vec![("manifest", run_a.as_str())]);
    assert!(root.join(format!("shards/run_id={run_a}")).exists());
    assert_serves(&root, "v1");
}

#[test]
fn cleanup_never_follows_a_symlinked_staging_folder_out_of_the_root() {
    let dir = temp_dir();
    let root = dir.path().join("snap");
    publish(dir.path(), &root, "v1");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(outside.join("precious")).unwrap();
    std::fs::write(outside.join("precious/data.txt"), b"keep me").unwrap();
    std::os::unix::fs::symlink(&outside, root.join(".edgeshard-staging")).unwrap();
    age_tree(&root, Duration::from_secs(2 * 3600));
    age_tree(&outside, Duration::from_secs(2 * 3600));

    let removed = cli(&["cleanup", "--root", root.to_str().unwrap()]);
    assert!(removed.is_empty(), "{removed:?}");
    assert_eq!(
        std::fs::read(outside.join("precious/data.txt")).unwrap(),
        b"keep me"
    );
    // A build refuses to stage through it too (it would write outside the root).
    let input = dir.path().join("v2.jsonl");
    write_jsonl(&input, [json!({"id": 1, "value": "x"})]);
    let err = build(&build_options(&input, &root))
        .unwrap_err()
        .to_string();
    assert!(err.contains(".edgeshard-staging"), "{err}");
    assert_eq!(
        walk(&outside),
        ["precious", "precious/data.txt"].map(String::from).into()
    );
}

#[test]
fn cleanup_keeps_a_manifest_whose_build_is_still_publishing() {
    // The window between a build's manifest rename and its `_CURRENT` rename: `cleanup
    // --keep-last 0` removed that manifest and the build then pointed `_CURRENT` at nothing.
    use edgeshard_builder::publish::LocalPublisher;
    let dir = temp_dir();
    let root = dir.path().join("snap");
    publish(dir.path(), &root, "v1");
    let live_manifest = std::fs::read(current_manifest_file(&root)).unwrap();
    let current_before = std::fs::read(root.join("_CURRENT")).unwrap();
    let mut publisher = LocalPublisher::new(&root, "in-flight").unwrap();
    let staged = publisher.staged_shard_path(0).unwrap();
    std::fs::write(&staged, b"shard bytes").unwrap();
    publisher.publish_shards().unwrap();
    // Older than the age guard of manifests written since `_CURRENT` changed: only the build's
    // staging folder shows that it is still publishing.
    let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
    let micros = two_hours_ago
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let timestamp = &edgeshard_shared::layout::format_timestamp(micros);
    let manifest = publisher
        .publish_manifest(timestamp, &live_manifest)
        .unwrap();

    let r = root.to_str().unwrap();
    for args in [
        vec!["cleanup", "--root", r, "--keep-last", "0"],
        vec![
            "cleanup",
            "--root",
            r,
            "--keep-last",
            "0",
            "--older-than",
            "0s",
        ],
    ] {
        let removed = cli(&args);
        assert!(
            removed.iter().all(|x| x["run_id"] != "in-flight"),
            "{args:?}: {removed:?}"
        );
    }
    assert!(root.join(&manifest).is_file());
    assert!(root.join("shards/run_id=in-flight").is_dir());

    // And a build whose manifest vanished anyway does not point `_CURRENT` at it.
    std::fs::remove_dir_all(root.join(&manifest).parent().unwrap()).unwrap();
    let pointer = edgeshard_shared::current::CurrentPointer {
        manifest_ref: manifest.clone(),
        run_id: "in-flight".into(),
        updated_at: timestamp.into(),
    };
    let err = publisher.publish_current(&pointer).unwrap_err().to_string();
    assert!(err.contains("manifest"), "{err}");
    assert_eq!(
        std::fs::read(root.join("_CURRENT")).unwrap(),
        current_before
    );
}

#[test]
fn a_build_whose_staged_shards_cannot_be_found_publishes_nothing() {
    // A failed check of the staged shards (an I/O error read as "absent") made the build skip
    // moving them, then publish the manifest and `_CURRENT` anyway: a snapshot without shards.
    use edgeshard_builder::publish::LocalPublisher;
    let dir = temp_dir();
    let root = dir.path().join("snap");
    publish(dir.path(), &root, "v1");
    let before = walk(&root);
    let mut publisher = LocalPublisher::new(&root, "lost-shards").unwrap();
    let staged = publisher.staged_shard_path(0).unwrap();
    std::fs::write(&staged, b"shard bytes").unwrap();
    std::fs::remove_dir_all(root.join(".edgeshard-staging/lost-shards/shards")).unwrap();
    let err = publisher.publish_shards().unwrap_err().to_string();
    assert!(err.contains("lost-shards"), "{err}");
    drop(publisher);
    assert_eq!(walk(&root), before);
    assert_serves(&root, "v1");
}
