//! The real `edgeshard` binary: exit codes and stderr on bad input, and builds killed mid-way
//! (SIGKILL) never change `_CURRENT` nor break the snapshot being served.
// Integration tests stop where they fail: unwrap, expect and panic are how they assert.
// (clippy.toml's allow-*-in-tests covers #[test] functions, not the helpers around them.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use edgeshard_native::Snapshot;
use edgeshard_shared::Key;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_edgeshard");

fn edgeshard(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run edgeshard")
}

/// A small good snapshot at `root` (keys 0..50, value `old-<i>`, 4-d vectors).
fn build_small(dir: &Path, root: &Path) {
    let input = dir.join("small.jsonl");
    let mut text = String::new();
    for i in 0..50 {
        text.push_str(&format!(
            "{{\"id\": {i}, \"value\": \"old-{i}\", \"emb\": [1.0, {i}.0, 0.5, -1.0]}}\n"
        ));
    }
    std::fs::write(&input, text).unwrap();
    let out = edgeshard(&[
        "build",
        "--input",
        input.to_str().unwrap(),
        "--key-field",
        "id",
        "--value-field",
        "value",
        "--vector-field",
        "emb",
        "--shards",
        "4",
        "--out",
        root.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "small build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_old_snapshot_serves(root: &Path) {
    let snap = Snapshot::open(root.to_str().unwrap()).expect("the old snapshot opens");
    let keys: Vec<Key> = (0..50).map(Key::Int).collect();
    let values = snap.multi_get(&keys).expect("multi_get");
    for (i, v) in values.into_iter().enumerate() {
        assert_eq!(v, Some(format!("old-{i}").into_bytes()), "key {i}");
    }
    let hits = snap
        .search(&[1.0, 7.0, 0.5, -1.0], 1, None)
        .expect("search");
    assert_eq!(hits.results.len(), 1);
}

#[test]
fn bad_input_exits_non_zero_with_error_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("snap");
    build_small(dir.path(), &root);
    let current = std::fs::read(root.join("_CURRENT")).unwrap();

    let input = dir.path().join("bad.jsonl");
    std::fs::write(
        &input,
        "{\"id\": 1, \"value\": \"a\", \"emb\": [1, 2, 3, 4]}\n\
         {\"id\": 2, \"value\": \"b\", \"emb\": [1, 2, 3, 4]}\n\
         {\"id\": 3, \"value\": \"c\", \"emb\": [1, 2, 3]}\n",
    )
    .unwrap();
    let out = edgeshard(&[
        "build",
        "--input",
        input.to_str().unwrap(),
        "--key-field",
        "id",
        "--value-field",
        "value",
        "--vector-field",
        "emb",
        "--out",
        root.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(!out.status.success(), "a bad build must fail");
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error:"), "stderr: {stderr}");
    assert!(
        stderr.contains("record 3") && stderr.contains("emb"),
        "stderr: {stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing on stdout on failure");
    assert_eq!(std::fs::read(root.join("_CURRENT")).unwrap(), current);
    assert_old_snapshot_serves(&root);

    // Read errors too: a missing root, a usage error.
    let missing = dir.path().join("nowhere");
    let out = edgeshard(&["get", "--root", missing.to_str().unwrap(), "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error:"));
    let out = edgeshard(&["get", "--root", root.to_str().unwrap(), "not-a-number"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error:"));
    let out = edgeshard(&["search", "--root", root.to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "search without a vector is a usage error"
    );

    // And a good read exits 0 with JSON on stdout.
    let out = edgeshard(&["get", "--root", root.to_str().unwrap(), "7"]);
    assert!(out.status.success());
    let row: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(row["value"], "old-7");
}

/// A host on 127.0.0.1 that answers every request with `status` (a revoked credential), for as
/// long as the test runs.
fn refusing_host(status: &'static str) -> String {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    url
}

#[test]
fn stderr_says_what_kind_of_error_it_is_and_only_transient_ones_invite_a_retry() {
    for status in ["403 Forbidden", "401 Unauthorized"] {
        let host = refusing_host(status);
        let out = edgeshard(&["get", "--root", &host, "1"]);
        assert_eq!(out.status.code(), Some(1), "{status}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut lines = stderr.lines();
        assert!(
            lines.next().is_some_and(|l| l.starts_with("error: ")),
            "{status}: {stderr}"
        );
        let hint = lines.next().unwrap_or_default();
        assert!(hint.starts_with("(permission denied"), "{status}: {stderr}");
        assert!(!stderr.contains("retrying can help"), "{status}: {stderr}");
    }
    let out = edgeshard(&["get", "--root", "", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\n(invalid input"), "{stderr}");
}

/// Writes `rows` JSONL records with 32-d vectors (deterministic, no RNG needed).
fn write_big_input(path: &Path, rows: usize) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut line = String::with_capacity(512);
    for i in 0..rows {
        line.clear();
        line.push_str(&format!("{{\"id\":{},\"value\":\"new-{i}\",\"emb\":[", i));
        for d in 0..32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let x = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            if d > 0 {
                line.push(',');
            }
            line.push_str(&format!("{x:.4}"));
        }
        line.push_str("]}\n");
        out.write_all(line.as_bytes()).unwrap();
    }
    out.flush().unwrap();
}

/// When to SIGKILL a running build.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// A fixed delay after the start (the read phase, for a large input).
    After(Duration),
    /// This long after the first staged `shard.db` appears (the write phase).
    AfterStaging(Duration),
}

fn has_staged_shard(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        if path.is_dir() {
            has_staged_shard(&path)
        } else {
            path.file_name().is_some_and(|n| n == "shard.db")
        }
    })
}

/// Run folders under the staging area (killed builds leave theirs behind).
fn staged_runs(staging: &Path) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(staging)
        .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

fn spawn_build(input: &Path, root: &Path) -> std::process::Child {
    Command::new(BIN)
        .args([
            "build",
            "--input",
            input.to_str().unwrap(),
            "--key-field",
            "id",
            "--value-field",
            "value",
            "--vector-field",
            "emb",
            "--shards",
            "8",
            "--out",
            root.to_str().unwrap(),
            "--quiet",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn edgeshard build")
}

#[test]
fn killed_builds_leave_current_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("snap");
    build_small(dir.path(), &root);
    let current = std::fs::read(root.join("_CURRENT")).unwrap();
    let manifests_before = std::fs::read_dir(root.join("manifests")).unwrap().count();

    let big = dir.path().join("big.jsonl");
    write_big_input(&big, 400_000);
    let medium = dir.path().join("medium.jsonl");
    write_big_input(&medium, 100_000);
    let staging = root.join(".edgeshard-staging");

    let points = [
        (&big, KillPoint::After(Duration::from_millis(100))),
        (&big, KillPoint::After(Duration::from_millis(400))),
        (&big, KillPoint::After(Duration::from_millis(1000))),
        (&medium, KillPoint::AfterStaging(Duration::ZERO)),
        (&medium, KillPoint::AfterStaging(Duration::from_millis(150))),
    ];
    let mut interrupted = 0;
    for (input, point) in points {
        let old_runs = staged_runs(&staging);
        let mut child = spawn_build(input, &root);
        let started = Instant::now();
        let still_running = match point {
            KillPoint::After(delay) => {
                std::thread::sleep(delay);
                child.try_wait().unwrap().is_none()
            }
            KillPoint::AfterStaging(extra) => loop {
                if child.try_wait().unwrap().is_some() {
                    break false;
                }
                let new_run = staged_runs(&staging)
                    .into_iter()
                    .find(|r| !old_runs.contains(r));
                if new_run.is_some_and(|run| has_staged_shard(&staging.join(run))) {
                    std::thread::sleep(extra);
                    break child.try_wait().unwrap().is_none();
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "build never staged"
                );
                std::thread::sleep(Duration::from_millis(2));
            },
        };
        if !still_running {
            // It finished before the kill point: nothing was interrupted, and the root now has
            // a new current snapshot, so later points would prove nothing.
            eprintln!("build finished before {point:?}; stopping");
            break;
        }
        child.kill().expect("SIGKILL the build");
        child.wait().unwrap();
        interrupted += 1;
        eprintln!(
            "killed the build at {point:?}, after {:?}",
            started.elapsed()
        );
        assert_eq!(
            std::fs::read(root.join("_CURRENT")).unwrap(),
            current,
            "_CURRENT changed by a build killed at {point:?}"
        );
        let manifests = std::fs::read_dir(root.join("manifests")).unwrap().count();
        assert!(
            manifests <= manifests_before + 1,
            "a killed build may leave at most its own unreferenced manifest"
        );
        assert_old_snapshot_serves(&root);
    }
    assert!(
        interrupted >= 4,
        "only {interrupted} kill points hit a running build"
    );

    // Leftovers of killed runs do not block the next build, nor history.
    let out = edgeshard(&["history", "--root", root.to_str().unwrap()]);
    assert!(out.status.success());
    let history = String::from_utf8_lossy(&out.stdout);
    assert!(history.lines().count() >= 1, "{history}");
    let before_rebuild = std::fs::read(root.join("_CURRENT")).unwrap();
    build_small(dir.path(), &root);
    assert_ne!(
        std::fs::read(root.join("_CURRENT")).unwrap(),
        before_rebuild
    );
    assert_old_snapshot_serves(&root);
}

#[test]
fn an_unwritable_stderr_is_no_panic() {
    // `eprintln!` panicked (exit 101) when stderr was full or a closed pipe.
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    for args in [
        vec!["get", "--root", "/nonexistent-edgeshard-root", "1"],
        vec![
            "search",
            "--root",
            "/nonexistent-edgeshard-root",
            "--vector",
            "[1]",
        ],
    ] {
        let status = Command::new(BIN)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(full())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(1), "{args:?}");
        // Stderr a pipe whose reader is gone.
        let mut child = Command::new(BIN)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stderr.take());
        assert_eq!(
            child.wait().unwrap().code(),
            Some(1),
            "{args:?}, closed pipe"
        );
    }
}

#[test]
fn a_published_build_exits_zero_even_when_its_summary_cannot_be_printed() {
    // The build switched `_CURRENT`, then failed to print its summary and exited 1: a caller
    // would retry or roll back a build that readers already serve.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("snap");
    build_small(dir.path(), &root);
    let current = std::fs::read(root.join("_CURRENT")).unwrap();
    let input = dir.path().join("new.jsonl");
    std::fs::write(&input, "{\"id\": 1, \"value\": \"new\"}\n").unwrap();
    let out = Command::new(BIN)
        .args([
            "build",
            "--input",
            input.to_str().unwrap(),
            "--key-field",
            "id",
        ])
        .args([
            "--value-field",
            "value",
            "--quiet",
            "--out",
            root.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("stdout"),
        "{stderr}"
    );
    assert_ne!(std::fs::read(root.join("_CURRENT")).unwrap(), current);
    let snap = Snapshot::open(root.to_str().unwrap()).unwrap();
    assert_eq!(snap.get(&Key::Int(1)).unwrap(), Some(b"new".to_vec()));

    // Any other command's unwritable stdout still fails it.
    let out = Command::new(BIN)
        .args(["get", "--root", root.to_str().unwrap(), "1"])
        .stdout(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// `build --input -` reads JSONL from stdin and publishes (it used to wait forever: the binary
/// held stdin's lock while the input reader asked for it again); `multiget` reads its keys from
/// stdin too.
#[test]
fn build_reads_its_input_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("snap");
    let mut child = Command::new(BIN)
        .args(["build", "--input", "-", "--input-format", "jsonl"])
        .args([
            "--key-field",
            "id",
            "--value-field",
            "value",
            "--shards",
            "2",
            "--quiet",
        ])
        .args(["--out", root.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        for i in 0..100 {
            writeln!(stdin, "{{\"id\": {i}, \"value\": \"v{i}\"}}").unwrap();
        }
    }
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("build --input - did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snap = Snapshot::open(root.to_str().unwrap()).unwrap();
    assert_eq!(snap.get(&Key::Int(42)).unwrap(), Some(b"v42".to_vec()));
    assert_eq!(snap.get(&Key::Int(100)).unwrap(), None);
    let mut multiget = Command::new(BIN)
        .args(["multiget", "--root", root.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    multiget
        .stdin
        .take()
        .unwrap()
        .write_all(b"7\n99\n")
        .unwrap();
    let out = multiget.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("\"v7\"") && text.contains("\"v99\""),
        "{text}"
    );
}
