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
