//! Killing `edgeshard build --out s3://...` (the real binary, SIGKILL) at several points never
//! changes `_CURRENT`: readers keep the previous snapshot. Uses its own moto server
//! (`python3 -m moto.server`, installed by scripts/setup.sh).
// Integration tests stop where they fail: unwrap, expect and panic are how they assert.
// (clippy.toml's allow-*-in-tests covers #[test] functions, not the helpers around them.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use edgeshard_native::remote::RemoteRoot;
use edgeshard_native::{AccessMode, OpenOptions, Snapshot};
use edgeshard_shared::Key;
use std::io::{BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Self {
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto (python3 -m moto.server); run scripts/setup.sh");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn options(&self) -> Vec<(String, String)> {
        [
            ("aws_endpoint", self.endpoint()),
            ("aws_access_key_id", "test".into()),
            ("aws_secret_access_key", "test".into()),
            ("aws_region", "us-east-1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn create_bucket(&self, bucket: &str) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        write!(
            stream,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("CreateBucket");
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rows` records: int id, a value naming the generation, a 16-d vector.
fn write_input(path: &Path, rows: u64, generation: &str) {
    let mut out = BufWriter::new(std::fs::File::create(path).expect("create input"));
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for id in 0..rows {
        let emb: Vec<String> = (0..16)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                format!(
                    "{:.6}",
                    ((state >> 40) as f64 / (1u64 << 24) as f64) * 2.0 - 0.999
                )
            })
            .collect();
        writeln!(
            out,
            r#"{{"id": {id}, "value": "{generation}-{id}-padding-padding-padding", "emb": [{}]}}"#,
            emb.join(",")
        )
        .expect("write input");
    }
    out.flush().expect("flush input");
}

/// The build stages shards in the system temp dir; a killed build leaves its staging folder
/// there, so each test points TMPDIR at its own temp dir.
fn spawn_build(moto: &Moto, input: &Path, url: &str, run_id: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_edgeshard"))
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
            "16",
            "--out",
            url,
            "--s3-endpoint",
            &moto.endpoint(),
            "--run-id",
            run_id,
            "--quiet",
        ])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT")
        .env("TMPDIR", input.parent().expect("input folder"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn edgeshard build")
}

fn run_build(moto: &Moto, input: &Path, url: &str, run_id: &str) -> Duration {
    let started = Instant::now();
    let output = spawn_build(moto, input, url, run_id)
        .wait_with_output()
        .expect("wait for build");
    assert!(
        output.status.success(),
        "build failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed()
}

/// Where a build is killed.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// After a fixed delay (reading, routing or writing shards locally).
    After(Duration),
    /// Once at least this many shard folders of the run are visible on S3 (uploading).
    Uploaded(usize),
}

#[test]
fn killing_a_build_to_s3_never_changes_current() {
    let dir = tempfile::tempdir().expect("temp dir");
    let moto = Moto::start();
    moto.create_bucket("killtest");
    let url = "s3://killtest/snap";
    let store = RemoteRoot::parse_with(url, &moto.options()).expect("remote root");

    let small = dir.path().join("small.jsonl");
    write_input(&small, 1000, "old");
    run_build(&moto, &small, url, "base");
    let current = store
        .read("_CURRENT")
        .expect("_CURRENT after the first build");

    let big = dir.path().join("big.jsonl");
    write_input(&big, 200_000, "new");
    let points = [
        KillPoint::After(Duration::from_millis(300)),
        KillPoint::After(Duration::from_millis(1500)),
        KillPoint::Uploaded(1),
        KillPoint::Uploaded(8),
    ];
    for (i, point) in points.into_iter().enumerate() {
        let run_id = format!("killed{i}");
        let mut child = spawn_build(&moto, &big, url, &run_id);
        let started = Instant::now();
        let run_dir = format!("shards/run_id={run_id}");
        loop {
            if let Some(status) = child.try_wait().expect("poll child") {
                panic!("{point:?}: the build ended ({status}) before the kill point");
            }
            let reached = match point {
                KillPoint::After(delay) => started.elapsed() >= delay,
                KillPoint::Uploaded(n) => store.list_dirs(&run_dir).map_or(0, |d| d.len()) >= n,
            };
            if reached {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{point:?}: timed out"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().expect("kill the build");
        child.wait().expect("reap the build");
        let uploaded = store.list_dirs(&run_dir).map_or(0, |d| d.len());
        eprintln!(
            "{point:?}: killed after {:.2}s, {uploaded} shard folders of {run_id} uploaded",
            started.elapsed().as_secs_f64()
        );
        assert_eq!(
            store.read("_CURRENT").expect("_CURRENT"),
            current,
            "{point:?}: _CURRENT changed"
        );
        let snap = Snapshot::open_with(
            url,
            OpenOptions {
                access: AccessMode::Download,
                cache_dir: Some(dir.path().join("cache")),
                storage_options: moto.options(),
                ..OpenOptions::default()
            },
        )
        .expect("the old snapshot still opens");
        assert_eq!(snap.manifest().meta.run_id, "base");
        assert_eq!(
            snap.get(&Key::Int(5)).expect("get").as_deref(),
            Some(&b"old-5-padding-padding-padding"[..])
        );
    }

    // The same input, not killed, publishes (leftovers of killed runs do not get in the way).
    let took = run_build(&moto, &big, url, "complete");
    eprintln!(
        "a full 200k-row build to S3 took {:.2}s",
        took.as_secs_f64()
    );
    assert_ne!(store.read("_CURRENT").expect("_CURRENT"), current);
    let snap = Snapshot::open_with(
        url,
        OpenOptions {
            access: AccessMode::Range,
            cache_dir: Some(dir.path().join("cache")),
            storage_options: moto.options(),
            ..OpenOptions::default()
        },
    )
    .expect("the new snapshot opens");
    assert_eq!(snap.manifest().meta.run_id, "complete");
    assert_eq!(
        snap.get(&Key::Int(199_999)).expect("get").as_deref(),
        Some(&b"new-199999-padding-padding-padding"[..])
    );
}
