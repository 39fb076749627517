//! Cold key lookups over HTTP for docs/benchmarks.md (issue 12): a KV snapshot (default
//! 1,000,000 rows of 100-byte values, 8 shards) served by nginx on 127.0.0.1, read by
//! runtime-native through its key indexes, through bound sidecars only (key indexes removed),
//! and under `--access auto`, directly and through a proxy adding 20 ms to every request.
//!
//! ```text
//! cargo run --release -p edgeshard-tests --example kv_cold_bench -- [ROWS] [SHARDS] [KEYS] [OUT]
//! ```
//! With OUT, the snapshot is built in OUT/snap and kept (for runtime-wasm/js/bench-cold-kv.mjs,
//! the same lookups in Chromium next to sql.js-httpvfs); otherwise in a temp folder.
//! Per reader: KEYS cold lookups (default 50), each on a fresh snapshot handle (so it opens the
//! key's shard; the snapshot's own open, `_CURRENT` and the manifest, is reported apart), then
//! 200 lookups of other keys on one handle whose shards are all open. Then the cold lookups from
//! S3 (edgeshard-s3-server on 127.0.0.1, scripts/setup-bench.sh). Requests, rounds and
//! bytes are the reader's own counters; "wire" is what the proxy saw (headers included).

use edgeshard_builder::build::build;
use edgeshard_native::{AccessMode, Snapshot};
use edgeshard_shared::Key;
use edgeshard_tests::http_server::{ServerMode, StaticServer};
use edgeshard_tests::proxy::DelayProxy;
use edgeshard_tests::s3_server::S3Server;
use edgeshard_tests::{build_options, open_snapshot_ok, rng, sidecar_bind, walk};
use rand::Rng;
use std::io::Write;
use std::time::{Duration, Instant};

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<u64> = raw
        .iter()
        .take(3)
        .map(|a| a.parse().expect("ROWS SHARDS KEYS are numbers"))
        .collect();
    let rows = args.first().copied().unwrap_or(1_000_000);
    let shards = args.get(1).copied().unwrap_or(8) as u32;
    let cold_keys = args.get(2).copied().unwrap_or(50) as usize;
    let work = tempfile::tempdir().expect("temp dir");
    let kept = raw.get(3).map(std::path::PathBuf::from);
    let input = work.path().join("kv.jsonl");
    let mut rng = rng(12);
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&input).expect("input"));
        for id in 0..rows {
            let value: String = (0..100)
                .map(|_| rng.random_range(b'a'..=b'z') as char)
                .collect();
            writeln!(out, r#"{{"id": {id}, "value": "{value}"}}"#).expect("write input");
        }
    }
    let root = match &kept {
        Some(out) => {
            std::fs::create_dir_all(out).expect("create OUT");
            let root = out.join("snap");
            assert!(
                !root.exists(),
                "{} exists: give an empty OUT",
                root.display()
            );
            root
        }
        None => work.path().join("snap"),
    };
    let mut opts = build_options(&input, &root);
    opts.shards = shards;
    opts.threads = None;
    let summary = build(&opts).expect("build");
    let files = walk(&root);
    let size_of = |suffix: &str| -> Vec<u64> {
        files
            .iter()
            .filter(|f| f.ends_with(suffix))
            .map(|f| std::fs::metadata(root.join(f)).expect("stat").len())
            .collect()
    };
    let (dbs, sidecars, indexes) = (
        size_of("shard.db"),
        size_of("shard.sidecar"),
        size_of("shard.keyindex"),
    );
    println!(
        "snapshot: {} rows, {shards} shards of {:.1} MB; sidecar {:.1}-{:.1} KB, key index \
         {:.1}-{:.1} KB per shard",
        summary.rows,
        dbs.iter().sum::<u64>() as f64 / shards as f64 / 1e6,
        *sidecars.iter().min().unwrap_or(&0) as f64 / 1e3,
        *sidecars.iter().max().unwrap_or(&0) as f64 / 1e3,
        *indexes.iter().min().unwrap_or(&0) as f64 / 1e3,
        *indexes.iter().max().unwrap_or(&0) as f64 / 1e3,
    );
    let server = StaticServer::start(&root, ServerMode::Normal);
    sidecar_bind(&root, &server.base_url);
    let port: u16 = server
        .base_url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("server port");
    let keys: Vec<Key> = (0..cold_keys + 200)
        .map(|_| Key::Int(rng.random_range(0..rows as i64)))
        .collect();
    let local = Snapshot::open(root.to_str().unwrap()).expect("open local");
    println!(
        "| reader | link | snapshot open: requests / bytes | cold lookup: requests / rounds / \
         bytes (median, max) / wire bytes median | ms median | lookup on an open shard: \
         requests / bytes (mean) | ms mean |"
    );
    println!("|---|---|---|---|---|---|---|");
    for reader in ["key index", "bound sidecar", "auto (key index)"] {
        if reader == "bound sidecar" {
            for f in files.iter().filter(|f| f.ends_with("shard.keyindex")) {
                std::fs::rename(root.join(f), root.join(format!("{f}.off"))).expect("hide");
            }
        } else {
            for f in files.iter().filter(|f| f.ends_with("shard.keyindex")) {
                let _ = std::fs::rename(root.join(format!("{f}.off")), root.join(f));
            }
        }
        let access = match reader {
            "auto (key index)" => AccessMode::Auto,
            _ => AccessMode::Range,
        };
        for (link, delay) in [("loopback", 0), ("+20 ms", 20)] {
            let proxy = DelayProxy::start(port, Duration::from_millis(delay));
            let cache = work.path().join("cache");
            let (mut requests, mut rounds, mut bytes, mut wire, mut ms) =
                (vec![], vec![], vec![], vec![], vec![]);
            // The snapshot's own open (_CURRENT + manifest), once, to tell it from the lookups.
            let _ = std::fs::remove_dir_all(&cache);
            let traffic = proxy.traffic();
            let open_requests = open_snapshot_ok(&proxy.endpoint, access, &cache, Vec::new())
                .stats()
                .requests;
            let open_traffic = proxy.traffic() - traffic;
            for key in &keys[..cold_keys] {
                let traffic = proxy.traffic();
                let cold = cold_lookup(&proxy.endpoint, access, Vec::new(), key, &local, &cache);
                let lookup_traffic = proxy.traffic() - traffic;
                assert_eq!(cold.open_requests, open_requests);
                ms.push(cold.ms);
                requests.push(cold.cost.requests as f64);
                rounds.push(cold.cost.rounds as f64);
                bytes.push(cold.cost.bytes as f64);
                wire.push((lookup_traffic.bytes_down - open_traffic.bytes_down) as f64);
            }
            let snap = open_snapshot_ok(&proxy.endpoint, access, &cache, Vec::new());
            for key in &keys[..cold_keys] {
                snap.get(key).expect("warm-up get");
            }
            let (before, start) = (snap.stats(), Instant::now());
            let others = &keys[cold_keys..];
            for key in others {
                snap.get(key).expect("get");
            }
            let open_ms = start.elapsed().as_secs_f64() * 1e3 / others.len() as f64;
            let open = snap.stats() - before;
            let n = others.len() as f64;
            println!(
                "| {reader} | {link} | {open_requests} / {} | {} / {} / {} ({}) / {} | {:.1} | \
                 {:.2} / {:.0} | {open_ms:.2} |",
                open_traffic.bytes_down,
                median(&mut requests),
                median(&mut rounds),
                median(&mut bytes),
                bytes.iter().cloned().fold(0f64, f64::max),
                median(&mut wire),
                median(&mut ms),
                open.requests as f64 / n,
                open.bytes as f64 / n,
            );
        }
    }
    s3_pass(&root, &keys, cold_keys, &local);
}

/// The same cold lookups from S3: edgeshard-s3-server (tests/s3-server, scripts/setup-bench.sh)
/// on 127.0.0.1, directly and through a proxy adding 20 ms to each request.
fn s3_pass(root: &std::path::Path, keys: &[Key], cold_keys: usize, local: &Snapshot) {
    let s3 = S3Server::start_fast();
    s3.create_bucket("bench");
    s3.upload_dir(root, "bench", "kv");
    let work = tempfile::tempdir().expect("temp dir");
    for (reader, access) in [
        ("S3, range, key index", AccessMode::Range),
        ("S3, auto", AccessMode::Auto),
    ] {
        for (link, delay) in [("loopback", 0), ("+20 ms", 20)] {
            let proxy = DelayProxy::start(s3.port(), Duration::from_millis(delay));
            let mut options = s3.storage_options();
            for (key, value) in options.iter_mut() {
                if key == "aws_endpoint" {
                    *value = proxy.endpoint.clone();
                }
            }
            let (mut requests, mut rounds, mut bytes, mut ms) = (vec![], vec![], vec![], vec![]);
            let mut open = 0;
            for key in &keys[..cold_keys] {
                let cache = work.path().join("cache");
                let cold =
                    cold_lookup("s3://bench/kv", access, options.clone(), key, local, &cache);
                open = cold.open_requests;
                ms.push(cold.ms);
                requests.push(cold.cost.requests as f64);
                rounds.push(cold.cost.rounds as f64);
                bytes.push(cold.cost.bytes as f64);
            }
            println!(
                "| {reader} | {link} | {open} / - | {} / {} / {} ({}) / - | {:.1} | - | - |",
                median(&mut requests),
                median(&mut rounds),
                median(&mut bytes),
                bytes.iter().cloned().fold(0f64, f64::max),
                median(&mut ms),
            );
        }
    }
}

/// What one cold lookup cost: the snapshot's open (requests), then the lookup itself.
struct ColdLookup {
    open_requests: u64,
    cost: edgeshard_native::StatsSnapshot,
    ms: f64,
}

/// A fresh handle on `url` (empty download cache at `cache`), then `get(key)`, checked against
/// the local whole-file answer.
fn cold_lookup(
    url: &str,
    access: AccessMode,
    storage: Vec<(String, String)>,
    key: &Key,
    local: &Snapshot,
    cache: &std::path::Path,
) -> ColdLookup {
    let _ = std::fs::remove_dir_all(cache);
    let snap = open_snapshot_ok(url, access, cache, storage);
    let open_requests = snap.stats().requests;
    let before = snap.stats();
    let start = Instant::now();
    let value = snap.get(key).expect("get");
    let ms = start.elapsed().as_secs_f64() * 1e3;
    assert_eq!(value, local.get(key).expect("local get"), "{key:?}");
    ColdLookup {
        open_requests,
        cost: snap.stats() - before,
        ms,
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}
